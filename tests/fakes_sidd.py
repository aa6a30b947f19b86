"""A tiny fake SIDD tree in the official layout.

* ``SIDD_Medium_Srgb/Data/<scene folder>/NNNN_{GT,NOISY}_SRGB_{010,011}.PNG``: the clean image codes
  each pixel's position (R = x mod 256, G = y mod 256, B = 16*(x//256) + y//256), so any crop shows
  where it was taken; the noisy image is the clean one plus a known offset (mod 256).
* ``val/ValidationNoisyBlocksSrgb.mat`` and ``val/ValidationGtBlocksSrgb.mat``: MATLAB v5
  (scipy.io.savemat), uint8 (N, B, 256, 256, 3) under the official keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

NOISE = 37  # noisy = clean + NOISE (mod 256)

FOLDERS = {
    "0001_001_S6_00100_00060_3200_L": (280, 300),  # (H, W)
    "0010_001_N6_00800_00350_3200_L": (260, 270),
}


def position_image(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs % 256, ys % 256, 16 * (xs // 256) + ys // 256], -1).astype(np.uint8)


def crop_origin(crop: np.ndarray) -> tuple[int, int]:
    """(top, left) of a crop of a ``position_image``."""
    r, g, b = (int(v) for v in crop[0, 0])
    return g + 256 * (b % 16), r + 256 * (b // 16)


@dataclass
class SiddTruth:
    root: Path
    pairs: dict[str, tuple[int, int]] = field(default_factory=dict)  # GT key -> (H, W)
    noisy_blocks: np.ndarray | None = None
    gt_blocks: np.ndarray | None = None


def write_sidd(root: Path, blocks: tuple[int, int] = (2, 3)) -> SiddTruth:
    from scipy.io import savemat

    truth = SiddTruth(root=root)
    for folder, (h, w) in FOLDERS.items():
        d = root / "SIDD_Medium_Srgb" / "Data" / folder
        d.mkdir(parents=True, exist_ok=True)
        num = folder[:4]
        for capture in ("010", "011"):
            clean = position_image(h, w)
            noisy = (clean.astype(np.int32) + NOISE).astype(np.uint8)
            Image.fromarray(clean).save(d / f"{num}_GT_SRGB_{capture}.PNG")
            Image.fromarray(noisy).save(d / f"{num}_NOISY_SRGB_{capture}.PNG")
            truth.pairs[f"{folder}/{num}_GT_SRGB_{capture}.PNG"] = (h, w)
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (*blocks, 256, 256, 3), dtype=np.uint8)
    noisy = rng.integers(0, 256, (*blocks, 256, 256, 3), dtype=np.uint8)
    (root / "val").mkdir(parents=True, exist_ok=True)
    savemat(root / "val" / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    savemat(root / "val" / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": gt})
    truth.noisy_blocks, truth.gt_blocks = noisy, gt
    return truth
