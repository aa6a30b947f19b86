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
* ``synthetic-denoise`` / ``synthetic-derain`` / ``synthetic-lowlight``: a clean scene with the
  statistics of photographs (dead leaves or a 1/f texture, suite version 4) degraded by Gaussian
  noise / bright slanted streaks / a dark gamma curve plus noise; ``restoration``; 3000 train
  scenes each.
* ``synthetic-fgseg`` (split ``ood`` only, never in train): foreground segmentation of an unseen
  shape class (crescent) among distractor shapes, white on black like FSS-1000; ``semseg`` with 1
  class and black as background.
* ``synthetic-segment`` (train, val and ood; suite version 3): 2-4 shapes of different classes on
  a textured background; the target is the mask of one of them, white on black, and the sample's
  ``group`` is that class's name, so only a prompt of the same class says which shape is wanted.
  40 training classes (polygons, stars, rings, flowers, letter-like strokes) for train/val, 8
  held-out ones (crescents, heart, arrow, bowtie, keyhole, half-disc, teardrop) for ood; each class
  has a look of its own (a colour family and texture), as real categories have.
* ``synthetic-segment-outline`` (suite version 4): the same scenes with random looks, so the
  outline alone says which shape the prompt shows (extras ``free_colour``: 1; 0 in
  ``synthetic-segment``). Version 3 mixed 30 % of these into ``synthetic-segment``, where they
  kept a model from learning to select at all.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.sources.base import MAX_SIDE, Sample, Source, parse_options
from painter_cli.sources.deadleaves import dead_leaves, pink_scene

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")  # semseg classes 1..6
OOD_SHAPE = "crescent"  # never drawn outside synthetic-fgseg
KEYPOINT_NAMES = ("head", "neck", "hip", "left_hand", "right_hand", "left_foot", "right_foot")
SPLIT_COUNTS = {"train": 1000, "val": 100, "ood": 100}
PINK_SHARE = 0.15  # restoration scenes that are 1/f textures rather than dead leaves
# Restoration tasks keep more training scenes (suite version 4): the clean image is the target, so
# a few thousand distinct scenes keep the model from memorising them.
RESTORATION_COUNTS = (("train", 3000),)


@dataclass(frozen=True)
class SyntheticTask:
    """One synthetic task: its ``kind``, ``codec`` and splits. ``counts``: samples per split where
    they differ from ``SPLIT_COUNTS``. ``weight``: its sampling weight when a run names none (0:
    trained only when a recipe names it). ``grouped``: its samples carry a group (prompt and query
    of a canvas must share it)."""

    kind: str
    codec: str
    splits: tuple[str, ...] = ("train", "val")
    counts: tuple[tuple[str, int], ...] = ()
    weight: float = 1.0
    grouped: bool = False

    def count(self, split: str) -> int:
        """Samples of ``split`` in the suite."""
        return dict(self.counts).get(split, SPLIT_COUNTS.get(split, 100))

    def codec_params(self, size: int) -> dict[str, Any]:
        """The codec parameters for square samples of side ``size``."""
        if self.codec == "semseg":
            classes = len(SHAPES) if self.kind == "semseg" else 1
            return {"num_classes": classes, "base": 2, "background": True}
        if self.codec == "keypoints":
            return {"num_keypoints": len(KEYPOINT_NAMES), "width": size, "height": size}
        return {}


# synthetic-segment and -outline: meaningless without concept pairing (a random prompt names
# another class), so a run trains on them only when its recipe names them (pair_by_group on).
# 16000 training scenes each (version 3: 4000): a query scene seen many times with the same target
# can be answered from memory, whatever the prompt shows. Measured: a mixed-task run that saw each
# of 4000 scenes about 7 times stalled near +20 selectivity; 12 k canvases drawn from 16000 scenes
# (segment alone) reached +36.
SEGMENT_SPEC = SyntheticTask(
    "segment",
    "semseg",
    ("train", "val", "ood"),
    counts=(("train", 16000), ("val", 200), ("ood", 200)),
    weight=0.0,
    grouped=True,
)

