"""Clean scenes with the statistics of photographs: the dead-leaves model and 1/f (pink) noise.

The suite's ``clean_scene`` (flat shapes on smooth fields) has the wrong statistics: a model
trained on it learns to flatten images, which harms real photographs. Two generators fix that:

* ``pink_noise``: Gaussian noise whose amplitude spectrum falls as 1/f (power ~ f^-2), the
  average spectrum of natural images.
* ``dead_leaves``: opaque "leaves" (discs, ellipses, rectangles, polygons) fall on top of each
  other until the image is covered; radii follow the scale-invariant density r^-3 between
  ``rmin`` and ``rmax``, so occlusion edges appear at every scale and the luminance power spectrum
  falls close to f^-2. Leaves are filled with a colour plus a 1/f texture or stripes, and a share
  of scenes has its back layers blurred, as a lens focused on the front.
* ``pink_scene``: a colour plus pink noise, a texture-only scene.

``scene_statistics`` measures what photographs share (spectrum slope, fine-detail slope,
contrast); ``PHOTO_STATISTICS_64`` holds the values of real photographs at 64 px.

Achddou, Gousseau and Ladjal ("Synthetic images as a regularity prior for image restoration
neural networks", SSVM 2021) train denoisers on dead-leaves images alone (radii r^-3, colours
sampled per leaf, depth-of-field blur) and come within about 1 dB of training on photographs.
Everything here is plain numpy on one ``numpy.random.Generator``: the same generator state gives
the same image.
"""

from __future__ import annotations

import numpy as np

ALPHA = 3.0  # radius density exponent: r^-3 is scale invariant in 2-D
LEAF_SHAPES = ("disc", "ellipse", "rectangle", "polygon")


def powerlaw_radii(
    rng: np.random.Generator, n: int, rmin: float, rmax: float, alpha: float = ALPHA
) -> np.ndarray:
    """(n,) float64 radii in px with density proportional to r^-alpha on [rmin, rmax].

    Sampled by inverting the CDF. With alpha = 3 the count of radii in [a, 2a] is 4x the count in
    [2a, 4a] at every a (the ratio is 2^(alpha - 1)): no scale is preferred.
    """
    if not 0 < rmin < rmax:
        raise ValueError(f"need 0 < rmin < rmax, got {rmin}, {rmax}")
    u = rng.uniform(0.0, 1.0, n)
    if alpha == 1.0:
        return rmin * (rmax / rmin) ** u
    e = 1.0 - alpha
    lo, hi = rmin**e, rmax**e
    return (lo + u * (hi - lo)) ** (1.0 / e)


