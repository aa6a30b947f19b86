"""evaluation.py: in-context prediction over shards + the official metrics."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from painter_cli import metrics as M
from painter_cli.errors import PainterError
from painter_cli.evaluation import (
    EvalSettings,
    GroupPairing,
    _scorer,
    evaluate,
    group_prompt_indices,
    prompts_from_shards,
    resolve_task,
    restoration_variant,
    run_eval,
    scalar_metrics,
)
from painter_cli.inference import Predictor, finish, make_prompt, output_scale
from painter_cli.model import build_model
from painter_cli.shards import ShardReader, ShardWriter
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes_coco import PANOPTIC_IMAGES, write_coco  # noqa: E402

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
        # finish() paints depth in 0..10000: the official channel mean truncated to millimetres
        pred = np.floor(painted.mean(axis=2)) / 1000
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
        # The target painted in the units finish() returns (depth: 0..10000).
        scale = output_scale(codec.kind) / 255.0
        scorer.update(s["target"].astype(np.float64) * scale, s, None)
    return scorer.compute()


def test_perfect_predictions_score_perfectly(reader):
    assert _perfect(reader, "ade20k-semseg")["miou"] == pytest.approx(100.0)
    depth = _perfect(reader, "nyuv2-depth")
    assert depth["rmse"] < 1 / 25.5 and depth["d1"] == 1.0  # 8-bit quantisation only
    assert math.isinf(_perfect(reader, "sidd-denoise")["psnr"])
    assert _perfect(reader, "pose")["ap"] == pytest.approx(100.0)
    assert _perfect(reader, "inst")["ap"] == pytest.approx(100.0)


def test_one_class_mask_task_scores_foreground_against_the_all_background_baseline():
    # An edge task: 1 edge pixel in each row of 5. Painting black everywhere scores mIoU 100
    # (black is unlabelled without a background class) but foreground IoU 0, and its pixel
    # accuracy is the all-background baseline 80.
    codec = get_codec("semseg", num_classes=1)
    target = codec.encode(np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]))
    sample = {"target": target}
    collapsed = _scorer(codec, "edges", None)
    collapsed.update(np.zeros((2, 5, 3)), sample, None)
    got = collapsed.compute()
    assert got["miou"] == pytest.approx(100.0) and got["iou_classes"] == [1]
    assert got["fg_iou"] == 0.0 and got["fg_f1"] == 0.0
    assert got["fg_pacc"] == pytest.approx(80.0) and got["all_bg_pacc"] == pytest.approx(80.0)
    # Painting both edges plus one wrong pixel (a near-white 250 counts as the class colour):
    # TP 2, FP 1, FN 0 -> IoU 2/3, F1 4/5.
    painted = target.astype(np.float64)
    painted[0, 4] = 250.0
    better = _scorer(codec, "edges", None)
    better.update(painted, sample, None)
    got = better.compute()
    assert got["fg_iou"] == pytest.approx(200 / 3) and got["fg_f1"] == pytest.approx(80.0)
    assert got["fg_pacc"] == pytest.approx(90.0) and got["all_bg_pacc"] == pytest.approx(80.0)
    # With a background class the per-class IoU covers class 0 (background) and 1.
    bg = get_codec(FG["codec"], **FG["params"])
    scorer = _scorer(bg, "edges", None)
    scorer.update(painted, {"target": target}, None)
    got = scorer.compute()
    assert got["iou_classes"] == [0, 1] and got["iou"] == pytest.approx([700 / 8, 200 / 3])
    assert got["fg_iou"] == pytest.approx(200 / 3)
    rows = dict(scalar_metrics(got))
    assert rows["iou class 0"] == pytest.approx(87.5) and rows["iou class 1"] == pytest.approx(
        200 / 3
    )
    assert rows["fg_f1"] == pytest.approx(80.0) and rows["all_bg_pacc"] == pytest.approx(80.0)
    assert not any(name.startswith("iou class") for name, _ in scalar_metrics({"iou": [1.0] * 21}))


def test_evaluate_ranks_a_one_class_task_without_background_by_foreground_iou(model, tmp_path):
    codec = {"codec": "semseg", "params": {"num_classes": 1}}
    rng = np.random.default_rng(4)
    with ShardWriter(tmp_path / "edges", tasks={"edges": codec}, split="val") as w:
        for k in range(2):
            target = get_codec("semseg", num_classes=1).encode(_band(rows=slice(0, 8 + 8 * k)))
            w.add(Sample(f"e{k}", _photo(rng, S, S), target), "edges")
    reader = ShardReader(tmp_path / "edges")
    prompts = prompts_from_shards(reader, "edges", S)
    got = evaluate(model, reader, "edges", prompts, progress=False)
    assert got["metric"] == "fg_iou" and got["higher_is_better"] is True
    assert got["miou"] == pytest.approx(100.0)  # black unlabelled: whatever is painted


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


# --------------------------------------------------------------------------------------- panoptic
PAN = 112  # the fake panoptic images are 112 x 112: painting at S = 112 needs no resizing


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory):
    """coco-panoptic val shards of ``PANOPTIC_IMAGES`` and the fake tree's truth."""
    from painter_cli.encode import encode_dataset

    root = tmp_path_factory.mktemp("panoptic")
    truth = write_coco(root / "coco", "val", PANOPTIC_IMAGES)
    encode_dataset("coco-panoptic", root / "coco", root / "shards", split="val", options={})
    return ShardReader(root / "shards"), truth


