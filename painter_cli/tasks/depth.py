"""Monocular depth (NYUv2): depth in [0, 10] m painted as 3 equal gray channels, 0 = invalid."""

from __future__ import annotations

from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import DEPTH_THRESHOLD, Codec, as_painted, register

MAX_DEPTH_M = 10.0


class DepthCodec(Codec):
    """``nyuv2-depth``: gray = ``floor(clip(depth_m * 25.5, 0, 255))`` on all three channels.

    ``encode`` takes an (H, W) depth map: float metres, or uint16 millimetres (the NYU PNGs; the
    official conversion ``mm / 10000 * 255`` then truncation). 0 (and NaN) means missing depth and
    paints 0; depths beyond 10 m clip to 255. ``decode`` returns float32 (H, W) metres: the mean of
    the three channels times 10 / 255.
    """

    kind = "depth"
    discrete = False

    def __init__(self) -> None:
        self.name = "nyuv2-depth"

    def encode(self, ground_truth: Any) -> np.ndarray:
        d = ground_truth
        what = "depth map"
        if not isinstance(d, np.ndarray):
            raise PainterError(f"{what}: expected a numpy array, got {type(d).__name__}")
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[:, :, 0]
        if d.ndim != 2 or d.size == 0:
            raise PainterError(f"{what}: expected an (H, W) array, got shape {d.shape}")
        if d.dtype == np.uint16:
            # Same float64 operation order as the official loader, so the truncation agrees.
            gray = d.astype(np.float64) / 10000.0 * 255.0
        elif np.issubdtype(d.dtype, np.floating):
            d = np.nan_to_num(d.astype(np.float64), nan=0.0)
            if (d < 0).any() or np.isinf(d).any():
                raise PainterError(f"{what}: depths must be finite metres >= 0")
            gray = d * 25.5
        else:
            raise PainterError(
                f"{what}: expected float metres or uint16 millimetres, got dtype {d.dtype}"
            )
        gray = np.floor(np.clip(gray, 0.0, 255.0)).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)

    def decode(self, painted: np.ndarray) -> np.ndarray:
        p = as_painted(painted)
        return (p.mean(axis=2) * (MAX_DEPTH_M / 255.0)).astype(np.float32)

    def valid(self, target: np.ndarray) -> np.ndarray:
        t = as_painted(target, "depth target")
        return (t >= DEPTH_THRESHOLD).astype(np.float32)


register("nyuv2-depth", DepthCodec)
