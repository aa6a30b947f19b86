"""A procedural task suite that mirrors the paper's task kinds, for CPU-sized experiments and tests.

Every sample is a pure function of ``(seed, task, split, index)`` (its own ``numpy`` Generator), and
every target is painted by the real codec of its kind, so the whole pipeline (encode, train,
predict, eval) runs on it unchanged. Tasks (``SYNTHETIC_TASKS``):

* ``synthetic-depth``: a textured ground plane under a back wall, with shapes standing on the
  ground at known depths (perspective-consistent sizes); ``nyuv2-depth``; extras ``depth_m``.
* ``synthetic-semseg``: shapes of 6 classes (circle, square, triangle, star, ring, cross) in random
  colours on textured backgrounds, half of the scenes with a stick figure (background);
  ``semseg`` with 6 classes and black as a background class.
* ``synthetic-instance``: 1-3 overlapping shapes with bold two-tone bands, each centred on one of
  the location palette's 4x4 colour blocks; ``coco-instance``; extras ``instance_ids``.
* ``synthetic-keypoints``: a stick figure with 7 keypoints (head, neck, hip, left/right hand,
  left/right foot; "left" = the one with the smaller x) over 0-3 semseg-like shapes;
  ``keypoints``; extras ``keypoints``.
* ``synthetic-denoise`` / ``synthetic-derain`` / ``synthetic-lowlight``: a clean scene degraded by
  Gaussian noise / bright slanted streaks / a dark gamma curve plus noise; ``restoration``.
* ``synthetic-fgseg`` (split ``ood`` only, never in train): foreground segmentation of an unseen
  shape class (crescent) among distractor shapes, white on black like FSS-1000; ``semseg`` with 1
  class and black as background.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.sources.base import MAX_SIDE, Sample, Source, parse_options

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")  # semseg classes 1..6
OOD_SHAPE = "crescent"  # never drawn outside synthetic-fgseg
KEYPOINT_NAMES = ("head", "neck", "hip", "left_hand", "right_hand", "left_foot", "right_foot")
SPLIT_COUNTS = {"train": 1000, "val": 100, "ood": 100}


@dataclass(frozen=True)
class SyntheticTask:
    """One synthetic task: its ``kind`` (a codec kind), ``codec`` and splits."""

    kind: str
    codec: str
    splits: tuple[str, ...] = ("train", "val")

    def codec_params(self, size: int) -> dict[str, Any]:
        """The codec parameters for square samples of side ``size``."""
        if self.codec == "semseg":
            classes = len(SHAPES) if self.kind == "semseg" else 1
            return {"num_classes": classes, "base": 2, "background": True}
        if self.codec == "keypoints":
            return {"num_keypoints": len(KEYPOINT_NAMES), "width": size, "height": size}
        return {}


SYNTHETIC_TASKS: dict[str, SyntheticTask] = {
    "synthetic-depth": SyntheticTask("depth", "nyuv2-depth"),
    "synthetic-semseg": SyntheticTask("semseg", "semseg"),
    "synthetic-instance": SyntheticTask("instance", "coco-instance"),
    "synthetic-keypoints": SyntheticTask("keypoints", "keypoints"),
    "synthetic-denoise": SyntheticTask("denoise", "restoration"),
    "synthetic-derain": SyntheticTask("derain", "restoration"),
    "synthetic-lowlight": SyntheticTask("lowlight", "restoration"),
    "synthetic-fgseg": SyntheticTask("fgseg", "semseg", ("ood",)),
}


def sample_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    """The Generator of one sample (stable across runs, platforms and processes)."""
    words = [seed, zlib.crc32(task.encode()), zlib.crc32(split.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(words))


# --- drawing primitives ---------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs + 0.5, ys + 0.5


def shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(size, size) bool mask of a shape with centre (cx, cy) px, radius r px, rotation (rad)."""
    xs, ys = _grid(size)
    dx, dy = xs - cx, ys - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if kind == "circle":
        return rho <= r
    if kind == "square":
        return (np.abs(u) <= 0.75 * r) & (np.abs(v) <= 0.75 * r)
    if kind == "triangle":
        # Intersection of three half-planes with inward normals at 120 degrees.
        inside = np.ones_like(u, bool)
        for k in range(3):
            a = 2 * np.pi * k / 3 + np.pi / 2
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.5 * r
        return inside
    if kind == "star":
        return rho <= r * (0.55 + 0.45 * np.cos(5 * phi))
    if kind == "ring":
        return (rho <= r) & (rho >= 0.55 * r)
    if kind == "cross":
        return ((np.abs(u) <= 0.28 * r) & (np.abs(v) <= r)) | (
            (np.abs(v) <= 0.28 * r) & (np.abs(u) <= r)
        )
    if kind == OOD_SHAPE:
        return (rho <= r) & (np.hypot(u - 0.45 * r, v) > 0.8 * r)
    raise ValueError(f"unknown shape {kind!r}")


def smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """(size, size, channels) float32 in [0, 1]: a bilinearly upsampled random grid."""
    g = rng.uniform(0, 1, (cells + 1, cells + 1, channels)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i0 = np.minimum(t.astype(np.int64), cells - 1)
    f = (t - i0)[:, None]
    rows = g[i0] * (1 - f[:, :, None]) + g[i0 + 1] * f[:, :, None]  # (size, cells+1, C)
    cols = rows[:, i0] * (1 - f.T[:, :, None]) + rows[:, i0 + 1] * f.T[:, :, None]
    return cols


def texture(rng: np.random.Generator, size: int, colour: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) float32 0..255: a base colour modulated by smooth noise and stripes."""
    base = rng.uniform(30, 225, 3) if colour is None else colour
    field = smooth_field(rng, size, int(rng.integers(2, 6)), 3) - 0.5
    xs, ys = _grid(size)
    freq = rng.uniform(0.05, 0.35)
    theta = rng.uniform(0, np.pi)
    stripes = np.sin(freq * (xs * np.cos(theta) + ys * np.sin(theta)) * 2 * np.pi)
    amp = rng.uniform(0, 25)
    img = base[None, None] + 70 * field + amp * stripes[..., None]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.float32)


def _random_shape(rng: np.random.Generator, size: int, kinds: tuple[str, ...], rmin=0.12, rmax=0.3):
    kind = kinds[int(rng.integers(len(kinds)))]
    r = rng.uniform(rmin, rmax) * size
    cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
    return kind, shape_mask(kind, size, cx, cy, r, rng.uniform(0, 2 * np.pi))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def clean_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: textured background with 2-4 textured seen-class shapes."""
    img = texture(rng, size)
    for _ in range(int(rng.integers(2, 5))):
        _, mask = _random_shape(rng, size, SHAPES)
        img[mask] = texture(rng, size)[mask]
    return _to_uint8(img)


# --- the tasks: rng, size -> (image uint8, ground truth for the codec, extras) ---------------------


def _depth(rng: np.random.Generator, size: int):
    horizon = rng.uniform(0.25, 0.5) * size
    near = rng.uniform(0.8, 1.6)  # depth of the bottom row
    wall = rng.uniform(6.0, 9.5)
    xs, ys = _grid(size)
    below = ys > horizon
    ground = near * (size - horizon) / np.maximum(ys - horizon, 1e-3)
    depth = np.where(below & (ground < wall), ground, wall).astype(np.float32)
    # Ground texture: a checkerboard in world coordinates (0.5 m tiles), so depth has a cue.
    world_x = (xs - size / 2) * depth / size
    checker = (np.floor(world_x / 0.5) + np.floor(depth / 0.5)) % 2
    img = texture(rng, size) * 0.5
    ground_col = rng.uniform(60, 200, 3)
    tiles = ground_col[None, None] * (0.7 + 0.3 * checker[..., None])
    img = np.where((depth < wall)[..., None], tiles, img)
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        z = rng.uniform(1.2, wall - 0.3)
        shapes.append(z)
    for z in sorted(shapes, reverse=True):  # far to near: nearer shapes occlude
        r = rng.uniform(0.25, 0.5) * size / z
        foot = horizon + near * (size - horizon) / z  # row where the ground has depth z
        cx = rng.uniform(0.1, 0.9) * size
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        mask = shape_mask(kind, size, cx, foot - r, r, rng.uniform(0, 2 * np.pi))
        depth[mask] = z
        fog = z / 10.0
        col = texture(rng, size) * (1 - fog) + 128 * fog
        img[mask] = col[mask]
    depth = np.minimum(depth, 9.99).astype(np.float32)
    return _to_uint8(img), depth, {"depth_m": depth}


def _semseg(rng: np.random.Generator, size: int):
    img = texture(rng, size)
    labels = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.integers(len(SHAPES)))
        _, mask = _random_shape(rng, size, (SHAPES[k],))
        labels[mask] = k + 1
        img[mask] = texture(rng, size)[mask]
    if rng.uniform() < 0.5:  # a stick figure is background here (see _keypoints)
        labels[_draw_figure(rng, img, _figure_points(rng, size))] = 0
    return _to_uint8(img), labels, {}


