"""Tiny shard directories for training tests, written with the real ``ShardWriter``.

``write_shards(out, tasks=...)`` writes ``n`` samples per task; images are smooth random colour
fields (learnable), targets are painted by the task's real codec:

- ``nyuv2-depth``: a depth ramp in metres (codec ``nyuv2-depth``, continuous);
- ``ade20k-semseg``: a label map of rectangles with labels 0..4 (codec ``ade20k-semseg``, discrete);
- ``coco-instance``: two rectangular instances (codec ``coco-instance``, no crop or flip);
- any other name: a restoration pair (the clean image as target, codec ``restoration``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from painter_cli.shards import ShardWriter
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec

CODECS = {
    "nyuv2-depth": "nyuv2-depth",
    "ade20k-semseg": "ade20k-semseg",
    "coco-instance": "coco-instance",
}


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(3, 4, 3)).astype(np.float32)
    ys = np.linspace(0, 2, h)[:, None]
    xs = np.linspace(0, 3, w)[None, :]
    y0 = np.clip(ys.astype(int), 0, 1)
    x0 = np.clip(xs.astype(int), 0, 2)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    c = (
        coarse[y0, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1, x0] * fy * (1 - fx)
        + coarse[y0, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1, x0 + 1] * fy * fx
    )
    return np.clip(c, 0, 255).astype(np.uint8)


def _target(task: str, codec, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if task == "nyuv2-depth":
        depth = 1.0 + 8.0 * image.mean(axis=2) / 255.0  # metres, correlated with the image
        return codec.encode(depth.astype(np.float32))
    if task == "coco-instance":
        ids = np.zeros((h, w), np.int64)
        ids[2 : h // 2, 3 : w // 2] = 1
        ids[h // 2 + 2 : h - 2, w // 2 : w - 4] = 2
        return codec.encode(ids)
    if task == "ade20k-semseg":
        labels = np.zeros((h, w), np.int64)
        for lab in range(1, 5):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            labels[y : y + rng.integers(6, h // 2), x : x + rng.integers(6, w // 2)] = lab
        return codec.encode(labels)
    return codec.encode(image)


def write_shards(
    out: str | Path,
    tasks: tuple[str, ...] = ("nyuv2-depth", "ade20k-semseg"),
    *,
    n: int = 6,
    size: tuple[int, int] = (40, 48),
    split: str = "train",
    seed: int = 0,
    shard_size: int = 5,
    groups: int = 0,
) -> Path:
    """Write ``n`` samples per task of (H, W) = ``size`` into ``out``; returns ``out``. With
    ``groups`` G > 0, sample k of each task belongs to group ``f"g{k % G}"``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    specs = {t: {"codec": CODECS.get(t, "restoration"), "params": {}} for t in tasks}
    with ShardWriter(out, specs, split=split, shard_size=shard_size) as writer:
        for t in tasks:
            codec = get_codec(specs[t]["codec"])
            for k in range(n):
                image = _image(rng, *size)
                group = f"g{k % groups}" if groups else None
                target = _target(t, codec, image, rng)
                writer.add(Sample(id=f"{t}-{k}", image=image, target=target, group=group), t)
    return out