class _Painted(Predictor):
    """The model bypassed: ``paint`` returns given (H, W, 3) uint8 outputs, per prompt name, in the
    order evaluation asks for them (the scoring path under test, not the model)."""

    def __init__(self, model, size: int, outputs: dict[str, list[np.ndarray]]):
        super().__init__(model, size=size)
        self.outputs = outputs
        self.done = dict.fromkeys(outputs, 0)

    def paint(self, queries, prompts, ensemble="features"):
        name, n = prompts[0].name, len(queries)
        arrays = self.outputs[name][self.done[name] : self.done[name] + n]
        self.done[name] += n
        # +0.5: the official truncation to uint8 gives the exact colours back
        return torch.stack(
            [
                torch.from_numpy((a.astype(np.float32) + 0.5) / 255.0).permute(2, 0, 1)
                for a in arrays
            ]
        )


def _panoptic_run(model, reader, truth, drop_dog: bool = False, batch_size: int = 8):
    inst_codec = get_codec("coco-instance")
    samples = [reader[int(i)] for i in reader.indices("coco-panoptic")]
    semantic = [s["target"] for s in samples]
    instance = []
    for s in samples:
        ids = truth.instances[s["id"]].copy()
        if drop_dog and s["id"] == "000000001000":
            ids[ids == 2] = 0  # the dog (instance 2) is not painted
        instance.append(inst_codec.encode(ids))
    key = samples[0]["id"]
    prompts = [
        make_prompt(truth.images[key], semantic[0], PAN, name="semantic"),
        make_prompt(truth.images[key], instance[0], PAN, name="instance"),
    ]
    stub = _Painted(model, PAN, {"semantic": semantic, "instance": instance})
    result = evaluate(stub, reader, "panoptic", prompts, batch_size=batch_size, progress=False)
    assert stub.done == {"semantic": 2, "instance": 2}
    return result


def test_panoptic_ground_truth_painted_scores_pq_100(model, panoptic):
    reader, truth = panoptic
    got = _panoptic_run(model, reader, truth, batch_size=1)
    assert got["metric"] == "pq" and got["kind"] == "panoptic" and got["images"] == 2
    # Things: person x3, dog; stuff: banner, rug-merged (each over 8192 px); the crowd car is
    # painted as car by the semantic output only, so it stays void and is ignored.
    for key in ("pq", "sq", "rq", "pq_th", "sq_th", "rq_th", "pq_st", "sq_st", "rq_st"):
        assert got[key] == pytest.approx(100.0), key
    assert (got["n_th"], got["n_st"]) == (2, 2)
    assert got["per_class"][1]["tp"] == 3 and got["per_class"][3] == {
        "pq": 0.0,
        "sq": 0.0,
        "rq": 0.0,
        "tp": 0,
        "fp": 0,
        "fn": 0,
    }


