"""The training loop: optimizer groups, schedule, overfitting, exact resume after SIGKILL, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from fakes_shards import write_shards
from safetensors.torch import load_file

from painter_cli import engine
from painter_cli.checkpoint import load_model, save_checkpoint
from painter_cli.config import resolve
from painter_cli.errors import PainterError
from painter_cli.model import Painter, build_model, get_config

FAST = [
    "data.num_workers=0",
    "run.log_every=1",
    "schedule.warmup_steps=0",
    # the CI box has 2 shared cores: oversubscribed intra-op threads make tiny steps 10x slower
    "run.threads=1",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-shards")
    return write_shards(root / "train"), write_shards(root / "val", n=2, split="val", seed=3)


def _cfg(train_dir, *overrides, steps=4):
    cfg = resolve(preset="tiny", overrides=[*FAST, f"schedule.steps={steps}", *overrides])
    cfg.data.paths = [str(train_dir)]
    return cfg


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir, step):
    return load_file(str(run_dir / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


# -- optimizer groups and schedule ------------------------------------------------------------


def _group_of(groups, name):
    (g,) = [g for g in groups if name in g["names"]]
    return g


def test_layer_decay_scales_and_weight_decay_groups_vit_large():
    with torch.device("meta"):
        model = Painter(get_config("painter-vit-large"))
    groups = engine.param_groups(model, weight_decay=0.1, layer_decay=0.8)
    # spec 4.3: num_layers 25; pos/patch embed 0.8^25 = 0.00378, block 0 0.8^24 = 0.00472,
    # block 23 0.8, tokens/norm/decoder 1.0
    assert _group_of(groups, "pos_embed")["lr_scale"] == pytest.approx(0.0037779, rel=1e-4)
    assert _group_of(groups, "patch_embed.proj.weight")["lr_scale"] == pytest.approx(
        0.0037779, rel=1e-4
    )
    assert _group_of(groups, "blocks.0.attn.qkv.weight")["lr_scale"] == pytest.approx(
        0.0047224, rel=1e-4
    )
    assert _group_of(groups, "blocks.23.mlp.fc1.weight")["lr_scale"] == pytest.approx(0.8)
    for name in ("mask_token", "segment_token_x", "norm.weight", "decoder_embed.weight"):
        assert _group_of(groups, name)["lr_scale"] == 1.0
    # weight decay: 0 for 1-D and pos_embed; decay for tokens, rel-pos and matrices
    for name in ("pos_embed", "blocks.3.norm1.weight", "blocks.3.attn.qkv.bias", "norm.bias"):
        assert _group_of(groups, name)["weight_decay"] == 0.0
    for name in (
        "mask_token",
        "segment_token_y",
        "blocks.7.attn.rel_pos_h",
        "blocks.0.mlp.fc2.weight",
    ):
        assert _group_of(groups, name)["weight_decay"] == 0.1
    assert sum(len(g["params"]) for g in groups) == 352  # every parameter exactly once


def test_lr_schedule_warmup_then_cosine():
    kw = {"base": 1e-3, "min_lr": 0.0, "warmup": 5400, "total": 54000}
    assert engine.lr_at(0, **kw) == 0.0
    assert engine.lr_at(2700, **kw) == pytest.approx(5e-4)
    assert engine.lr_at(5400, **kw) == pytest.approx(1e-3)
    assert engine.lr_at(29700, **kw) == pytest.approx(5e-4)  # half-way through the cosine
    assert engine.lr_at(54000, **kw) == pytest.approx(0.0, abs=1e-15)
    q = 5400 + (54000 - 5400) // 4
    assert engine.lr_at(q, **kw) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert engine.lr_at(10, base=1e-3, min_lr=1e-5, warmup=0, total=10) == pytest.approx(1e-5)


def test_plan_epochs_accumulation_and_bad_batches():
    cfg = resolve(preset="painter-vit-large-code")
    plan = engine.make_plan(cfg, world=8, num_pairs=2048 * 100)
    assert (plan.micro, plan.accum, plan.steps_per_epoch) == (2, 128, 100)
    assert (plan.total_steps, plan.warmup_steps) == (1500, 100)
    cfg.optim.batch_size = 5
    cfg.optim.micro_batch = 2
    with pytest.raises(PainterError, match="batch 5 does not split"):
        engine.make_plan(cfg, world=1, num_pairs=100)
    cfg.optim.batch_size = 4
    cfg.schedule.steps = -3  # --set schedule.steps=-3 said "no schedule length"
    with pytest.raises(PainterError, match="schedule.steps and schedule.epochs must be >= 0"):
        engine.make_plan(cfg, world=1, num_pairs=100)


# -- training runs ------------------------------------------------------------------------------


def test_tiny_overfit_loss_decreases_and_val_rows(shards, tmp_path):
    cfg = _cfg(
        shards[0],
        "optim.lr=2e-3",
        "data.second_crop=false",
        "data.jitter_prob=0.0",
        "data.flip_prob=0.0",
        "data.crop_scale=[1.0, 1.0]",
        steps=30,
    )
    cfg.data.val_paths = [str(shards[1])]
    cfg.data.tasks = ["nyuv2-depth"]
    result = engine.train(cfg, tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 31))
    first = sum(r["loss"] for r in rows[:3]) / 3
    last = sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.6 * first
    assert set(rows[-1]["val_loss"]) == {"nyuv2-depth", "ade20k-semseg"}
    assert result.step == 30 and result.checkpoint.name == "step_00000030"
    assert (tmp_path / "run" / "config.toml").is_file()


def test_sigkill_and_resume_equals_an_uninterrupted_run(shards, tmp_path):
    args = ["--data", str(shards[0]), "--preset", "tiny", "--steps", "6"]
    args += [x for s in [*FAST, "run.checkpoint_every=3"] for x in ("--set", s)]
    killed = tmp_path / "killed"
    env = {**os.environ, engine.KILL_ENV: "3", "PAINTER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "painter_cli", "train", *args, "--out", str(killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step_00000003"]

    from typer.testing import CliRunner

    from painter_cli.cli import app

    res = CliRunner().invoke(app, ["train", "--resume", str(killed)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "straight")])
    assert res.exit_code == 0, res.output

    a, b = _weights(killed, 6), _weights(tmp_path / "straight", 6)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6
    assert [r["step"] for r in _rows(killed)] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in _rows(killed)] == pytest.approx(
        [r["loss"] for r in _rows(tmp_path / "straight")], abs=1e-6
    )


def test_non_finite_loss_stops_with_the_last_good_checkpoint(shards, tmp_path):
    cfg = _cfg(shards[0], "optim.lr=1e30", "optim.clip_grad=0", "run.checkpoint_every=1", steps=6)
    with pytest.raises(PainterError, match="non-finite loss") as exc:
        engine.train(cfg, tmp_path / "run")
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts and str(tmp_path / "run" / "checkpoints" / ckpts[-1]) in exc.value.message
    bad_step = int(exc.value.message.split(" at step ")[1].split(":")[0])
    assert int(ckpts[-1][5:]) == bad_step - 1


def test_init_from_a_checkpoint_and_from_mae(shards, tmp_path):
    base = _cfg(shards[0], steps=2)
    engine.train(base, tmp_path / "a")
    # lr 0: fine-tuning keeps the initial weights, so they must be run a's
    tune = _cfg(shards[0], "optim.lr=0.0", steps=1)
    tune.run.init = str(tmp_path / "a")
    engine.train(tune, tmp_path / "b")
    wa, wb = _weights(tmp_path / "a", 2), _weights(tmp_path / "b", 1)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    mae = build_model("painter-tiny", seed=123).state_dict()
    mae = {k: v for k, v in mae.items() if k.startswith(("blocks.", "patch_embed.", "pos_embed"))}
    mae["cls_token"] = torch.zeros(1, 1, 64)
    torch.save({"model": mae}, tmp_path / "mae.pth")
    tune.run.init = f"mae:{tmp_path / 'mae.pth'}"
    engine.train(tune, tmp_path / "c")
    wc = _weights(tmp_path / "c", 1)
    assert torch.equal(wc["blocks.2.attn.qkv.weight"], mae["blocks.2.attn.qkv.weight"])
    assert not torch.equal(wc["decoder_embed.weight"], wa["decoder_embed.weight"])


def test_bf16_autocast_on_the_cpu_trains(shards, tmp_path):
    result = engine.train(_cfg(shards[0], "run.precision=bf16", steps=2), tmp_path / "run")
    assert result.step == 2 and math.isfinite(result.loss)
    with pytest.raises(PainterError, match="run.precision"):
        engine.train(_cfg(shards[0], "run.precision=fp16"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_model_img_size_trains_a_larger_canvas(shards, tmp_path):
    result = engine.train(_cfg(shards[0], "model.img_size=[96, 48]", steps=1), tmp_path / "run")
    assert result.step == 1 and math.isfinite(result.loss)
    model = load_model(tmp_path / "run")
    assert model.config.img_size == (96, 48)
    assert model.config.num_patches == 12 * 6
    # A checkpoint given as run.init moves to the configured canvas and keeps training.
    cfg = _cfg(shards[0], "model.img_size=[128, 64]", f"run.init={tmp_path / 'run'}", steps=1)
    engine.train(cfg, tmp_path / "run2")
    assert load_model(tmp_path / "run2").config.img_size == (128, 64)


def test_model_depth_deepens_the_init_checkpoint(shards, tmp_path):
    engine.train(_cfg(shards[0], steps=1), tmp_path / "run")
    # lr 0: the deepened model keeps run's blocks where they moved and its new blocks' zero outputs
    cfg = _cfg(shards[0], "model.depth=8", "optim.lr=0.0", f"run.init={tmp_path / 'run'}", steps=1)
    engine.train(cfg, tmp_path / "deep")
    deep, base = load_model(tmp_path / "deep"), load_model(tmp_path / "run")
    assert deep.config.depth == 8 and deep.config.feature_blocks == (1, 3, 5, 7)
    assert torch.equal(deep.blocks[6].attn.qkv.weight, base.blocks[5].attn.qkv.weight)
    assert not deep.blocks[7].mlp.fc2.weight.any()
    with pytest.raises(PainterError, match="model.depth deepens a run.init checkpoint"):
        engine.train(_cfg(shards[0], "model.depth=8", steps=1), tmp_path / "bad")


def test_keeps_only_the_last_k_checkpoints(shards, tmp_path):
    cfg = _cfg(shards[0], "run.checkpoint_every=1", "run.keep_checkpoints=2", steps=4)
    engine.train(cfg, tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step_00000003", "step_00000004"]


# -- bad input fails before training ------------------------------------------------------------


def test_bad_inputs_fail_before_any_step(shards, tmp_path):
    def fails(cfg, match):
        with pytest.raises(PainterError, match=match):
            engine.train(cfg, tmp_path / "run")
        assert not (tmp_path / "run" / "checkpoints").exists()

    fails(_cfg(tmp_path / "missing"), "no such shard directory")
    (tmp_path / "empty").mkdir()
    fails(_cfg(tmp_path / "empty"), "index.json: missing")
    cfg = _cfg(shards[0])
    cfg.data.paths = []
    fails(cfg, "no training data")

    old = write_shards(tmp_path / "old", n=1)
    index = json.loads((old / "index.json").read_text())
    index["version"] = 99
    (old / "index.json").write_text(json.dumps(index))
    fails(_cfg(old), "encoder version 99")

    write_shards(tmp_path / "custom", tasks=("my-task", "other-task"), n=2)
    fails(_cfg(tmp_path / "custom"), "task 'my-task' has no sampling weight")
    fails(_cfg(shards[0], "optim.batch_size=6", "optim.micro_batch=4"), "batch 6 does not split")
    fails(_cfg(shards[0], "mask.patches=40"), "does not fit")


def test_bad_optimizer_values_and_a_file_as_out_fail_before_the_run_dir(shards, tmp_path):
    for override, match in (
        ("optim.lr=-1", "optim.lr must be >= 0"),
        ("optim.betas=[0.9, 1.5]", "optim.betas must be two values"),
        ("optim.layer_decay=0", "optim.layer_decay must be in"),
    ):
        with pytest.raises(PainterError, match=match):
            engine.train(_cfg(shards[0], override), tmp_path / "bad")
        assert not (tmp_path / "bad").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PainterError, match="exists and is not a folder"):
        engine.train(_cfg(shards[0]), tmp_path / "file")


def test_saved_config_is_absolute_and_a_finished_run_resumes_as_complete(
    shards, tmp_path, monkeypatch
):
    monkeypatch.chdir(shards[0].parent)
    run = tmp_path / "run"
    engine.train(_cfg(shards[0].name, steps=2), run)  # a relative --data
    saved = engine.resume_config(run)
    assert saved.data.paths == [str(shards[0])]
    monkeypatch.chdir(tmp_path)  # resume from elsewhere
    before = (run / "metrics.jsonl").read_text()
    result = engine.train(saved, run, resume=True)
    assert result.already_complete and result.step == result.total_steps == 2
    assert result.checkpoint == run / "checkpoints" / "step_00000002"
    assert (run / "metrics.jsonl").read_text() == before
    from typer.testing import CliRunner

    from painter_cli.cli import app

    res = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0 and "already complete (2/2 steps)" in res.output
    assert "nan" not in res.output


def test_an_interrupted_run_says_how_to_resume(shards, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_train = engine._train

    def interrupted(cfg, run_dir, resume, info):  # the run starts, then Ctrl-C
        cfg.schedule.steps = 1
        real_train(cfg, run_dir, resume, info)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt) as exc:
        engine.train(_cfg(shards[0]), run)
    assert exc.value.hint == f"painter train --resume {run} continues from its last checkpoint"

    def early(cfg, run_dir, resume, info):  # Ctrl-C before the run directory is written
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_train", early)
    with pytest.raises(KeyboardInterrupt) as exc:  # nothing to resume
        engine.train(_cfg(shards[0]), tmp_path / "other")
    assert not hasattr(exc.value, "hint")


def test_ctrl_c_saves_a_checkpoint_and_resumes_as_an_uninterrupted_run(
    shards, tmp_path, monkeypatch
):
    # Ctrl-C after 3 of 6 steps (no periodic checkpoints): the 3 steps are kept, and resuming
    # finishes with the weights of a run that was never interrupted.
    real_lr_at = engine.lr_at

    def ctrl_c_at_step_3(step, **kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return real_lr_at(step, **kwargs)

    monkeypatch.setattr(engine, "lr_at", ctrl_c_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        engine.train(_cfg(shards[0], steps=6), tmp_path / "cut")
    assert sorted(p.name for p in (tmp_path / "cut/checkpoints").iterdir()) == ["step_00000003"]
    monkeypatch.setattr(engine, "lr_at", real_lr_at)
    result = engine.train(_cfg(shards[0], steps=6), tmp_path / "cut", resume=True)
    assert result.step == 6
    engine.train(_cfg(shards[0], steps=6), tmp_path / "straight")
    a, b = _weights(tmp_path / "cut", 6), _weights(tmp_path / "straight", 6)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


# -- per-task options and SegGPT type tokens ---------------------------------------------------


def test_task_options_train_are_saved_and_read_back_on_resume(tmp_path):
    data = write_shards(tmp_path / "grouped", tasks=("ade20k-semseg",), n=6, groups=2)
    opts = [
        "data.task_options.ade20k-semseg.pair_by_group=true",
        "data.task_options.ade20k-semseg.recolor=true",
        "data.task_options.ade20k-semseg.fg_weight=4",
        "data.task_options.ade20k-semseg.prompt_mask=0.25",
    ]
    cfg = _cfg(data, *opts, steps=2)
    cfg.data.val_paths = [str(data)]
    result = engine.train(cfg, tmp_path / "run")
    assert result.step == 2 and math.isfinite(result.loss) and "ade20k-semseg" in result.val_loss
    saved = engine.resume_config(tmp_path / "run")
    assert saved.data.task_options == cfg.data.task_options
    assert saved.data.task_options["ade20k-semseg"].fg_weight == 4.0
    cfg = _cfg(data, "data.task_options.ade20k-semsge.recolor=true")
    with pytest.raises(PainterError, match="data.task_options names ade20k-semsge, not in the"):
        engine.train(cfg, tmp_path / "typo")
    assert not (tmp_path / "typo").exists()  # refused before the run directory


def test_seggpt_training_feeds_each_canvas_its_type_token(tmp_path):
    # A semantic and an instance task in one batch: both type tokens must get gradients (the
    # model's default, the instance token for every canvas, would leave the semantic one unused).
    data = write_shards(tmp_path / "mixed", tasks=("ade20k-semseg", "coco-instance"), n=4)
    model = build_model(get_config("painter-tiny", num_type_tokens=2, loss_variant="seggpt"))
    save_checkpoint(tmp_path / "seggpt", model)
    cfg = _cfg(data, "optim.weight_decay=0.0", "optim.batch_size=8", steps=1)
    cfg.run.init = str(tmp_path / "seggpt")
    engine.train(cfg, tmp_path / "run")
    after = _weights(tmp_path / "run", 1)
    for name in ("type_token_cls", "type_token_ins"):
        assert not torch.equal(after[name], model.state_dict()[name]), name
    ds, _ = engine.prepare_data(cfg, (64, 32), 8)
    assert engine.seg_type_ids(model, ds).tolist() == [
        0 if t == "ade20k-semseg" else 1 for t in ds.task_names
    ]
    assert engine.seg_type_ids(build_model(get_config("painter-tiny")), ds) is None
