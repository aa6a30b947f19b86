"""GPU speed of the ViT-L Painter against the official attention math, in the same run.

Training step (bf16 autocast, AdamW, 896x448 canvases, half-masked targets): samples/s, peak
memory and MFU (model FLOPs from torch's FlopCounterMode, against ``--peak-tflops``, default H100/
H200 dense bf16) for ``attn_impl`` = reference (official explicit softmax), bias and fused.
Inference: canvases/s at batch 1 and 32 (bf16, no grad) for the same implementations.

    python bench/gpu.py                     # needs CUDA
    python bench/gpu.py --batch 4 --steps 10 --impls reference,fused
"""

from __future__ import annotations

import argparse
import time

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak_gb(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def flops_per_sample(model, imgs, tgts, mask) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    dev = imgs.device.type
    with FlopCounterMode(display=False) as counter, torch.autocast(dev, dtype=torch.bfloat16):
        loss, _ = model(imgs[:1], tgts[:1], mask[:1])
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def batch(model, n, device):
    h, w = model.config.img_size
    g = torch.Generator(device=device).manual_seed(0)
    imgs = torch.randn(n, 3, h, w, device=device, generator=g)
    tgts = torch.randn(n, 3, h, w, device=device, generator=g)
    mask = torch.zeros(n, model.config.num_patches, device=device)
    mask[:, mask.shape[1] // 2 :] = 1
    return imgs, tgts, mask


def timed(fn, steps: int, dev: torch.device) -> float:
    fn()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t0) / steps


def bench_impl(impl: str, args: argparse.Namespace) -> dict:
    from painter_cli.model import build_model

    dev = torch.device(args.device)
    model = build_model(args.preset, attn_impl=impl, grad_checkpointing=args.checkpointing).to(dev)
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.05, fused=dev.type == "cuda"
    )
    imgs, tgts, mask = batch(model, args.batch, dev)
    out = {"flops": flops_per_sample(model.train(), imgs, tgts, mask)}

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, _ = model(imgs, tgts, mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    _reset_peak(dev)
    sec = timed(step, args.steps, dev)
    out["train_sps"] = args.batch / sec
    out["train_peak_gb"] = _peak_gb(dev)
    out["mfu"] = out["flops"] * out["train_sps"] / (args.peak_tflops * 1e12)
    opt.state.clear()  # free the optimizer moments before the inference runs
    model.eval()
    for n in (1, args.infer_batch):
        x, y, m = batch(model, n, dev)

        def infer(x=x, y=y, m=m):
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
                model(x, y, m, compute_loss=False)

        _reset_peak(dev)
        out[f"infer{n}"] = n / timed(infer, args.steps, dev)
        out[f"infer{n}_peak_gb"] = _peak_gb(dev)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="painter-vit-large")
    parser.add_argument("--batch", type=int, default=8, help="training batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--impls", default="reference,bias,fused", help="first one is the baseline")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="device dense bf16 peak")
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--device", default="cuda", help="cpu only as a smoke test of this script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{name}  preset {args.preset}  train batch {args.batch}")
    nb = args.infer_batch
    print(
        f"{'impl':10} {'train/s':>8} {'x ref':>6} {'peak GB':>8} {'MFU':>6} {'inf b1/s':>9} "
        f"{f'inf b{nb}/s':>10} {'x ref':>6} {'inf peak GB':>12}"
    )
    ref = None
    for impl in args.impls.split(","):
        r = bench_impl(impl, args)
        if args.device == "cuda":
            torch.cuda.empty_cache()
        ref = ref or r
        print(
            f"{impl:10} {r['train_sps']:8.2f} {r['train_sps'] / ref['train_sps']:6.2f} "
            f"{r['train_peak_gb']:8.1f} {r['mfu']:6.1%} {r['infer1']:9.2f} {r[f'infer{nb}']:10.2f} "
            f"{r[f'infer{nb}'] / ref[f'infer{nb}']:6.2f} {r[f'infer{nb}_peak_gb']:12.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
