"""Random colouring: one mapping for both targets, black kept, separation, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from painter_cli.errors import PainterError
from painter_cli.tasks.recolor import random_palette, recolor_pair, separation, target_colours

WHITE, GREY, RED = (255, 255, 255), (128, 128, 128), (255, 0, 0)


def _targets():
    """A prompt target (white and grey) and a query target (white and red) on black."""
    a = np.zeros((6, 5, 3), np.uint8)
    a[0:2, 0:3] = WHITE
    a[4:6, 2:5] = GREY
    b = np.zeros((4, 7, 3), np.uint8)
    b[1:3, 1:4] = WHITE
    b[0, 6] = RED
    return a, b


def _linf(cols: np.ndarray) -> np.ndarray:
    c = cols.astype(np.int64)
    return np.abs(c[:, None] - c[None]).max(axis=2)


def test_separation_is_the_largest_margin_that_keeps_half_the_cube_free():
    assert [separation(n) for n in (1, 2, 5, 20, 150)] == [97, 79, 58, 37, 19]
    for n in (1, 3, 7, 40, 255):
        m = separation(n)
        assert (8 * n + 1) * m**3 <= 2**23 < (8 * n + 1) * (m + 1) ** 3


@pytest.mark.parametrize("n", [1, 2, 5, 20, 150])
def test_random_palette_is_separated_from_each_other_and_from_black(n):
    cols = random_palette(n, np.random.default_rng(n))
    assert cols.shape == (n, 3) and cols.dtype == np.uint8
    m = separation(n)
    d = _linf(cols) + np.eye(n, dtype=np.int64) * 256
    assert d.min() >= m
    assert cols.max(axis=1).min() >= m  # L-inf distance to black
    assert cols.min() >= 1  # no zero element: element-wise valid maps keep the whole pixel


def test_recolor_applies_one_mapping_to_both_targets_and_keeps_black():
    a, b = _targets()
    (ra, rb), colours, new = recolor_pair([a, b], np.random.default_rng(0))
    assert [tuple(c) for c in colours] == [GREY, RED, WHITE]  # sorted, black left out
    lut = {tuple(c): tuple(n) for c, n in zip(colours.tolist(), new.tolist(), strict=True)}
    for src, out in ((a, ra), (b, rb)):
        assert out.shape == src.shape and out.dtype == np.uint8
        black = (src == 0).all(axis=2)
        assert (out[black] == 0).all()
        for c, n in lut.items():
            assert (out[(src == c).all(axis=2)] == n).all()
    # White is in both targets: the same new colour in both.
    assert tuple(ra[0, 0]) == tuple(rb[1, 1]) == lut[WHITE]
    assert len(set(lut.values())) == 3 and (0, 0, 0) not in lut.values()


def test_recolor_is_reproducible_from_the_seed():
    a, b = _targets()
    one = recolor_pair([a, b], np.random.default_rng(7))[0]
    two = recolor_pair([a, b], np.random.default_rng(7))[0]
    other = recolor_pair([a, b], np.random.default_rng(8))[0]
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    assert not np.array_equal(one[0], other[0])


def test_all_black_targets_stay_black_and_bad_input_is_refused():
    z = np.zeros((3, 3, 3), np.uint8)
    (out,), colours, _ = recolor_pair([z], np.random.default_rng(0))
    assert len(colours) == 0 and not out.any()
    assert target_colours([z]).shape == (0, 3)
    with pytest.raises(PainterError, match=r"\(H, W, 3\) uint8"):
        recolor_pair([z.astype(np.float32)], np.random.default_rng(0))
    with pytest.raises(PainterError, match="cannot be drawn 200 apart"):
        random_palette(3, np.random.default_rng(0), margin=200)
