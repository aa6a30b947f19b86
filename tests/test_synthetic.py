"""The synthetic task suite: determinism, splits, and targets that decode back to the ground truth."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from painter_cli.errors import PainterError
from painter_cli.sources.synthetic import (
    KEYPOINT_NAMES,
    OOD_SHAPE,
    SHAPES,
    SYNTHETIC_TASKS,
    SyntheticSource,
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
    assert all("ood" not in s.splits for t, s in SYNTHETIC_TASKS.items() if t != "synthetic-fgseg")
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


@pytest.mark.parametrize("task", ["synthetic-semseg", "synthetic-fgseg"])
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
