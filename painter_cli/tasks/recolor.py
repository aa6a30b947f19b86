"""Random colouring (SegGPT): repaint a canvas's targets through one random colour mapping.

A segmentation target paints each class in a fixed palette colour, so a model can learn the
palette instead of reading the prompt. Random colouring draws a fresh mapping per training canvas
and applies it to *both* targets (prompt and query): the model can only paint the query's classes
in the right colours by reading them off the prompt. Black (background/void) always stays black.

Colours are separated in L-inf distance (the largest per-channel difference, 0..255 units): every
two mapped colours, and every mapped colour and black, differ by at least ``separation(n)`` in
some channel. No channel of a mapped colour is 0: a codec's element-wise ``valid`` rule (0 on
black elements) then keeps all three elements of every coloured pixel, as with the official
palettes. The mapping acts on exact colours, so targets must be nearest-resized (discrete codecs
are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from painter_cli.errors import PainterError

# Codec kinds whose targets may be recoloured: one flat colour per class, nothing in the colour
# but the class identity (instance and keypoint colours encode positions, depth encodes values).
RECOLOR_KINDS = frozenset({"semseg"})


def separation(n: int) -> int:
    """The guaranteed minimum L-inf distance (0..255 units) of ``n`` random colours.

    Chosen so that the colours already drawn plus black rule out at most half of the RGB cube
    (each colour forbids a cube of side < 2m around it, black the cube [0, m)^3):
    ``(8n + 1) m^3 <= 256^3 / 2``. So every candidate is accepted with probability >= 1/2 and
    drawing always ends. n = 1: 97, 2: 79, 5: 58, 20: 37, 150: 19.
    """
    if n < 1:
        return 256
    m = int(256 / (2 * (8 * n + 1)) ** (1 / 3))
    while (8 * n + 1) * m**3 > 256**3 // 2:  # guard against the float cube root rounding up
        m -= 1
    return max(1, m)


def random_palette(n: int, rng: np.random.Generator, margin: int | None = None) -> np.ndarray:
    """(n, 3) uint8 random colours, pairwise and from black at least ``margin`` apart in L-inf
    (default ``separation(n)``), channels in 1..255. Colours are drawn uniformly from the allowed
    part of the cube (rejection sampling), so the result is a function of ``rng``'s state."""
    if n < 0:
        raise PainterError(f"random_palette: n must be >= 0, got {n}")
    m = separation(n) if margin is None else int(margin)
    if margin is not None and (8 * n + 1) * m**3 > 256**3 // 2:
        raise PainterError(
            f"random_palette: {n} colours cannot be drawn {m} apart",
            hint=f"use at most separation({n}) = {separation(n)}",
        )
    out = np.zeros((n, 3), np.int32)
    k = 0
    while k < n:
        for c in rng.integers(1, 256, size=(2 * (n - k) + 8, 3)):
            if c.max() < m:  # too close to black
                continue
            if k and np.abs(out[:k] - c).max(axis=1).min() < m:
                continue
            out[k] = c
            k += 1
            if k == n:
                break
    return out.astype(np.uint8)


def target_colours(targets: Sequence[np.ndarray]) -> np.ndarray:
    """(U, 3) uint8 distinct non-black colours of (H, W, 3) uint8 ``targets``, sorted by
    (R, G, B)."""
    return _colours(np.unique(np.concatenate([_key(t).reshape(-1) for t in targets])))


def recolor_pair(
    targets: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Repaint ``targets`` ((H_i, W_i, 3) uint8 each; the prompt's and the query's) through one
    random mapping: ``(repainted targets, colours (U, 3), new colours (U, 3))`` with
    ``colours[j]`` painted as ``new[j]`` everywhere and black kept. The U distinct non-black
    colours of all targets get ``random_palette(U, rng)`` in sorted colour order."""
    keys = [_key(t).reshape(-1) for t in targets]
    # Colours are exact values (nearest-resized targets): one sort finds every pixel's colour.
    uniq, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    colours = _colours(uniq)
    new = random_palette(len(colours), rng)
    black = len(uniq) - len(colours)  # 1 when black (key 0, sorted first) is present
    lut = np.concatenate([np.zeros((black, 3), np.uint8), new])
    out, start = [], 0
    for t, k in zip(targets, keys, strict=True):
        out.append(lut[inverse[start : start + k.size]].reshape(t.shape))
        start += k.size
    return out, colours, new


def _colours(keys: np.ndarray) -> np.ndarray:
    keys = keys[keys > 0]  # black is key 0
    return np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)


def _check(t: np.ndarray) -> np.ndarray:
    if not isinstance(t, np.ndarray) or t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] != 3:
        raise PainterError(
            "recolor: expected (H, W, 3) uint8 targets, got "
            f"{getattr(t, 'shape', None)} {getattr(t, 'dtype', type(t).__name__)}"
        )
    return t


def _key(t: np.ndarray) -> np.ndarray:
    """(H, W) int32 colour keys R << 16 | G << 8 | B (sorted keys = sorted (R, G, B) rows)."""
    t = _check(t)
    return (t[..., 0].astype(np.int32) << 16) | (t[..., 1].astype(np.int32) << 8) | t[..., 2]
