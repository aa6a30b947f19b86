"""Semantic segmentation: one palette colour per class, black = background/void (ignored).

Palette (official ``gen_color_ade20k_sem.py``): class ``c`` in 1..L uses index ``i = c - 1`` written
in base ``b`` as three digits ``(i // b**2, (i // b) % b, i % b)``; each digit ``d`` becomes the
channel value ``255 - d * (256 // b)`` (counting down from white). Class 0 is black and is never
predicted. Decoding is the nearest palette colour by L1 over the L class colours only.
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import (
    FG_THRESHOLD,
    Codec,
    as_label_map,
    as_painted,
    register,
    unique_colours,
)

# Pixels x classes per chunk when computing distances (bounds memory at ~16M float32).
_CHUNK_ELEMENTS = 1 << 22


def palette_base(num_classes: int) -> int:
    """The paper's base ``ceil(L ** (1/3))``, computed exactly (no floating-point cube root)."""
    b = 1
    while b**3 < num_classes:
        b += 1
    return b


def palette(num_classes: int, base: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours of classes 1..L (row ``i`` is class ``i + 1``)."""
    margin = 256 // base
    i = np.arange(num_classes)
    digits = np.stack([i // base**2, (i // base) % base, i % base], axis=1)
    return (255 - digits * margin).astype(np.uint8)


def l1_distances(painted: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W, K) float32 L1 distances of every pixel of an (H, W, 3) image to K colours."""
    p = as_painted(painted).reshape(-1, 3)
    c = colours.astype(np.float32)
    out = np.empty((p.shape[0], c.shape[0]), np.float32)
    step = max(1, _CHUNK_ELEMENTS // max(1, c.shape[0]))
    for s in range(0, p.shape[0], step):
        out[s : s + step] = np.abs(p[s : s + step, None, :] - c[None]).sum(axis=2)
    return out.reshape(painted.shape[0], painted.shape[1], c.shape[0])


def nearest_colour(painted: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W) int64 index of the nearest of K colours by L1 (ties: the lowest index)."""
    h, w = painted.shape[:2]
    # Painted images repeat few colours: classify each distinct colour once.
    flat, inverse, _ = unique_colours(painted)
    c = colours.astype(np.float32)
    idx = np.empty(flat.shape[0], np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, c.shape[0]))
    for s in range(0, flat.shape[0], step):
        d = np.abs(flat[s : s + step, None, :] - c[None]).sum(axis=2)
        idx[s : s + step] = d.argmin(axis=1)
    return idx[inverse].reshape(h, w)


class SemanticCodec(Codec):
    """Semantic segmentation with ``num_classes`` classes and palette base ``base``.

    ``encode``: (H, W) integer label map, 0 = background (black), 1..L = classes -> (H, W, 3) uint8.
    ``decode``: (H, W, 3) painted -> (H, W) int32 labels in 1..L.
    ``valid``: 0 on black (per channel element), 1 elsewhere.

    With ``background=True`` black is a class of its own (e.g. foreground/background tasks): it is
    a decode candidate (label 0 can be predicted) and a valid training target.
    """

    kind = "semseg"
    discrete = True

    def __init__(
        self,
        num_classes: int,
        base: int | None = None,
        name: str = "semseg",
        background: bool = False,
    ):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise PainterError(f"codec {name}: num_classes must be an integer >= 1")
        b = palette_base(num_classes) if base is None else base
        if not isinstance(b, int) or b < 1 or b**3 < num_classes or b > 255:
            raise PainterError(
                f"codec {name}: base {b} cannot hold {num_classes} classes (need b**3 >= L, b <= 255)"
            )
        self.name = name
        self.num_classes = num_classes
        self.base = b
        self.margin = 256 // b
        self.background = bool(background)

    def params(self) -> dict[str, Any]:
        if self.name != "semseg":
            return {}
        p: dict[str, Any] = {"num_classes": self.num_classes, "base": self.base}
        if self.background:
            p["background"] = True
        return p

    @cached_property
    def colours(self) -> np.ndarray:
        """(L, 3) uint8: row ``i`` is the colour of class ``i + 1``."""
        return palette(self.num_classes, self.base)

    @cached_property
    def _lut(self) -> np.ndarray:
        return np.concatenate([np.zeros((1, 3), np.uint8), self.colours])

    def encode(self, ground_truth: Any) -> np.ndarray:
        labels = as_label_map(ground_truth, f"{self.name} label map", self.num_classes)
        return self._lut[labels]

    def decode(self, painted: np.ndarray) -> np.ndarray:
        if self.background:
            return nearest_colour(painted, self._lut).astype(np.int32)
        return (nearest_colour(painted, self.colours) + 1).astype(np.int32)

    def distances(self, painted: np.ndarray) -> np.ndarray:
        """(H, W, L) float32 L1 distances to the class colours (index ``k`` = class ``k + 1``)."""
        return l1_distances(painted, self.colours)

    def check_target(self, target: np.ndarray) -> str | None:
        """A label target holds only black and the class colours: anything else (a photo, JPEG
        ringing, anti-aliased edges) would be learnt as colours no class has."""
        colours, inverse, counts = unique_colours(target)
        known = (colours[:, None, :] == self._lut[None].astype(np.float32)).all(axis=2).any(axis=1)
        if known.all():
            return None
        bad = int(counts[~known].sum())
        example = tuple(int(v) for v in colours[np.flatnonzero(~known)[0]])
        return (
            f"{bad} of {inverse.size} pixels are not colours of codec {self.name} "
            f"(e.g. {example}); a {self.num_classes}-class target holds only black and its "
            f"{self.num_classes} class colour(s)"
        )

    def valid(self, target: np.ndarray) -> np.ndarray:
        t = as_painted(target, f"{self.name} target")
        if self.background:
            return np.ones(t.shape, np.float32)
        return (t >= FG_THRESHOLD).astype(np.float32)


def coco_categories() -> list[dict[str, Any]]:
    """The 133 COCO panoptic categories in palette order (things 0..79, then stuff 80..132)."""
    text = resources.files("painter_cli").joinpath("data/panoptic_coco_categories.json").read_text()
    return json.loads(text)


def _semseg(num_classes: int, base: int | None = None, background: bool = False) -> SemanticCodec:
    return SemanticCodec(num_classes, base, background=background)


def _ade20k() -> SemanticCodec:
    return SemanticCodec(150, name="ade20k-semseg")


def _coco() -> SemanticCodec:
    # The official COCO palette hard-codes base 7 (margin 36), not the formula's 6.
    return SemanticCodec(133, base=7, name="coco-semseg")


register("semseg", _semseg)
register("ade20k-semseg", _ade20k)
register("coco-semseg", _coco)
