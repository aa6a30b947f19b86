"""Top-down keypoints (COCO pose): one person crop, K keypoints painted as heat (R) and class (G, B).

Encoding (official ``TopDownGenerateTargetCustom`` + ``encode_rgb_target_to_image``, MSRA targets
at stride 1): every labelled keypoint (visibility > 0) inside the canvas gets two Gaussians centred
at ``mu = int(x + 0.5)``, sigma 3 (19x19 support ``[mu-9, mu+9]``) and sigma 1.5 (10x10 support
``[mu-5, mu+4]``; Python ``int`` truncation near the top/left border shifts it by one pixel).

* R = ``uint8(max_k gauss3_k * 255)`` (truncation).
* G, B = the class colour of keypoint k on its sigma-1.5 support: with ``n = int(sqrt(K)) + 1`` and
  ``s = 256 // n``, ``(G, B) = (255 - (k // n) * s, 255 - (k % n) * s)`` (K = 17: n = 5, s = 51).
  Where supports of several keypoints overlap, the colour of ``argmax_k gauss3_k`` (lowest k on
  ties). Elsewhere (0, 0).

Decoding (official ``decode_images_to_heatmaps_minmax`` + mmpose ``keypoints_from_heatmaps``): each
pixel's (G, B) goes to the nearest of the K class colours or (0, 0) by L1; heatmap_k = R/255 where
the class is k; each keypoint is the heatmap argmax, shifted by 0.25 px towards the higher
neighbour in x and y, with the peak value as its score (``(-1, -1, 0)`` for an empty heatmap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import FG_THRESHOLD, MIN_FG_ELEMENTS, Codec, as_painted, register
from painter_cli.tasks.semantic import nearest_colour

SIGMA_CLASS = 1.5
SIGMA_KERNEL = 3.0
# Foreground elements of a pose target weigh 10x in the loss (official ``valid`` rule).
FG_WEIGHT = 10.0


def keypoint_colours(num_keypoints: int) -> np.ndarray:
    """(K, 2) uint8 (G, B) class colours of keypoints 0..K-1."""
    n = int(math.sqrt(num_keypoints)) + 1
    s = 256 // n
    k = np.arange(num_keypoints)
    return np.stack([255 - (k // n) * s, 255 - (k % n) * s], axis=1).astype(np.uint8)


def gaussian_patch(
    x: float, y: float, sigma: float, width: int, height: int
) -> tuple[np.ndarray, slice, slice] | None:
    """The MSRA Gaussian of one keypoint clipped to a width x height canvas.

    Returns ``(patch, rows, cols)`` with ``patch`` float32 to be written at ``[rows, cols]``, or None
    when the support lies fully outside the canvas (the keypoint is then not drawn).
    """
    tmp = sigma * 3
    mu_x, mu_y = int(x + 0.5), int(y + 0.5)
    # int() truncates towards zero, as in the official code (a 1 px shift near the top/left).
    ul = (int(mu_x - tmp), int(mu_y - tmp))
    br = (int(mu_x + tmp + 1), int(mu_y + tmp + 1))
    if ul[0] >= width or ul[1] >= height or br[0] < 0 or br[1] < 0:
        return None
    size = 2 * tmp + 1
    g1 = np.arange(0, size, 1, np.float32)
    c = size // 2
    g = np.exp(-((g1[None, :] - c) ** 2 + (g1[:, None] - c) ** 2) / (2 * sigma**2))
    gx = (max(0, -ul[0]), min(br[0], width) - ul[0])
    gy = (max(0, -ul[1]), min(br[1], height) - ul[1])
    ix = (max(0, ul[0]), min(br[0], width))
    iy = (max(0, ul[1]), min(br[1], height))
    patch = g[gy[0] : gy[1], gx[0] : gx[1]]
    return patch, slice(iy[0], iy[1]), slice(ix[0], ix[1])


@dataclass(frozen=True)
class KeypointResult:
    """Decoded keypoints: ``keypoints`` (K, 3) float32 rows ``(x, y, score)`` in crop pixels,
    ``heatmaps`` (K, H, W) float32 in 0..1."""

    keypoints: np.ndarray
    heatmaps: np.ndarray


class KeypointCodec(Codec):
    """Keypoints of one person on a ``width`` x ``height`` crop.

    ``encode`` input: a (K, 3) float array of rows ``(x, y, visibility)`` in crop pixel coordinates
    (x = column, y = row; visibility 0 = not labelled and not drawn, 1 or 2 = drawn), on the codec's
    canvas (default 192 wide x 256 high, the official top-down crop). Output: (height, width, 3)
    uint8. ``decode``: (H, W, 3) painted (any size) -> ``KeypointResult``. ``valid``: 10 on non-black
    elements, 1 elsewhere, all zeros when there are fewer than 300 non-black elements.
    """

    kind = "keypoints"
    discrete = False

    def __init__(
        self,
        num_keypoints: int = 17,
        width: int = 192,
        height: int = 256,
        name: str = "keypoints",
    ):
        for key, v in (("num_keypoints", num_keypoints), ("width", width), ("height", height)):
            if not isinstance(v, int) or v < 1:
                raise PainterError(f"codec {name}: {key} must be an integer >= 1, got {v!r}")
        self.name = name
        self.num_keypoints = num_keypoints
        self.width = width
        self.height = height

    def params(self) -> dict[str, Any]:
        p = {"num_keypoints": self.num_keypoints, "width": self.width, "height": self.height}
        if self.name == "coco-keypoints":
            # The COCO keypoint set is fixed; only the canvas may differ from 192x256.
            del p["num_keypoints"]
            if (self.width, self.height) == (192, 256):
                return {}
        return p

    @cached_property
    def colours(self) -> np.ndarray:
        """(K, 2) uint8 (G, B) class colours."""
        return keypoint_colours(self.num_keypoints)

    def heatmaps(self, keypoints: np.ndarray, sigma: float) -> np.ndarray:
        """(K, height, width) float32 MSRA heatmaps (zeros for keypoints that are not drawn)."""
        kps = self._check(keypoints)
        # float32 like the official targets, so the uint8 truncation of R agrees.
        maps = np.zeros((self.num_keypoints, self.height, self.width), np.float32)
        for k, (x, y, v) in enumerate(kps):
            if v <= 0:
                continue
            drawn = gaussian_patch(float(x), float(y), sigma, self.width, self.height)
            if drawn is not None:
                patch, rows, cols = drawn
                maps[k, rows, cols] = patch
        return maps

    def _check(self, keypoints: Any) -> np.ndarray:
        what = f"{self.name} keypoints"
        if not isinstance(keypoints, np.ndarray):
            raise PainterError(f"{what}: expected a numpy array, got {type(keypoints).__name__}")
        if keypoints.shape != (self.num_keypoints, 3):
            raise PainterError(
                f"{what}: expected shape ({self.num_keypoints}, 3) rows (x, y, visibility), "
                f"got {keypoints.shape}"
            )
        if not np.issubdtype(keypoints.dtype, np.number) or not np.isfinite(keypoints).all():
            raise PainterError(f"{what}: expected finite numbers, got dtype {keypoints.dtype}")
        return keypoints.astype(np.float64)

    def encode(self, ground_truth: Any) -> np.ndarray:
        kernel = self.heatmaps(ground_truth, SIGMA_KERNEL)
        klass = self.heatmaps(ground_truth, SIGMA_CLASS)
        out = np.zeros((self.height, self.width, 3), np.uint8)
        out[..., 0] = (kernel.max(axis=0) * np.float32(255.0)).astype(np.uint8)
        support = klass != 0
        n_cover = support.sum(axis=0)
        owner = np.where(n_cover > 1, kernel.argmax(axis=0), support.argmax(axis=0))
        gb = self.colours[owner]
        gb[n_cover == 0] = 0
        out[..., 1:] = gb
        return out

    def decode(self, painted: np.ndarray) -> KeypointResult:
        p = as_painted(painted)
        h, w = p.shape[:2]
        classes = np.concatenate([self.colours, np.zeros((1, 2), np.uint8)])
        gb = painted.copy()  # same dtype: uint8 images take the fast distinct-colour path
        gb[..., 0] = 0
        # Reuse the L1 nearest-colour search with R zeroed on both sides.
        cls = nearest_colour(gb, np.concatenate([np.zeros((len(classes), 1)), classes], 1))
        k = np.arange(self.num_keypoints)[:, None, None]
        heat = np.where(cls[None] == k, p[None, ..., 0] / 255.0, 0.0).astype(np.float32)
        flat = heat.reshape(self.num_keypoints, -1)
        idx = flat.argmax(axis=1)
        score = flat[np.arange(self.num_keypoints), idx]
        ys, xs = np.divmod(idx, w)
        kps = np.zeros((self.num_keypoints, 3), np.float32)
        for j in range(self.num_keypoints):
            if score[j] <= 0:
                kps[j] = (-1.0, -1.0, 0.0)
                continue
            x, y = float(xs[j]), float(ys[j])
            px, py = int(xs[j]), int(ys[j])
            if 1 < px < w - 1 and 1 < py < h - 1:
                hm = heat[j]
                x += 0.25 * float(np.sign(hm[py, px + 1] - hm[py, px - 1]))
                y += 0.25 * float(np.sign(hm[py + 1, px] - hm[py - 1, px]))
            kps[j] = (x, y, score[j])
        return KeypointResult(keypoints=kps, heatmaps=heat)

    def valid(self, target: np.ndarray) -> np.ndarray:
        t = as_painted(target, f"{self.name} target")
        fg = t > FG_THRESHOLD
        if int(fg.sum()) < MIN_FG_ELEMENTS:
            return np.zeros(t.shape, np.float32)
        return np.where(fg, FG_WEIGHT, 1.0).astype(np.float32)


def _keypoints(num_keypoints: int, width: int = 192, height: int = 256) -> KeypointCodec:
    return KeypointCodec(num_keypoints, width, height)


def _coco_keypoints(width: int = 192, height: int = 256) -> KeypointCodec:
    return KeypointCodec(17, width, height, name="coco-keypoints")


register("keypoints", _keypoints)
register("coco-keypoints", _coco_keypoints)
