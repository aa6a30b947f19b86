"""Masks: exact counts, block shapes, the half-mask rate, determinism per seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from painter_cli.config import MaskSection
from painter_cli.errors import PainterError
from painter_cli.masking import MaskGenerator, block_mask, half_mask, mask_prompt


def test_half_mask_is_the_bottom_half():
    m = half_mask((56, 28))
    assert m.shape == (56, 28) and m.dtype == bool
    assert m[28:].all() and not m[:28].any()
    assert m.sum() == 784


@pytest.mark.parametrize("num", [784, 1176, 1, 1567])
def test_block_mask_has_the_exact_count(num):
    rng = np.random.default_rng(num)
    for _ in range(5):
        m = block_mask((56, 28), num, rng, min_block=16, max_block=392)
        assert m.shape == (56, 28) and m.dtype == bool
        assert int(m.sum()) == num


def test_block_mask_is_made_of_blocks():
    # 784 patches in blocks of >= 16: far fewer connected regions than scattered patches would
    # give, and the largest region is at least one minimal block.
    rng = np.random.default_rng(0)
    regions, largest = [], []
    for _ in range(20):
        m = block_mask((56, 28), 784, rng, min_block=16, max_block=392)
        labels, n = ndimage.label(m)
        regions.append(n)
        largest.append(np.bincount(labels.ravel())[1:].max())
    assert np.mean(regions) < 784 / 16
    assert min(largest) >= 16
    # A scattered random mask of the same count has hundreds of regions.
    scattered = np.zeros(56 * 28, bool)
    scattered[rng.choice(56 * 28, 784, replace=False)] = True
    assert ndimage.label(scattered.reshape(56, 28))[1] > 4 * np.mean(regions)


def test_generator_half_mask_rate_is_about_a_tenth():
    gen = MaskGenerator((56, 28), 784, min_block=16, max_block=392, half_prob=0.1)
    rng = np.random.default_rng(1)
    halves = sum(gen(rng)[1] for _ in range(2000))
    # Binomial(2000, 0.1): sd 13.4; 4 sd either side.
    assert 146 <= halves <= 254


def test_generator_is_deterministic_per_seed():
    gen = MaskGenerator((8, 4), 16, min_block=2, max_block=8, half_prob=0.1)
    a = [gen(np.random.default_rng(7))[0] for _ in range(3)]
    b = [gen(np.random.default_rng(7))[0] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    draws = {gen(np.random.default_rng(s))[0].tobytes() for s in range(20)}
    assert len(draws) > 10


def test_from_config_ratio_and_exact_count():
    assert MaskGenerator.from_config((56, 28), MaskSection(ratio=0.75)).num_masked == 1176
    g = MaskGenerator.from_config((56, 28), MaskSection(ratio=0.75, patches=784))
    assert (g.num_masked, g.max_block) == (784, 392)  # max_block 0: a quarter of the grid
    with pytest.raises(PainterError, match="does not fit"):
        MaskGenerator.from_config((8, 4), MaskSection(patches=40))
    with pytest.raises(PainterError, match="min_block"):
        MaskGenerator.from_config((8, 4), MaskSection(ratio=0.5, min_block=16))


def test_mask_prompt_masks_a_share_of_the_prompt_target():
    rng = np.random.default_rng(0)
    m = mask_prompt(half_mask((8, 4)), 0.25, rng)  # 16 prompt patches: 4 of them
    assert int(m[:4].sum()) == 4 and m[4:].all()
    assert not half_mask((8, 4))[:4].any()  # a new array; the input is untouched
    seen = {mask_prompt(half_mask((8, 4)), 0.25, rng)[:4].tobytes() for _ in range(20)}
    assert len(seen) > 10  # drawn, not fixed
    assert mask_prompt(half_mask((8, 4)), 1.0, rng).all()
    assert np.array_equal(mask_prompt(half_mask((8, 4)), 0.0, rng), half_mask((8, 4)))


def test_mask_prompt_tops_up_a_block_mask_and_draws_nothing_when_it_suffices():
    block = np.zeros((8, 4), bool)
    block[1:3, 0:3] = True  # 6 prompt patches masked already
    rng = np.random.default_rng(1)
    m = mask_prompt(block, 0.5, rng)  # 8 wanted: 2 more, the 6 kept
    assert int(m[:4].sum()) == 8 and m[block].all() and not m[4:].any()
    state = rng.bit_generator.state
    assert np.array_equal(mask_prompt(block, 0.25, rng), block)  # 4 wanted, 6 there
    assert rng.bit_generator.state == state