def pink_noise(
    rng: np.random.Generator, size: int, channels: int = 1, exponent: float = 1.0
) -> np.ndarray:
    """(size, size, channels) float32, zero mean and unit std per channel, whose amplitude
    spectrum falls as 1/f^exponent (exponent 1: power ~ f^-2, as photographs). Periodic."""
    white = rng.standard_normal((channels, size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0  # the mean is removed below; avoid dividing by zero
    spectrum = np.fft.rfft2(white) / f**exponent
    spectrum[:, 0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(size, size))
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-12
    return np.moveaxis(field, 0, -1).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, C) float -> the same shape blurred by a Gaussian of ``sigma`` px (reflect edges)."""
    if sigma <= 0:
        return img
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    out = img.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for k, wk in enumerate(w):
            acc += wk * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def leaf_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float 0..255: luminances with a moderate chroma, as most surfaces in photographs
    (saturated colours are rare; uniform RGB would make most leaves garish)."""
    grey = rng.uniform(0.04, 0.96, (n, 1))
    hue = rng.uniform(30, 225, (n, 3)) / 255.0
    saturation = rng.beta(1.2, 2.5, (n, 1))
    rgb = grey + saturation * (hue - hue.mean(axis=1, keepdims=True))
    return 255.0 * np.clip(rgb, 0.0, 1.0)


class _Leaves:
    """``n`` leaves' parameters, drawn at once: radius (px), centre (px), shape, rotation, aspect
    ratio (minor/major), polygon sides, colour and fill (kind 0 flat, 1 pink texture, 2 stripes;
    texture index and offset, amplitude; stripe frequency in cycles/px, direction and phase)."""

    def __init__(self, rng: np.random.Generator, n: int, size: int, rmin: float, rmax: float):
        self.n = n
        self.radius = powerlaw_radii(rng, n, rmin, rmax)
        self.centre = rng.uniform(0, size, (n, 2))
        self.shape = rng.integers(0, len(LEAF_SHAPES), n)
        self.angle = rng.uniform(0, np.pi, n)
        self.aspect = rng.uniform(0.3, 1.0, n)
        self.sides = rng.integers(3, 7, n)
        self.colour = leaf_colours(rng, n)
        self.fill = np.searchsorted([0.25, 0.85], rng.uniform(0, 1, n), side="right")
        self.texture = rng.integers(0, 3, n)
        self.offset = rng.integers(0, size, (n, 2))
        self.amp = np.where(self.fill == 1, rng.uniform(5, 45, n), rng.uniform(10, 50, n))
        self.freq = rng.uniform(0.05, 0.4, n)
        self.theta = rng.uniform(0, np.pi, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)

    def rasterise(self, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pixel, leaf)``: flat pixel indices (y * size + x) not yet ``covered`` (size * size,
        bool) inside each leaf, with the leaf's index, leaf by leaf in order (so the first hit of
        a pixel is its front-most leaf). All leaves at once over their bounding boxes: with radii
        r^-3 most boxes are a few pixels."""
        size = int(round(np.sqrt(covered.size)))
        cx, cy = self.centre[:, 0], self.centre[:, 1]
        r, q = self.radius, self.aspect
        reach = np.select(  # the circumscribed radius: an ellipse or a rectangle reach past r
            [self.shape == 1, self.shape == 2],
            [r / np.sqrt(q), r * np.sqrt(np.pi) / 2 * np.sqrt(1 / q + q)],
            r,
        )
        x0 = np.clip(np.floor(cx - reach), 0, size).astype(np.int64)
        x1 = np.clip(np.floor(cx + reach) + 2, 0, size).astype(np.int64)
        y0 = np.clip(np.floor(cy - reach), 0, size).astype(np.int64)
        y1 = np.clip(np.floor(cy + reach) + 2, 0, size).astype(np.int64)
        w, h = np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)
        counts = w * h
        leaf = np.repeat(np.arange(self.n), counts)
        local = np.arange(len(leaf)) - np.repeat(np.cumsum(counts) - counts, counts)
        px = x0[leaf] + local % w[leaf]
        py = y0[leaf] + local // w[leaf]
        pixel = py * size + px
        keep = ~covered[pixel]  # most of a late leaf's box is already covered: test only the rest
        pixel, leaf, px, py = pixel[keep], leaf[keep], px[keep], py[keep]
        dx, dy = px + 0.5 - cx[leaf], py + 0.5 - cy[leaf]
        rr, q, shape = r[leaf], self.aspect[leaf], self.shape[leaf]
        inside = dx * dx + dy * dy <= rr * rr  # discs (shape 0); the others below
        other = np.flatnonzero(shape != 0)
        dx, dy, rr, q, shape, lo = (a[other] for a in (dx, dy, rr, q, shape, leaf))
        c, s = np.cos(self.angle[lo]), np.sin(self.angle[lo])
        u, v = c * dx + s * dy, -s * dx + c * dy
        test = u * u * q + v * v / q <= rr * rr  # an ellipse of the disc's area
        rect = shape == 2  # a rectangle of the disc's area
        half = rr[rect] * np.sqrt(np.pi) / 2
        sq = np.sqrt(q[rect])
        test[rect] = (np.abs(u[rect]) * sq <= half) & (np.abs(v[rect]) <= half * sq)
        poly = shape == 3  # a regular k-gon inscribed in the disc
        sector = 2 * np.pi / self.sides[lo[poly]]
        polar = (np.arctan2(v[poly], u[poly]) % sector) - sector / 2
        test[poly] = np.hypot(u[poly], v[poly]) * np.cos(polar) <= rr[poly] * np.cos(sector / 2)
        inside[other] = test
        return pixel[inside], leaf[inside]

    def paint(self, pixel: np.ndarray, leaf: np.ndarray, size: int, textures: np.ndarray):
        """(n, 3) float 0..255: the fills at flat ``pixel`` indices of their ``leaf``: its
        colour, flat or plus a 1/f texture (a window of one of the scene's pink fields,
        luminance-dominated) or stripes."""
        ys, xs = pixel // size, pixel % size
        out = self.colour[leaf].astype(np.float32)
        fill, amp = self.fill[leaf], self.amp[leaf][:, None]
        tex = textures[
            self.texture[leaf],
            (ys + self.offset[leaf, 0]) % size,
            (xs + self.offset[leaf, 1]) % size,
        ]
        t = self.theta[leaf]
        wave = np.sin(
            2 * np.pi * self.freq[leaf] * (xs * np.cos(t) + ys * np.sin(t)) + self.phase[leaf]
        )
        out += np.where(fill[:, None] == 1, amp * (0.8 * tex[:, :1] + 0.2 * tex), 0.0)
        out += np.where(fill[:, None] == 2, amp * wave[:, None], 0.0)
        return out


def _leaves(
    rng: np.random.Generator,
    size: int,
    rmin: float,
    rmax: float,
    textures: np.ndarray,
    count: int | None,
    img: np.ndarray,
    covered: np.ndarray,
) -> None:
    """Drop leaves front to back into ``img`` (size, size, 3) float where ``covered`` (size,
    size) is False: ``count`` leaves, or (None) until the image is covered. Front to back is the
    same law as back to front for independent leaves, and stops as soon as the image is full.
    Once 95 % is covered the last leaves are centred on uncovered pixels: otherwise hundreds more
    fall on covered ground to fill the last specks (the look is the same, the time a fraction)."""
    flat_img, flat_cov = img.reshape(-1, 3), covered.reshape(-1)
    batch = count if count is not None else 128
    while True:
        free = np.flatnonzero(~flat_cov)
        if count is None and len(free) < 0.05 * size * size:
            pick = free[rng.integers(0, len(free), min(batch, len(free)))]
            leaves = _Leaves(rng, len(pick), size, rmin, rmax)
            # On a pixel centre: every shape holds its own centre, so each leaf covers one pixel.
            leaves.centre = np.stack([pick % size, pick // size], 1) + 0.5
        else:
            leaves = _Leaves(rng, batch, size, rmin, rmax)
        pixel, leaf = leaves.rasterise(flat_cov)
        pixel, first = np.unique(pixel, return_index=True)  # leaf order: the front-most hit
        flat_img[pixel] = leaves.paint(pixel, leaf[first], size, textures)
        flat_cov[pixel] = True
        if count is not None or flat_cov.all():
            return


def dead_leaves(
    rng: np.random.Generator,
    size: int,
    *,
    rmin: float = 1.5,
    rmax: float | None = None,
    blur_share: float = 0.3,
) -> np.ndarray:
    """(size, size, 3) uint8: one dead-leaves scene.

    Leaf radii follow r^-3 on [``rmin``, ``rmax``] px (default ``rmax`` = ``size``); a leaf is a
    disc, ellipse, rectangle or regular polygon in a colour of moderate chroma, flat (a quarter),
    with a 1/f texture (most) or with stripes. In a ``blur_share`` of the scenes the leaves behind
    the first few are rendered as their own full layer and blurred (sigma 0.5-1.5 px), a lens
    focused on the front. Every scene gets a slight blur (sigma 0.3-0.6 px), as a camera's optics,
    so that edges are not aliased steps.
    """
    rmax = float(size) if rmax is None else float(rmax)
    textures = pink_noise(rng, size, 3 * 3).reshape(size, size, 3, 3).transpose(2, 0, 1, 3)
    img = np.zeros((size, size, 3), np.float32)
    covered = np.zeros((size, size), bool)
    if rng.uniform() < blur_share:
        front = int(rng.integers(1, 6))
        _leaves(rng, size, max(rmin, size / 16), rmax, textures, front, img, covered)
        back = np.zeros_like(img)
        _leaves(rng, size, rmin, rmax, textures, None, back, np.zeros_like(covered))
        back = gaussian_blur(back, rng.uniform(0.5, 1.5))
        img[~covered] = back[~covered]
    else:
        _leaves(rng, size, rmin, rmax, textures, None, img, covered)
    img = gaussian_blur(img, rng.uniform(0.3, 0.6))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pink_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a 1/f-noise texture scene (a colour plus correlated pink noise in
    luminance and chroma), the other clean-scene kind with a photograph's spectrum."""
    field = pink_noise(rng, size, 3)
    lum = field[..., :1]
    colour = leaf_colours(rng, 1)[0]
    img = colour + rng.uniform(25, 55) * (0.75 * lum + 0.25 * field)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def radial_power_slope(gray: np.ndarray, fmin: float = 2.0, fmax_share: float = 0.8) -> float:
    """The slope of log power against log frequency of a square (S, S) float image's radially
    averaged power spectrum, fitted on radii ``fmin`` .. ``fmax_share`` x Nyquist (cycles per
    image). A Hann window first, so the image's borders add no spurious f^-2 of their own.
    Large photographs are close to -2; photographs shrunk to 64 px measure about -2.7 (see
    ``scene_statistics``)."""
    size = gray.shape[0]
    g = gray.astype(np.float64) - gray.mean()
    hann = np.hanning(size)
    power = np.abs(np.fft.fftshift(np.fft.fft2(g * np.outer(hann, hann)))) ** 2
    yy, xx = np.indices(power.shape)
    radius = np.hypot(yy - size // 2, xx - size // 2).round().astype(np.int64)
    sums = np.bincount(radius.ravel(), power.ravel())
    counts = np.bincount(radius.ravel())
    freqs = np.arange(len(sums))
    keep = (freqs >= fmin) & (freqs <= fmax_share * size / 2) & (counts > 0)
    mean = sums[keep] / counts[keep]
    slope, _ = np.polyfit(np.log(freqs[keep]), np.log(mean + 1e-12), 1)
    return float(slope)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float -> (H, W) float64 Rec. 601 luma in the input's units."""
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# Six photographs that ship with scikit-image (astronaut, camera, chelsea, coffee, rocket, the left
# view of stereo_motorcycle), centre-cropped and box-shrunk to 64 px, measured by
# ``scene_statistics`` (``python bench/photos.py --stats``; spread across the six: 0.23, 0.58, 17).
# The suite's ``clean_scene`` measures -2.46, -2.40 and 29: too little fine detail and about half
# the contrast.
PHOTO_STATISTICS_64 = {"slope": -2.68, "slope_high": -3.22, "contrast": 52.1}


def scene_statistics(rgb: np.ndarray) -> dict[str, float]:
    """Statistics of a square (S, S, 3) uint8 image's luminance in which photographs agree:
    ``slope`` (radially averaged power spectrum, 2 cycles/image .. 0.8 Nyquist), ``slope_high``
    (the same from S/8 cycles/image up: the fine detail) and ``contrast`` (standard deviation,
    0..255 units)."""
    gray = luminance(rgb)
    size = gray.shape[0]
    return {
        "slope": radial_power_slope(gray),
        "slope_high": radial_power_slope(gray, fmin=size / 8),
        "contrast": float(gray.std()),
    }
