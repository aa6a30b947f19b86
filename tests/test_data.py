"""Training canvases: shapes, same-task halves, the target resize rule, valid maps, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes_shards import write_shards
from PIL import Image

from painter_cli.config import DataSection, MaskSection, resolve
from painter_cli.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    StepSampler,
    TrainCanvases,
    ValCanvases,
    make_loader,
    rrc_box,
    task_weights,
)
from painter_cli.errors import PainterError
from painter_cli.masking import MaskGenerator
from painter_cli.shards import ShardReader
from painter_cli.tasks import get_codec

# ADE20K palette colours of labels 1..4 (spec 5.3) and black: all a semseg target may contain.
PALETTE = {(0, 0, 0), (255, 255, 255), (255, 255, 213), (255, 255, 171), (255, 255, 129)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return write_shards(root / "train"), write_shards(root / "val", n=3, split="val", seed=5)


def _dataset(train_dir, seed=0, **data_overrides):
    cfg = resolve(preset="tiny")
    for k, v in data_overrides.items():
        setattr(cfg.data, k, v)
    reader = ShardReader(train_dir)
    mask_gen = MaskGenerator.from_config((8, 4), cfg.mask)
    return TrainCanvases(
        reader,
        task_weights(reader, cfg.data),
        canvas=(64, 32),
        patch_size=8,
        mask_gen=mask_gen,
        data_cfg=cfg.data,
        seed=seed,
    )


def _pixels(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) rounded 0..255 ints."""
    x = t.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.rint(x * 255).astype(np.int64)


def _kind(half: np.ndarray) -> str:
    colours = {tuple(c) for c in half.reshape(-1, 3).tolist()}
    if colours <= PALETTE:
        return "ade20k-semseg"
    if not colours & PALETTE and (half[..., 0] == half[..., 1]).all():
        return "nyuv2-depth"
    return "mixed"


def test_canvas_shapes_and_types(shards):
    ds = _dataset(shards[0])
    assert len(ds) == 12  # pairs of the two tasks: one epoch
    item = ds[0]
    assert item["imgs"].shape == item["tgts"].shape == item["valid"].shape == (3, 64, 32)
    assert item["imgs"].dtype == item["valid"].dtype == torch.float32
    assert item["mask"].shape == (8, 4) and item["mask"].dtype == torch.bool
    assert int(item["mask"].sum()) == 16  # tiny preset: ratio 0.5 of 32 patches, exact
    assert ds.task_names[item["task"]] in ("nyuv2-depth", "ade20k-semseg")


def test_both_halves_hold_the_same_task_and_discrete_targets_keep_the_palette(shards):
    # No canvas-level crop, so the halves are the two pairs.
    ds = _dataset(shards[0], second_crop=False)
    seen = set()
    for i in range(40):
        item = ds[i]
        tgt = _pixels(item["tgts"])
        top, bottom = _kind(tgt[:32]), _kind(tgt[32:])
        assert top == bottom == ds.task_names[item["task"]], i
        seen.add(top)
    assert seen == {"nyuv2-depth", "ade20k-semseg"}


def test_semseg_targets_stay_in_the_palette_after_the_second_crop(shards):
    ds = _dataset(shards[0])
    for i in range(40):
        item = ds[i]
        if ds.task_names[item["task"]] == "ade20k-semseg":
            colours = {tuple(c) for c in _pixels(item["tgts"]).reshape(-1, 3).tolist()}
            assert colours <= PALETTE


def test_bicubic_on_a_palette_target_would_leave_the_palette():
    # The reason for the rule: the same downscale with bicubic invents colours.
    codec = get_codec("ade20k-semseg")
    labels = np.zeros((40, 48), np.int64)
    labels[5:30, 7:31] = 2
    labels[20:38, 25:45] = 4
    target = Image.fromarray(codec.encode(labels))
    box = (3, 2, 40, 37)
    near = np.asarray(target.resize((32, 32), Image.NEAREST, box=box)).reshape(-1, 3)
    cubic = np.asarray(target.resize((32, 32), Image.BICUBIC, box=box)).reshape(-1, 3)
    assert {tuple(c) for c in near.tolist()} <= PALETTE
    assert not {tuple(c) for c in cubic.tolist()} <= PALETTE


def test_target_resample_rule_and_official_switch(shards, tmp_path):
    write_shards(tmp_path / "r", tasks=("nyuv2-depth", "ade20k-semseg", "toy-restore"), n=2)
    weights = {"toy-restore": 0.1}
    fixed = _dataset(tmp_path / "r", weights=weights)
    official = _dataset(tmp_path / "r", weights=weights, official_target_resize=True)
    rule = {t.name: t.target_resample for t in fixed.tasks}
    assert rule == {
        "nyuv2-depth": Image.BICUBIC,
        "ade20k-semseg": Image.NEAREST,
        "toy-restore": Image.BICUBIC,
    }
    rule = {t.name: t.target_resample for t in official.tasks}
    assert rule["toy-restore"] == Image.NEAREST  # the official quirk
    assert rule["nyuv2-depth"] == Image.BICUBIC and rule["ade20k-semseg"] == Image.NEAREST


def test_instance_pairs_are_only_resized(tmp_path):
    # One instance sample: both pairs are it, never cropped, jittered or flipped, and no
    # canvas-level crop, whatever the index.
    write_shards(tmp_path / "inst", tasks=("coco-instance",), n=1)
    ds = _dataset(tmp_path / "inst")
    item = ShardReader(tmp_path / "inst")[0]
    image = np.asarray(Image.fromarray(item["image"]).resize((32, 32), Image.BICUBIC))
    target = np.asarray(Image.fromarray(item["target"]).resize((32, 32), Image.NEAREST))
    for i in range(6):
        x = ds[i]
        np.testing.assert_array_equal(_pixels(x["imgs"]), np.concatenate([image, image]))
        np.testing.assert_array_equal(_pixels(x["tgts"]), np.concatenate([target, target]))


