"""Decoded images of any PIL mode -> (H, W, 3) uint8 RGB: the one conversion that ``encode``
(sources, shards) and ``predict`` (query and prompt files) share, so a file reads the same in both.

PIL's own ``convert("RGB")`` clips 16- and 32-bit gray at 255 (a 16-bit PNG turns white) and
truncates float images in 0..1 to black; those modes are rescaled here instead:

* ``I;16`` (16-bit gray PNG/TIFF): ``round(v / 65535 * 255)``.
* ``I`` (32-bit integer): ``round(v / 65535 * 255)`` when a value exceeds 255, else as is; negative
  values clip to 0.
* ``F`` (32-bit float): ``round(v * 255)`` when every value is <= 1, else ``round(v)``; clipped to
  0..255, NaN -> 0.
* anything else (``1``, ``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ``YCbCr``...) through
  PIL's ``convert("RGB")``; alpha is dropped, as the official ``convert("RGB")``. A 16-bit RGB PNG
  is opened by PIL as 8-bit ``RGB`` (each channel's high byte) and is read as that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(img: Any) -> np.ndarray:
    """A loaded PIL image of any mode -> (H, W, 3) uint8 RGB (the rules in the module docstring).

    Raises ``ValueError`` for a mode PIL cannot convert to RGB (e.g. ``LAB``)."""
    if img.mode in GRAY16_MODES or img.mode == "I":
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode != "I" or arr.max(initial=0) > 255 else 255.0
        return _gray(np.round(arr / peak * 255.0))
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img).astype(np.float64), nan=0.0)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return _gray(np.round(arr * scale))
    return np.array(img.convert("RGB"), dtype=np.uint8)


def target_to_rgb(img: Any, codec: Any = None) -> np.ndarray:
    """A loaded PIL target image -> (H, W, 3) uint8 painted target.

    With a depth codec, 16- and 32-bit gray targets are millimetres (as NYUv2's ``sync_depth``
    PNGs) and are painted by the codec (the official ``mm / 10000 * 255``, truncated); every other
    target converts as ``to_rgb``."""
    if getattr(codec, "kind", None) == "depth" and (img.mode in GRAY16_MODES or img.mode == "I"):
        mm = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        return codec.encode(mm)
    return to_rgb(img)


def _gray(values: np.ndarray) -> np.ndarray:
    gray = np.clip(values, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def array_to_rgb(array: Any, what: str = "image") -> np.ndarray:
    """An image array as the Python API takes it -> (H, W, 3) uint8, by the rules of the PIL mode
    it would be: (H, W) or (H, W, 1) gray, (H, W, 3) RGB or (H, W, 4) RGBA (alpha dropped);
    uint8 as is, uint16 and other integers as ``I;16``/``I``, floats as ``F``, bools as 0/255.
    Anything else is a ``PainterError`` naming ``what``, its shape and dtype."""
    from painter_cli.errors import PainterError

    a = np.asarray(array)
    shape_ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    if not shape_ok or 0 in a.shape or not (a.dtype == np.bool_ or a.dtype.kind in "uif"):
        raise PainterError(
            f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, "
            f"got {a.dtype} {a.shape}"
        )
    if a.ndim == 3:
        if a.shape[2] == 1:
            a = a[:, :, 0]
        elif a.shape[2] == 4:
            a = a[:, :, :3]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        values = np.nan_to_num(a.astype(np.float64), nan=0.0)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        out = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
    else:
        values = a.astype(np.float64)
        peak = 65535.0 if a.dtype == np.uint16 or values.max(initial=0) > 255 else 255.0
        out = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out
