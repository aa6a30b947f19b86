"""The synthetic task suite: determinism, splits, and targets that decode back to the ground truth."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from painter_cli.defaults import SUITE_VERSION
from painter_cli.errors import PainterError
from painter_cli.sources.synthetic import (
    KEYPOINT_NAMES,
    OOD_SHAPE,
    SHAPES,
    SYNTHETIC_TASKS,
    SyntheticSource,
    class_mask,
    generate,
    render,
)
from painter_cli.tasks import get_codec

SIZE = 48


def _codec(task: str, size: int = SIZE):
    spec = SYNTHETIC_TASKS[task]
    return get_codec(spec.codec, **spec.codec_params(size))


@pytest.mark.parametrize("task", list(SYNTHETIC_TASKS))
def test_deterministic_per_seed_task_split_index(task):
    split = SYNTHETIC_TASKS[task].splits[0]
    a = generate(task, 3, split=split, size=SIZE, seed=5)
    b = generate(task, 3, split=split, size=SIZE, seed=5)
    assert a.id == b.id == f"{task}-{split}-000003"
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.target, b.target)
    assert sorted(a.extras) == sorted(b.extras)
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k])
    assert a.image.shape == a.target.shape == (SIZE, SIZE, 3)
    assert a.image.dtype == a.target.dtype == np.uint8
    assert not np.array_equal(a.image, generate(task, 3, split=split, size=SIZE, seed=6).image)
    assert not np.array_equal(a.image, generate(task, 4, split=split, size=SIZE, seed=5).image)


def test_train_and_val_are_different_streams():
    for task, spec in SYNTHETIC_TASKS.items():
        if "val" not in spec.splits:
            continue
        train = [render(task, i, split="train", size=32)[0] for i in range(3)]
        val = [render(task, i, split="val", size=32)[0] for i in range(3)]
        assert not any(np.array_equal(t, v) for t in train for v in val), task


def test_ood_task_only_in_ood_split():
    assert SYNTHETIC_TASKS["synthetic-fgseg"].splits == ("ood",)
    with_ood = [t for t, s in SYNTHETIC_TASKS.items() if "ood" in s.splits]
    # The segment tasks: their held-out classes.
    assert with_ood == ["synthetic-fgseg", "synthetic-segment", "synthetic-segment-outline"]
    assert OOD_SHAPE not in SHAPES
    assert SyntheticSource(".", "ood").task == "synthetic-fgseg"
    assert SyntheticSource(".", "train").task == "synthetic-semseg"
    with pytest.raises(PainterError, match="no split 'train'"):
        SyntheticSource(".", "train", task="synthetic-fgseg")
    with pytest.raises(PainterError, match="no split 'ood'"):
        SyntheticSource(".", "ood", task="synthetic-depth")
    with pytest.raises(PainterError, match="unknown synthetic task"):
        SyntheticSource(".", "train", task="synthetic-nope")
    with pytest.raises(PainterError, match="unknown option"):
        SyntheticSource(".", "train", colour="red")


@pytest.mark.parametrize("task", ["synthetic-semseg", "synthetic-fgseg", "synthetic-segment"])
def test_label_maps_decode_pixel_exact(task):
    split = SYNTHETIC_TASKS[task].splits[0]
    codec = _codec(task)
    classes = set()
    for i in range(4):
        _, labels, _ = render(task, i, split=split, size=SIZE)
        target = generate(task, i, split=split, size=SIZE).target
        np.testing.assert_array_equal(codec.decode(target), labels)
        classes |= set(np.unique(labels).tolist())
    assert 0 in classes and len(classes) >= 2


def test_depth_decodes_within_one_gray_level():
    codec = _codec("synthetic-depth")
    for i in range(3):
        s = generate("synthetic-depth", i, size=SIZE)
        depth = s.extras["depth_m"]
        assert depth.dtype == np.float32 and depth.min() > 0.5 and depth.max() < 10
        assert np.abs(codec.decode(s.target) - depth).max() <= 10 / 255
        assert len(np.unique(s.target[..., 0])) > 10  # a gradient, not a constant


def test_instances_decode_with_high_iou():
    codec = _codec("synthetic-instance")
    for i in range(3):
        s = generate("synthetic-instance", i, size=SIZE)
        ids = s.extras["instance_ids"]
        assert ids.max() >= 1
        results = codec.decode(s.target)
        for k in range(1, int(ids.max()) + 1):
            gt = ids == k
            best = max((m & gt).sum() / (m | gt).sum() for m, _ in results)
            assert best > 0.9, (i, k, best)


def test_instances_sit_on_the_colour_blocks_and_are_banded():
    # Each shape is centred on one of the codec's 4x4 colour blocks (jitter +-1.5 px at 64 px), so
    # its local cell (G and B level, 0..19) is near the block's middle, 10, unless occlusion moved
    # its mass centre; a uniform placement would put a quarter of them in 8..12.
    locals_, blocks = [], []
    for i in range(40):
        s = generate("synthetic-instance", i, size=64)
        ids = s.extras["instance_ids"]
        assert 1 <= ids.max() <= 3
        for k in range(1, int(ids.max()) + 1):
            colour = s.target[ids == k][0].astype(int)
            blocks.append((255 - colour[0]) // 15)
            locals_ += [(255 - colour[1]) // 13, (255 - colour[2]) // 13]
            # Bold bands: two tones ~300 apart (sum of channels; a semseg shape spreads ~100).
            tone = s.image[ids == k].astype(int).sum(-1)
            assert np.percentile(tone, 90) - np.percentile(tone, 10) > 250, (i, k)
    locals_ = np.array(locals_)
    assert ((locals_ >= 8) & (locals_ <= 12)).mean() > 0.75
    assert len(set(blocks)) == 16  # every block is used


def test_keypoints_decode_within_one_pixel():
    codec = _codec("synthetic-keypoints")
    assert codec.num_keypoints == len(KEYPOINT_NAMES) and (codec.width, codec.height) == (48, 48)
    for i in range(4):
        s = generate("synthetic-keypoints", i, size=SIZE)
        kps = s.extras["keypoints"]
        assert kps.shape == (7, 3) and (kps[:, 2] == 2).all()
        decoded = codec.decode(s.target).keypoints
        assert np.abs(decoded[:, :2] - kps[:, :2]).max() <= 1.0


@pytest.mark.parametrize("task", ["synthetic-denoise", "synthetic-derain", "synthetic-lowlight"])
def test_restoration_targets_are_the_clean_image(task):
    image, clean, _ = render(task, 0, size=SIZE)
    s = generate(task, 0, size=SIZE)
    np.testing.assert_array_equal(_codec(task).decode(s.target), clean)
    diff = np.abs(image.astype(int) - clean.astype(int)).mean()
    assert diff > 3  # the input is visibly degraded
    if task == "synthetic-lowlight":
        assert image.mean() < clean.mean() * 0.5


def test_source_interface_and_codec_params():
    src = SyntheticSource(".", "val", task="synthetic-keypoints", count="3", seed="2", size="40")
    assert src.keys() == ["000000", "000001", "000002"]
    assert src.codec == "keypoints"
    assert get_codec(src.codec, **src.codec_params()).width == 40
    clone = pickle.loads(pickle.dumps(src))
    (a,) = src.load("000001")
    (b,) = clone.load("000001")
    assert a.id == "synthetic-keypoints-val-000001"
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (40, 40, 3)
    with pytest.raises(PainterError, match="count must be >= 1"):
        SyntheticSource(".", "train", count=0)


def test_painter_encode_synthetic_writes_readable_shards(tmp_path, cli_runner):
    from painter_cli.cli import app
    from painter_cli.shards import ShardReader

    out = tmp_path / "shards"
    args = ["encode", "synthetic", ".", "--out", str(out), "--count", "2", "-j", "1"]
    result = cli_runner.invoke(app, [*args, "--task", "synthetic-instance", "--option", "size=32"])
    assert result.exit_code == 0, result.output
    reader = ShardReader(out)
    assert len(reader) == 2 and reader.tasks == ["synthetic-instance"]
    assert reader.codec("synthetic-instance") == get_codec("coco-instance")
    s = reader[1]
    expected = generate("synthetic-instance", 1, size=32)
    np.testing.assert_array_equal(s["target"], expected.target)
    np.testing.assert_array_equal(s["instance_ids"], expected.extras["instance_ids"])


def _digest(task: str) -> str:
    """sha256 (16 hex digits) of samples 0-2 (image and target bytes) of ``task``'s first split."""
    import hashlib

    h = hashlib.sha256()
    for i in range(3):
        s = generate(task, i, split=SYNTHETIC_TASKS[task].splits[0], size=64)
        h.update(s.image.tobytes())
        h.update(s.target.tobytes())
    return h.hexdigest()[:16]


