"""The SIDD source over a fake tree (tests/fakes_sidd.py): random aligned 256 crops of the GT/NOISY
pairs and the validation blocks of the v5 .mat files, directly and through ``encode_dataset``."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes_sidd import NOISE, crop_origin, position_image, write_sidd  # noqa: E402

from painter_cli.errors import PainterError  # noqa: E402
from painter_cli.sources import get_source  # noqa: E402
from painter_cli.tasks import get_codec  # noqa: E402


@pytest.fixture(scope="module")
def sidd(tmp_path_factory):
    return write_sidd(tmp_path_factory.mktemp("sidd"))


def _check_crop(image: np.ndarray, target: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """The crop pair lies at the same place in the clean and noisy image; returns (top, left)."""
    assert image.shape == target.shape == (256, 256, 3)
    top, left = crop_origin(target)
    h, w = size
    assert 0 <= top <= h - 256 and 0 <= left <= w - 256
    clean = position_image(h, w)[top : top + 256, left : left + 256]
    np.testing.assert_array_equal(target, clean)
    np.testing.assert_array_equal(image, (clean.astype(np.int32) + NOISE).astype(np.uint8))
    return top, left


def test_train_crops(sidd):
    src = get_source("sidd", sidd.root, "train", crops_per_image="4", seed=1)
    assert (src.task, src.codec) == ("sidd-denoise", "restoration")
    assert src.keys() == sorted(sidd.pairs)
    key = src.keys()[0]
    samples = src.load(key)
    assert [s.id for s in samples] == [f"0001_SRGB_010_{j:03d}" for j in range(4)]
    origins = {_check_crop(s.image, s.target, sidd.pairs[key]) for s in samples}
    assert len(origins) > 1  # random positions
    # Deterministic under the seed (and after pickling); another seed moves the crops.
    again = pickle.loads(pickle.dumps(src)).load(key)
    assert all((a.image == b.image).all() for a, b in zip(samples, again, strict=True))
    other = get_source("sidd", sidd.root, "train", crops_per_image=4, seed=2).load(key)
    assert {crop_origin(s.target) for s in other} != origins
    # The restoration codec paints the clean crop as is.
    codec = get_codec("restoration")
    np.testing.assert_array_equal(codec.decode(samples[0].target), samples[0].target)


def test_val_blocks(sidd):
    src = get_source("sidd", sidd.root, "val")
    assert src.keys() == ["0000", "0001"]
    samples = src.load("0001")
    assert [s.id for s in samples] == ["0001_00", "0001_01", "0001_02"]
    for j, s in enumerate(samples):
        np.testing.assert_array_equal(s.image, sidd.noisy_blocks[1, j])
        np.testing.assert_array_equal(s.target, sidd.gt_blocks[1, j])
    # The cached blocks are not pickled (each worker reads its own).
    assert pickle.loads(pickle.dumps(src))._blocks is None


def test_val_blocks_from_v73_mat(sidd, tmp_path, monkeypatch):
    # A MATLAB v7.3 (HDF5) re-save: column-major, so h5py sees (3, 256, 256, B, N). No scipy needed.
    import h5py

    (tmp_path / "val").mkdir()
    for name, blocks in (
        ("ValidationNoisyBlocksSrgb", sidd.noisy_blocks),
        ("ValidationGtBlocksSrgb", sidd.gt_blocks),
    ):
        with h5py.File(tmp_path / "val" / f"{name}.mat", "w") as f:
            f.create_dataset(name, data=blocks.transpose(4, 3, 2, 1, 0))
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    src = get_source("sidd", tmp_path, "val")
    [s0, s1, s2] = src.load("0001")
    np.testing.assert_array_equal(s2.image, sidd.noisy_blocks[1, 2])
    np.testing.assert_array_equal(s2.target, sidd.gt_blocks[1, 2])


def test_through_shards(sidd, tmp_path):
    from painter_cli.encode import encode_dataset
    from painter_cli.shards import ShardReader

    out = tmp_path / "train"
    encode_dataset("sidd", sidd.root, out, split="train", options={"crops_per_image": 2})
    reader = ShardReader(out)
    assert reader.tasks == ["sidd-denoise"] and len(reader) == 8
    codec = reader.codec("sidd-denoise")
    for i in range(len(reader)):
        item = reader[i]
        folder = next(k for k in sidd.pairs if k.split("/")[1].startswith(item["id"][:4]))
        _check_crop(item["image"], codec.decode(item["target"]), sidd.pairs[folder])
    out = tmp_path / "val"
    encode_dataset("sidd", sidd.root, out, split="val")
    reader = ShardReader(out)
    assert len(reader) == 6
    item = reader[4]
    assert item["id"] == "0001_01"
    np.testing.assert_array_equal(item["image"], sidd.noisy_blocks[1, 1])
    np.testing.assert_array_equal(item["target"], sidd.gt_blocks[1, 1])


def test_bad_layouts(sidd, tmp_path):
    with pytest.raises(PainterError, match=r"SIDD_Medium_Srgb/Data: SIDD-Medium sRGB folder"):
        get_source("sidd", tmp_path, "train")
    with pytest.raises(PainterError, match=r"val/ValidationNoisyBlocksSrgb.mat: not found"):
        get_source("sidd", tmp_path, "val")
    with pytest.raises(PainterError, match="crops_per_image must be >= 1"):
        get_source("sidd", sidd.root, "train", crops_per_image=0)
    with pytest.raises(PainterError, match="unknown option"):
        get_source("sidd", sidd.root, "train", crop=128)
    # A GT image smaller than a crop, and a NOISY image of another size.
    from PIL import Image
    from scipy.io import savemat

    folder = tmp_path / "SIDD_Medium_Srgb" / "Data" / "0002_x"
    folder.mkdir(parents=True)
    Image.fromarray(position_image(200, 300)).save(folder / "0002_GT_SRGB_010.PNG")
    Image.fromarray(position_image(200, 300)).save(folder / "0002_NOISY_SRGB_010.PNG")
    Image.fromarray(position_image(300, 300)).save(folder / "0002_GT_SRGB_011.PNG")
    Image.fromarray(position_image(300, 290)).save(folder / "0002_NOISY_SRGB_011.PNG")
    src = get_source("sidd", tmp_path, "train")
    with pytest.raises(PainterError, match="0002_GT_SRGB_010.PNG: 300x200 is smaller than"):
        src.load("0002_x/0002_GT_SRGB_010.PNG")
    with pytest.raises(PainterError, match="0002_NOISY_SRGB_011.PNG: size 290x300 does not match"):
        src.load("0002_x/0002_GT_SRGB_011.PNG")
    # Validation blocks of the wrong shape.
    (tmp_path / "val").mkdir()
    bad = np.zeros((1, 2, 64, 64, 3), np.uint8)
    savemat(tmp_path / "val" / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": bad})
    savemat(tmp_path / "val" / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": bad})
    with pytest.raises(PainterError, match=r"ValidationNoisyBlocksSrgb.mat: .* expected uint8"):
        get_source("sidd", tmp_path, "val").keys()


def test_missing_scipy(sidd, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(PainterError, match="ValidationNoisyBlocksSrgb.mat: .* needs scipy") as err:
        get_source("sidd", sidd.root, "val")
    assert "painter-cli[sidd]" in str(err.value)
    # Training needs no scipy.
    assert get_source("sidd", sidd.root, "train").keys()


@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"\0" * 300, bytes(range(256)) * 20],
    ids=["text", "zeros", "bytes"],
)
def test_garbage_validation_mat_names_the_file(sidd, tmp_path, garbage):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ValidationNoisyBlocksSrgb.mat").write_bytes(garbage)
    gt = sidd.root / "val" / "ValidationGtBlocksSrgb.mat"
    (tmp_path / "val" / "ValidationGtBlocksSrgb.mat").symlink_to(gt)
    src = get_source("sidd", tmp_path, "val")
    with pytest.raises(PainterError, match=r"ValidationNoisyBlocksSrgb\.mat: cannot read \.mat"):
        src.keys()


@pytest.mark.parametrize("split", ["train", "val"])
def test_layout_hints_are_one_line(tmp_path, split):
    for root in (tmp_path / "missing", tmp_path):
        with pytest.raises(PainterError) as err:
            get_source("sidd", root, split)
        assert err.value.hint.startswith("expected ROOT/") and "\n" not in err.value.hint
