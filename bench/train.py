"""Training throughput (``painter train``) against the model alone, same run.

Baseline: forward + backward + AdamW step of the same model on one pre-built batch held in memory
(no data loading at all): the ceiling for this model, batch and device.
Ours: ``engine.train`` end to end on shards written here (two tasks: semseg + restoration),
workers decoding, augmenting and masking in the background.
Prints samples/s of both, their ratio, and the share of step time the loop waited for data.
Goal (CPU, preset tiny, fp32, batch 4): >= 15 samples/s and data wait < 10 %.

    python bench/train.py                                   # tiny on the CPU
    python bench/train.py --preset painter-vit-large --device cuda --batch-size 8 \\
        --set optim.micro_batch=8 --size 512 --steps 20     # ViT-L on a GPU (bf16)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from painter_cli import config as cfgmod
from painter_cli import engine
from painter_cli.shards import ShardWriter
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec


def write_bench_shards(out: Path, n: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tasks = {
        "ade20k-semseg": {"codec": "ade20k-semseg", "params": {}},
        "sidd-denoise": {"codec": "restoration", "params": {}},
    }
    semseg, restore = get_codec("ade20k-semseg"), get_codec("restoration")
    h, w = size, size * 4 // 3
    with ShardWriter(out, tasks, shard_size=64) as writer:
        for k in range(n):
            base = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
            image = np.kron(base, np.ones((16, 16, 1), np.uint8))
            noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
            labels = (image[..., 0] // 32).astype(np.int64)
            writer.add(Sample(f"s{k}", image, semseg.encode(labels)), "ade20k-semseg")
            writer.add(Sample(f"d{k}", noisy, restore.encode(image)), "sidd-denoise")
    return out


def model_only(cfg: cfgmod.TrainConfig, device: torch.device, steps: int) -> float:
    """Samples/s of forward + backward + step on a fixed in-memory batch (the baseline)."""
    from painter_cli.model import build_model, get_config

    model = build_model(get_config(cfg.model.preset)).to(device).train()
    h, w = model.config.img_size
    hp, wp = model.config.grid
    micro = cfg.optim.micro_batch or cfg.optim.batch_size
    accum = cfg.optim.batch_size // micro
    x = torch.randn(micro, 3, h, w, device=device)
    mask = torch.zeros(micro, hp * wp, device=device)
    mask[:, hp * wp // 2 :] = 1
    opt = torch.optim.AdamW(
        engine.param_groups(model, cfg.optim.weight_decay, cfg.optim.layer_decay), lr=1e-4
    )
    bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and device.type == "cuda")

    def step():
        for _ in range(accum):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = model(x, x, mask)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.optim.batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="run.threads (0: auto)")
    ap.add_argument("--size", type=int, default=96, help="shard image height (width 4/3 of it)")
    ap.add_argument("--samples", type=int, default=48, help="samples per task in the shards")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg = cfgmod.resolve(
        preset=args.preset,
        overrides=[
            f"schedule.steps={args.steps}",
            "schedule.warmup_steps=1",
            f"optim.batch_size={args.batch_size}",
            f"data.num_workers={args.workers}",
            f"run.device={args.device}",
            f"run.checkpoint_every={10 * args.steps}",
            f"run.log_every={args.steps}",
            f"run.threads={args.threads}",
            *args.overrides,
        ],
    )
    device = torch.device(args.device if args.device != "auto" else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(engine.cpu_threads(cfg))  # the baseline gets what the run gets
    with tempfile.TemporaryDirectory() as tmp:
        data = write_bench_shards(Path(tmp) / "shards", args.samples, args.size)
        cfg.data.paths = [str(data)]
        base = model_only(cfg, device, max(5, args.steps // 4))
        result = engine.train(cfg, Path(tmp) / "run")
    print(
        f"preset {args.preset}, batch {args.batch_size}, device {device}, threads {torch.get_num_threads()}"
    )
    print(f"model only (baseline): {base:8.2f} samples/s")
    print(f"painter train:         {result.samples_per_s:8.2f} samples/s")
    print(f"ratio train / model:   {result.samples_per_s / base:8.2f}")
    print(f"data wait share:       {100 * result.data_wait_share:8.1f} % of step time")
    if args.preset == "tiny" and device.type == "cpu":
        ok = result.samples_per_s >= 15 and result.data_wait_share < 0.10
        print(f"goal (>= 15 samples/s, wait < 10 %): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
