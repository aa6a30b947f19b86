"""Training canvases: shapes, same-task halves, the target resize rule, valid maps, determinism."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from fakes_shards import write_shards
from PIL import Image

from painter_cli.config import DataSection, MaskSection, TaskOptions, resolve
from painter_cli.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    StepSampler,
    TrainCanvases,
    ValCanvases,
    auto_fg_weight,
    check_task_options,
    foreground_fraction,
    make_loader,
    rrc_box,
    task_weights,
)
from painter_cli.errors import PainterError
from painter_cli.masking import MaskGenerator
from painter_cli.shards import ShardReader, ShardWriter
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec

# ADE20K palette colours of labels 1..4 (spec 5.3) and black: all a semseg target may contain.
PALETTE = {(0, 0, 0), (255, 255, 255), (255, 255, 213), (255, 255, 171), (255, 255, 129)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return write_shards(root / "train"), write_shards(root / "val", n=3, split="val", seed=5)


def _dataset(train_dir, seed=0, mask=None, **data_overrides):
    cfg = resolve(preset="tiny")
    for k, v in data_overrides.items():
        setattr(cfg.data, k, v)
    for k, v in (mask or {}).items():
        setattr(cfg.mask, k, v)
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


# -- per-task options: concept pairing, random colouring, foreground weight, prompt masks ------

IDS = get_codec("semseg", num_classes=10)


def _identity_shards(out):
    """Task ``ids``: sample k's target is all class k + 1, so a target half names its sample.
    Samples 0..8 are in groups g0..g2 (k % 3), sample 9 alone in group ``lonely``."""
    rng = np.random.default_rng(0)
    with ShardWriter(out, {"ids": {"codec": "semseg", "params": IDS.params()}}, shard_size=4) as w:
        for k in range(10):
            image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            target = IDS.encode(np.full((24, 24), k + 1, np.int64))
            group = "lonely" if k == 9 else f"g{k % 3}"
            w.add(Sample(id=f"s{k}", image=image, target=target, group=group), "ids")
    return out


def _sample_of(half: np.ndarray) -> int:
    (colour,) = {tuple(c) for c in half.reshape(-1, 3).tolist()}
    return [tuple(c) for c in IDS.colours.tolist()].index(colour)


def _halves(item) -> tuple[int, int]:
    t = _pixels(item["tgts"])
    return _sample_of(t[:32]), _sample_of(t[32:])


def _paired(path, **options):
    opts = {"ids": TaskOptions(pair_by_group=True, **options)}
    return _dataset(path, second_crop=False, weights={"ids": 1.0}, task_options=opts)


def test_grouped_canvases_pair_two_different_samples_of_one_group(tmp_path, caplog):
    path = _identity_shards(tmp_path / "ids")
    # The CLI's console setup stops painter_cli records at its own handler (propagate False).
    logger = logging.getLogger("painter_cli.data")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="painter_cli.data"):
            ds = _paired(path)
    finally:
        logger.removeHandler(caplog.handler)
    assert "1 group(s) with one sample left out of pairing" in caplog.text
    pairs = [_halves(ds[i]) for i in range(80)]
    for top, bottom in pairs:
        assert top != bottom and top % 3 == bottom % 3 and 9 not in (top, bottom)
    assert len(set(pairs)) >= 12  # 18 ordered pairs exist; they are drawn, not fixed


def test_grouped_validation_prompts_each_query_with_the_next_sample_of_its_group(tmp_path):
    path = _identity_shards(tmp_path / "ids")
    cfg = resolve(preset="tiny")
    cfg.data.task_options = {"ids": TaskOptions(pair_by_group=True)}
    reader = ShardReader(path)

    def val(per_task):
        return ValCanvases(
            reader, canvas=(64, 32), patch_size=8, data_cfg=cfg.data, per_task=per_task
        )

    ds = val(4)  # group g0 = samples 0, 3, 6; g1 = 1, 4, 7; g2 = 2, 5, 8
    assert ds.items == [(0, 3, 0), (0, 4, 1), (0, 5, 2), (0, 6, 3)]  # (task, prompt, query)
    assert [_halves(ds[i]) for i in range(4)] == [(3, 0), (4, 1), (5, 2), (6, 3)]
    items = val(50).items
    assert [q for _, _, q in items] == list(range(9))  # the lone sample 9 is never a query
    assert (0, 0, 6) in items and all(p != q for _, p, q in items)


def test_pairing_needs_groups_with_two_samples(shards, tmp_path):
    opts = {"ade20k-semseg": TaskOptions(pair_by_group=True)}
    with pytest.raises(
        PainterError, match="pair_by_group: task 'ade20k-semseg' has no sample groups"
    ):
        _dataset(shards[0], task_options=opts)
    singles = write_shards(tmp_path / "singles", tasks=("ade20k-semseg",), n=3, groups=3)
    with pytest.raises(PainterError, match="no group of task 'ade20k-semseg' has two samples"):
        _dataset(singles, task_options=opts)


def test_seg_type_follows_the_codec_unless_a_task_option_names_one(shards):
    common = {"tasks": ["ade20k-semseg", "nyuv2-depth"]}
    plain = _dataset(shards[0], **common)
    by_task = dict(zip(plain.task_names, plain.seg_types, strict=True))
    assert by_task == {"ade20k-semseg": "semantic", "nyuv2-depth": "semantic"}
    opts = {"nyuv2-depth": TaskOptions(seg_type="instance")}
    split = _dataset(shards[0], task_options=opts, **common)
    assert dict(zip(split.task_names, split.seg_types, strict=True))["nyuv2-depth"] == "instance"


def test_task_options_must_name_tasks_of_the_shards(shards):
    data = DataSection(
        task_options={"ade20k-semseg": TaskOptions(), "ade20k-semsge": TaskOptions()}
    )
    with pytest.raises(PainterError, match="data.task_options names ade20k-semsge, not in the"):
        check_task_options(ShardReader(shards[0]), data)
    check_task_options(
        ShardReader(shards[0]), DataSection(task_options={"nyuv2-depth": TaskOptions()})
    )


def _colour_map(plain: np.ndarray, painted: np.ndarray) -> dict:
    """The colour of ``painted`` at the pixels of each colour of ``plain`` (exactly one each)."""
    out = {}
    for c in {tuple(x) for x in plain.reshape(-1, 3).tolist()}:
        (new,) = {tuple(x) for x in painted[(plain == c).all(axis=2)].tolist()}
        out[c] = new
    return out


def test_recolouring_repaints_both_halves_through_one_mapping_and_keeps_black(shards):
    common = {"tasks": ["ade20k-semseg"], "weights": {"ade20k-semseg": 1.0}, "second_crop": False}
    plain = _dataset(shards[0], **common)
    opts = {"ade20k-semseg": TaskOptions(recolor=True)}
    painted = _dataset(shards[0], task_options=opts, **common)
    changed = 0
    for i in range(12):
        a, b = plain[i], painted[i]
        pa, pb = _pixels(a["tgts"]), _pixels(b["tgts"])
        assert np.array_equal(_pixels(a["imgs"]), _pixels(b["imgs"]))  # images untouched
        mapping = _colour_map(pa, pb)  # one colour per colour, over the whole canvas
        assert mapping.get((0, 0, 0), (0, 0, 0)) == (0, 0, 0)
        assert len(set(mapping.values())) == len(mapping)  # distinct classes stay distinct
        changed += sum(c != n for c, n in mapping.items() if c != (0, 0, 0))
        assert torch.equal(a["valid"], b["valid"])  # black (ignored) exactly where it was
        assert torch.equal(painted[i]["tgts"], b["tgts"])  # a function of (seed, i)
    assert changed > 12


def test_recolouring_of_validation_canvases_is_fixed_and_other_kinds_are_refused(shards):
    cfg = resolve(preset="tiny")
    cfg.data.task_options = {"ade20k-semseg": TaskOptions(recolor=True)}
    kw = {"canvas": (64, 32), "patch_size": 8, "per_task": 2, "tasks": ["ade20k-semseg"]}
    ds = ValCanvases(ShardReader(shards[1]), data_cfg=cfg.data, **kw)
    plain = ValCanvases(ShardReader(shards[1]), data_cfg=resolve(preset="tiny").data, **kw)
    assert torch.equal(ds[0]["tgts"], ds[0]["tgts"])
    assert not torch.equal(ds[0]["tgts"], plain[0]["tgts"])
    assert not {tuple(c) for c in _pixels(ds[0]["tgts"]).reshape(-1, 3).tolist()} <= PALETTE
    cfg.data.task_options = {"nyuv2-depth": TaskOptions(recolor=True)}
    with pytest.raises(PainterError, match="recolor: task 'nyuv2-depth' has a depth codec"):
        _dataset(shards[0], task_options=cfg.data.task_options)


def _mask_shards(out):
    """Task ``edge`` (1 class, black is background): every 16 x 16 target is 1/4 foreground."""
    codec = get_codec("semseg", num_classes=1, background=True)
    rng = np.random.default_rng(0)
    with ShardWriter(out, {"edge": {"codec": "semseg", "params": codec.params()}}) as w:
        for k in range(4):
            labels = np.zeros((16, 16), np.int64)
            labels[k : k + 8, 4:12] = 1
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            w.add(Sample(id=f"e{k}", image=image, target=codec.encode(labels)), "edge")
    return out


def test_auto_fg_weight_formula():
    assert auto_fg_weight(0.2) == pytest.approx(2.0)  # sqrt((1 - 0.2) / 0.2)
    assert auto_fg_weight(0.1) == pytest.approx(3.0)
    assert auto_fg_weight(0.25) == pytest.approx(1.7320508)  # sqrt(3)
    assert (auto_fg_weight(0.6), auto_fg_weight(0.005), auto_fg_weight(0.0)) == (1.0, 10.0, 10.0)


def test_fg_weight_multiplies_valid_on_the_targets_foreground(tmp_path):
    path = _mask_shards(tmp_path / "edge")
    reader = ShardReader(path)
    assert foreground_fraction(reader, reader.indices("edge")) == 0.25

    def valid_and_fg(fg_weight):
        opts = {"edge": TaskOptions(fg_weight=fg_weight)}
        ds = _dataset(path, weights={"edge": 1.0}, task_options=opts)
        item = ds[3]
        fg = (_pixels(item["tgts"]) > 0).any(axis=2)
        return ds, item["valid"].numpy().transpose(1, 2, 0), fg

    ds, valid, fg = valid_and_fg("auto")
    w = ds.fg_weights["edge"]
    assert w == pytest.approx(1.7320508)  # f = 0.25: sqrt(3)
    assert 0 < fg.mean() < 1
    assert (valid[fg] == np.float32(w)).all() and (valid[~fg] == 1.0).all()
    _, valid, fg = valid_and_fg(2.5)
    assert (valid[fg] == 2.5).all() and (valid[~fg] == 1.0).all()
    _, valid, _ = valid_and_fg(1.0)
    assert (valid == 1.0).all()  # the default: the official loss weights
    cfg = resolve(preset="tiny")
    cfg.data.task_options = {"edge": TaskOptions(fg_weight="auto")}
    val = ValCanvases(
        reader,
        canvas=(64, 32),
        patch_size=8,
        data_cfg=cfg.data,
        per_task=1,
        fg_weights={"edge": 5.0},
    )
    v = val[0]["valid"].numpy()
    assert set(np.unique(v).tolist()) == {1.0, 5.0}  # training's weight, not re-measured


def test_prompt_mask_also_masks_a_share_of_the_prompt_target(shards):
    opts = {t: TaskOptions(prompt_mask=0.25) for t in ("nyuv2-depth", "ade20k-semseg")}
    ds = _dataset(shards[0], mask={"half_prob": 1.0}, task_options=opts)
    tops = set()
    for i in range(10):
        m = ds[i]["mask"].numpy()
        assert m[4:].all() and int(m[:4].sum()) == 4  # 16 prompt patches: a quarter of them
        tops.add(m[:4].tobytes())
    assert len(tops) > 5
    plain = _dataset(shards[0], mask={"half_prob": 1.0})
    assert not plain[0]["mask"][:4].any()
