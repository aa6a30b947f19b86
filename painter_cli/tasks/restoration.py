"""Low-level restoration (denoise, derain, low-light): the target is the clean RGB image itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from painter_cli.tasks.base import Codec, as_painted, register


class RestorationCodec(Codec):
    """``restoration``: identity on RGB.

    ``encode``: (H, W, 3) uint8 RGB (or float 0..255) -> uint8 copy (floats clipped to 0..255 and
    truncated). ``decode``: painted (H, W, 3) -> uint8, clipped and truncated like the official
    ``clip(0, 1) * 255 -> uint8``. ``valid``: all ones. ``discrete`` is False (bicubic resizing);
    the official training resized these targets with nearest, a side effect of its type test.
    """

    kind = "restoration"
    discrete = False

    def __init__(self) -> None:
        self.name = "restoration"

    def encode(self, ground_truth: Any) -> np.ndarray:
        if isinstance(ground_truth, np.ndarray) and ground_truth.dtype == np.uint8:
            as_painted(ground_truth, "restoration image")
            return ground_truth.copy()
        return self.decode_as(ground_truth, "restoration image")

    def decode(self, painted: np.ndarray) -> np.ndarray:
        return self.decode_as(painted, "painted image")

    @staticmethod
    def decode_as(image: Any, what: str) -> np.ndarray:
        p = as_painted(image, what)
        return np.floor(np.clip(p, 0.0, 255.0)).astype(np.uint8)


register("restoration", RestorationCodec)
