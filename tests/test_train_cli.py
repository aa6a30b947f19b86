"""``painter train`` on the command line: flags, the run directory, one-line errors."""

from __future__ import annotations

import json

from fakes_shards import write_shards

from painter_cli.cli import app
from painter_cli.config import load_run_config


def test_train_writes_the_run_directory(cli_runner, tmp_path):
    data = write_shards(tmp_path / "train", n=3)
    val = write_shards(tmp_path / "val", n=1, split="val")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--val-data", str(val), "--preset", "tiny"]
    args += ["--steps", "2", "--batch-size", "2", "--seed", "7", "--out", str(out)]
    for s in ("data.num_workers=0", "run.threads=1", "run.log_every=1"):
        args += ["--set", s]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 2/2 steps" in result.output
    cfg = load_run_config(out / "config.toml")
    assert (cfg.schedule.steps, cfg.optim.batch_size, cfg.run.seed) == (2, 2, 7)
    assert cfg.data.paths == [str(data)] and cfg.data.val_paths == [str(val)]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all("loss" in r for r in rows)
    assert set(rows[-1]["val_loss"]) == {"nyuv2-depth", "ade20k-semseg"}
    assert (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()


def test_resume_refuses_other_settings(cli_runner, tmp_path):
    result = cli_runner.invoke(app, ["train", "--resume", str(tmp_path), "--steps", "9"])
    assert result.exit_code == 1
    assert "drop --steps" in result.output


def test_errors_are_one_line(cli_runner, tmp_path):
    args = ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "no such shard directory" in lines[0]
    result = cli_runner.invoke(app, [*args, "--set", "optim.lrr=1"])
    assert result.exit_code == 1 and "unknown config key optim.lrr" in result.output


def test_a_trained_checkpoint_carries_its_tasks_for_predict(cli_runner, tmp_path):
    import numpy as np
    from PIL import Image

    # A custom one-class task: white edges on black, encoded with `painter encode pairs`.
    root = tmp_path / "edges"
    (root / "images").mkdir(parents=True)
    (root / "targets").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        target = np.zeros((32, 32, 3), np.uint8)
        target[:, 8 * i : 8 * i + 3] = 255
        Image.fromarray(target).save(root / "targets" / f"{i}.png")
    shards = tmp_path / "shards"
    enc = ["encode", "pairs", str(root), "--task", "edges", "--codec", "semseg"]
    result = cli_runner.invoke(app, [*enc, "--codec-param", "num_classes=1", "--out", str(shards)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    args = ["train", "--data", str(shards), "--preset", "tiny", "--steps", "1"]
    args += ["--batch-size", "2", "--out", str(run)]
    for s in ("data.num_workers=0", "run.threads=1"):
        args += ["--set", s]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "checkpoints" / "step_00000001" / "config.json").read_text())
    assert doc["tasks"] == {
        "edges": {
            "codec": "semseg",
            "params": {"num_classes": 1, "base": 1},
            "kind": "semseg",
            "target_resize": "nearest",
            "seg_type": "semantic",  # the token a SegGPT model would have trained it with
        }
    }
    prompt = f"{root / 'images' / '0.png'}:{root / 'targets' / '0.png'}"
    query = str(root / "images" / "1.png")
    for task in ("edges", "semseg"):  # its name, or its kind (the only semseg task it learned)
        out = tmp_path / f"pred-{task}"
        pred = ["predict", query, "-p", prompt, "-c", str(run), "--task", task]
        result = cli_runner.invoke(app, [*pred, "--out", str(out)])
        assert result.exit_code == 0, result.output
        config = json.loads((out / "predict_config.json").read_text())
        assert config["codec"] == {"name": "semseg", "params": {"num_classes": 1, "base": 1}}
        assert config["target_resize"] == "codec"  # as `painter train` resized its targets
        assert config["prompt_target_resize"] == "nearest"
        labels = np.asarray(Image.open(out / "1_labels.png"))
        assert set(np.unique(labels).tolist()) <= {1}
