"""The NYUv2 source over a fake tree (tests/fakes_nyuv2.py): BTS sync training pairs and the official
test split read from a MATLAB v7.3 labeled .mat, directly and through ``encode_dataset``."""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes_nyuv2 import write_nyuv2  # noqa: E402

from painter_cli.errors import PainterError  # noqa: E402
from painter_cli.sources import get_source  # noqa: E402
from painter_cli.tasks import get_codec  # noqa: E402

GRAY_M = 10.0 / 255.0  # one gray level of the depth target, in metres


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    return write_nyuv2(tmp_path_factory.mktemp("nyu"))


def _check_depth(target: np.ndarray, depth_m: np.ndarray) -> None:
    """The painted target decodes to the depth within one gray level (0 stays 0, > 10 m clips)."""
    assert target.dtype == np.uint8 and (target[..., 0] == target[..., 2]).all()
    decoded = get_codec("nyuv2-depth").decode(target)
    expected = np.minimum(depth_m, 10.0)
    assert np.abs(decoded - expected).max() <= GRAY_M + 1e-6
    assert (target[depth_m == 0] == 0).all()


def test_train_pairs(nyu):
    src = get_source("nyuv2", nyu.root, "train")
    assert (src.task, src.codec) == ("nyuv2-depth", "nyuv2-depth")
    keys = src.keys()
    assert keys == sorted(nyu.train_depth_mm)
    for key in keys:
        [sample] = src.load(key)
        scene, name = key.split("/")
        assert sample.id == f"{scene}_{name[:-4]}"
        assert sample.image == (nyu.root / "sync" / key).read_bytes()
        mm = nyu.train_depth_mm[key]
        # Metres are exact: mm / 1000 in float32.
        np.testing.assert_array_equal(sample.extras["depth_m"], mm.astype(np.float32) / 1000)
        assert sample.extras["depth_m"].dtype == np.float32
        _check_depth(sample.target, sample.extras["depth_m"])
        # The official conversion: floor(mm * 255 / 10000); 12000 mm clips to 255.
        assert sample.target[-1, -1, 0] == 255
        assert sample.target[5, 5, 0] == int(mm[5, 5] / 10000 * 255)


def test_test_split_from_labeled_mat(nyu):
    src = get_source("nyuv2", nyu.root, "test")
    # testNdxs [2, 4, 5] (1-based) -> 0-based indices into the labeled images.
    keys = src.keys()
    assert keys == ["00001", "00003", "00004"]
    src = pickle.loads(pickle.dumps(src))
    for key in keys:
        i = int(key)
        [sample] = src.load(key)
        assert sample.id == f"{nyu.scenes[i]}_rgb_{key}"
        img = sample.image
        assert img.shape == (480, 640, 3)
        np.testing.assert_array_equal(img[7:474, 7:632], nyu.images[i, 7:474, 7:632])
        # The official black border: 7 rows top, 6 bottom, 7 columns left, 8 right.
        assert not img[:7].any() and not img[474:].any()
        assert not img[:, :7].any() and not img[:, 632:].any()
        expected = (nyu.raw_depths[i].astype(np.float64) * 1000).astype(np.uint16)
        np.testing.assert_array_equal(sample.extras["depth_m"], expected.astype(np.float32) / 1000)
        _check_depth(sample.target, sample.extras["depth_m"])
    # Pickled after use: the HDF5 handle is reopened in the new process.
    again = pickle.loads(pickle.dumps(src)).load("00003")[0]
    assert again.id == "study_room_rgb_00003"


def test_test_split_literal_depth(tmp_path):
    from fakes_nyuv2 import write_labeled_mat

    truth = write_nyuv2(tmp_path, n_labeled=6, height=24, width=32)
    raw = truth.raw_depths.copy()
    raw[1, 10, 12] = 1.2345  # millimetres truncate, as uint16(rawDepth*1000) does
    raw[1, 11, 12] = 0.0
    write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", truth.images, raw, truth.scenes)
    [sample] = get_source("nyuv2", tmp_path, "test").load("00001")
    assert sample.extras["depth_m"][10, 12] == np.float32(1.234)
    assert sample.extras["depth_m"][11, 12] == 0
    assert sample.target[10, 12].tolist() == [31, 31, 31]  # floor(1234 * 255 / 10000)