def test_valid_maps_follow_the_codec_rules(shards):
    ds = _dataset(shards[0])
    kinds = set()
    for i in range(30):
        item = ds[i]
        task = ds.task_names[item["task"]]
        tgt = _pixels(item["tgts"]).transpose(2, 0, 1)
        valid = item["valid"].numpy()
        if task == "ade20k-semseg":
            # black (unlabelled) elements are ignored, everything else has weight 1
            np.testing.assert_array_equal(valid, (tgt > 0).astype(np.float32))
        else:
            # zero depth is invalid: the fake depths are >= 1 m, so all valid
            assert (valid == 1).all()
        kinds.add(task)
    assert kinds == {"nyuv2-depth", "ade20k-semseg"}


def test_sample_is_a_function_of_seed_and_index(shards):
    a, b, other = _dataset(shards[0]), _dataset(shards[0]), _dataset(shards[0], seed=1)
    for i in (0, 7, 123456):
        x, y = a[i], b[i]
        for k in ("imgs", "tgts", "mask", "valid"):
            assert torch.equal(x[k], y[k])
    assert not torch.equal(a[3]["imgs"], a[4]["imgs"])
    assert not all(torch.equal(a[i]["imgs"], other[i]["imgs"]) for i in range(3))


def test_loader_with_workers_gives_the_same_batches(shards):
    ds = _dataset(shards[0])
    sampler = StepSampler(start_step=2, micro=2, accum=1, rank=0, world=1)
    loader = make_loader(ds, batch_size=2, num_workers=2, sampler=sampler)
    it = iter(loader)
    batches = [next(it) for _ in range(2)]
    del it
    for k, batch in enumerate(batches):
        for j in range(2):
            ref = ds[(2 + k) * 2 + j]
            assert torch.equal(batch["imgs"][j], ref["imgs"])
            assert torch.equal(batch["mask"][j], ref["mask"])


def test_step_sampler_splits_a_step_like_accumulation():
    def first(n, **kw):
        it = iter(StepSampler(**kw))
        return [next(it) for _ in range(n)]

    # step 3 of a global batch of 4: samples 12..15; rank 1 of 2 gets 14, 15
    assert first(4, start_step=3, micro=2, accum=1, rank=1, world=2) == [14, 15, 18, 19]
    assert first(4, start_step=3, micro=2, accum=1, rank=0, world=2) == [12, 13, 16, 17]
    # one process accumulating 2 micro-batches sees the same micro-batches in rank order
    assert first(8, start_step=3, micro=2, accum=2, rank=0, world=1) == list(range(12, 20))


def test_task_sampling_follows_the_weights(shards):
    ds = _dataset(shards[0])  # paper defaults: depth 0.10, ade20k 0.20
    assert ds.probs.tolist() == pytest.approx(
        [1 / 3, 2 / 3] if ds.task_names[0] == "nyuv2-depth" else [2 / 3, 1 / 3]
    )
    depth = ds.task_names.index("nyuv2-depth")
    picks = [int(ds.rng(i).choice(2, p=ds.probs)) for i in range(3000)]
    share = picks.count(depth) / 3000
    assert abs(share - 1 / 3) < 0.04


def test_task_weight_errors(shards, tmp_path):
    write_shards(tmp_path / "custom", tasks=("my-task", "other-task"), n=2)
    reader = ShardReader(tmp_path / "custom")
    with pytest.raises(PainterError, match="task 'my-task' has no sampling weight") as exc:
        task_weights(reader, DataSection())
    assert "data.weights.my-task" in exc.value.hint
    weights = {"my-task": 2.0, "other-task": 1.0}
    assert task_weights(reader, DataSection(weights=weights)) == weights
    # A single task has nothing to mix: it needs no weight (whether alone in the shards or chosen).
    assert task_weights(reader, DataSection(tasks=["my-task"])) == {"my-task": 1.0}
    write_shards(tmp_path / "one", tasks=("my-task",), n=2)
    assert task_weights(ShardReader(tmp_path / "one"), DataSection()) == {"my-task": 1.0}
    with pytest.raises(PainterError, match="not in the shards"):
        task_weights(ShardReader(shards[0]), DataSection(tasks=["coco-semseg"]))
    with pytest.raises(PainterError, match="data.weights names my-tsak, not in the shards"):
        task_weights(reader, DataSection(weights={"my-task": 1.0, "my-tsak": 2.0}))


def test_val_canvases_use_the_half_mask_and_fixed_pairs(shards):
    cfg = resolve(preset="tiny")
    ds = ValCanvases(
        ShardReader(shards[1]), canvas=(64, 32), patch_size=8, data_cfg=cfg.data, per_task=2
    )
    assert len(ds) == 4
    item = ds[0]
    assert item["mask"][4:].all() and not item["mask"][:4].any()
    assert torch.equal(ds[1]["imgs"], ds[1]["imgs"])
    assert {ds.task_names[ds[i]["task"]] for i in range(4)} == {"nyuv2-depth", "ade20k-semseg"}


def test_random_resized_crop_box_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = rrc_box(40, 48, rng, (0.3, 1.0), (3 / 4, 4 / 3))
        assert 0 <= left < right <= 48 and 0 <= top < bottom <= 40
        assert 0.3 * 40 * 48 * 0.85 <= (right - left) * (bottom - top) <= 40 * 48


def test_mask_section_defaults_are_the_paper_ratio():
    assert MaskSection().ratio == 0.75 and MaskSection().half_prob == 0.1
