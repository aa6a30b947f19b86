"""``painter predict`` and ``painter eval`` through the CLI: outputs, bad inputs, a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes_coco import PANOPTIC_IMAGES, write_coco  # noqa: E402

from painter_cli.checkpoint import save_checkpoint  # noqa: E402
from painter_cli.cli import app  # noqa: E402
from painter_cli.model import build_model  # noqa: E402
from painter_cli.shards import ShardWriter  # noqa: E402
from painter_cli.sources.base import Sample  # noqa: E402
from painter_cli.tasks import get_codec  # noqa: E402


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ckpt = save_checkpoint(root / "ckpt", build_model("painter-tiny", seed=0))
    prompt = root / "prompt"
    prompt.mkdir()
    Image.fromarray(_photo(40, 36, 1)).save(prompt / "image.png")
    depth = np.random.default_rng(2).uniform(1, 9, (40, 36)).astype(np.float32)
    Image.fromarray(get_codec("nyuv2-depth").encode(depth)).save(prompt / "target.png")
    queries = root / "queries"
    queries.mkdir()
    Image.fromarray(_photo(30, 44, 3)).save(queries / "a.png")
    Image.fromarray(_photo(26, 20, 4)).save(queries / "b.jpg")
    return root, ckpt, prompt, queries


def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_predict_depth(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    out = tmp_path / "out"
    args = ["predict", str(queries), "-p", str(prompt), "-c", str(ckpt), "--task", "nyuv2-depth"]
    result = cli_runner.invoke(app, [*args, "--out", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    records = json.loads((out / "predictions.json").read_text())
    assert [Path(r["query"]).name for r in records] == ["a.png", "b.jpg"]
    assert set(records[0]["outputs"]) == {"depth", "depth_npy", "depth_color"}
    mm = np.asarray(Image.open(out / records[0]["outputs"]["depth"]))
    assert mm.dtype == np.uint16 and mm.shape == (30, 44)
    metres = np.load(out / records[0]["outputs"]["depth_npy"])
    # Both hold whole millimetres (the official truncation); the .npy in float32 metres.
    np.testing.assert_array_equal(mm, np.round(metres.astype(np.float64) * 1000).astype(np.uint16))


def _assert_one_line_failure(result, out: Path, *needles: str) -> None:
    assert result.exit_code == 1
    lines = _lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0]
    assert not out.exists()


def test_bad_inputs_fail_in_one_line_without_writing(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    out = tmp_path / "out"
    base = ["predict", "--out", str(out)]

    # (No --checkpoint now means the bundled model: tests/test_defaults.py.)
    missing = tmp_path / "no-such-ckpt"
    r = cli_runner.invoke(app, [*base, str(queries), "-p", str(prompt), "-c", str(missing)])
    _assert_one_line_failure(r, out, "no-such-ckpt")

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG broken")
    r = cli_runner.invoke(
        app, [*base, str(queries), str(corrupt), "-p", str(prompt), "-c", str(ckpt)]
    )
    _assert_one_line_failure(r, out, "corrupt.png")

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    r = cli_runner.invoke(app, [*base, str(empty), "-p", str(prompt), "-c", str(ckpt)])
    _assert_one_line_failure(r, out, "empty.jpg")

    no_target = tmp_path / "no_target"
    no_target.mkdir()
    Image.fromarray(_photo(8, 8, 0)).save(no_target / "image.png")
    r = cli_runner.invoke(app, [*base, str(queries), "-p", str(no_target), "-c", str(ckpt)])
    _assert_one_line_failure(r, out, "no_target")

    small = tmp_path / "small.png"
    Image.fromarray(_photo(10, 10, 0)).save(small)
    pair = f"{prompt / 'image.png'}:{small}"
    r = cli_runner.invoke(app, [*base, str(queries), "-p", pair, "-c", str(ckpt)])
    _assert_one_line_failure(r, out, "small.png")

    r = cli_runner.invoke(
        app, [*base, str(queries), "-p", str(prompt), "-c", str(ckpt), "--task", "nope"]
    )
    _assert_one_line_failure(r, out, "nope")

    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"foo": torch.zeros(2)}}, wrong)
    r = cli_runner.invoke(app, [*base, str(queries), "-p", str(prompt), "-c", str(wrong)])
    _assert_one_line_failure(r, out, "wrong.pth")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": evil}, path)
    out = tmp_path / "out"
    r = cli_runner.invoke(
        app, ["predict", str(queries), "-p", str(prompt), "-c", str(path), "--out", str(out)]
    )
    _assert_one_line_failure(r, out, "evil.pth")
    assert not evil.marker.exists()


def test_eval_writes_metrics(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    shards = _depth_shards(tmp_path, n=3)
    out = tmp_path / "ev"
    args = ["eval", "--task", "depth", "--data", str(shards), "-c", str(ckpt), "-p", str(prompt)]
    r = cli_runner.invoke(app, [*args, "--out", str(out), "--limit", "2"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"]["metric"] == "rmse" and doc["metrics"]["images"] == 2
    assert doc["settings"]["task"] == "nyuv2-depth" and doc["settings"]["checkpoint"] == str(ckpt)
    assert "rmse" in r.output and "abs_rel" in r.output

    r = cli_runner.invoke(app, ["eval", "--task", "semseg", "--data", str(shards), "-c", str(ckpt)])
    assert r.exit_code == 1 and "unknown task 'semseg'" in _lines(r)[0]


def test_eval_panoptic_writes_pq(cli_runner, setup, tmp_path):
    from painter_cli.encode import encode_dataset

    root, ckpt, prompt, queries = setup
    truth = write_coco(tmp_path / "coco", "val", PANOPTIC_IMAGES)
    shards = tmp_path / "val"
    encode_dataset("coco-panoptic", tmp_path / "coco", shards, split="val", options={})
    key = "000000001000"
    pairs = {
        "sem": get_codec("coco-semseg").encode(truth.semantic[key]),
        "inst": get_codec("coco-instance").encode(truth.instances[key]),
    }
    for name, target in pairs.items():
        (tmp_path / name).mkdir()
        Image.fromarray(truth.images[key]).save(tmp_path / name / "image.png")
        Image.fromarray(target).save(tmp_path / name / "target.png")
    out = tmp_path / "ev"
    args = ["eval", "--task", "coco-panoptic", "--data", str(shards), "-c", str(ckpt)]
    prompts = ["-p", str(tmp_path / "sem"), "-p", str(tmp_path / "inst")]
    r = cli_runner.invoke(app, [*args, *prompts, "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "metrics.json").read_text())
    metrics = doc["metrics"]
    assert metrics["metric"] == "pq" and metrics["images"] == 2
    for key in ("pq", "sq", "rq", "pq_th", "sq_th", "rq_th", "pq_st", "sq_st", "rq_st"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert doc["settings"]["size"] == 32  # painter-tiny's own side (560 only for ViT-L's 448)
    assert len(doc["settings"]["prompts"]) == 2
    assert "pq *" in r.output and "rq_st" in r.output

    bad = tmp_path / "bad"
    r = cli_runner.invoke(app, [*args, "-p", str(tmp_path / "sem"), "--out", str(bad)])
    _assert_one_line_failure(r, bad, "two outputs: got 1 prompt")
    semseg_shards = tmp_path / "semseg"
    encode_dataset("coco-semseg", tmp_path / "coco", semseg_shards, split="val", options={})
    args[4] = str(semseg_shards)
    r = cli_runner.invoke(app, [*args, *prompts, "--out", str(bad)])
    _assert_one_line_failure(r, bad, "PQ needs panoptic ground truth")


def test_predict_subprocess(setup, tmp_path):
    root, ckpt, prompt, queries = setup
    out = tmp_path / "sub"
    cmd = [sys.executable, "-m", "painter_cli", "predict", str(queries / "a.png")]
    cmd += ["--prompt", str(prompt), "--checkpoint", str(ckpt), "--out", str(out), "--keep-aspect"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (record,) = json.loads((out / "predictions.json").read_text())
    assert Image.open(out / record["painted"]).size == (44, 30)
    assert json.loads((out / "predict_config.json").read_text())["keep_aspect"] is True


def _depth_shards(tmp_path: Path, n: int = 2) -> Path:
    """``n`` nyuv2-depth val samples (24x30, metric depth kept as the ``depth_m`` extra)."""
    codec = get_codec("nyuv2-depth")
    rng = np.random.default_rng(5)
    shards = tmp_path / "val"
    tasks = {"nyuv2-depth": {"codec": "nyuv2-depth", "params": {}}}
    with ShardWriter(shards, tasks=tasks, split="val") as writer:
        for i in range(n):
            depth = rng.uniform(1, 9, (24, 30)).astype(np.float32)
            image = _photo(24, 30, 10 + i)
            writer.add(Sample(f"s{i}", image, codec.encode(depth), {"depth_m": depth}))
    return shards


def _tensor_prompt(folder: Path, side: int, value: float = 0.0) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    image = torch.full((3, side, side), value)
    save_file({"image": image, "target": image.clone()}, str(folder / "prompt.safetensors"))
    return folder


def test_predict_and_eval_refuse_bad_options_in_one_line(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    shards = _depth_shards(tmp_path)
    out = tmp_path / "out"
    pred = ["predict", str(queries), "-p", str(prompt), "-c", str(ckpt)]
    ev = ["eval", "--task", "depth", "--data", str(shards), "-c", str(ckpt), "-p", str(prompt)]
    for cmd in (pred, ev):
        r = cli_runner.invoke(app, [*cmd, "--out", str(out), "--batch-size", "0"])
        _assert_one_line_failure(r, out, "--batch-size 0: must be >= 1")
        r = cli_runner.invoke(app, [*cmd, "--out", str(out), "--size", "0"])
        _assert_one_line_failure(r, out, "--size 0")
        afile = tmp_path / "x.pth"
        afile.write_bytes(b"x")
        r = cli_runner.invoke(app, [*cmd, "--out", str(afile / "sub")])
        _assert_one_line_failure(r, out, f"{afile}: exists and is not a folder")
    # a tensor prompt fixes the side: eval refuses a different --size, as predict does
    tens = _tensor_prompt(tmp_path / "tens", 16)
    for cmd in (pred, ev):
        cmd = [c if c != str(prompt) else str(tens) for c in cmd]
        r = cli_runner.invoke(app, [*cmd, "--out", str(out), "--size", "32"])
        _assert_one_line_failure(r, out, "prompt tensors are 16x16 but the canvas uses 32")
    # eval: a metric variant for another kind, and --prompt with --prompt-data
    r = cli_runner.invoke(app, [*ev, "--out", str(out), "--metric-variant", "lol"])
    _assert_one_line_failure(r, out, "--metric-variant lol: applies to restoration tasks only")
    r = cli_runner.invoke(app, [*ev, "--out", str(out), "--prompt-data", str(shards)])
    _assert_one_line_failure(r, out, "--prompt and --prompt-data both given")


def test_predict_refuses_bad_prompt_tensors_naming_the_file(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup
    out = tmp_path / "out"
    for name, side, value, needle in [
        ("odd", 33, 0.0, "prompt tensors are 33x33; the side must be a positive multiple"),
        ("empty", 0, 0.0, "prompt tensors are empty"),
        ("nan", 16, float("nan"), "NaN or infinite"),
        ("inf", 16, float("inf"), "NaN or infinite"),
    ]:
        folder = _tensor_prompt(tmp_path / name, side, value)
        r = cli_runner.invoke(
            app, ["predict", str(queries), "-p", str(folder), "-c", str(ckpt), "--out", str(out)]
        )
        # (the patch-size check runs once the model is loaded, after its INFO log line)
        lines = [ln for ln in _lines(r) if not ln.startswith("INFO")]
        assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
        assert str(folder / "prompt.safetensors") in lines[0] and needle in lines[0]
        assert "--size" not in lines[0].split("(hint")[0]
        assert not out.exists()


def test_predict_task_accepts_synthetic_tasks_and_refuses_ambiguous_kinds(
    cli_runner, setup, tmp_path
):
    root, ckpt, prompt, queries = setup  # a checkpoint without a task table
    base = ["predict", str(queries), "-p", str(prompt), "-c", str(ckpt)]
    out = tmp_path / "syn"
    r = cli_runner.invoke(app, [*base, "--task", "synthetic-semseg", "--out", str(out)])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "predict_config.json").read_text())
    assert config["codec"]["name"] == "semseg"
    assert config["codec"]["params"]["num_classes"] == 6
    # "semseg" is a synthetic kind (6 classes) and a codec (any number): never guessed.
    r = cli_runner.invoke(app, [*base, "--task", "semseg", "--out", str(tmp_path / "amb")])
    _assert_one_line_failure(r, tmp_path / "amb", "synthetic-semseg", "the codec semseg")
    # --codec with its parameters decodes a task the checkpoint does not know.
    out = tmp_path / "codec"
    extra = ["--codec", "semseg", "--codec-param", "num_classes=1", "--out", str(out)]
    r = cli_runner.invoke(app, [*base, *extra])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "predict_config.json").read_text())
    assert config["codec"] == {"name": "semseg", "params": {"num_classes": 1, "base": 1}}
    labels = np.asarray(Image.open(out / "a_labels.png"))
    assert set(np.unique(labels)) <= {1}  # one class, black (0) is not a candidate
    r = cli_runner.invoke(app, [*base, "--task", "depth", "--codec", "semseg"])
    assert r.exit_code == 1 and "both given" in r.output


def test_predict_task_codec_needing_parameters_says_which(monkeypatch):
    from painter_cli.errors import PainterError
    from painter_cli.inference.run import task_codec
    from painter_cli.tasks import base

    monkeypatch.setitem(base._REGISTRY, "needs-k", lambda k, scale=1: None)
    with pytest.raises(PainterError, match="--task needs-k needs parameters: k"):
        task_codec("needs-k")
    with pytest.raises(PainterError, match="--task nope: unknown task or codec"):
        task_codec("nope")


def test_own_checkpoint_resizes_discrete_prompt_targets_nearest(cli_runner, setup, tmp_path):
    root, ckpt, prompt, queries = setup  # ours: prompt targets resized as `painter train` did
    codec = get_codec("ade20k-semseg")
    labels = np.zeros((40, 36), np.int64)
    labels[:, 18:] = 150
    pair = tmp_path / "pair"
    pair.mkdir()
    Image.fromarray(_photo(40, 36, 1)).save(pair / "image.png")
    Image.fromarray(codec.encode(labels)).save(pair / "target.png")
    base = ["predict", str(queries / "a.png"), "-p", str(pair), "-c", str(ckpt)]
    base += ["--task", "ade20k-semseg"]
    cases = [([], "codec", "nearest"), (["--target-resize", "bicubic"], "bicubic", "bicubic")]
    cases += [(["--target-resize", "official-train"], "official-train", "nearest")]
    for option, rule, mode in cases:
        out = tmp_path / f"out-{rule}"
        r = cli_runner.invoke(app, [*base, *option, "--out", str(out)])
        assert r.exit_code == 0, r.output
        config = json.loads((out / "predict_config.json").read_text())
        assert (config["target_resize"], config["prompt_target_resize"]) == (rule, mode)
    r = cli_runner.invoke(app, [*base, "--target-resize", "lanczos", "--out", str(tmp_path / "x")])
    _assert_one_line_failure(r, tmp_path / "x", "--target-resize lanczos")


OFFICIAL_CODECS = {
    "depth": "nyuv2-depth",
    "semseg": "ade20k-semseg",
    "derain": "restoration",
    "lol": "restoration",
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(OFFICIAL_CODECS))
def test_official_checkpoint_predicts_the_official_files(
    cli_runner, official_inference_dir, task, tmp_path
):
    # The released layout gets the official protocol by default: bicubic prompt targets and the
    # official post-processing. The model's own float arithmetic may flip a truncation, so the
    # files agree to >= 99.9 % of values and never by more than 1 level (1 mm).
    folder = official_inference_dir / task
    inputs = json.loads((official_inference_dir / "manifest.json").read_text())[task]["inputs"]
    out = tmp_path / "out"
    args = ["predict", str(folder / inputs["query"]), "--device", "cpu", "--out", str(out)]
    args += ["-p", f"{folder / inputs['prompt_image']}:{folder / inputs['prompt_target']}"]
    args += [
        "-c",
        str(official_inference_dir / "tiny_official.pth"),
        "--task",
        OFFICIAL_CODECS[task],
    ]
    r = cli_runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    config = json.loads((out / "predict_config.json").read_text())
    assert (config["target_resize"], config["prompt_target_resize"]) == ("bicubic", "bicubic")
    rec = json.loads((out / "predictions.json").read_text())[0]
    name = {"depth": rec["outputs"].get("depth"), "semseg": rec["painted"]}.get(
        task, rec["outputs"].get("restored")
    )
    ours = np.asarray(Image.open(out / name)).astype(np.int64)
    official = np.asarray(Image.open(folder / "official_output.png")).astype(np.int64)
    assert ours.shape == official.shape
    assert (ours == official).mean() >= 0.999
    assert np.abs(ours - official).max() <= 1