def test_version_2_tasks_are_byte_identical():
    # Suite versions 3 and 4 must not change what the other tasks draw. Digests written by the
    # version 2 generator.
    expected = {
        "synthetic-depth": "45826d69d775a9ad",
        "synthetic-semseg": "73fe4e8d3ca6f3ee",
        "synthetic-instance": "98afd6c67e2f832f",
        "synthetic-keypoints": "ccd9cd20f092c213",
        "synthetic-fgseg": "303ec2c211d55f6f",
    }
    for task, digest in expected.items():
        assert generate(task, 0, split=SYNTHETIC_TASKS[task].splits[0], size=64).group is None
        assert _digest(task) == digest, task


def test_version_4_restoration_tasks_are_pinned():
    # Version 4 redrew the restoration scenes (version 2: 3c43348b..., f86934b6..., 19a71cb1...);
    # a change here needs a SUITE_VERSION bump, or cached suites would silently differ.
    expected = {
        "synthetic-denoise": "c49f8bcb14a3882d",
        "synthetic-derain": "14febe833a048196",
        "synthetic-lowlight": "70e5eff4fb161fec",
    }
    for task, digest in expected.items():
        assert _digest(task) == digest, task
    assert SUITE_VERSION == 4


def test_restoration_scenes_have_photograph_statistics():
    # The clean targets: close to real photographs at 64 px (PHOTO_STATISTICS_64, spread across
    # photographs 0.23 / 0.58 / 17), unlike version 3's clean_scene (-2.46 / -2.40 / 29).
    from painter_cli.sources.deadleaves import PHOTO_STATISTICS_64, scene_statistics

    stats = [scene_statistics(generate("synthetic-denoise", i).target) for i in range(24)]
    mean = {k: float(np.mean([s[k] for s in stats])) for k in PHOTO_STATISTICS_64}
    assert abs(mean["slope"] - PHOTO_STATISTICS_64["slope"]) < 0.25, mean
    assert abs(mean["slope_high"] - PHOTO_STATISTICS_64["slope_high"]) < 0.6, mean
    assert mean["contrast"] > 40, mean
    assert SYNTHETIC_TASKS["synthetic-denoise"].count("train") == 3000


