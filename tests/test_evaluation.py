"""evaluation.py: in-context prediction over shards + the official metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from painter_cli import metrics as M
from painter_cli.errors import PainterError
from painter_cli.evaluation import (
    _scorer,
    evaluate,
    prompts_from_shards,
    resolve_task,
    restoration_variant,
)
from painter_cli.inference import Predictor, finish
from painter_cli.model import build_model
from painter_cli.shards import ShardReader, ShardWriter
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec

S = 32
KP = {"width": 48, "height": 64}
TASKS = {
    "nyuv2-depth": {"codec": "nyuv2-depth", "params": {}},
    "ade20k-semseg": {"codec": "ade20k-semseg", "params": {}},
    "sidd-denoise": {"codec": "restoration", "params": {}},
    "pose": {"codec": "coco-keypoints", "params": KP},
    "inst": {"codec": "coco-instance", "params": {}},
}


def _photo(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _samples(task: str, rng: np.random.Generator, n: int = 4) -> list[Sample]:
    codec = get_codec(TASKS[task]["codec"], **TASKS[task]["params"])
    out = []
    for i in range(n):
        h, w = (64, 48) if task == "pose" else (24 + 2 * i, 30)
        image = _photo(rng, h, w)
        extras = {}
        if task == "nyuv2-depth":
            depth = rng.uniform(1.0, 9.0, (h, w)).astype(np.float32)
            target, extras = codec.encode(depth), {"depth_m": depth}
        elif task == "ade20k-semseg":
            labels = rng.integers(0, 6, (h, w))
            target = codec.encode(labels)
        elif task == "pose":
            kps = np.zeros((17, 3), np.float32)
            kps[:5] = np.c_[rng.uniform(8, 40, 5), rng.uniform(8, 56, 5), np.full(5, 2)]
            target, extras = codec.encode(kps), {"keypoints": kps}
        elif task == "inst":
            ids = np.zeros((h, w), np.int64)
            ids[2:10, 3:12] = 1
            ids[14:22, 16:28] = 2
            target = codec.encode(ids)
        else:
            target = _photo(rng, h, w)
        out.append(Sample(id=f"{task}-{i}", image=image, target=target, extras=extras))
    return out


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    with ShardWriter(root, tasks=TASKS, split="val", shard_size=3) as writer:
        for task in TASKS:
            for sample in _samples(task, rng):
                writer.add(sample, task)
    return ShardReader(root)


@pytest.fixture(scope="module")
def model():
    return build_model("painter-tiny", seed=0)


def _direct(model, reader, task, prompt, meter, update):
    """The same pipeline, one sample at a time, straight into a painter_cli.metrics meter."""
    predictor = Predictor(model, size=S)
    codec = reader.codec(task)
    for i in reader.indices(task):
        s = reader[int(i)]
        painted = predictor.paint(predictor.query(s["image"])[None], [prompt])[0]
        h, w = s["image"].shape[:2]
        update(meter, codec, finish(painted, h, w, codec.kind), s)
    return meter.compute()


def test_depth_eval_matches_direct_computation(model, reader):
    (prompt,) = prompts_from_shards(reader, "nyuv2-depth", S)
    got = evaluate(model, reader, "nyuv2-depth", [prompt], batch_size=3, progress=False)

    def update(meter, codec, painted, s):
        pred = np.floor(codec.decode(painted).astype(np.float64) * 1000) / 1000
        meter.update(pred, s["depth_m"])

    want = _direct(model, reader, "nyuv2-depth", prompt, M.DepthMeter(), update)
    assert got["metric"] == "rmse" and got["higher_is_better"] is False
    assert got["images"] == 4
    for key in M.DEPTH_KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-5)


def test_semseg_eval_matches_direct_computation(model, reader):
    (prompt,) = prompts_from_shards(reader, "ade20k-semseg", S)
    got = evaluate(model, reader, "ade20k-semseg", [prompt], batch_size=3, progress=False)

    def update(meter, codec, painted, s):
        gt = codec.decode(s["target"]).astype(np.int64) - 1
        gt[s["target"].max(axis=2) == 0] = 255
        meter.update(codec.decode(np.clip(painted, 0, 255).astype(np.uint8)) - 1, gt)

    want = _direct(model, reader, "ade20k-semseg", prompt, M.SemsegMeter(150), update)
    assert got["metric"] == "miou"
    assert got["miou"] == pytest.approx(want["miou"]) and got["pacc"] == pytest.approx(want["pacc"])


def test_restoration_eval_limit_and_cache(model, reader):
    (prompt,) = prompts_from_shards(reader, "sidd-denoise", S)
    cache: dict = {}
    first = evaluate(model, reader, "restoration", [prompt], limit=2, progress=False, cache=cache)
    again = evaluate(model, reader, "sidd-denoise", [prompt], limit=2, progress=False, cache=cache)

    def update(meter, codec, painted, s):
        meter.update(np.clip(painted / 255.0, 0, 1), s["target"])

    assert first["variant"] == "sidd" and first["images"] == 2
    assert first["psnr"] == again["psnr"]
    predictor = Predictor(model, size=S)
    meter = M.RestorationMeter("sidd")
    for i in reader.indices("sidd-denoise")[:2]:
        s = reader[int(i)]
        painted = predictor.paint(predictor.query(s["image"])[None], [prompt])[0]
        update(meter, None, finish(painted, *s["image"].shape[:2], "restoration"), s)
    assert first["psnr"] == pytest.approx(meter.compute()["psnr"])
    assert first["ssim"] == pytest.approx(meter.compute()["ssim"])


def test_keypoint_eval_runs_with_flip_test(model, reader):
    (prompt,) = prompts_from_shards(reader, "pose", S)
    with_flip = evaluate(model, reader, "pose", [prompt], progress=False)
    without = evaluate(model, reader, "pose", [prompt], flip_test=False, progress=False)
    assert with_flip["metric"] == "ap" and with_flip["images"] == 4
    assert 0.0 <= with_flip["ap"] <= 100.0 and 0.0 <= without["ap"] <= 100.0


def _perfect(reader, task, variant=None):
    codec = reader.codec(task)
    scorer = _scorer(codec, task, variant)
    for i in reader.indices(task):
        s = reader[int(i)]
        scorer.update(s["target"].astype(np.float32), s, None)
    return scorer.compute()


def test_perfect_predictions_score_perfectly(reader):
    assert _perfect(reader, "ade20k-semseg")["miou"] == pytest.approx(100.0)
    depth = _perfect(reader, "nyuv2-depth")
    assert depth["rmse"] < 1 / 25.5 and depth["d1"] == 1.0  # 8-bit quantisation only
    assert math.isinf(_perfect(reader, "sidd-denoise")["psnr"])
    assert _perfect(reader, "pose")["ap"] == pytest.approx(100.0)
    assert _perfect(reader, "inst")["ap"] == pytest.approx(100.0)


def test_resolve_task(reader):
    assert resolve_task(reader, "ade20k-semseg") == "ade20k-semseg"
    assert resolve_task(reader, "depth") == "nyuv2-depth"  # a codec kind naming one task
    assert resolve_task(reader, "restoration") == "sidd-denoise"
    with pytest.raises(PainterError, match="unknown task 'nope'"):
        resolve_task(reader, "nope")
    with pytest.raises(PainterError, match="panoptic ground truth"):
        resolve_task(reader, "panoptic")


def test_restoration_variant():
    assert restoration_variant("sidd-denoise") == "sidd"
    assert restoration_variant("derain") == "derain"
    assert restoration_variant("lol-lowlight") == "lol"
    assert restoration_variant("derain", "lol") == "lol"
    with pytest.raises(PainterError, match="--metric-variant"):
        restoration_variant("derain", "psnr")


def test_prompts_must_share_one_size(model, reader):
    (a,) = prompts_from_shards(reader, "ade20k-semseg", S)
    (b,) = prompts_from_shards(reader, "ade20k-semseg", 48)
    with pytest.raises(PainterError, match="different sizes"):
        evaluate(model, reader, "ade20k-semseg", [a, b], progress=False)