SYNTHETIC_TASKS: dict[str, SyntheticTask] = {
    "synthetic-depth": SyntheticTask("depth", "nyuv2-depth"),
    "synthetic-semseg": SyntheticTask("semseg", "semseg"),
    "synthetic-instance": SyntheticTask("instance", "coco-instance"),
    "synthetic-keypoints": SyntheticTask("keypoints", "keypoints"),
    "synthetic-denoise": SyntheticTask("denoise", "restoration", counts=RESTORATION_COUNTS),
    "synthetic-derain": SyntheticTask("derain", "restoration", counts=RESTORATION_COUNTS),
    "synthetic-lowlight": SyntheticTask("lowlight", "restoration", counts=RESTORATION_COUNTS),
    "synthetic-fgseg": SyntheticTask("fgseg", "semseg", ("ood",)),
    # The two segment tasks (own looks; free colours) share one spec.
    "synthetic-segment": SEGMENT_SPEC,
    "synthetic-segment-outline": SEGMENT_SPEC,
}
SEGMENT_TASKS = {"synthetic-segment": False, "synthetic-segment-outline": True}  # -> free colours


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


def restoration_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a clean scene of the restoration tasks (suite version 4), with the
    statistics of photographs: a dead-leaves scene, or (``PINK_SHARE`` of them) a 1/f texture.
    Version 3's ``clean_scene`` (flat shapes on smooth fields) taught the model to flatten images,
    which harmed real photographs (``docs/bundled-model.md``)."""
    return pink_scene(rng, size) if rng.uniform() < PINK_SHARE else dead_leaves(rng, size)


def _denoise(rng: np.random.Generator, size: int):
    clean = restoration_scene(rng, size)
    noisy = clean + rng.normal(0, rng.uniform(10, 30), clean.shape)
    return _to_uint8(noisy), clean, {}


def _derain(rng: np.random.Generator, size: int):
    clean = restoration_scene(rng, size)
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
    clean = restoration_scene(rng, size)
    # Gamma 1 (a plain exposure cut, as a photograph taken too dark) to 2.5 (version 3: 1.5-2.5).
    gamma = rng.uniform(1.0, 2.5)
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


# --- synthetic-segment: concepts that only the prompt names ----------------------------------------
#
# Why this design (issue 15): a model learns to read a concept from its prompt only when nothing
# else says which shape is wanted, so every scene holds 2-4 shapes of different classes and the
# target is one of them, chosen per sample. The classes come from parametric families with fixed,
# seeded proportions, too many to memorise as a palette, and each has a look of its own (a colour
# family and a texture, jittered per instance) as real categories do; a share of scenes paints
# every shape in free colours, so outline alone must decide. The ood split draws from a disjoint
# pool of held-out families (the crescent and more) that no training recipe sees.


@dataclass(frozen=True)
class ShapeClass:
    """One concept of ``synthetic-segment``: an outline (``family`` and its fixed ``params``, in
    units of the shape's radius) and a look: HSV base colour (``hue``, ``sat``, ``val`` in 0..1),
    a ``texture`` (stripes, spots, checker, noise or plain) of ``period`` (fraction of the side)."""

    name: str
    family: str
    params: tuple[float, ...]
    hue: float
    sat: float
    val: float
    texture: str
    period: float


TRAIN_FAMILIES = ("polygon", "star", "ring", "flower", "strokes")
OOD_FAMILIES = ("crescent", "heart", "arrow", "bowtie", "keyhole", "half-disc", "teardrop")
CLASSES_PER_FAMILY = 8  # training pool: 5 families x 8 = 40 classes
LOOK_TEXTURES = ("stripes", "spots", "checker", "noise", "plain")
# Letter-like stroke sets, (x0, y0, x1, y1) segments in units of the radius (y down).
LETTERS = {
    "L": ((-0.6, -0.8, -0.6, 0.8), (-0.6, 0.8, 0.6, 0.8)),
    "T": ((-0.8, -0.8, 0.8, -0.8), (0.0, -0.8, 0.0, 0.8)),
    "H": ((-0.6, -0.8, -0.6, 0.8), (0.6, -0.8, 0.6, 0.8), (-0.6, 0.0, 0.6, 0.0)),
    "E": (
        (-0.6, -0.8, -0.6, 0.8),
        (-0.6, -0.8, 0.6, -0.8),
        (-0.6, 0.0, 0.4, 0.0),
        (-0.6, 0.8, 0.6, 0.8),
    ),
    "X": ((-0.7, -0.8, 0.7, 0.8), (-0.7, 0.8, 0.7, -0.8)),
    "Z": ((-0.6, -0.8, 0.6, -0.8), (0.6, -0.8, -0.6, 0.8), (-0.6, 0.8, 0.6, 0.8)),
    "V": ((-0.7, -0.8, 0.0, 0.8), (0.0, 0.8, 0.7, -0.8)),
    "Y": ((-0.7, -0.8, 0.0, 0.0), (0.7, -0.8, 0.0, 0.0), (0.0, 0.0, 0.0, 0.8)),
}


def _family_params(family: str, k: int, rng: np.random.Generator) -> tuple[float, ...]:
    """The fixed proportions of class ``k`` of ``family``: a grid over the family's main
    parameter (so no two classes coincide) with a seeded second parameter."""
    if family == "polygon":  # sides, aspect
        return (3 + k % 6, rng.uniform(0.85, 1.0) if k < 6 else rng.uniform(0.5, 0.65))
    if family == "star":  # points, inner radius
        return (4 + k % 5, rng.uniform(0.3, 0.4) if k < 5 else rng.uniform(0.55, 0.65))
    if family == "ring":  # sides (0: round), inner radius
        return ((0, 3, 4, 5, 6, 0, 4, 6)[k], rng.uniform(0.4, 0.5) if k < 5 else 0.65)
    if family == "flower":  # petals, petal depth
        return (3 + k % 5, rng.uniform(0.35, 0.45) if k < 5 else rng.uniform(0.2, 0.25))
    if family == "strokes":  # letter, half stroke width
        return (float(k % len(LETTERS)), rng.uniform(0.16, 0.24))
    variants = {  # held-out families: at most two variants each
        "crescent": ((0.45, 0.8), (0.3, 0.9)),
        "heart": ((1.0,),),
        "arrow": ((0.18,),),
        "bowtie": ((0.9,),),
        "keyhole": ((0.45,),),
        "half-disc": ((-0.1,),),
        "teardrop": ((0.6,),),
    }
    return variants[family][k]


def _make_pool(families: tuple[str, ...], counts: tuple[int, ...], start: int) -> tuple:
    """The classes of ``families`` (``counts`` of each); ``start``: the look index of the first
    (the pools' look indices do not overlap, so no two classes of the suite share a look)."""
    pool = []
    for family, count in zip(families, counts, strict=True):
        for k in range(count):
            rng = np.random.default_rng(zlib.crc32(f"{family}-{k}".encode()))
            j = start + len(pool)
            pool.append(
                ShapeClass(
                    name=f"{family}-{k}" if count > 1 else family,
                    family=family,
                    params=tuple(float(p) for p in _family_params(family, k, rng)),
                    # Golden-ratio hues with textures in turn: classes of one texture are at
                    # least 0.09 apart in hue.
                    hue=float((0.618034 * j) % 1.0),
                    sat=float(rng.uniform(0.45, 0.9)),
                    val=float(rng.uniform(0.5, 0.9)),
                    texture=LOOK_TEXTURES[j % len(LOOK_TEXTURES)],
                    period=float(rng.uniform(0.08, 0.2)),
                )
            )
    return tuple(pool)


TRAIN_CLASSES: tuple[ShapeClass, ...] = _make_pool(
    TRAIN_FAMILIES, (CLASSES_PER_FAMILY,) * len(TRAIN_FAMILIES), 0
)
# Held out (split ood only, never in train or val): the crescent in two proportions and six more.
OOD_CLASSES: tuple[ShapeClass, ...] = _make_pool(
    OOD_FAMILIES, (2, 1, 1, 1, 1, 1, 1), len(TRAIN_CLASSES)
)
SEGMENT_POOLS = {"train": TRAIN_CLASSES, "val": TRAIN_CLASSES, "ood": OOD_CLASSES}


def class_mask(
    cls: ShapeClass, size: int, cx: float, cy: float, r: float, angle: float
) -> np.ndarray:
    """(size, size) bool mask of class ``cls`` centred at (cx, cy) px, radius r px, rotated by
    ``angle`` (rad); coordinates below are in units of the radius."""
    xs, ys = _grid(size)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * (xs - cx) + s * (ys - cy)) / r
    v = (-s * (xs - cx) + c * (ys - cy)) / r
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    f, p = cls.family, cls.params
    if f in ("polygon", "ring"):
        sides, aspect = (p[0], p[1]) if f == "polygon" else (p[0], 1.0)

        def inside(scale: float) -> np.ndarray:
            if sides == 0:
                return rho <= scale
            m = np.ones_like(u, bool)
            for k in range(int(sides)):
                a = 2 * np.pi * k / sides
                m &= u * np.cos(a) + v / aspect * np.sin(a) <= scale * np.cos(np.pi / sides)
            return m

        return inside(1.0) & ~inside(p[1]) if f == "ring" else inside(1.0)
    if f == "star":
        tip = np.abs((phi * p[0] / (2 * np.pi)) % 1.0 - 0.5) * 2  # 1 at a point, 0 between
        return rho <= p[1] + (1 - p[1]) * tip
    if f == "flower":
        return rho <= 1 - p[1] + p[1] * np.cos(p[0] * phi)
    if f == "strokes":
        near = np.zeros_like(u, bool)
        for x0, y0, x1, y1 in LETTERS[list(LETTERS)[int(p[0])]]:
            near |= _segment_distance(u, v, np.array([x0, y0]), np.array([x1, y1])) <= p[1]
        return near
    if f == "crescent":
        return (rho <= 1) & (np.hypot(u - p[0], v) > p[1])
    if f == "heart":
        x, y = 1.2 * u, 0.2 - 1.2 * v
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    if f == "arrow":
        shaft = (np.abs(v) <= p[0]) & (u >= -0.9) & (u <= 0.1)
        return shaft | ((u >= 0.1) & (u <= 0.9) & (np.abs(v) <= 0.75 * (0.9 - u)))
    if f == "bowtie":
        return (np.abs(u) <= p[0]) & (np.abs(v) <= 0.9 * np.abs(u) + 0.08)
    if f == "keyhole":
        head = np.hypot(u, v + 0.35) <= p[0]
        return head | ((v >= -0.2) & (v <= 0.9) & (np.abs(u) <= 0.15 + 0.3 * (v + 0.2) / 1.1))
    if f == "half-disc":
        return (rho <= 1) & (v >= p[0])
    if f == "teardrop":
        bulb = np.hypot(u, v - 0.25) <= p[0]
        return bulb | ((v >= -0.95) & (v <= 0.25) & (np.abs(u) <= p[0] * (v + 0.95) / 1.2))
    raise ValueError(f"unknown shape family {f!r}")


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def look_texture(cls: ShapeClass, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 0..255: the look of ``cls`` (its colour family and texture), with
    this instance's jitter (hue +-0.03, saturation and value +-0.08, pattern angle and phase)."""
    base = _hsv_to_rgb(
        cls.hue + rng.uniform(-0.03, 0.03),
        float(np.clip(cls.sat + rng.uniform(-0.08, 0.08), 0, 1)),
        float(np.clip(cls.val + rng.uniform(-0.08, 0.08), 0, 1)),
    )
    xs, ys = _grid(size)
    theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    w = 2 * np.pi / (cls.period * size)
    a = w * (xs * np.cos(theta) + ys * np.sin(theta)) + phase
    b = w * (-xs * np.sin(theta) + ys * np.cos(theta))
    if cls.texture == "stripes":
        pattern = np.sign(np.sin(a))
    elif cls.texture == "spots":
        pattern = np.where(np.cos(a) * np.cos(b) > 0.4, 1.0, -0.3)
    elif cls.texture == "checker":
        pattern = np.sign(np.sin(a) * np.sin(b))
    elif cls.texture == "noise":
        cells = max(2, int(round(1 / cls.period)))
        pattern = 3 * (smooth_field(rng, size, cells, 1)[..., 0] - 0.5)
    else:
        pattern = np.zeros((size, size), np.float32)
    field = smooth_field(rng, size, 3, 3) - 0.5
    img = base[None, None] + 35 * pattern[..., None] + 30 * field
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.float32)


def segment_scene(
    rng: np.random.Generator, size: int, classes: list[ShapeClass], free: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A scene holding one shape of each of ``classes`` (drawn in order, later ones on top) on a
    random textured background: ``(image (size, size, 3) uint8, visible masks)``, one (size, size)
    bool mask per class. Every shape keeps at least half of its area visible when a placement
    allows it (60 tries; else the try with the best worst visibility). ``free``: random looks
    instead of the classes' own."""
    best, best_score = None, -1.0
    for _ in range(60):
        masks = []
        for cls in classes:
            r = rng.uniform(0.15, 0.27) * size
            cx, cy = rng.uniform(0.2 * size, 0.8 * size, 2)
            masks.append(class_mask(cls, size, cx, cy, r, rng.uniform(0, 2 * np.pi)))
        visible, above = [], np.zeros((size, size), bool)
        for m in reversed(masks):
            visible.append(m & ~above)
            above |= m
        visible.reverse()
        score = min(vis.sum() / max(m.sum(), 1) for vis, m in zip(visible, masks, strict=True))
        if score > best_score:
            best, best_score = (masks, visible), score
        if score >= 0.5:
            break
    masks, visible = best
    img = texture(rng, size)
    for cls, m in zip(classes, masks, strict=True):
        img[m] = (texture(rng, size) if free else look_texture(cls, rng, size))[m]
    return _to_uint8(img), visible


def _segment(rng: np.random.Generator, size: int, pool: tuple[ShapeClass, ...], free: bool):
    n = int(rng.integers(2, 5))
    classes = [pool[int(i)] for i in rng.choice(len(pool), n, replace=False)]
    image, visible = segment_scene(rng, size, classes, free)
    chosen = int(rng.integers(n))
    labels = visible[chosen].astype(np.uint8)
    return image, labels, {"free_colour": np.uint8(free)}, classes[chosen].name


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


def _draw(task: str, index: int, split: str, size: int, seed: int):
    """``(image, ground truth, extras, group or None)`` of one sample (arguments checked)."""
    rng = sample_rng(seed, task, split, index)
    if task in SEGMENT_TASKS:
        return _segment(rng, size, SEGMENT_POOLS[split], SEGMENT_TASKS[task])
    return (*_RENDER[task](rng, size), None)


def render(
    task: str, index: int, *, split: str = "train", size: int = 64, seed: int = 0
) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
    """``(image (size, size, 3) uint8, ground truth, extras)`` of one sample; the ground truth is
    what the task's codec encodes (label map, depth metres, instance ids, (K, 3) keypoints or the
    clean RGB image)."""
    _check(task, index, split, size, seed)
    return _draw(task, index, split, size, seed)[:3]


def _check(task: str, index: int, split: str, size: int, seed: int) -> None:
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


def generate(
    task: str, index: int, *, split: str = "train", size: int = 64, seed: int = 0
) -> Sample:
    """One painted ``Sample`` (id ``<task>-<split>-<index>``; ``group``: the target's class for
    ``synthetic-segment``, else None)."""
    from painter_cli.tasks import get_codec

    _check(task, index, split, size, seed)
    image, truth, extras, group = _draw(task, index, split, size, seed)
    spec = SYNTHETIC_TASKS[task]
    target = get_codec(spec.codec, **spec.codec_params(size)).encode(truth)
    sid = f"{task}-{split}-{index:06d}"
    return Sample(id=sid, image=image, target=target, extras=extras, group=group)


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
        "count": (
            "samples to generate (default: 1000 train, 100 val/ood; restoration 3000 train;"
            " synthetic-segment and -outline 16000 train, 200 val/ood)"
        ),
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
        _check(task, 0, split, opts["size"], opts["seed"])
        count = opts["count"] if opts["count"] is not None else SYNTHETIC_TASKS[task].count(split)
        if count < 1:
            raise PainterError(f"source synthetic: count must be >= 1, got {count}")
        self._task, self.count, self.seed, self.size = task, count, opts["seed"], opts["size"]

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
