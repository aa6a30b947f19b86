"""Dead-leaves and 1/f scenes: determinism, shapes, and the statistics that photographs have."""

from __future__ import annotations

import numpy as np
import pytest

from painter_cli.sources.deadleaves import (
    LEAF_SHAPES,
    PHOTO_STATISTICS_64,
    _Leaves,
    _leaves,
    dead_leaves,
    luminance,
    pink_noise,
    pink_scene,
    powerlaw_radii,
    radial_power_slope,
    scene_statistics,
)
from painter_cli.sources.synthetic import clean_scene


def _scenes(fn, n=20, size=64, **kw):
    return [fn(np.random.default_rng(i), size, **kw) for i in range(n)]


def _mean_stat(images, key):
    return float(np.mean([scene_statistics(im)[key] for im in images]))


@pytest.mark.parametrize("fn", [dead_leaves, pink_scene])
@pytest.mark.parametrize("size", [16, 64, 100])
def test_scenes_are_uint8_and_a_function_of_the_seed(fn, size):
    a = fn(np.random.default_rng(7), size)
    b = fn(np.random.default_rng(7), size)
    c = fn(np.random.default_rng(8), size)
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_leaves_cover_every_pixel_front_to_back():
    size = 48
    img = np.full((size, size, 3), np.nan, np.float32)
    covered = np.zeros((size, size), bool)
    textures = np.zeros((3, size, size, 3), np.float32)
    _leaves(np.random.default_rng(0), size, 1.0, size, textures, None, img, covered)
    assert covered.all() and np.isfinite(img).all()


def test_the_front_leaf_hides_the_ones_behind():
    leaves = _Leaves(np.random.default_rng(0), 2, 32, 1.0, 32.0)
    leaves.radius[:] = [6.0, 12.0]  # a small leaf in front of a large one, same centre
    leaves.centre[:] = 16.0
    leaves.shape[:] = 0
    pixel, leaf = leaves.rasterise(np.zeros(32 * 32, bool))
    first = {}
    for p, i in zip(pixel, leaf, strict=True):
        first.setdefault(int(p), int(i))
    centre = 16 * 32 + 16
    assert first[centre] == 0  # rasterised leaf by leaf: the first hit is the front one
    assert sum(1 for i in first.values() if i == 0) == pytest.approx(np.pi * 36, rel=0.1)


@pytest.mark.parametrize("shape", ["disc", "ellipse", "rectangle"])
def test_leaf_shapes_have_the_area_of_their_disc(shape):
    leaves = _Leaves(np.random.default_rng(1), 1, 64, 1.0, 64.0)
    leaves.radius[:] = 15.0
    leaves.centre[:] = 32.0
    leaves.shape[:] = LEAF_SHAPES.index(shape)
    leaves.aspect[:] = 0.5
    pixel, _ = leaves.rasterise(np.zeros(64 * 64, bool))
    assert len(pixel) == pytest.approx(np.pi * 15**2, rel=0.04)  # 707 px


def test_polygons_are_inscribed_in_their_disc():
    leaves = _Leaves(np.random.default_rng(2), 1, 64, 1.0, 64.0)
    leaves.radius[:] = 20.0
    leaves.centre[:] = 32.0
    leaves.shape[:] = LEAF_SHAPES.index("polygon")
    leaves.sides[:] = 4
    pixel, _ = leaves.rasterise(np.zeros(64 * 64, bool))
    assert len(pixel) == pytest.approx(2 * 20**2, rel=0.04)  # a square of diagonal 40: 800 px


def test_radii_follow_r_to_the_minus_3_at_every_scale():
    radii = powerlaw_radii(np.random.default_rng(0), 400_000, 1.0, 256.0)
    assert radii.min() >= 1.0 and radii.max() <= 256.0
    for a in (1.0, 4.0, 16.0):  # 4x as many in [a, 2a] as in [2a, 4a], whatever a
        low = np.count_nonzero((radii >= a) & (radii < 2 * a))
        high = np.count_nonzero((radii >= 2 * a) & (radii < 4 * a))
        assert low / high == pytest.approx(4.0, rel=0.1)
    flat = powerlaw_radii(np.random.default_rng(0), 200_000, 1.0, 256.0, alpha=2.0)
    low = np.count_nonzero((flat >= 4) & (flat < 8))
    assert low / np.count_nonzero((flat >= 8) & (flat < 16)) == pytest.approx(2.0, rel=0.05)


def test_power_slope_of_known_spectra():
    rng = np.random.default_rng(0)
    white = [radial_power_slope(pink_noise(rng, 64, exponent=0.0)[..., 0]) for _ in range(10)]
    pink = [radial_power_slope(pink_noise(rng, 64)[..., 0]) for _ in range(10)]
    steep = [radial_power_slope(pink_noise(rng, 64, exponent=1.5)[..., 0]) for _ in range(10)]
    assert np.mean(white) == pytest.approx(0.0, abs=0.1)
    assert np.mean(pink) == pytest.approx(-2.0, abs=0.1)
    assert np.mean(steep) == pytest.approx(-3.0, abs=0.15)


def test_pink_noise_is_normalised():
    field = pink_noise(np.random.default_rng(3), 32, 2)
    assert field.shape == (32, 32, 2) and field.dtype == np.float32
    np.testing.assert_allclose(field.mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(field.std(axis=(0, 1)), 1.0, atol=1e-4)


def test_sharp_dead_leaves_have_the_f_minus_2_spectrum_and_clean_scene_does_not():
    # Scale-invariant leaves (r^-3 down to 1 px), no depth blur: the classic -2.
    leaves = _scenes(dead_leaves, rmin=1.0, blur_share=0.0)
    slope = np.mean([radial_power_slope(luminance(im)) for im in leaves])
    clean = np.mean([radial_power_slope(luminance(im)) for im in _scenes(clean_scene)])
    assert slope == pytest.approx(-2.0, abs=0.25)  # measured -2.08
    assert abs(clean + 2.0) > abs(slope + 2.0) + 0.2  # measured -2.46


@pytest.mark.parametrize("key", ["slope", "slope_high", "contrast"])
def test_dead_leaves_are_closer_to_photographs_than_clean_scene(key):
    photo = PHOTO_STATISTICS_64[key]
    leaves = _mean_stat(_scenes(dead_leaves), key)
    clean = _mean_stat(_scenes(clean_scene), key)
    assert abs(leaves - photo) < abs(clean - photo)
    if key == "contrast":  # measured 59.6 and 29.4 against 52.1
        assert 0.75 * photo < leaves < 1.25 * photo and clean < 0.6 * photo
    else:  # measured -2.64 / -3.36 against -2.68 / -3.22 (clean_scene -2.46 / -2.40)
        assert leaves == pytest.approx(photo, abs=0.3)