# --- synthetic-segment ------------------------------------------------------------------------------


def test_segment_class_pools_are_disjoint():
    from painter_cli.sources.synthetic import OOD_CLASSES, OOD_FAMILIES, TRAIN_CLASSES

    train = {c.name for c in TRAIN_CLASSES}
    ood = {c.name for c in OOD_CLASSES}
    assert len(train) == len(TRAIN_CLASSES) == 40 and len(ood) == len(OOD_CLASSES) == 8
    assert not train & ood
    assert not {c.family for c in TRAIN_CLASSES} & set(OOD_FAMILIES)  # held out by outline too
    assert {"crescent-0", "crescent-1", "heart", "arrow"} <= ood
    # Every class has a look of its own: two classes of one texture are >= 0.09 apart in hue.
    classes = TRAIN_CLASSES + OOD_CLASSES
    for i, a in enumerate(classes):
        for b in classes[:i]:
            d = abs(a.hue - b.hue)
            assert a.texture != b.texture or min(d, 1 - d) >= 0.09, (a.name, b.name)
    # Distinct outlines: no two training classes paint the same mask.
    masks = [class_mask(c, 48, 24, 24, 18, 0.0) for c in TRAIN_CLASSES + OOD_CLASSES]
    assert all(m.sum() > 40 for m in masks)
    for i, a in enumerate(masks):
        for b in masks[:i]:
            assert (a ^ b).sum() > 20


