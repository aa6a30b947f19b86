"""NYUv2 depth: the BTS ``sync`` training set and the official 654-image labeled test split.

Training pairs are ``sync/<scene>/rgb_%05d.jpg`` with ``sync_depth_%05d.png`` (uint16, millimetres,
0 = missing). The test split is read straight from the official ``nyu_depth_v2_labeled.mat``
(MATLAB v7.3, i.e. HDF5, read with h5py) and ``splits.mat`` (``testNdxs``, 1-based), as
``official-data-and-evaluation.md`` section 5 describes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.shards import image_size
from painter_cli.sources.base import Sample, SkipItem, Source, read_image

log = logging.getLogger(__name__)

# The official test extraction copies only rows 7:474 and columns 7:632 of each 480x640 image;
# the rest stays black, and the test inputs carry that border.
_TEST_CROP = (slice(7, 474), slice(7, 632))

LAYOUT = """\
ROOT/
  sync/<scene>/rgb_%05d.jpg            train: BTS sync RGB (640x480)
  sync/<scene>/sync_depth_%05d.png     train: uint16 depth in millimetres, 0 = missing
  nyu_depth_v2_labeled.mat             test: official labeled set (MATLAB v7.3 / HDF5)
  splits.mat                           test: trainNdxs / testNdxs (1-based; MATLAB v5 needs scipy)"""


# One line (``painter encode --list`` shows the whole layout).
_TRAIN_HINT = "expected ROOT/sync/<scene>/rgb_%05d.jpg + sync_depth_%05d.png (BTS sync set)"
_TEST_HINT = "expected ROOT/nyu_depth_v2_labeled.mat and ROOT/splits.mat (the official NYUv2 files)"
_MAT_HINT = "replace it with the official file of the NYUv2 download"


def load_mat_indices(path: Path, key: str) -> np.ndarray:
    """A 1-based index vector from a .mat file (HDF5 v7.3 via h5py, v5 via scipy) as int64."""
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return np.asarray(f[key], dtype=np.int64).ravel()
        try:
            from scipy.io import loadmat
        except ImportError:
            raise PainterError(
                f"{path}: reading a MATLAB v5 .mat file needs scipy, which is not installed",
                hint="pip install 'painter-cli[sidd]' (or pip install scipy)",
            ) from None
        try:
            contents = loadmat(path)
        except Exception as exc:  # garbage: scipy's MatReadError, ValueError, zlib/struct errors
            raise PainterError(
                f"{path}: cannot read .mat file ({type(exc).__name__}: {exc})", hint=_MAT_HINT
            ) from None
        return np.asarray(contents[key], dtype=np.int64).ravel()
    except KeyError:
        raise PainterError(f"{path}: no variable {key!r}", hint=_MAT_HINT) from None
    except (OSError, ValueError, TypeError) as exc:
        raise PainterError(f"{path}: cannot read .mat file ({exc})", hint=_MAT_HINT) from None


class NyuV2Source(Source):
    """NYUv2 monocular depth (task ``nyuv2-depth``; targets painted by the ``nyuv2-depth`` codec).

    ``train``: every ``sync/<scene>/rgb_XXXXX.jpg`` with its ``sync_depth_XXXXX.png``; the image is
    stored as the JPEG's bytes. ``test``: the official 654 test images (``testNdxs`` of
    ``splits.mat``) read from ``nyu_depth_v2_labeled.mat``: RGB transposed from MATLAB's
    column-major layout with the official black border (only rows 7:474, columns 7:632 kept), and
    the raw (not inpainted) depth quantised to millimetres as the official extraction does
    (``uint16(rawDepth*1000)``). Both splits store ``extras["depth_m"]``: float32 (H, W) metres
    (0 = missing) so evaluation needs no decoding. Sample ids: ``<scene>_rgb_XXXXX`` (``XXXXX`` is
    the sync frame, or the 0-based index into the 1449 labeled images for test). No options.
    """

    name = "nyuv2"
    layout = LAYOUT
    splits = ("train", "test")
    task = "nyuv2-depth"
    codec = "nyuv2-depth"

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        self.checked_options({})
        if not self.root.is_dir():
            raise PainterError(
                f"{self.root}: dataset root not found",
                hint=_TRAIN_HINT if split == "train" else _TEST_HINT,
            )
        if split == "train":
            self.sync_dir = self.root / "sync"
            if not self.sync_dir.is_dir():
                raise PainterError(f"{self.sync_dir}: BTS sync folder not found", hint=_TRAIN_HINT)
        else:
            self.mat_path = self.root / "nyu_depth_v2_labeled.mat"
            self.splits_path = self.root / "splits.mat"
            for path in (self.mat_path, self.splits_path):
                if not path.is_file():
                    raise PainterError(f"{path}: not found", hint=_TEST_HINT)
        self._keys: list[str] | None = None
        self._h5 = None  # opened lazily, per process
        self._h5_pid = 0

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_h5"] = None
        return state

    def keys(self) -> list[str]:
        if self._keys is None:
            if self.split == "train":
                self._keys = sorted(
                    p.relative_to(self.sync_dir).as_posix()
                    for p in self.sync_dir.glob("*/rgb_*.jpg")
                )
            else:
                test = load_mat_indices(self.splits_path, "testNdxs")
                n = self._file()["images"].shape[0]
                if test.size == 0 or test.min() < 1 or test.max() > n:
                    raise PainterError(
                        f"{self.splits_path}: testNdxs outside 1..{n} (the images in {self.mat_path})"
                    )
                self._keys = [f"{i - 1:05d}" for i in np.unique(test).tolist()]
        return self._keys

    def load(self, key: str) -> list[Sample]:
        return [self._load_train(key) if self.split == "train" else self._load_test(key)]

    def _load_train(self, key: str) -> Sample:
        from PIL import Image

        rgb_path = self.sync_dir / key
        depth_path = rgb_path.with_name(rgb_path.name.replace("rgb_", "sync_depth_")).with_suffix(
            ".png"
        )
        image = read_image(rgb_path)
        size = image_size(image)
        try:
            with Image.open(depth_path) as im:
                depth = np.asarray(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise SkipItem(depth_path, f"unreadable depth PNG ({exc})") from None
        if depth.ndim != 2 or depth.dtype.kind not in "iu" or depth.max(initial=0) > 65535:
            raise PainterError(
                f"{depth_path}: expected a 16-bit single-channel PNG of millimetres "
                f"(got {depth.dtype} {depth.shape})"
            )
        if depth.shape != size:
            raise PainterError(
                f"{depth_path}: size {depth.shape[1]}x{depth.shape[0]} does not match "
                f"{rgb_path} ({size[1]}x{size[0]})"
            )
        depth = depth.astype(np.uint16)
        scene = Path(key).parent.name
        return Sample(
            id=f"{scene}_{rgb_path.stem}",
            image=image,
            target=self.target_codec().encode(depth),
            extras={"depth_m": depth.astype(np.float32) / np.float32(1000)},
        )

    def _file(self):
        # A handle inherited through fork is not safe to use: each process opens its own.
        if self._h5 is not None and self._h5_pid != os.getpid():
            self._h5 = None
        if self._h5 is None:
            import h5py

            self._h5_pid = os.getpid()

            try:
                self._h5 = h5py.File(self.mat_path, "r")
            except OSError as exc:
                raise PainterError(
                    f"{self.mat_path}: not a MATLAB v7.3 (HDF5) file ({exc})",
                    hint="replace it with the official nyu_depth_v2_labeled.mat",
                ) from None
            for name in ("images", "rawDepths", "sceneTypes"):
                if name not in self._h5:
                    raise PainterError(f"{self.mat_path}: no variable {name!r}")
        return self._h5

    def _scene(self, index: int) -> str:
        f = self._file()
        ref = np.asarray(f["sceneTypes"]).ravel()[index]
        chars = np.asarray(f[ref]).ravel()
        return "".join(chr(int(c)) for c in chars)

    def _load_test(self, key: str) -> Sample:
        index = int(key)
        f = self._file()
        try:
            # MATLAB stores column-major: images is (N, 3, W, H) and rawDepths (N, W, H) in h5py.
            rgb = np.asarray(f["images"][index]).transpose(2, 1, 0)
            raw = np.asarray(f["rawDepths"][index], dtype=np.float64).T
        except (OSError, ValueError) as exc:
            raise SkipItem(self.mat_path, f"image {index} unreadable ({exc})") from None
        if rgb.shape[:2] != raw.shape or rgb.shape[2] != 3:
            raise PainterError(
                f"{self.mat_path}: image {index} is {rgb.shape}, its depth {raw.shape}"
            )
        image = np.zeros_like(rgb, dtype=np.uint8)
        image[_TEST_CROP] = rgb[_TEST_CROP]
        depth = (np.clip(raw, 0, 65.535) * 1000).astype(np.uint16)
        return Sample(
            id=f"{self._scene(index)}_rgb_{key}",
            image=image,
            target=self.target_codec().encode(depth),
            extras={"depth_m": depth.astype(np.float32) / np.float32(1000)},
        )