def test_through_shards(nyu, tmp_path):
    from painter_cli.encode import EncodeSettings, encode_dataset
    from painter_cli.shards import ShardReader

    # Two workers and one key per shard for the test split: forked workers read the .mat.
    for split, n, workers in (("train", 4, 1), ("test", 3, 2)):
        out = tmp_path / split
        settings = EncodeSettings(shard_size=1 if workers > 1 else 1000)
        encode_dataset("nyuv2", nyu.root, out, split=split, workers=workers, settings=settings)
        reader = ShardReader(out)
        assert reader.tasks == ["nyuv2-depth"] and len(reader) == n
        codec = reader.codec("nyuv2-depth")
        direct = get_source("nyuv2", nyu.root, split)
        for i in range(n):
            item = reader[i]
            [sample] = direct.load(direct.keys()[i])
            assert item["id"] == sample.id
            np.testing.assert_array_equal(item["depth_m"], sample.extras["depth_m"])
            np.testing.assert_array_equal(item["target"], sample.target)
            assert np.abs(codec.decode(item["target"]) - np.minimum(item["depth_m"], 10)).max() <= (
                GRAY_M + 1e-6
            )


def test_bad_layouts(nyu, tmp_path):
    with pytest.raises(PainterError, match=r"empty/sync: BTS sync folder not found"):
        (tmp_path / "empty").mkdir()
        get_source("nyuv2", tmp_path / "empty", "train")
    with pytest.raises(PainterError, match=r"empty/nyu_depth_v2_labeled.mat: not found"):
        get_source("nyuv2", tmp_path / "empty", "test")
    with pytest.raises(PainterError, match="unknown split"):
        get_source("nyuv2", nyu.root, "val")
    # An 8-bit colour PNG where a 16-bit depth PNG belongs, and a depth of the wrong size.
    from PIL import Image

    root = tmp_path / "bad"
    shutil.copytree(nyu.root / "sync", root / "sync")
    png = root / "sync" / "bedroom_0001" / "sync_depth_00000.png"
    Image.new("RGB", (64, 48)).save(png)
    src = get_source("nyuv2", root, "train")
    with pytest.raises(PainterError, match="sync_depth_00000.png: expected a 16-bit"):
        src.load("bedroom_0001/rgb_00000.jpg")
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(png)
    with pytest.raises(PainterError, match="sync_depth_00000.png: size 10x10 does not match"):
        src.load("bedroom_0001/rgb_00000.jpg")


def test_missing_scipy_for_v5_splits(nyu, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    src = get_source("nyuv2", nyu.root, "test")
    with pytest.raises(PainterError, match="splits.mat: reading a MATLAB v5 .mat file needs scipy"):
        src.keys()


@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"\0" * 300, bytes(range(256)) * 20],
    ids=["text", "zeros", "bytes"],
)
def test_garbage_splits_mat_names_the_file(nyu, tmp_path, garbage):
    root = tmp_path / "nyu"
    root.mkdir()
    (root / "nyu_depth_v2_labeled.mat").symlink_to(nyu.root / "nyu_depth_v2_labeled.mat")
    (root / "splits.mat").write_bytes(garbage)
    src = get_source("nyuv2", root, "test")
    with pytest.raises(PainterError, match=r"splits\.mat: cannot read \.mat file") as err:
        src.keys()
    assert err.value.hint and "\n" not in err.value.hint


def test_garbage_labeled_mat_names_the_file(nyu, tmp_path):
    root = tmp_path / "nyu"
    root.mkdir()
    (root / "splits.mat").symlink_to(nyu.root / "splits.mat")
    (root / "nyu_depth_v2_labeled.mat").write_bytes(b"garbage" * 100)
    src = get_source("nyuv2", root, "test")
    with pytest.raises(PainterError, match=r"nyu_depth_v2_labeled\.mat: not a MATLAB v7\.3"):
        src.keys()


@pytest.mark.parametrize("split", ["train", "test"])
def test_layout_hints_are_one_line(tmp_path, split):
    for root in (tmp_path / "missing", tmp_path):
        with pytest.raises(PainterError) as err:
            get_source("nyuv2", root, split)
        assert err.value.hint.startswith("expected ROOT/") and "\n" not in err.value.hint
