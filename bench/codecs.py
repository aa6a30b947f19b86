"""Instance decode speed (``coco-instance``) against the official dense method, same run.

Baseline: the official algorithm written densely, as the official evaluator does it on a GPU: for
each of the 6400 location colours a full (H, W) distance map and mask, the maskness of every
non-empty mask, then (K, H*W) masks and a K x K intersection matmul for Matrix NMS.
Ours: the same result computed per distinct painted colour (only the few levels near each colour)
with sparse membership and one BLAS product per chunk of colours.

Input: a 448x448 painted image of ``--instances`` instances plus uniform noise (integers), as a
model output after the official truncation. Goal: ours >= 10x the dense baseline, same masks.

    python bench/codecs.py                # 448x448, 10 instances, noise +-8
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from painter_cli.tasks import get_codec
from painter_cli.tasks.instance import location_palette, matrix_nms


def painted_image(size: int, instances: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros((size, size), np.int64)
    for i in range(1, instances + 1):
        y, x = rng.integers(0, size - size // 5, 2)
        h, w = rng.integers(size // 12, size // 5, 2)
        ids[y : y + h, x : x + w] = i
    img = get_codec("coco-instance").encode(ids).astype(np.float64)
    img += rng.integers(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def dense_decode(painted: np.ndarray, thr: float = 19.0, pre: int = 2000, top: int = 100):
    p = painted.reshape(-1, 3).astype(np.float32)
    pal = location_palette().astype(np.float32)
    cells, maskness = [], []
    for c in range(pal.shape[0]):
        d = np.abs(p - pal[c]).sum(1) / 3.0
        m = d < thr
        if m.any():
            cells.append(c)
            maskness.append(float(d[m].mean()))
    cells, maskness = np.array(cells), np.array(maskness)
    keep = np.argsort(maskness, kind="stable")[:pre]
    cells, maskness = cells[keep], maskness[keep]
    scores = 1.0 - maskness / max(float(maskness.max()), 1.0)
    masks = np.stack([(np.abs(p - pal[c]).sum(1) / 3.0 < thr) for c in cells]).astype(np.float32)
    inter = masks @ masks.T
    order, decayed = matrix_nms(scores, inter.astype(np.float64), masks.sum(1), 2.0, top)
    return [
        (masks[k].reshape(painted.shape[:2]) > 0, float(s))
        for k, s in zip(order, decayed, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--noise", type=int, default=8)
    args = ap.parse_args()
    painted = painted_image(args.size, args.instances, args.noise)
    codec = get_codec("coco-instance")
    codec.decode(painted[:32, :32])  # warm-up (imports, BLAS threads)
    t0 = time.perf_counter()
    ours = codec.decode(painted)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = dense_decode(painted)
    t_ref = time.perf_counter() - t0
    same = len(ours) == len(ref) and all(
        np.array_equal(a, b) and abs(s - t) < 1e-5
        for (a, s), (b, t) in zip(ours, ref, strict=False)
    )
    colours = len(np.unique(painted.reshape(-1, 3), axis=0))
    print(f"{args.size}x{args.size}, {args.instances} instances, {colours} distinct colours")
    print(f"dense baseline: {t_ref:.2f} s   ours: {t_ours:.2f} s   speed-up: {t_ref / t_ours:.1f}x")
    print(f"same masks and scores as the baseline: {same}")


if __name__ == "__main__":
    main()
