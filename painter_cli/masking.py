"""Patch masks on the target canvas: BEiT-style block-wise masks with an exact count, or the bottom half.

A mask is an (Hp, Wp) bool array over the target canvas's patch grid, True = masked (the model
replaces that target patch with the mask token and the loss is computed there). The input image
canvas is never masked. Every draw takes an explicit ``numpy.random.Generator``; nothing here
touches a global RNG, so a sample's mask is a function of the generator it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from painter_cli.errors import PainterError


def half_mask(grid: tuple[int, int]) -> np.ndarray:
    """The bottom half of an (Hp, Wp) grid masked (rows >= Hp // 2): the query's target, as at
    inference."""
    hp, wp = grid
    mask = np.zeros((hp, wp), dtype=bool)
    mask[hp // 2 :] = True
    return mask


def block_mask(
    grid: tuple[int, int],
    num_masked: int,
    rng: np.random.Generator,
    *,
    min_block: int = 16,
    max_block: int | None = None,
    min_aspect: float = 0.3,
) -> np.ndarray:
    """An (Hp, Wp) bool mask with exactly ``num_masked`` True patches, made of random rectangles.

    Each rectangle has an area drawn uniformly in [min_block, min(remaining, max_block)] patches
    and a log-uniform aspect ratio in [min_aspect, 1/min_aspect]; it is kept when it masks between
    1 and ``max_block`` new patches (10 tries per rectangle). When no rectangle adds anything, the
    count is corrected to exactly ``num_masked`` by masking or unmasking random patches.
    """
    hp, wp = grid
    total = hp * wp
    if not 0 <= num_masked <= total:
        raise PainterError(f"mask: cannot mask {num_masked} of {total} patches")
    if max_block is None or max_block <= 0:
        max_block = max(1, total // 4)
    min_block = max(1, min(min_block, max_block))
    log_ar = (math.log(min_aspect), math.log(1.0 / min_aspect))
    mask = np.zeros((hp, wp), dtype=bool)
    count = 0
    while count < num_masked:
        budget = min(num_masked - count, max_block)
        added = 0
        for _ in range(10):
            area = rng.uniform(min_block, max(budget, min_block))
            aspect = math.exp(rng.uniform(*log_ar))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if not (0 < h < hp and 0 < w < wp):
                continue
            top = int(rng.integers(0, hp - h + 1))
            left = int(rng.integers(0, wp - w + 1))
            region = mask[top : top + h, left : left + w]
            new = h * w - int(region.sum())
            if 0 < new <= budget:
                region[...] = True
                added = new
                break
        if added == 0:
            break
        count += added
    flat = mask.reshape(-1)
    if count > num_masked:
        on = np.flatnonzero(flat)
        flat[rng.choice(on, count - num_masked, replace=False)] = False
    elif count < num_masked:
        off = np.flatnonzero(~flat)
        flat[rng.choice(off, num_masked - count, replace=False)] = True
    return mask


def mask_prompt(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with the prompt's (top half's) target patches masked as well until at least
    ``round(fraction * prompt patches)`` of them are: the missing ones are drawn uniformly from
    the unmasked top patches (SegGPT-style partial prompt masking). Returns a new array; draws
    nothing when enough are masked already."""
    hp, wp = mask.shape
    top = mask[: hp // 2].reshape(-1)
    need = int(round(fraction * top.size)) - int(top.sum())
    out = mask.copy()
    if need > 0:
        flat = out[: hp // 2].reshape(-1)
        flat[rng.choice(np.flatnonzero(~top), need, replace=False)] = True
        out[: hp // 2] = flat.reshape(hp // 2, wp)
    return out


@dataclass(frozen=True)
class MaskGenerator:
    """Draws training masks: with probability ``half_prob`` the bottom half, else a block mask of
    exactly ``num_masked`` patches. ``grid`` is the target canvas's (Hp, Wp) patch grid."""

    grid: tuple[int, int]
    num_masked: int
    min_block: int = 16
    max_block: int = 0
    min_aspect: float = 0.3
    half_prob: float = 0.1

    @classmethod
    def from_config(cls, grid: tuple[int, int], mask_cfg) -> MaskGenerator:
        """Build from a ``config.MaskSection``: ``patches`` if > 0 else ``round(ratio * Hp * Wp)``."""
        total = grid[0] * grid[1]
        num = mask_cfg.patches if mask_cfg.patches > 0 else int(round(mask_cfg.ratio * total))
        if not 0 < num < total:
            raise PainterError(
                f"mask: {num} masked patches does not fit the {grid[0]}x{grid[1]} patch grid",
                hint="set mask.ratio in (0, 1) or mask.patches below the patch count",
            )
        max_block = mask_cfg.max_block if mask_cfg.max_block > 0 else max(1, total // 4)
        if mask_cfg.min_block > max_block:
            raise PainterError(
                f"mask: min_block {mask_cfg.min_block} > max_block {max_block} patches",
                hint="lower mask.min_block for a small patch grid",
            )
        return cls(
            grid=tuple(grid),
            num_masked=num,
            min_block=mask_cfg.min_block,
            max_block=max_block,
            min_aspect=mask_cfg.min_aspect,
            half_prob=mask_cfg.half_prob,
        )

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """One (Hp, Wp) bool mask and whether it is the half mask."""
        if rng.random() < self.half_prob:
            return half_mask(self.grid), True
        mask = block_mask(
            self.grid,
            self.num_masked,
            rng,
            min_block=self.min_block,
            max_block=self.max_block,
            min_aspect=self.min_aspect,
        )
        return mask, False
