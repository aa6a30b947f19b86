"""Files in and out: images of any mode read as RGB, square fitting and back, atomic writes,
query resolution."""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from painter_cli.errors import PainterError
from painter_cli.pixels import target_to_rgb, to_rgb

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


# --------------------------------------------------------------------------------------------
# Atomic writes


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process umask: the mode ``open()`` / ``mkdir()`` would give. ``mkstemp``
    and ``mkdtemp`` make owner-only files and folders, which then outlive their rename."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, then ``os.replace`` it into place (with
    the permissions a plain ``open`` would have given it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 (H, W), (H, W, 3) or uint16 (H, W) array as PNG, atomically."""
    dtype = np.uint16 if array.dtype == np.uint16 else np.uint8
    img = Image.fromarray(np.ascontiguousarray(array.astype(dtype)))
    return atomic_write(path, lambda fh: img.save(fh, format="PNG"))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda fh: np.save(fh, array))


# --------------------------------------------------------------------------------------------
# Image loading


def open_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise PainterError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise PainterError(f"{path}: empty file")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise PainterError(
            f"{path}: image is too large to read safely ({exc})",
            "downscale the image (the limit is PIL's decompression-bomb check)",
        ) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise PainterError(
            f"{path}: not a readable image ({exc})", "check that the file is a complete image"
        ) from None
    if img.width == 0 or img.height == 0:
        raise PainterError(f"{path}: image has no pixels")
    return img


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file of any mode (``pixels.to_rgb``: L, RGB, RGBA, P, CMYK, 16-bit...)
    honouring EXIF orientation.

    Returns (H, W, 3) uint8 RGB.
    """
    return _converted(path, to_rgb)


def _converted(path: str | Path, convert: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
    try:
        return convert(open_image(path), *args)
    except ValueError as exc:  # a mode PIL cannot convert (e.g. LAB)
        raise PainterError(f"{path}: cannot read as RGB ({exc})") from None


def load_target(path: str | Path, codec: Any = None) -> np.ndarray:
    """Read a prompt target as (H, W, 3) uint8 (``pixels.target_to_rgb``: with a depth codec, a
    16-bit target in millimetres is painted by the codec instead of rescaled as gray)."""
    return _converted(path, target_to_rgb, codec)


# --------------------------------------------------------------------------------------------
# Square fitting (stretch or letterbox) and back


def fit_square(
    image: np.ndarray, size: int, resample: str = "bicubic", keep_aspect: bool = False
) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8.

    Default: the official stretch to a square. ``keep_aspect``: zero-pad at the bottom/right to a
    square first (undone by ``unfit_square``).
    """
    if keep_aspect:
        h, w = image.shape[:2]
        side = max(h, w)
        if (h, w) != (side, side):
            padded = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
            padded[:h, :w] = image
            image = padded
    if image.shape[:2] == (size, size):
        return image.copy()
    modes = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "bilinear": Image.BILINEAR}
    resized = Image.fromarray(image).resize((size, size), modes[resample])
    return np.asarray(resized, dtype=np.uint8).copy()


def resize_float(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize (h, w, C) float with torch ``F.interpolate`` (align_corners=False, no antialias), as
    the official scripts bring predictions back."""
    if array.shape[:2] == (height, width):
        return array.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(t, size=(height, width), mode=mode, **kwargs)
    return out[0].permute(1, 2, 0).numpy()


def unfit_square(
    painted: np.ndarray, height: int, width: int, mode: str = "bicubic", keep_aspect: bool = False
) -> np.ndarray:
    """Inverse of ``fit_square`` for a painted (S, S, C) float array -> (height, width, C)."""
    if not keep_aspect:
        return resize_float(painted, height, width, mode)
    side = max(height, width)
    return resize_float(painted, side, side, mode)[:height, :width]


def resolve_queries(specs: Sequence[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs -> an ordered list of image paths."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
            )
            if not files:
                raise PainterError(f"{path}: folder holds no images")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif any(c in spec for c in "*?["):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not files:
                raise PainterError(f"{spec}: the pattern matches no file")
            found.extend(files)
        else:
            raise PainterError(
                f"{spec}: no such file or folder", "give image files, folders or a glob pattern"
            )
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Unique file stems for the outputs (``name``, ``name-1``... for clashes)."""
    used: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = p.stem
        if stem in used:
            used[stem] += 1
            stem = f"{stem}-{used[stem]}"
            while stem in used:
                stem += "_"
        used.setdefault(stem, 0)
        stems.append(stem)
    return stems
