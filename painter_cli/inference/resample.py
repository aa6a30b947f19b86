"""Resizing painted predictions back to the query's size with the official scripts' arithmetic.

The official scripts resize the de-normalised prediction in float64 (``output * std`` promotes
the float32 model output) with ``F.interpolate``. For bilinear, the kernel that ran there summed
the four weighted neighbours as a chain of fused multiply-adds with pre-multiplied weights (the
one arithmetic that reproduces the official ADE20K output file exactly, fixture
official-inference/semseg), so an output between two equal clipped neighbours can land one ulp
below the integer and truncate one level down; ``bilinear`` below repeats that arithmetic (FMA
emulated with error-free products), independent of this machine's torch build. Bicubic and
nearest give the official values with torch in float64. Units: whatever the caller's (0..255
colours, 0..10000 depth), always float64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Veltkamp's splitting constant for float64 (2**27 + 1).
_SPLIT = 134217729.0
# Values this close to an integer are recomputed exactly (kernels differ by ~1e-12 at 1e4).
_NEAR = 1e-6


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a * b = p + e`` exactly (Dekker)."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` with one rounding (float64; emulated, exact but for rare double ties)."""
    p, e = _two_product(a, b)
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    return s + (t + e)


def _linear_coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for ``align_corners=False`` linear resizing."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def _torch_resize(a: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(t, size=(height, width), mode=mode, **kwargs)
    return out[0].permute(1, 2, 0).numpy()


def bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, C) float -> (height, width, C) float64, bilinear (``align_corners=False``, no
    antialias) in the official kernel's float64 arithmetic.

    Any kernel agrees with it to a few ulps, which only matters where a value (or a pixel's channel
    mean, which depth decoding truncates) is next to an integer: torch's kernel paints the image
    and the FMA chain repaints those pixels alone (the chain everywhere costs ~30x more)."""
    a = np.asarray(array, dtype=np.float64)
    out = _torch_resize(a, height, width, "bilinear")
    near = np.abs(out - np.round(out)) < _NEAR
    mean = out.mean(axis=2)
    ys, xs = np.nonzero(near.any(axis=2) | (np.abs(mean - np.round(mean)) < _NEAR))
    if ys.size == 0:
        return out
    r0, r1, ly = _linear_coords(a.shape[0], height)
    c0, c1, lx = _linear_coords(a.shape[1], width)
    hy1, wx1 = ly[ys, None], lx[xs, None]
    hy0, wx0 = 1.0 - hy1, 1.0 - wx1
    y0, y1, x0, x1 = r0[ys], r1[ys], c0[xs], c1[xs]
    # The official channels-last kernel: pre-multiplied weights, accumulated by fused multiply-adds.
    acc = a[y0, x0] * (hy0 * wx0)
    acc = fma(a[y0, x1], hy0 * wx1, acc)
    acc = fma(a[y1, x0], hy1 * wx0, acc)
    out[ys, xs] = fma(a[y1, x1], hy1 * wx1, acc)
    return out


def resize64(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """(h, w, C) float -> (height, width, C) float64 with ``mode`` bilinear, bicubic or nearest
    (``F.interpolate`` semantics, ``align_corners=False``, no antialias)."""
    a = np.asarray(array, dtype=np.float64)
    if a.shape[:2] == (height, width):
        return a.copy()
    if mode == "bilinear":
        return bilinear(a, height, width)
    return _torch_resize(a, height, width, mode)


def resize_back(
    painted: np.ndarray, height: int, width: int, mode: str, keep_aspect: bool = False
) -> np.ndarray:
    """A painted (S, S, C) square -> (height, width, C) float64: stretched back (the official
    default), or with ``keep_aspect`` resized to the padded square and cropped."""
    if not keep_aspect:
        return resize64(painted, height, width, mode)
    side = max(height, width)
    return resize64(painted, side, side, mode)[:height, :width]