def test_panoptic_missing_instance_is_a_false_negative(model, panoptic):
    reader, truth = panoptic
    got = _panoptic_run(model, reader, truth, drop_dog=True)
    # dog: FN (PQ 0), its semantic pixels stay void; person and both stuff classes: 100.
    assert got["per_class"][18]["fn"] == 1 and got["per_class"][18]["tp"] == 0
    assert got["pq_th"] == pytest.approx(50.0)
    assert got["pq_st"] == pytest.approx(100.0)
    assert got["pq"] == pytest.approx(75.0)


def test_panoptic_needs_two_prompts_and_ground_truth(model, panoptic, tmp_path):
    reader, truth = panoptic
    key = "000000001000"
    prompt = make_prompt(truth.images[key], reader[0]["target"], PAN, name="semantic")
    with pytest.raises(PainterError, match="paints two outputs: got 1 prompt"):
        evaluate(model, reader, "coco-panoptic", [prompt], progress=False)
    # Shards of the panoptic task without the panoptic extras.
    tasks = {"coco-panoptic": {"codec": "coco-panoptic", "params": {}}}
    with ShardWriter(tmp_path / "bare", tasks=tasks, split="val") as writer:
        s = reader[0]
        writer.add(Sample(id=s["id"], image=s["image"], target=s["target"]), "coco-panoptic")
    with pytest.raises(PainterError, match="has no panoptic ground truth"):
        evaluate(
            model, ShardReader(tmp_path / "bare"), "panoptic", [prompt, prompt], progress=False
        )


def test_metric_variant_must_apply_to_the_kind(model, reader):
    (prompt,) = prompts_from_shards(reader, "ade20k-semseg", S)
    with pytest.raises(PainterError, match="--metric-variant lol: applies to restoration tasks"):
        evaluate(model, reader, "ade20k-semseg", [prompt], 1, metric_variant="lol", progress=False)


def test_evaluate_refuses_batch_size_zero(model, reader):
    (prompt,) = prompts_from_shards(reader, "ade20k-semseg", S)
    with pytest.raises(PainterError, match="--batch-size 0: must be >= 1"):
        evaluate(model, reader, "ade20k-semseg", [prompt], 1, batch_size=0, progress=False)


# --------------------------------------------------------------------------------------------
# Grouped prompting, the few-shot protocol and decoding by the prompt's colours

FG = {"codec": "semseg", "params": {"num_classes": 1, "base": 2, "background": True}}


