"""Distributed helpers: the world-of-one path, and torchrun (2 gloo processes) against one process
accumulating the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from fakes_shards import write_shards
from safetensors.torch import load_file

from painter_cli import distributed


def test_world_of_one_takes_the_same_path(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.init("cpu")
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert info.device == torch.device("cpu")
    assert not distributed.is_dist()
    assert distributed.all_reduce_mean(2.5) == 2.5
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(distributed.all_reduce_mean(t), t)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()
    assert distributed.is_main() and distributed.world_size() == 1


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_gloo_processes_match_one_process(tmp_path):
    data = write_shards(tmp_path / "train")
    common = ["train", "--data", str(data), "--preset", "tiny", "--steps", "3", "--batch-size", "4"]
    for s in (
        "model.drop_path_rate=0.0",
        "data.num_workers=0",
        "run.log_every=1",
        "schedule.warmup_steps=0",
        "optim.micro_batch=2",
        "run.threads=1",
    ):
        common += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PAINTER_NO_PROGRESS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    ddp = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "painter_cli", *common, "--out", str(ddp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    from typer.testing import CliRunner

    from painter_cli.cli import app

    single = tmp_path / "single"
    res = CliRunner().invoke(app, [*common, "--out", str(single)])
    assert res.exit_code == 0, res.output

    # one process accumulates 2 micro-batches of 2; two ranks take one each: same samples
    d, s = _rows(ddp), _rows(single)
    assert [r["step"] for r in d] == [r["step"] for r in s] == [1, 2, 3]
    assert [r["loss"] for r in d] == pytest.approx([r["loss"] for r in s], abs=1e-5)
    assert d[0]["loss"] != d[-1]["loss"]  # it trained
    a = load_file(str(ddp / "checkpoints" / "step_00000003" / "model.safetensors"))
    b = load_file(str(single / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
