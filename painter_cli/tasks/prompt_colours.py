"""Decoding a segmentation painting by the colours its prompt shows, not by a fixed palette.

A model trained with random colouring (SegGPT, ``painter_cli/tasks/recolor.py``) paints each class
in whatever colour the prompt's target gives it, so the painting is read back against the colours
present in the prompt target(s): every painted pixel goes to the nearest of them (L1). Black is
background, label 0. The prompt's other colours are numbered 1..K sorted by (R, G, B), the order
``recolor.target_colours`` uses; blended colours (resize or anti-aliasing edges, JPEG noise) are
not classes and are left out by three rules, all in 0..255 units:

- a colour must cover at least ``MIN_FRACTION`` of the prompt pixels (and at least one pixel);
- a colour within ``MERGE_DISTANCE`` (L-inf) of black or of a more frequent kept colour is that
  colour;
- a colour within ``MERGE_DISTANCE`` of the segment between two more frequent kept colours that
  has no interior pixel (one whose four neighbours share its colour) is their blend: resizing
  paints blends along edges, in bands one pixel wide per blend colour.

Prompt targets should be lossless (PNG): JPEG's chroma noise moves colours further than these
rules merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import unique_colours
from painter_cli.tasks.semantic import nearest_colour

MIN_FRACTION = 0.001
MERGE_DISTANCE = 8


def _as_targets(targets: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    items = [targets] if isinstance(targets, np.ndarray) else list(targets)
    if not items:
        raise PainterError("decoding by the prompt's colours needs a prompt target")
    for t in items:
        if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8:
            raise PainterError(
                f"a prompt target must be (H, W, 3) uint8 to read its colours, got {t.dtype} "
                f"{t.shape}"
            )
    return items


def _keys(rgb: np.ndarray) -> np.ndarray:
    """(...,) int64 keys ``R << 16 | G << 8 | B`` of (..., 3) colours."""
    c = rgb.astype(np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _interior_keys(target: np.ndarray) -> set[int]:
    """Keys of the colours that have a pixel whose four neighbours share its colour."""
    k = _keys(target)
    if k.shape[0] < 3 or k.shape[1] < 3:
        return set()
    c = k[1:-1, 1:-1]
    inner = (c == k[:-2, 1:-1]) & (c == k[2:, 1:-1]) & (c == k[1:-1, :-2]) & (c == k[1:-1, 2:])
    return set(np.unique(c[inner]).tolist())


def _near_segment(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether colour ``c`` lies within ``MERGE_DISTANCE`` (L-inf) of the segment a-b."""
    d = b - a
    t = float(np.clip(np.dot(c - a, d) / max(float(np.dot(d, d)), 1e-9), 0.0, 1.0))
    return float(np.abs(a + t * d - c).max()) <= MERGE_DISTANCE


def prompt_colours(
    targets: np.ndarray | Sequence[np.ndarray], min_fraction: float = MIN_FRACTION
) -> np.ndarray:
    """(K + 1, 3) uint8 colours of one or more (h, w, 3) uint8 prompt targets: row 0 black (label
    0, background), rows 1..K the prompt's class colours sorted by (R, G, B) (module docstring for
    which colours count)."""
    items = _as_targets(targets)
    flat = np.concatenate([t.reshape(-1, 1, 3) for t in items])
    colours, _, counts = unique_colours(flat)
    total = int(counts.sum())
    least = max(1, int(np.ceil(min_fraction * total)))
    interior = set().union(*(_interior_keys(t) for t in items))
    black = np.zeros(3, np.float32)
    kept: list[np.ndarray] = [black]
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] < least:
            break
        c = colours[k]
        if min(float(np.abs(c - q).max()) for q in kept) <= MERGE_DISTANCE:
            continue
        if int(_keys(c)) not in interior and any(
            _near_segment(c, kept[i], kept[j])
            for i in range(len(kept))
            for j in range(i + 1, len(kept))
        ):
            continue
        kept.append(c)
    classes = sorted(tuple(int(v) for v in c) for c in kept[1:])
    return np.array([(0, 0, 0), *classes], dtype=np.uint8).reshape(-1, 3)


def decode_by_prompt(
    painted: np.ndarray,
    prompt_target: np.ndarray | Sequence[np.ndarray],
    *,
    background: bool = True,
    colours: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) int64 labels of a painted (H, W, 3) image (uint8 or float 0..255): the index of the
    nearest (L1) colour of ``prompt_colours(prompt_target)`` (or of ``colours``, row 0 black).

    ``background=False``: black is unlabelled rather than a class (e.g. ADE20K's "other", never
    trained on), so it is never a candidate and labels are 1..K."""
    if colours is None:
        colours = prompt_colours(prompt_target)
    if background:
        return nearest_colour(painted, colours)
    if len(colours) < 2:
        raise PainterError(
            "the prompt target shows no class colour (only black)",
            "prompt with a target that paints at least one class",
        )
    return nearest_colour(painted, colours[1:]) + 1


def repaint_by_prompt(
    painted: np.ndarray,
    prompt_targets: np.ndarray | Sequence[np.ndarray],
    codec: Any,
    recoloured: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: a painting decoded by its prompts' colours, repainted in ``codec``'s own
    colours, so the codec's ``decode`` (and every scorer) reads it exactly. Each prompt colour
    stands for the class the codec decodes it to (the prompts are the codec's own targets), or,
    with ``recoloured = (colours, new)`` (``recolor.recolor_pair``: the prompts were repainted,
    ``new[j]`` showing the codec colour ``colours[j]``), for the class of its original colour."""
    if getattr(codec, "kind", None) != "semseg":
        raise PainterError(
            f"decoding by the prompt's colours applies to segmentation; codec {codec.name} is a "
            f"{codec.kind} codec",
            "drop --decode prompt",
        )
    background = bool(getattr(codec, "background", False))
    colours = prompt_colours(prompt_targets)
    labels = decode_by_prompt(painted, prompt_targets, background=background, colours=colours)
    if recoloured is not None:
        original, new = (np.asarray(c, dtype=np.uint8).reshape(-1, 3) for c in recoloured)
        back = dict(zip(map(tuple, new.tolist()), original.tolist(), strict=True))
        colours = np.array([back.get(tuple(c), c) for c in colours.tolist()], np.uint8)
    classes = np.asarray(codec.decode(colours[None]), dtype=np.int64)[0]
    if not background:
        classes[0] = 0  # black: never predicted, kept out of the class range
    return codec.encode(classes[labels])