def _band(rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
    m = np.zeros((S, S), np.int64)
    m[rows, cols] = 1
    return m


# Class a: rows 0:16 and rows 8:24; class b: cols 0:8 and cols 0:16; class c: one sample only.
FSS_MASKS = {
    ("a", "a1"): _band(rows=slice(0, 16)),
    ("a", "a2"): _band(rows=slice(8, 24)),
    ("c", "c1"): _band(rows=slice(0, 4)),
    ("b", "b1"): _band(cols=slice(0, 8)),
    ("b", "b2"): _band(cols=slice(0, 16)),
}


@pytest.fixture(scope="module")
def fss(tmp_path_factory):
    root = tmp_path_factory.mktemp("fss")
    rng = np.random.default_rng(1)
    codec = get_codec(FG["codec"], **FG["params"])
    with ShardWriter(root, tasks={"fss": FG}, split="test", shard_size=2) as writer:
        for (group, sid), mask in FSS_MASKS.items():
            image = _photo(rng, S, S)
            writer.add(Sample(sid, image, codec.encode(mask), group=group), "fss")
    return ShardReader(root)


class _Echo(Predictor):
    """The model bypassed: every query is painted as its first prompt's target (exact colours),
    and the prompts each query got are recorded by name."""

    def __init__(self, model, size: int):
        super().__init__(model, size=size)
        self.seen: list[list[str]] = []

    def paint_each(self, queries, prompts, ensemble="features"):
        self.seen.extend([p.name.split(":")[1] for p in ps] for ps in prompts)
        return torch.stack(
            [
                torch.from_numpy((ps[0].target_rgb.astype(np.float32) + 0.5) / 255.0).permute(
                    2, 0, 1
                )
                for ps in prompts
            ]
        )


def test_group_prompt_indices_are_seeded_and_never_the_query():
    members = np.array([3, 5, 7, 9])
    draws = {tuple(group_prompt_indices(members, 5, 1, seed, 5)) for seed in range(40)}
    assert draws == {(3,), (7,), (9,)}  # every other member, never 5
    assert group_prompt_indices(members, 5, 2, 0, 5) == group_prompt_indices(members, 5, 2, 0, 5)
    assert sorted(group_prompt_indices(members, 5, 3, 0, 5)) == [3, 7, 9]
    assert group_prompt_indices(members, 5, 4, 0, 5) is None  # only 3 others
    assert len(group_prompt_indices(members, None, 4, 0, 5)) == 4  # prompts from other shards


def test_fewshot_eval_by_hand(model, fss):
    # Each query of a two-sample class is prompted by the other sample, and the echo paints that
    # prompt's mask: class a IoU 512/1536, class b 512/1024 (tests/test_metrics.py works them out).
    echo = _Echo(model, S)
    pairing = GroupPairing(fss, "fss", shots=1, seed=0)
    got = evaluate(echo, fss, "fss", [], batch_size=3, progress=False, pairing=pairing)
    assert echo.seen == [["a2"], ["a1"], ["b2"], ["b1"]]  # c1 has no other sample of class c
    assert got["pairing"] == {
        "by": "group",
        "shots": 1,
        "seed": 0,
        "skipped_queries": 1,
        "skipped_groups": 1,
    }
    assert got["images"] == 4 and got["metric"] == "miou" and got["classes"] == 2
    assert got["class_iou"] == pytest.approx({"a": 100 / 3, "b": 50.0})
    assert got["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert got["fb_iou"] == pytest.approx(45.0)
    # decoding by the prompt's colours reads the same exact colours the same way
    again = evaluate(
        _Echo(model, S), fss, "fss", [], progress=False, pairing=pairing, decode="prompt"
    )
    assert again["miou"] == pytest.approx(got["miou"])


def test_grouped_eval_with_the_model_pairs_within_groups_only(model, tmp_path):
    # 3 groups x 3 samples, 2 shots: every query gets the two other samples of its group.
    codec = get_codec(FG["codec"], **FG["params"])
    rng = np.random.default_rng(2)
    with ShardWriter(tmp_path, tasks={"fss": FG}, split="test", shard_size=4) as writer:
        for k in range(9):
            mask = _band(rows=slice(0, 4 + 2 * k))
            writer.add(
                Sample(f"s{k}", _photo(rng, S, S), codec.encode(mask), group=f"g{k % 3}"), "fss"
            )
    reader = ShardReader(tmp_path)

    class Spy(Predictor):
        seen: list = []

        def paint_each(self, queries, prompts, ensemble="features"):
            Spy.seen.extend([p.name.split(":")[1] for p in ps] for ps in prompts)
            return super().paint_each(queries, prompts, ensemble)

    pairing = GroupPairing(reader, "fss", shots=2, seed=3)
    got = evaluate(Spy(model, size=S), reader, "fss", [], progress=False, pairing=pairing)
    assert got["images"] == 9 and got["pairing"]["skipped_queries"] == 0
    for k, names in enumerate(Spy.seen):
        assert sorted(names) == sorted(f"s{j}" for j in range(9) if j % 3 == k % 3 and j != k)
    assert 0.0 <= got["miou"] <= 100.0 and got["classes"] == 3


def _two_class_seg_shards(tmp_path):
    """``(codec, labels, reader)``: 3 val samples of task ``seg`` (8-class semseg, base 2, black a
    class), each showing class 1 in rows 4-11 and class 2 in rows 16-27 of an S x S image."""
    spec = {"codec": "semseg", "params": {"num_classes": 8, "base": 2, "background": True}}
    codec = get_codec(spec["codec"], **spec["params"])
    labels = np.zeros((S, S), np.int64)
    labels[4:12] = 1
    labels[16:28] = 2
    with ShardWriter(tmp_path, tasks={"seg": spec}, split="val") as writer:
        for k in range(3):
            image = _photo(np.random.default_rng(k), S, S)
            writer.add(Sample(f"s{k}", image, codec.encode(labels)), "seg")
    return codec, labels, ShardReader(tmp_path)


def test_decode_by_prompt_colours_in_eval(model, tmp_path):
    # 8 classes (base 2, margin 128). The "model" paints class 2 (255, 255, 127) as
    # (190, 255, 127): the palette's nearest is class 6 (127, 255, 127), 63 < 65 away, but among
    # the prompt's colours (black, class 1, class 2) it is class 2.
    codec, labels, reader = _two_class_seg_shards(tmp_path)
    drifted = codec.encode(labels)
    drifted[labels == 2] = (190, 255, 127)

    class Drift(Predictor):
        def paint(self, queries, prompts, ensemble="features"):
            one = torch.from_numpy((drifted.astype(np.float32) + 0.5) / 255.0).permute(2, 0, 1)
            return one[None].repeat(len(queries), 1, 1, 1)

    (prompt,) = prompts_from_shards(reader, "seg", S)
    by_codec = evaluate(Drift(model, size=S), reader, "seg", [prompt], progress=False)
    by_prompt = evaluate(
        Drift(model, size=S), reader, "seg", [prompt], progress=False, decode="prompt"
    )
    assert by_codec["pacc"] == pytest.approx(100 * (1 - 12 / 32))
    assert by_prompt["pacc"] == 100.0 and by_prompt["miou"] == 100.0
    with pytest.raises(PainterError, match="applies to segmentation"):
        depth = _depth_reader(tmp_path)
        evaluate(model, depth, "nyuv2-depth", [prompt], progress=False, decode="prompt")


def _depth_reader(tmp_path):
    rng = np.random.default_rng(0)
    with ShardWriter(
        tmp_path / "depth", tasks={"nyuv2-depth": TASKS["nyuv2-depth"]}, split="val"
    ) as w:
        for sample in _samples("nyuv2-depth", rng, 1):
            w.add(sample, "nyuv2-depth")
    return ShardReader(tmp_path / "depth")


def test_run_eval_pairs_by_group_by_default(tmp_path, fss):
    out = tmp_path / "eval"
    doc = run_eval(
        EvalSettings(
            task="fss",
            data=[str(fss.dirs[0])],
            checkpoint="painter-tiny",
            device="cpu",
            size=S,
            out=str(out),
        )
    )
    assert doc["settings"]["pair_by_group"] is True and doc["settings"]["prompts"] is None
    assert doc["metrics"]["pairing"]["skipped_queries"] == 1 and doc["metrics"]["images"] == 4
    assert (out / "metrics.json").is_file()
    with pytest.raises(PainterError, match="--pair-by-group and --prompt both given"):
        run_eval(
            EvalSettings(task="fss", data=[str(fss.dirs[0])], pair_by_group=True, prompts=["x"])
        )
    with pytest.raises(PainterError, match="no query of task 'fss' has 2 other sample"):
        run_eval(
            EvalSettings(
                task="fss", data=[str(fss.dirs[0])], checkpoint="painter-tiny", device="cpu",
                size=S, shots=2, out=str(out),
            )
        )  # fmt: skip


def test_run_eval_records_what_was_used_and_saves_the_predictions(tmp_path, reader):
    # metrics.json said metric_variant null when the variant was inferred, and flip_test true
    # for tasks without a flip test; --save-predictions writes the scored paintings.
    out, saved = tmp_path / "eval", tmp_path / "painted"
    saved.mkdir()
    (saved / "00000_old_labels.png").write_bytes(b"stale")
    (saved / "predictions.json").write_text('[{"painted": "00000_old_labels.png"}]')
    doc = run_eval(
        EvalSettings(
            task="sidd-denoise", data=[str(reader.dirs[0])], prompt_data=[str(reader.dirs[0])],
            checkpoint="painter-tiny", device="cpu", size=S, out=str(out), limit=2,
            save_predictions=str(saved),
        )
    )  # fmt: skip
    assert doc["settings"]["metric_variant"] == "sidd" and doc["settings"]["flip_test"] is False
    assert doc["metrics"]["variant"] == "sidd"
    records = json.loads((saved / "predictions.json").read_text())
    assert [r["id"] for r in records] == ["sidd-denoise-0", "sidd-denoise-1"]
    assert sorted(p.name for p in saved.iterdir()) == [
        "00000_sidd-denoise-0_painted.png",
        "00000_sidd-denoise-0_preview.png",
        "00000_sidd-denoise-0_restored.png",
        "00001_sidd-denoise-1_painted.png",
        "00001_sidd-denoise-1_preview.png",
        "00001_sidd-denoise-1_restored.png",
        "predictions.json",
    ]
    from PIL import Image

    assert Image.open(saved / records[1]["painted"]).size == (30, 26)  # W x H of sample 1


def test_run_eval_pair_by_group_needs_groups(tmp_path, reader):
    with pytest.raises(PainterError, match="has no sample groups to pair prompts by"):
        run_eval(
            EvalSettings(
                task="ade20k-semseg", data=[str(reader.dirs[0])], checkpoint="painter-tiny",
                device="cpu", size=S, pair_by_group=True, out=str(tmp_path / "e"),
            )
        )  # fmt: skip


def test_prompts_from_other_shards_of_the_same_groups(model, fss, tmp_path):
    # train shards hold a (2 samples) and b (1), no c: val queries of a and b are prompted by
    # train samples of their class (their own index is no exclusion there); c is skipped.
    codec = get_codec(FG["codec"], **FG["params"])
    rng = np.random.default_rng(5)
    with ShardWriter(tmp_path, tasks={"fss": FG}, split="train") as writer:
        for group, sid in (("a", "ta1"), ("b", "tb1"), ("a", "ta2")):
            writer.add(Sample(sid, _photo(rng, S, S), codec.encode(_band()), group=group), "fss")
    train = ShardReader(tmp_path)
    echo = _Echo(model, S)
    pairing = GroupPairing(train, "fss", shots=1, seed=0)
    got = evaluate(echo, fss, "fss", [], progress=False, pairing=pairing)
    assert got["images"] == 4 and got["pairing"]["skipped_queries"] == 1
    assert [names[0][:2] for names in echo.seen] == ["ta", "ta", "tb", "tb"]
    # the echo paints the train targets (all foreground): IoU = |gt| / |image| per class
    assert got["class_iou"] == pytest.approx({"a": 100 * 1024 / 2048, "b": 100 * 768 / 2048})


def test_fixed_group_prompts_by_hand(model, fss):
    # One prompt per class for all its queries (a per-class selected prompt): a1 (index 0) for
    # class a, b2 (index 4) for b, none for c. The prompts themselves are not queries, c is
    # skipped: a2 painted as a1 (rows 0:16 against 8:24, IoU 256/768), b1 as b2 (cols 0:16
    # against 0:8, 256/512); pooled foreground 512/1280, background (256+512)/(768+768).
    assert [fss.group_of(i) for i in fss.indices("fss")] == ["a", "a", "c", "b", "b"]
    echo = _Echo(model, S)
    pairing = GroupPairing(fss, "fss", fixed={"a": [0], "b": [4]})
    got = evaluate(echo, fss, "fss", [], progress=False, pairing=pairing)
    assert echo.seen == [["a1"], ["b2"]]
    assert got["pairing"]["skipped_queries"] == 3 and got["pairing"]["skipped_groups"] == 3
    assert got["pairing"]["fixed"] == {"a": [0], "b": [4]}
    assert got["class_iou"] == pytest.approx({"a": 100 / 3, "b": 50.0})
    assert got["fb_iou"] == pytest.approx((40.0 + 50.0) / 2)


def test_recolor_rewards_reading_the_prompts_colours(model, tmp_path):
    # 8 classes (base 2); every sample shows classes 1 and 2. Under recolouring each query's prompt
    # target is repainted in random colours: a model that paints the prompt's colours (the echo)
    # keeps 100; one that paints the codec's palette whatever the prompt shows is read by the
    # nearest prompt colour and loses whenever the random colours swap its two classes.
    codec, labels, reader = _two_class_seg_shards(tmp_path)
    (prompt,) = prompts_from_shards(reader, "seg", S)

    class Palette(Predictor):
        def paint_each(self, queries, prompts, ensemble="features"):
            one = torch.from_numpy((codec.encode(labels) + 0.5) / 255.0).permute(2, 0, 1)
            return one[None].repeat(len(queries), 1, 1, 1)

    echo, palette = [], []
    for seed in range(8):
        for painter, scores in ((_Echo(model, S), echo), (Palette(model, size=S), palette)):
            got = evaluate(
                painter, reader, "seg", [prompt], progress=False, decode="prompt", recolor_seed=seed
            )
            scores.append(got["pacc"])
    assert echo == [100.0] * 8
    assert min(palette) < 100.0
    with pytest.raises(PainterError, match="add --decode prompt"):
        evaluate(model, reader, "seg", [prompt], progress=False, recolor_seed=0)
