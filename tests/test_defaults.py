"""The self-contained default: suite generation, the bundled model, task-name resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from painter_cli import defaults
from painter_cli.errors import PainterError
from painter_cli.shards import ShardReader

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).parent / "data" / "bundled_depth_painted.npy"
# The new-concept example (bench/bundle.py): its two held-out classes and their masks in the query.
CONCEPTS = ("heart", "arrow")
CONCEPT_MASKS = Path(__file__).parent / "data" / "two_shapes_masks.npz"
IN_DOMAIN = [
    "synthetic-depth",
    "synthetic-semseg",
    "synthetic-instance",
    "synthetic-keypoints",
    "synthetic-denoise",
    "synthetic-derain",
    "synthetic-lowlight",
]
SEGMENT = ["synthetic-segment", "synthetic-segment-outline"]


# --- the synthetic suite -------------------------------------------------------------------------


def test_suite_is_deterministic_and_complete(tmp_path):
    a = defaults.encode_suite(tmp_path / "a", size=16, count=2, seed=3)
    b = defaults.encode_suite(tmp_path / "b", size=16, count=2, seed=3)
    c = defaults.encode_suite(tmp_path / "c", size=16, count=2, seed=4)
    assert sorted(a) == ["ood", "train", "val"]
    for split in a:
        files = sorted(p.name for p in a[split].iterdir())
        assert files == sorted(p.name for p in b[split].iterdir())
        for name in files:  # byte-identical shards and index
            assert (a[split] / name).read_bytes() == (b[split] / name).read_bytes()
    assert (a["train"] / "shard-00000.h5").read_bytes() != (
        c["train"] / "shard-00000.h5"
    ).read_bytes()
    train, ood = ShardReader(a["train"]), ShardReader(a["ood"])
    assert sorted(train.tasks) == sorted([*IN_DOMAIN, *SEGMENT])
    assert ood.tasks == ["synthetic-fgseg", *SEGMENT]
    assert len(train) == 18 and len(ShardReader(a["val"])) == 18 and len(ood) == 6
    s = train[int(train.indices("synthetic-depth")[1])]
    assert s["id"] == "synthetic-depth-train-000001"
    assert s["image"].shape == (16, 16, 3) and s["depth_m"].shape == (16, 16)


def test_suite_resumes_by_split_and_refuses_other_encodes(tmp_path):
    dirs = defaults.encode_suite(tmp_path, size=16, count=1)
    stamp = (dirs["train"] / "shard-00000.h5").stat().st_mtime_ns
    (dirs["val"] / "index.json").unlink()  # as if killed while writing val
    defaults.encode_suite(tmp_path, size=16, count=1)
    assert (dirs["train"] / "shard-00000.h5").stat().st_mtime_ns == stamp  # kept
    assert (dirs["val"] / "index.json").is_file()
    with pytest.raises(PainterError, match="another encode"):
        defaults.encode_suite(tmp_path, size=16, count=2)


def test_suite_splits_can_be_written_alone_and_completed_later(tmp_path):
    dirs = defaults.encode_suite(tmp_path, size=16, count=1, splits=("val", "ood"))
    assert sorted(dirs) == ["ood", "val"] and not (tmp_path / "train").exists()
    stamp = (dirs["val"] / "shard-00000.h5").stat().st_mtime_ns
    full = defaults.encode_suite(tmp_path, size=16, count=1)  # adds train, keeps val and ood
    assert (full["train"] / "index.json").is_file()
    assert (dirs["val"] / "shard-00000.h5").stat().st_mtime_ns == stamp
    with pytest.raises(PainterError, match="no split test"):
        defaults.encode_suite(tmp_path, size=16, count=1, splits=("test",))


def _generate_racing(barrier, marks: str, out: str) -> None:
    """One of two processes asking for the same cached suite at once (a tiny one: 1 sample a
    task); each call of ``encode_suite`` leaves a mark, and waits so the other catches up."""
    import time

    real = defaults.encode_suite

    def slow_encode(root, **kw):
        Path(marks, f"encode-{os.getpid()}").touch()
        time.sleep(0.5)  # the other process now sees no complete suite either
        return real(root, **{**kw, "count": 1})

    defaults.encode_suite = slow_encode
    barrier.wait()
    Path(out).write_text(str(defaults.ensure_suite(size=16, workers=1)))


def test_ensure_suite_generates_once_when_two_processes_ask_together(tmp_path, monkeypatch):
    import multiprocessing as mp

    monkeypatch.setenv(defaults.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "marks").mkdir()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(
            target=_generate_racing, args=(barrier, str(tmp_path / "marks"), str(tmp_path / f"{k}"))
        )
        for k in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    roots = {(tmp_path / f"{k}").read_text() for k in range(2)}
    assert roots == {str(tmp_path / "cache" / f"synthetic-v{defaults.SUITE_VERSION}-s16-seed0")}
    assert len(list((tmp_path / "marks").iterdir())) == 1  # generated once, the other waited
    root = Path(roots.pop())
    tasks = {split: len(defaults.suite_tasks(split)) for split in ("train", "val", "ood")}
    assert len(ShardReader(root / "train")) == tasks["train"] == 9  # one sample a task
    assert len(ShardReader(root / "val")) == tasks["val"] and len(ShardReader(root / "ood")) == 3


def test_encode_synthetic_cli_writes_the_whole_suite(tmp_path, cli_runner):
    from painter_cli.cli import app

    out = tmp_path / "suite"
    r = cli_runner.invoke(
        app, ["encode", "synthetic", "--out", str(out), "--size", "16", "--count", "1", "-j", "1"]
    )
    assert r.exit_code == 0, r.output
    index = json.loads((out / "val" / "index.json").read_text())
    assert index["count"] == 9
    assert sorted(index["tasks"]) == sorted([*IN_DOMAIN, *SEGMENT])
    assert index["tasks"]["synthetic-keypoints"]["params"]["width"] == 16  # generated at 16
    assert ShardReader(out / "ood")[0]["image"].shape == (16, 16, 3)


# --- task names -----------------------------------------------------------------------------------


def test_resolve_task_by_name_and_kind():
    tasks = ["synthetic-depth", "synthetic-denoise", "ade20k-semseg", "coco-semseg"]
    assert defaults.resolve_task("synthetic-depth", tasks) == "synthetic-depth"
    assert defaults.resolve_task("depth", tasks) == "synthetic-depth"
    assert defaults.resolve_task("denoise", tasks) == "synthetic-denoise"
    with pytest.raises(PainterError, match="ambiguous.*ade20k-semseg, coco-semseg"):
        defaults.resolve_task("semseg", tasks)
    with pytest.raises(PainterError, match="unknown task 'keypoints'"):
        defaults.resolve_task("keypoints", tasks)
    assert defaults.task_kind("lol-lowlight") == "lowlight"
    assert defaults.task_kind("my-own-depth") == "depth"


def test_bundled_prompt_and_example_resolve_kinds():
    assert defaults.bundled_prompt("fgseg").name == "synthetic-fgseg"
    for task in [*IN_DOMAIN, "synthetic-fgseg"]:
        folder = defaults.bundled_prompt(task)
        assert (folder / "image.png").is_file() and (folder / "target.png").is_file()
        assert defaults.bundled_example(task).is_file()


def test_train_defaults_fill_weights_and_run_dir(tmp_path, monkeypatch):
    from painter_cli.config import resolve

    dirs = defaults.encode_suite(tmp_path / "s", size=16, count=1)
    cfg = resolve(preset="tiny")
    cfg.data.paths = [str(dirs["train"])]
    cfg.data.weights = {"synthetic-depth": 3.0}
    monkeypatch.chdir(tmp_path)
    run_dir = defaults.apply_train_defaults(cfg, None)
    assert run_dir.parent == Path("runs") and len(run_dir.name) == len("20260101-000000")
    assert cfg.data.weights["synthetic-depth"] == 3.0  # a given weight is kept
    assert cfg.data.weights["synthetic-lowlight"] == 1.0
    assert cfg.data.weights["synthetic-segment"] == 0.0  # needs concept pairing: a recipe names it
    assert cfg.data.val_paths == []  # --data given: no default validation split


# --- the bundled model -----------------------------------------------------------------------------


def _bundled_predictor(kind: str, task: str):
    """A ``Predictor`` of the bundled model painting ``task`` (codec ``kind``) as ``painter
    predict`` does (a SegGPT model with the type token it was trained with on that task)."""
    import torch

    from painter_cli.checkpoint import load_model, resolve_seg_type
    from painter_cli.inference import Predictor

    torch.set_num_threads(1)
    model_dir = defaults.bundled_model()
    model = load_model(model_dir, device="cpu")
    return Predictor(model, seg_type=resolve_seg_type(model_dir, model, None, kind, task))


def test_bundled_model_paints_the_committed_reference():
    from painter_cli.inference import load_image

    model_dir = defaults.bundled_model()
    size_mb = sum(p.stat().st_size for p in model_dir.iterdir()) / 1e6
    assert size_mb <= 25
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert set(metrics["incontext"]) == {*IN_DOMAIN, "synthetic-fgseg"}
    predictor = _bundled_predictor("depth", "synthetic-depth")
    side = json.loads((model_dir / "config.json").read_text())["model"]["img_size"][1]
    assert predictor.size == side  # the model's own per-image side (32 or 64 px)
    prompt_dir = defaults.bundled_prompt("depth")
    prompt = predictor.prompt(
        load_image(prompt_dir / "image.png"), load_image(prompt_dir / "target.png")
    )
    query = predictor.query(load_image(defaults.bundled_example("depth")))
    painted = predictor.paint(query[None], [prompt])[0].numpy()
    expected = np.load(REFERENCE)
    assert painted.shape == expected.shape == (3, side, side)
    np.testing.assert_allclose(painted, expected, atol=2e-3)


def test_recipes_chain_and_match_the_bundled_model():
    # The committed recipes are what trained the bundled model (its metrics.json lists them, in
    # order): stage k starts from stage k-1's run (runs/<run>, or committed as stages/<run>), and
    # the model's recorded run config is the last stage's recipe resolved (paths emptied).
    import re

    from painter_cli.config import from_dict, resolve
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    model_dir = defaults.bundled_model()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    recipes = [ROOT / r for r in metrics["recipes"]]
    runs = [re.search(r"--out runs/(\S+)", c).group(1) for c in metrics["commands"]]
    assert len(recipes) == len(runs) >= 1
    cfgs = [resolve(r) for r in recipes]
    assert cfgs[0].run.init in (None, "")
    for k in range(1, len(cfgs)):
        init = Path(cfgs[k].run.init)
        assert init.parent.name in ("runs", "stages") and init.name == runs[k - 1], recipes[k]
    assert all("synthetic-fgseg" not in c.data.weights for c in cfgs)  # the ood task stays unseen
    doc = json.loads((model_dir / "config.json").read_text())
    assert doc["meta"]["step"] == cfgs[-1].schedule.steps  # the last stage, run to its end
    # Read back as --resume would: keys added since (at their defaults) change nothing trained.
    recorded = from_dict(doc["run"], "bundled config.json")
    # painter train gives the suite's tasks the recipe does not weigh their default weight.
    for task, weight in recorded.data.weights.items():
        cfgs[-1].data.weights.setdefault(task, SYNTHETIC_TASKS[task].weight)
        assert weight == cfgs[-1].data.weights[task], task
    assert recorded == cfgs[-1]


def test_seggpt_recipes_resolve_and_train_on_the_suite(tmp_path):
    # The SegGPT recipes: SegGPT's architecture, concept pairing and random colouring on; the
    # suite one trains on the suite's shards as they are (pairing needs the samples' groups).
    from painter_cli.config import resolve
    from painter_cli.engine import prepare_data
    from painter_cli.model import get_config

    folder = defaults.ASSETS / "recipes"
    suite, real = resolve(folder / "seggpt-suite.toml"), resolve(folder / "seggpt-real.toml")
    assert (suite.model.preset, real.model.preset) == ("seggpt-mini", "seggpt-vit-large")
    assert get_config(suite.model.preset).num_type_tokens == 2
    seg = suite.data.task_options["synthetic-segment"]
    assert seg.pair_by_group and seg.recolor and seg.fg_weight == 10.0 and seg.prompt_mask > 0
    assert suite.data.task_options["synthetic-semseg"].recolor
    assert sorted(suite.data.tasks) == ["synthetic-segment", "synthetic-semseg"]
    assert suite.mask.half_prob == 1.0  # the query's target is never partly visible
    assert real.data.task_options["fss1000"].pair_by_group
    stage2 = resolve(folder / "seggpt-suite-stage2.toml")  # lower foreground weight: selection
    assert stage2.run.init == "runs/seggpt-suite" and stage2.model.preset == "seggpt-mini"
    assert stage2.data.task_options["synthetic-segment"].fg_weight == 4.0
    for recipe in folder.glob("*.toml"):  # the held-out concepts stay unseen by every recipe
        cfg = resolve(recipe)
        assert "synthetic-fgseg" not in {*cfg.data.tasks, *cfg.data.weights}, recipe.name

    # 80 samples of 40 classes: enough groups with two samples to pair.
    paths = {}
    for task, split, count in [
        ("synthetic-segment", "train", 80),
        ("synthetic-semseg", "train", 4),
        ("synthetic-segment", "val", 80),
    ]:
        paths[task, split] = str(tmp_path / f"{task}-{split}")
        defaults.encode_synthetic(paths[task, split], task=task, split=split, size=32, count=count)
    suite.data.paths = [paths["synthetic-segment", "train"], paths["synthetic-semseg", "train"]]
    suite.data.val_paths = [paths["synthetic-segment", "val"]]
    suite.data.num_workers = 0
    cfg = get_config(suite.model.preset)
    train, val = prepare_data(suite, cfg.img_size, cfg.patch_size)
    assert set(train.task_names) == {"synthetic-segment", "synthetic-semseg"}
    item = train[0]
    assert item["imgs"].shape == (3, 128, 64)
    assert len(val) > 0


def test_predict_without_checkpoint_uses_the_bundled_model(tmp_path):
    out = tmp_path / "pred"
    env = {**os.environ, "PAINTER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "painter_cli",
            "predict",
            str(defaults.bundled_example("semseg")),
            "--prompt",
            str(defaults.bundled_prompt("semseg")),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("using the bundled model") == 1
    config = json.loads((out / "predict_config.json").read_text())
    assert Path(config["checkpoint"]) == defaults.bundled_model()
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 1
    assert any(p.suffix == ".png" for p in out.iterdir())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_the_two_shapes_example_and_its_concept_prompts():
    # The quickstart's new-concept case: one query holding two held-out shapes, and a prompt of
    # each (another scene of that class, its mask white on black), at the bundled prompts' size.
    from painter_cli.inference import load_image
    from painter_cli.sources.synthetic import OOD_CLASSES

    query = load_image(defaults.ASSETS / "examples" / "two-shapes.png")
    masks = np.load(CONCEPT_MASKS)
    assert sorted(masks.files) == sorted(CONCEPTS)
    assert {c.name for c in OOD_CLASSES} >= set(CONCEPTS)  # held out: no recipe trains them
    for name in CONCEPTS:
        mask = masks[name]
        assert mask.shape == query.shape[:2] and mask.sum() > 0.02 * mask.size
        target = load_image(defaults.ASSETS / "prompts" / "concepts" / name / "target.png")
        assert target.shape == query.shape
        assert set(np.unique(target)) == {0, 255}  # white on black
    assert not (masks[CONCEPTS[0]] & masks[CONCEPTS[1]]).any()


@pytest.mark.skipif(
    defaults.BUNDLED_MODEL == "bundled-tiny",
    reason="bundled-tiny (version 2) paints shapes, not the prompted one: it cannot select",
)
def test_bare_predict_paints_the_concept_the_prompt_shows(tmp_path):
    # `painter predict assets/examples/two-shapes.png --prompt assets/prompts/concepts/<class>`,
    # as the README's quickstart runs it: the painting covers the prompted shape more than the
    # other one (IoU), for each of the two prompts.
    from painter_cli.inference import PredictSettings, load_image, run_predict

    masks = np.load(CONCEPT_MASKS)
    example = defaults.ASSETS / "examples" / "two-shapes.png"
    for name in CONCEPTS:
        out = tmp_path / name
        prompt = defaults.ASSETS / "prompts" / "concepts" / name
        settings = PredictSettings(queries=[str(example)], prompts=[str(prompt)], out=str(out))
        record = run_predict(settings)[0]
        painted = load_image(out / record["painted"]).mean(axis=-1) > 127
        other = next(n for n in CONCEPTS if n != name)
        assert _iou(painted, masks[name]) > _iou(painted, masks[other]), name


def test_suite_queries_leave_out_the_ood_prompt_sample(tmp_path):
    dirs = defaults.encode_suite(tmp_path / "s", size=16, count=3)
    ood, val = ShardReader(dirs["ood"]), ShardReader(dirs["val"])
    kept = defaults.suite_queries(ood, "synthetic-fgseg")
    assert len(kept) == len(ood.indices("synthetic-fgseg")) - 1
    assert all(not ood.sample_id(i).endswith("-000000") for i in kept)
    assert defaults.suite_queries(val, "synthetic-depth") == list(val.indices("synthetic-depth"))