def _instance_colours_apart(ids: np.ndarray, codec, min_pixels: int) -> bool:
    """Whether every two visible instances get palette colours at least 60 apart (L1), so the
    official decoder (mean-abs distance < 19) cannot merge them; and none is under
    ``min_pixels``."""
    painted = codec.encode(ids).astype(np.int64)
    cols = []
    for i in np.unique(ids[ids > 0]):
        m = ids == i
        if m.sum() < min_pixels:
            return False
        cols.append(painted[m][0])
    cols = np.array(cols)
    d = np.abs(cols[:, None] - cols[None]).sum(-1) + np.eye(len(cols), dtype=np.int64) * 999
    return bool((d >= 60).all())


def block_centres(size: int) -> np.ndarray:
    """(4,) shape-centre coordinates (px, ``_grid`` convention) whose mass centre falls in the
    middle cell of each of the instance codec's 4 colour blocks along an axis (cell ``a`` holds
    pixel indices ``[a, a + 1) * size / (GRID - 1)``)."""
    from painter_cli.tasks.instance import GRID, LOCAL

    blocks = np.arange(GRID // LOCAL)
    return (blocks * LOCAL + LOCAL / 2 + 0.5) * size / (GRID - 1) + 0.5


def banded_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 0..255: a colour cut by bold two-tone bands (period 12-25 px at
    64 px), a texture that no background or restoration scene has."""
    base = rng.uniform(60, 195, 3)
    field = smooth_field(rng, size, int(rng.integers(2, 6)), 3) - 0.5
    xs, ys = _grid(size)
    freq = rng.uniform(0.04, 0.08) * 64 / size
    theta = rng.uniform(0, np.pi)
    bands = np.sign(np.sin(freq * (xs * np.cos(theta) + ys * np.sin(theta)) * 2 * np.pi))
    img = base[None, None] + 40 * field + rng.uniform(50, 70) * bands[..., None]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.float32)


def _instance(rng: np.random.Generator, size: int):
    # Why this design (measured with the tiny model, see docs/tasks.md): shapes are centred on the
    # codec's colour blocks, so a shape's colour is nearly constant and learnable at 32 px; and
    # they are banded, so a prompt of another task that copies the image (restoration) paints
    # stripes that decode to no instance, instead of flat shapes that decode by chance.
    from painter_cli.tasks import get_codec

    codec = get_codec("coco-instance")
    centres = block_centres(size)
    jitter = 1.5 * size / 64
    want = int(rng.integers(1, 4))
    for attempt in range(100):
        n = max(1, want - attempt // 30)
        img = texture(rng, size)
        ids = np.zeros((size, size), np.int32)
        areas = []
        for i, cell in enumerate(rng.choice(16, n, replace=False), 1):
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            r = rng.uniform(0.15, 0.25) * size
            cx = centres[cell % 4] + rng.uniform(-jitter, jitter)
            cy = centres[cell // 4] + rng.uniform(-jitter, jitter)
            mask = shape_mask(kind, size, cx, cy, r, rng.uniform(0, 2 * np.pi))
            ids[mask] = i
            areas.append(mask.sum())
            img[mask] = banded_texture(rng, size)[mask]
        visible = all((ids == i).sum() >= 0.6 * a for i, a in enumerate(areas, 1))
        if visible and _instance_colours_apart(ids, codec, max(4, 24 * size * size // 4096)):
            break
    return _to_uint8(img), ids, {"instance_ids": ids}


def _segment_distance(xs, ys, a, b) -> np.ndarray:
    ab = b - a
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6), 0, 1)
    return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))


def _figure(rng: np.random.Generator, size: int) -> np.ndarray:
    s = rng.uniform(0.45, 0.7) * size
    cx, cy = rng.uniform(0.4, 0.6, 2) * size
    tilt = rng.uniform(-0.3, 0.3)
    up = np.array([np.sin(tilt), -np.cos(tilt)])
    neck = np.array([cx, cy]) + up * 0.2 * s
    hip = np.array([cx, cy]) - up * 0.2 * s
    head = neck + up * 0.2 * s
    arms = [
        neck + 0.35 * s * np.array([np.cos(a), np.sin(a)]) for a in rng.uniform(0, 2 * np.pi, 2)
    ]
    legs = []
    for side in (-1, 1):
        a = np.pi / 2 + side * rng.uniform(0.15, 0.8) + tilt
        legs.append(hip + 0.4 * s * np.array([np.cos(a), np.sin(a)]))
    arms.sort(key=lambda p: p[0])
    legs.sort(key=lambda p: p[0])
    return np.array([head, neck, hip, arms[0], arms[1], legs[0], legs[1]], np.float64)


def _figure_points(rng: np.random.Generator, size: int) -> np.ndarray:
    """(7, 2) keypoints (x, y px) of a stick figure inside the image, no two closer than 3 px."""
    for _ in range(100):
        pts = _figure(rng, size)
        inside = ((pts >= 2) & (pts <= size - 3)).all()
        d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1)) + np.eye(len(pts)) * 99
        if inside and d.min() >= 3:
            break
    return pts


def _draw_figure(rng: np.random.Generator, img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Paint the stick figure ``pts`` in one random colour into ``img``; returns its mask."""
    size = img.shape[0]
    xs, ys = _grid(size)
    width = max(1.0, 0.03 * size)
    bones = [(0, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]
    body = np.zeros((size, size), bool)
    for a, b in bones:
        body |= _segment_distance(xs, ys, pts[a], pts[b]) <= width
    body |= np.hypot(xs - pts[0, 0], ys - pts[0, 1]) <= 0.08 * size + width
    img[body] = rng.uniform(0, 255, 3)
    return body


def _keypoints(rng: np.random.Generator, size: int):
    pts = _figure_points(rng, size)
    # The same clutter as a semseg scene (whose scenes hold a figure half the time), so the query
    # alone does not tell keypoints from semseg: the prompt has to.
    img = texture(rng, size)
    for _ in range(int(rng.integers(0, 4))):
        _, mask = _random_shape(rng, size, SHAPES)
        img[mask] = texture(rng, size)[mask]
    _draw_figure(rng, img, pts)
    kps = np.concatenate([pts, np.full((len(pts), 1), 2.0)], axis=1).astype(np.float32)
    return _to_uint8(img), kps, {"keypoints": kps}


def _denoise(rng: np.random.Generator, size: int):
    clean = clean_scene(rng, size)
    noisy = clean + rng.normal(0, rng.uniform(10, 30), clean.shape)
    return _to_uint8(noisy), clean, {}


def _derain(rng: np.random.Generator, size: int):
    clean = clean_scene(rng, size)
    xs, ys = _grid(size)
    theta = rng.uniform(-0.4, 0.4)  # streak direction: near vertical
    streaks = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(size // 4, size // 2))):
        x0, y0 = rng.uniform(0, size, 2)
        length = rng.uniform(0.1, 0.3) * size
        a = np.array([x0, y0])
        b = a + length * np.array([np.sin(theta), np.cos(theta)])
        strength = rng.uniform(0.3, 0.8)
        streaks = np.maximum(streaks, strength * (_segment_distance(xs, ys, a, b) <= 0.5))
    rainy = clean * (1 - streaks[..., None]) + 235 * streaks[..., None]
    return _to_uint8(rainy), clean, {}


def _lowlight(rng: np.random.Generator, size: int):
    clean = clean_scene(rng, size)
    gamma = rng.uniform(1.5, 2.5)
    dark = 255 * rng.uniform(0.1, 0.35) * (clean / 255.0) ** gamma
    dark = dark + rng.normal(0, 2, clean.shape)
    return _to_uint8(dark), clean, {}


def _fgseg(rng: np.random.Generator, size: int):
    img = texture(rng, size)
    labels = np.zeros((size, size), np.uint8)
    layers = [OOD_SHAPE] * int(rng.integers(1, 3)) + ["distractor"] * int(rng.integers(0, 3))
    rng.shuffle(layers)
    for layer in layers:
        kinds = (OOD_SHAPE,) if layer == OOD_SHAPE else SHAPES
        _, mask = _random_shape(rng, size, kinds)
        labels[mask] = 1 if layer == OOD_SHAPE else 0
        img[mask] = texture(rng, size)[mask]
    return _to_uint8(img), labels, {}


_RENDER = {
    "synthetic-depth": _depth,
    "synthetic-semseg": _semseg,
    "synthetic-instance": _instance,
    "synthetic-keypoints": _keypoints,
    "synthetic-denoise": _denoise,
    "synthetic-derain": _derain,
    "synthetic-lowlight": _lowlight,
    "synthetic-fgseg": _fgseg,
}


def render(
    task: str, index: int, *, split: str = "train", size: int = 64, seed: int = 0
) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
    """``(image (size, size, 3) uint8, ground truth, extras)`` of one sample; the ground truth is
    what the task's codec encodes (label map, depth metres, instance ids, (K, 3) keypoints or the
    clean RGB image)."""
    if task not in SYNTHETIC_TASKS:
        raise PainterError(
            f"unknown synthetic task {task!r}", hint=f"tasks: {', '.join(SYNTHETIC_TASKS)}"
        )
    if split not in SYNTHETIC_TASKS[task].splits:
        raise PainterError(
            f"synthetic task {task} has no split {split!r}",
            hint=f"its splits: {', '.join(SYNTHETIC_TASKS[task].splits)}",
        )
    if not 16 <= size <= MAX_SIDE:
        raise PainterError(f"synthetic: size must be 16..{MAX_SIDE}, got {size}")
    if seed < 0 or index < 0:
        raise PainterError("synthetic: seed and index must be >= 0")
    return _RENDER[task](sample_rng(seed, task, split, index), size)


def generate(
    task: str, index: int, *, split: str = "train", size: int = 64, seed: int = 0
) -> Sample:
    """One painted ``Sample`` (id ``<task>-<split>-<index>``)."""
    from painter_cli.tasks import get_codec

    image, truth, extras = render(task, index, split=split, size=size, seed=seed)
    spec = SYNTHETIC_TASKS[task]
    target = get_codec(spec.codec, **spec.codec_params(size)).encode(truth)
    return Sample(id=f"{task}-{split}-{index:06d}", image=image, target=target, extras=extras)


class SyntheticSource(Source):
    """Procedural tasks mirroring the paper's kinds (no files; ROOT is ignored)."""

    name = "synthetic"
    layout = "none: samples are generated procedurally (ROOT is ignored, pass e.g. '.')"
    splits = ("train", "val", "ood")
    option_help = {
        "task": (
            f"one of {', '.join(SYNTHETIC_TASKS)} (that task and --split only; without it the "
            "whole suite is written: DIR/train, DIR/val, DIR/ood)"
        ),
        "count": "samples to generate (default: 1000 train, 100 val/ood)",
        "seed": "seed (default 0); a sample is a pure function of (seed, task, split, index)",
        "size": f"side of the square samples in pixels (default 64, at most {MAX_SIDE})",
    }

    def __init__(self, root: str | Path = ".", split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        opts = parse_options(
            self.name,
            options,
            {"task": (str, None), "count": (int, None), "seed": (int, 0), "size": (int, 64)},
        )
        task = opts["task"] or ("synthetic-fgseg" if split == "ood" else "synthetic-semseg")
        count = opts["count"] if opts["count"] is not None else SPLIT_COUNTS.get(split, 100)
        if count < 1:
            raise PainterError(f"source synthetic: count must be >= 1, got {count}")
        self._task, self.count, self.seed, self.size = task, count, opts["seed"], opts["size"]
        render(task, 0, split=split, size=self.size, seed=self.seed)  # checks task/split/size

    @property
    def task(self) -> str:
        return self._task

    @property
    def codec(self) -> str:
        return SYNTHETIC_TASKS[self._task].codec

    def codec_params(self) -> dict[str, Any]:
        return SYNTHETIC_TASKS[self._task].codec_params(self.size)

    def keys(self) -> list[str]:
        return [f"{i:06d}" for i in range(self.count)]

    def load(self, key: str) -> list[Sample]:
        return [generate(self._task, int(key), split=self.split, size=self.size, seed=self.seed)]
