"""Prediction speed: ``painter-tiny`` throughput and the ViT-L canvas latency, same run.

1. ``painter-tiny`` (canvas 64x32, random weights), the whole per-image path of ``painter
   predict`` short of file IO: query resize + normalisation, canvas, forward, de-normalisation and
   resize back to the query size. Baseline: batch 1; ours: batch 8. Goal: >= 20 images/s at batch 8.
2. ``painter-vit-large`` (canvas 896x448, random weights): one forward of one canvas. Baseline:
   fp32; ours: bf16 autocast. Goal: bf16 <= 6 s on 2 cores.

    python bench/predict.py            # both parts (ViT-L: ~1 min on 2 cores)
    python bench/predict.py --quick    # the tiny part only, fewer iterations

Measured on this 2-core CPU, idle (2026-11-28, torch 2.14.1): tiny 168 images/s at batch 1, 533 at
batch 8 (goal >= 20); ViT-L canvas fp32 8.5 s, bf16 5.8 s (goal <= 6 s). Under a load of 8 on the
same 2 cores: tiny batch 8 18 images/s with 2 threads, 118 with 1; ViT-L bf16 28 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from painter_cli.inference import Predictor, finish
from painter_cli.model import build_model


def tiny_throughput(batch: int, images: int, seed: int = 0) -> float:
    """Images per second of the tiny model at ``batch`` queries per forward."""
    predictor = Predictor(build_model("painter-tiny", seed=seed), device="cpu")
    rng = np.random.default_rng(seed)
    queries = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(images)]
    prompt = predictor.prompt(queries[0], queries[-1])
    run = 0

    def step(chunk):
        tensors = torch.stack([predictor.query(q) for q in chunk])
        painted = predictor.paint(tensors, [prompt])
        for q, p in zip(chunk, painted, strict=True):
            finish(p, q.shape[0], q.shape[1], "semseg")

    step(queries[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, images, batch):
        step(queries[i : i + batch])
        run += len(queries[i : i + batch])
    return run / (time.perf_counter() - start)


def vit_large_latency(precisions: tuple[str, ...]) -> dict[str, float]:
    """Seconds per 896x448 canvas forward of a randomly initialised ViT-L, per precision."""
    model = build_model("painter-vit-large", seed=0).eval()
    out = {}
    for precision in precisions:
        if precision == "bf16":  # as ``painter predict --precision bf16`` loads it
            model = model.to(torch.bfloat16)
        predictor = Predictor(model, device="cpu", precision=precision)
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)
        prompt = predictor.prompt(img, img)
        q = predictor.query(img)[None]
        start = time.perf_counter()
        predictor.paint(q, [prompt])
        out[precision] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, fewer images")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = 32 if args.quick else 128
    one = tiny_throughput(1, n)
    eight = tiny_throughput(8, n)
    print(f"painter-tiny, {args.threads} threads, {n} images of 160x120:")
    print(f"  batch 1 (baseline): {one:7.1f} images/s")
    print(f"  batch 8:            {eight:7.1f} images/s  ({eight / one:.2f}x baseline; goal >= 20)")
    if args.quick:
        return
    lat = vit_large_latency(("fp32", "bf16"))
    print(f"painter-vit-large, one 896x448 canvas, {args.threads} threads:")
    print(f"  fp32 (baseline): {lat['fp32']:6.2f} s")
    ratio = lat["fp32"] / lat["bf16"]
    print(f"  bf16 autocast:   {lat['bf16']:6.2f} s  ({ratio:.2f}x faster; goal <= 6 s)")


if __name__ == "__main__":
    main()
