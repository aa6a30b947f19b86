"""tasks/prompt_colours.py: decoding a segmentation painting by the colours of its prompt."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from painter_cli.errors import PainterError
from painter_cli.tasks import get_codec
from painter_cli.tasks.prompt_colours import decode_by_prompt, prompt_colours, repaint_by_prompt


def _random_colours(rng: np.random.Generator, n: int, apart: int = 60) -> np.ndarray:
    """(n, 3) uint8 colours at least ``apart`` (L-inf) from each other and from black."""
    out: list[np.ndarray] = []
    while len(out) < n:
        c = rng.integers(0, 256, 3)
        if c.max() >= apart and all(np.abs(c - o).max() >= apart for o in out):
            out.append(c)
    return np.array(out, np.uint8)


def _blocks(rng: np.random.Generator, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w) labels 0..n, every label present (a block of each, on a random background)."""
    labels = rng.integers(0, n + 1, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)
    labels[:8, : 8 * (n + 1)] = np.arange(n + 1).repeat(8)[None]
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_a_random_coloured_label_map_painted_with_noise(seed):
    rng = np.random.default_rng(seed)
    lut = np.concatenate([np.zeros((1, 3), np.uint8), _random_colours(rng, 5)])
    prompt = lut[_blocks(rng, 5)]
    query = _blocks(rng, 5)
    painted = np.clip(
        lut[query].astype(np.int64) + rng.integers(-10, 11, (*query.shape, 3)), 0, 255
    )
    labels = decode_by_prompt(painted.astype(np.float32), prompt)
    colours = prompt_colours(prompt)
    # label k is the k-th prompt colour: black first, then sorted by (R, G, B)
    assert colours[0].tolist() == [0, 0, 0]
    assert colours[1:].tolist() == sorted(lut[1:].tolist())
    np.testing.assert_array_equal(colours[labels], lut[query])
    # uint8 input decodes the same
    np.testing.assert_array_equal(decode_by_prompt(painted.astype(np.uint8), prompt), labels)


def test_black_is_label_zero_even_when_the_prompt_has_none():
    prompt = np.zeros((8, 8, 3), np.uint8)
    prompt[:] = (200, 30, 30)
    prompt[4:] = (30, 30, 200)
    assert prompt_colours(prompt).tolist() == [[0, 0, 0], [30, 30, 200], [200, 30, 30]]
    painted = np.array([[[5, 5, 5], [190, 40, 20], [20, 20, 250]]], np.float32)
    assert decode_by_prompt(painted, prompt).tolist() == [[0, 2, 1]]
    # black unlabelled: never a candidate
    assert decode_by_prompt(painted, prompt, background=False).tolist() == [[1, 2, 1]]
    with pytest.raises(PainterError, match="no class colour"):
        decode_by_prompt(painted, np.zeros((4, 4, 3), np.uint8), background=False)


def test_resize_blends_jpeg_noise_and_stray_pixels_are_not_classes():
    labels = np.zeros((64, 64), np.int64)
    labels[8:40, 8:40] = 1
    labels[30:60, 36:62] = 2
    lut = np.array([[0, 0, 0], [250, 200, 40], [40, 90, 230]], np.uint8)
    big = lut[labels]
    # bilinear downsizing blends every edge into colours between two classes
    small = np.asarray(Image.fromarray(big).resize((45, 45), Image.BILINEAR))
    assert len(np.unique(small.reshape(-1, 3), axis=0)) > 3
    assert prompt_colours(small).tolist() == sorted(lut.tolist())
    # slight noise on every pixel (a lossy save): the variants of a colour are that colour
    rng = np.random.default_rng(0)
    noisy = np.clip(big.astype(np.int64) + rng.integers(-3, 4, big.shape), 0, 255)
    got = prompt_colours(noisy.astype(np.uint8)).astype(int)
    assert len(got) == 3 and np.abs(got - np.array(sorted(lut.tolist()))).max() <= 3
    # a few stray pixels (under 0.1%) are no class
    stray = big.copy()
    stray[0, 0] = stray[63, 63] = (120, 255, 120)
    assert prompt_colours(stray).tolist() == sorted(lut.tolist())
    # several prompts: the union of their colours
    other = np.full((8, 8, 3), (10, 250, 10), np.uint8)
    assert prompt_colours([big, other]).tolist() == sorted([*lut.tolist(), [10, 250, 10]])


def test_repaint_by_prompt_gives_codec_colours():
    rng = np.random.default_rng(3)
    codec = get_codec("ade20k-semseg")
    truth = rng.integers(1, 151, (6, 5)).repeat(4, 0).repeat(4, 1)
    prompt = codec.encode(truth)  # the prompt shows (some of) the codec's colours
    painted = np.clip(prompt.astype(np.int64) + rng.integers(-6, 7, prompt.shape), 0, 255)
    out = repaint_by_prompt(painted.astype(np.float32), [prompt], codec)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(codec.decode(out), truth)
    # a background codec: black is a class (0)
    fg = get_codec("semseg", num_classes=1, base=2, background=True)
    mask = np.zeros((8, 8), np.int64)
    mask[2:6, 2:6] = 1
    grey = np.where(fg.encode(mask) > 0, 230, 20).astype(np.float32)
    np.testing.assert_array_equal(fg.decode(repaint_by_prompt(grey, fg.encode(mask), fg)), mask)
    with pytest.raises(PainterError, match="applies to segmentation"):
        repaint_by_prompt(painted, [prompt], get_codec("nyuv2-depth"))


def test_repaint_by_prompt_reads_recoloured_prompts_as_their_original_classes():
    from painter_cli.tasks.recolor import recolor_pair

    rng = np.random.default_rng(4)
    codec = get_codec("ade20k-semseg")
    truth = rng.integers(1, 151, (5, 6)).repeat(4, 0).repeat(4, 1)
    (shown,), colours, new = recolor_pair([codec.encode(truth)], rng)
    assert not (shown == codec.encode(truth)).all()  # other colours than the palette's
    painted = np.clip(shown.astype(np.int64) + rng.integers(-6, 7, shown.shape), 0, 255)
    out = repaint_by_prompt(painted.astype(np.float32), [shown], codec, (colours, new))
    np.testing.assert_array_equal(codec.decode(out), truth)