def _replay_segment(index: int, split: str, size: int, free: bool, seed: int = 0):
    # The draws of a segment task in order: class count, classes, scene, chosen class.
    from painter_cli.sources.synthetic import SEGMENT_POOLS, sample_rng, segment_scene

    task = "synthetic-segment-outline" if free else "synthetic-segment"
    pool = SEGMENT_POOLS[split]
    rng = sample_rng(seed, task, split, index)
    n = int(rng.integers(2, 5))
    classes = [pool[int(i)] for i in rng.choice(len(pool), n, replace=False)]
    image, visible = segment_scene(rng, size, classes, free)
    chosen = int(rng.integers(n))
    return image, classes, visible, chosen


@pytest.mark.parametrize("split", ["train", "val", "ood"])
@pytest.mark.parametrize("free", [False, True])
def test_segment_target_is_one_class_and_group_names_it(split, free):
    from painter_cli.sources.synthetic import SEGMENT_POOLS

    task = "synthetic-segment-outline" if free else "synthetic-segment"
    names = {c.name for c in SEGMENT_POOLS[split]}
    groups = set()
    for i in range(30):
        s = generate(task, i, split=split, size=SIZE)
        image, classes, visible, chosen = _replay_segment(i, split, SIZE, free)
        np.testing.assert_array_equal(s.image, image)
        assert s.group == classes[chosen].name and s.group in names
        assert len({c.name for c in classes}) == len(classes)  # different classes
        # The target is exactly the chosen class's visible pixels, white on black.
        fg = visible[chosen]
        assert fg.sum() > 0
        np.testing.assert_array_equal(s.target, np.repeat(fg[..., None] * np.uint8(255), 3, -1))
        # The query also holds at least one other, visible class.
        others = [v.sum() for k, v in enumerate(visible) if k != chosen]
        assert 1 <= len(others) <= 3 and max(others) > 0
        assert int(s.extras["free_colour"]) == int(free)  # one form a task (version 4)
        groups.add(s.group)
    assert len(groups) >= 5


def test_segment_look_form_keeps_a_class_colour_family():
    # Look form: two instances of one class share a colour family (mean hue within the jitter);
    # free form: the same class takes unrelated colours.
    import colorsys

    from painter_cli.sources.synthetic import TRAIN_CLASSES, segment_scene

    cls, other = TRAIN_CLASSES[0], TRAIN_CLASSES[1]

    def hue(free: bool, seed: int) -> float:
        rng = np.random.default_rng(seed)
        image, visible = segment_scene(rng, 64, [other, cls], free)
        r, g, b = image[visible[1]].astype(float).mean(0) / 255
        return colorsys.rgb_to_hsv(r, g, b)[0]

    def spread(h: list[float]) -> float:  # circular distance of the hues from their first
        return max(min(abs(x - h[0]), 1 - abs(x - h[0])) for x in h)

    assert spread([hue(False, k) for k in range(6)]) < 0.08
    assert spread([hue(True, k) for k in range(6)]) > 0.15


def test_encode_suite_writes_segment_with_groups(tmp_path):
    from painter_cli.defaults import encode_suite
    from painter_cli.shards import ShardReader
    from painter_cli.sources.synthetic import OOD_CLASSES, TRAIN_CLASSES

    dirs = encode_suite(tmp_path / "s", size=32, count=6)
    for split, pool in (("train", TRAIN_CLASSES), ("val", TRAIN_CLASSES), ("ood", OOD_CLASSES)):
        reader = ShardReader(dirs[split])
        assert "synthetic-segment" in reader.tasks
        assert reader.has_groups("synthetic-segment")
        groups = reader.groups("synthetic-segment")
        assert set(groups) <= {c.name for c in pool}
        assert sum(len(v) for v in groups.values()) == 6
        i = int(reader.indices("synthetic-segment")[2])
        expected = generate("synthetic-segment", 2, split=split, size=32)
        assert reader.group_of(i) == expected.group
        np.testing.assert_array_equal(reader[i]["target"], expected.target)
        assert reader.has_groups("synthetic-segment-outline")
        segment = ("synthetic-segment", "synthetic-segment-outline")
        assert not any(reader.has_groups(t) for t in reader.tasks if t not in segment)
