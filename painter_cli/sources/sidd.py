"""SIDD sRGB denoising: SIDD-Medium GT/NOISY pairs (random crops) and the validation blocks.

See ``official-data-and-evaluation.md`` section 6. The validation blocks are MATLAB v5 .mat files,
which need scipy (the optional extra ``painter-cli[sidd]``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.sources.base import Sample, SkipItem, Source, read_image
from painter_cli.sources.coco import _rng

log = logging.getLogger(__name__)

CROP = 256  # side of the training crops and of the validation blocks

LAYOUT = """\
ROOT/
  SIDD_Medium_Srgb/Data/<scene folder>/NNNN_GT_SRGB_010.PNG      train: clean
  SIDD_Medium_Srgb/Data/<scene folder>/NNNN_NOISY_SRGB_010.PNG   train: noisy (also _011)
  val/ValidationNoisyBlocksSrgb.mat   val: key ValidationNoisyBlocksSrgb, uint8 (N, 32, 256, 256, 3)
  val/ValidationGtBlocksSrgb.mat      val: key ValidationGtBlocksSrgb, same shape (MATLAB v5: scipy)"""

# One line (``painter encode --list`` shows the whole layout).
_TRAIN_HINT = "expected ROOT/SIDD_Medium_Srgb/Data/<scene>/*_{GT,NOISY}_SRGB_010.PNG"
_VAL_HINT = (
    "expected ROOT/val/ValidationNoisyBlocksSrgb.mat and ROOT/val/ValidationGtBlocksSrgb.mat"
)
_VAL_FILES = ("ValidationNoisyBlocksSrgb", "ValidationGtBlocksSrgb")


def _natural_key(text: str) -> list:
    """Sort key that orders digit runs by value (``natsorted``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _loadmat(path: Path):
    """scipy's ``loadmat``, or a ``PainterError`` naming ``path`` when scipy is missing."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PainterError(
            f"{path}: reading a MATLAB v5 .mat file needs scipy, which is not installed",
            hint="pip install 'painter-cli[sidd]'",
        ) from None
    return loadmat


def _read_blocks(path: Path, var: str) -> np.ndarray:
    """The uint8 (N, B, 256, 256, 3) blocks of one validation .mat: MATLAB v5 through scipy, or
    v7.3 (HDF5, stored column-major, so h5py sees the dimensions reversed) through h5py."""
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                arr = np.asarray(f[var]).transpose(4, 3, 2, 1, 0) if f[var].ndim == 5 else None
        else:
            loadmat = _loadmat(path)
            try:
                contents = loadmat(path)
            except Exception as exc:  # garbage: scipy's MatReadError, ValueError, zlib errors...
                raise PainterError(
                    f"{path}: cannot read .mat file ({type(exc).__name__}: {exc})",
                    hint="replace it with the official SIDD validation file",
                ) from None
            arr = contents[var]
    except KeyError:
        raise PainterError(f"{path}: no variable {var!r}") from None
    except (OSError, ValueError, NotImplementedError, TypeError) as exc:
        raise PainterError(f"{path}: cannot read .mat file ({exc})") from None
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[2:] != (CROP, CROP, 3):
        got = "not 5-D" if arr is None else f"{arr.dtype} {arr.shape}"
        raise PainterError(f"{path}: {var} is {got}, expected uint8 (N, 32, {CROP}, {CROP}, 3)")
    return np.ascontiguousarray(arr)


class SiddSource(Source):
    """SIDD-Medium sRGB denoising (task ``sidd-denoise``, codec ``restoration``).

    ``train``: every ``*_GT_SRGB_*.PNG`` under ``SIDD_Medium_Srgb/Data/*/`` (natural order) paired
    with the ``*_NOISY_SRGB_*.PNG`` of the same name; each pair gives ``crops_per_image`` random
    256x256 crops at the same position in both (the official ``generate_patches_SIDD.py`` takes
    300). Image = noisy crop, target = clean crop. Sample ids: ``<GT file stem>_<j>``.
    ``val``: the N x 32 blocks of ``val/ValidationNoisyBlocksSrgb.mat`` (image) and
    ``val/ValidationGtBlocksSrgb.mat`` (target); one key per scene row, ids ``<row>_<block>``.
    The official files are MATLAB v5 (read with scipy: ``pip install 'painter-cli[sidd]'``); a v7.3
    (HDF5) re-save is read with h5py.

    Options: ``crops_per_image`` (int, default 300), ``seed`` (int, default 0; the crops of a
    pair depend only on (seed, pair)).
    """

    name = "sidd"
    layout = LAYOUT
    option_help = {
        "crops_per_image": "random 256x256 crops per training pair (official 300)",
        "seed": "seed of the crop positions (a pair's crops depend only on seed and pair)",
    }
    splits = ("train", "val")
    task = "sidd-denoise"
    codec = "restoration"

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        self.opts = self.checked_options({"crops_per_image": (int, 300), "seed": (int, 0)})
        if self.opts["crops_per_image"] < 1:
            raise PainterError(f"{self.name}: crops_per_image must be >= 1")
        if not self.root.is_dir():
            raise PainterError(
                f"{self.root}: dataset root not found",
                hint=_TRAIN_HINT if split == "train" else _VAL_HINT,
            )
        if split == "train":
            self.data_dir = self.root / "SIDD_Medium_Srgb" / "Data"
            if not self.data_dir.is_dir():
                raise PainterError(
                    f"{self.data_dir}: SIDD-Medium sRGB folder not found",
                    hint=_TRAIN_HINT,
                )
        else:
            self.mat_paths = [self.root / "val" / f"{k}.mat" for k in _VAL_FILES]
            for path in self.mat_paths:
                if not path.is_file():
                    raise PainterError(f"{path}: not found", hint=_VAL_HINT)
            import h5py

            for path in self.mat_paths:
                if not h5py.is_hdf5(path):
                    _loadmat(path)  # fail now, not in a worker, when scipy is missing
        self._keys: list[str] | None = None
        self._blocks: tuple[np.ndarray, np.ndarray] | None = None  # per-process cache

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_blocks"] = None  # hundreds of MB: each worker reads them itself
        return state

    def keys(self) -> list[str]:
        if self._keys is None:
            if self.split == "train":
                gts = [
                    p.relative_to(self.data_dir).as_posix()
                    for p in self.data_dir.glob("*/*.PNG")
                    if "_GT_" in p.name
                ]
                self._keys = sorted(gts, key=_natural_key)
            else:
                noisy, _ = self._val_blocks()
                self._keys = [f"{i:04d}" for i in range(noisy.shape[0])]
        return self._keys

    def load(self, key: str) -> list[Sample]:
        return self._load_train(key) if self.split == "train" else self._load_val(key)

    def _load_train(self, key: str) -> list[Sample]:
        gt_path = self.data_dir / key
        noisy_path = gt_path.with_name(gt_path.name.replace("_GT_", "_NOISY_"))
        if not noisy_path.is_file():
            raise SkipItem(noisy_path, f"noisy image of {gt_path.name} not found")
        clean = read_image(gt_path, keep_jpeg=False)
        noisy = read_image(noisy_path, keep_jpeg=False)
        if clean.shape != noisy.shape:
            raise PainterError(
                f"{noisy_path}: size {noisy.shape[1]}x{noisy.shape[0]} does not match "
                f"{gt_path} ({clean.shape[1]}x{clean.shape[0]})"
            )
        h, w = clean.shape[:2]
        if h < CROP or w < CROP:
            raise PainterError(f"{gt_path}: {w}x{h} is smaller than the {CROP}x{CROP} crops")
        rng = _rng(self.opts["seed"], key)
        stem = gt_path.stem.replace("_GT_", "_")
        samples = []
        for j in range(self.opts["crops_per_image"]):
            top = int(rng.integers(0, h - CROP + 1))
            left = int(rng.integers(0, w - CROP + 1))
            window = (slice(top, top + CROP), slice(left, left + CROP))
            samples.append(
                Sample(
                    id=f"{stem}_{j:03d}",
                    image=np.ascontiguousarray(noisy[window]),
                    target=self.target_codec().encode(np.ascontiguousarray(clean[window])),
                )
            )
        return samples

    def _val_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        if self._blocks is None:
            pairs = zip(self.mat_paths, _VAL_FILES, strict=True)
            arrays = [_read_blocks(path, var) for path, var in pairs]
            if arrays[0].shape != arrays[1].shape:
                raise PainterError(
                    f"{self.mat_paths[1]}: shape {arrays[1].shape} does not match "
                    f"{self.mat_paths[0]} {arrays[0].shape}"
                )
            self._blocks = (arrays[0], arrays[1])
        return self._blocks

    def _load_val(self, key: str) -> list[Sample]:
        noisy, clean = self._val_blocks()
        i = int(key)
        return [
            Sample(
                id=f"{i:04d}_{j:02d}",
                image=np.ascontiguousarray(noisy[i, j]),
                target=self.target_codec().encode(np.ascontiguousarray(clean[i, j])),
            )
            for j in range(noisy.shape[1])
        ]
