"""CPU speed and memory of the Painter model against the official attention math, same run.

Cases:
- ``reference fp32``: the official math (explicit softmax over q k^T + materialised rel-pos terms),
  the baseline every ratio is against;
- ``bias fp32``: SDPA with a materialised (heads, N, N) rel-pos bias (timm's path);
- ``fused fp32`` / ``fused bf16``: the default, one SDPA call over augmented q/k (bf16 = autocast).

Measured: forward (eval, no grad) and forward+backward (train) seconds per step, median of
``--repeats``, with all cases timed round-robin on one model in one process (the machine is
shared: interleaving spreads load changes over all cases); then the peak RSS growth of one
forward and one forward+backward per case, each in a fresh subprocess (VmHWM over the RSS before
the step).

Goals: fused fp32 forward >= 1.5x reference, fused bf16 forward >= 2.5x reference fp32, peak
memory no higher than reference.

    python bench/model.py --quick            # ViT-L width at 896x448 with 6 blocks, 1 repeat
    python bench/model.py                    # full 24-block ViT-L, 3 repeats (minutes per case)

Measured (``--quick``: ViT-L width at 896x448, 6 blocks, batch 1), 2-core CPU, torch 2.14.1,
2026-11-28, lightly loaded: official math fp32 forward 9.05 s; fused fp32 6.02 s (1.50x); fused bf16
1.32 s (6.86x); forward+backward 17.7 s vs 15.3 s fp32 (1.16x) and 7.5 s bf16 (2.35x); peak memory
fused / official 0.66 (forward) and 0.64 (forward+backward). At ``painter-tiny`` attention is a
negligible share and every implementation runs at the same speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CASES = [("reference", "fp32"), ("bias", "fp32"), ("fused", "fp32"), ("fused", "bf16")]


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass


def _build(spec: dict):
    import torch

    from painter_cli.model import build_model, get_config

    cfg = get_config(spec["preset"])
    changes = {"drop_path_rate": 0.0}
    if spec["depth"] and spec["depth"] != cfg.depth:
        d = spec["depth"]
        changes.update(
            depth=d, feature_blocks=tuple(range(d - 4, d)), merge_index=min(cfg.merge_index, d - 4)
        )
    model = build_model(cfg, **changes)
    h, w = model.config.img_size
    n = spec["batch"]
    g = torch.Generator().manual_seed(0)
    imgs, tgts = torch.randn(n, 3, h, w, generator=g), torch.randn(n, 3, h, w, generator=g)
    mask = torch.zeros(n, model.config.num_patches)
    mask[:, mask.shape[1] // 2 :] = 1
    return model, (imgs, tgts, mask)


def _steps(model, inputs, impl: str, dtype: str):
    """(forward, forward+backward) callables for one case; switching impl keeps the weights."""
    import torch

    amp = dtype == "bf16"

    def fwd():
        for blk in model.blocks:
            blk.attn.attn_impl = impl
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model(*inputs, compute_loss=False)

    def fwdbwd():
        for blk in model.blocks:
            blk.attn.attn_impl = impl
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = model(*inputs)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return fwd, fwdbwd


def memory_worker(spec: dict) -> dict:
    """Peak RSS growth of one forward and one forward+backward, in a fresh process."""
    model, inputs = _build(spec)
    out = {}
    for name, fn in zip(
        ("fwd", "fwdbwd"), _steps(model, inputs, spec["impl"], spec["dtype"]), strict=True
    ):
        base = _rss_mb("VmRSS")
        _reset_peak()
        fn()
        out[name + "_peak_mb"] = _rss_mb("VmHWM") - base
    return out


def time_cases(spec: dict, cases: list) -> dict:
    """Seconds per step of every case, interleaved round by round so load changes hit all alike."""
    model, inputs = _build(spec)
    steps = {case: _steps(model, inputs, *case) for case in cases}
    for case in cases:
        steps[case][0]()  # warm-up: one forward per case (kernel selection, allocator)
    times = {(case, k): [] for case in cases for k in ("fwd", "fwdbwd")}
    for _ in range(spec["repeats"]):
        for case in cases:
            for k, fn in zip(("fwd", "fwdbwd"), steps[case], strict=True):
                t0 = time.perf_counter()
                fn()
                times[(case, k)].append(time.perf_counter() - t0)
    return {
        case: {k: statistics.median(times[(case, k)]) for k in ("fwd", "fwdbwd")} for case in cases
    }


def run_memory_case(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"memory case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 blocks at the full canvas, 1 repeat"
    )
    parser.add_argument("--depth", type=int, default=24, help="blocks of the large model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--presets", default="painter-vit-large,painter-tiny")
    parser.add_argument(
        "--cases",
        default=None,
        help="comma list of impl:dtype (default all; --quick drops bias:fp32, whose backward is slowest)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(memory_worker(json.loads(args.worker))))
        return
    if args.quick:
        args.depth, args.repeats = 6, 1
    if args.cases:
        cases = [tuple(c.split(":")) for c in args.cases.split(",")]
    else:
        cases = [c for c in CASES if not (args.quick and c[0] == "bias")]
    if ("reference", "fp32") not in cases:
        cases.insert(0, ("reference", "fp32"))

    for preset in args.presets.split(","):
        tiny = preset == "painter-tiny"
        spec = {"preset": preset, "depth": 0 if tiny else args.depth, "batch": 2 if tiny else args.batch,
                "repeats": 20 if tiny else args.repeats}  # fmt: skip
        label = preset if tiny else f"{preset} (depth {args.depth}, batch {args.batch})"
        print(f"\n== {label}: timing {len(cases)} cases interleaved ...", flush=True)
        t = time_cases(spec, cases)
        mem = {case: run_memory_case({**spec, "impl": case[0], "dtype": case[1]}) for case in cases}
        print(
            f"{'case':16} {'fwd s':>8} {'x ref':>6} {'fwd+bwd s':>10} {'x ref':>6} {'peak fwd MB':>12} {'peak f+b MB':>12}"
        )
        ref = t[("reference", "fp32")]
        for case in cases:
            r, m = t[case], mem[case]
            print(
                f"{case[0] + ' ' + case[1]:16} {r['fwd']:8.3f} {ref['fwd'] / r['fwd']:6.2f} {r['fwdbwd']:10.3f} "
                f"{ref['fwdbwd'] / r['fwdbwd']:6.2f} {m['fwd_peak_mb']:12.0f} {m['fwdbwd_peak_mb']:12.0f}"
            )
        f32, b16 = t[("fused", "fp32")], t[("fused", "bf16")]
        mref, mf = mem[("reference", "fp32")], mem[("fused", "fp32")]
        print(
            f"goals: fused fp32 fwd {ref['fwd'] / f32['fwd']:.2f}x (>= 1.5), "
            f"bf16 fwd {ref['fwd'] / b16['fwd']:.2f}x (>= 2.5), "
            f"peak fwd / f+b fused vs ref {mf['fwd_peak_mb'] / max(mref['fwd_peak_mb'], 1):.2f} / "
            f"{mf['fwdbwd_peak_mb'] / max(mref['fwdbwd_peak_mb'], 1):.2f} (<= 1)",
            flush=True,
        )


if __name__ == "__main__":
    main()
