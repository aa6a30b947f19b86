"""Do searched and learned prompts beat random ones? Measured on held-out queries, per task.

For every task of the shards: the mean held-out score of ``--random`` random training pairs (the
baseline of this run), the held-out score of the pair ``prompt-select`` picks on the probe set
(successive halving over ``--candidates`` pairs), and of that pair after ``prompt-tune`` (model
frozen, validated on ``--tune-probe-size`` other probes of the probe set, so the kept prompt is
not measured against the selection's upward-biased best score). Held-out queries are never used
for selection or tuning: they come from ``--heldout`` shards, else from the ``--probe`` shards'
samples left after both probe sets.
Scores are the task's set-level headline metric (``evaluation.evaluate``), or the masked loss for
tasks without one. Also printed: forward passes of the halving search against all pairs x all
probes, and ``r``, the correlation across the random prompts of their scores on the tuning probes
and on the held-out queries: how consistently the model's result depends on its prompt's content
(near 0: prompts of the task differ by noise only, and no search or tuning gain can carry over),
and ``noise``, the metric's noise ``prompt-select`` reports (its random prompts on the selection
probes); the last line counts the rows where selected > random and tuned > selected by more.

``--groups G ... | all`` (one task, whose samples carry groups: the concept task
``synthetic-segment``, FSS-1000) makes one row per group: candidates, probes, random prompts,
tuning queries and held-out queries are all of that group, SegGPT's in-context tuning for one
class. With ``--data`` and ``--probe`` the same shards (the ood split), the probe and held-out
queries are taken out of the candidates and the tuning pool. The selected prompt is also compared
with FSS-1000's one-shot protocol on the same held-out queries (each prompted by a seeded random
other sample of its class).

    python bench/prompts.py --checkpoint CKPT --data TRAIN_SHARDS --probe VAL_SHARDS
        [--heldout TEST_SHARDS] [--tasks T ...] [--candidates 16] [--probe-size 16]
        [--heldout-size 48] [--tune-probe-size M] [--random 10] [--steps 150] [--lr 0.01]
        [--groups G ... | all]
        [--objective loss]
        [--out WORKDIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", nargs="+", required=True, help="training shards (candidates)")
    ap.add_argument("--probe", nargs="+", required=True, help="probe/validation shards")
    ap.add_argument("--heldout", nargs="+", help="held-out shards [default: rest of --probe]")
    ap.add_argument("--tasks", nargs="+", help="tasks [default: all tasks of --data and --probe]")
    ap.add_argument(
        "--groups",
        nargs="+",
        help="one row per group of the (one) task: candidates, probes, random prompts and "
        "held-out queries all of that group ('all': every group)",
    )
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--probe-size", type=int, default=16)
    ap.add_argument("--heldout-size", type=int, default=48)
    ap.add_argument(
        "--tune-probe-size",
        type=int,
        default=None,
        help="validation queries of the tuning, after the selection probes [default: --probe-size]",
    )
    ap.add_argument("--random", type=int, default=10)
    ap.add_argument("--min-probes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--objective", default="loss", help="loss, palette or heatmap (prompt-tune)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="work folder [default: a temp folder]")
    args = ap.parse_args()

    from painter_cli.checkpoint import load_model
    from painter_cli.evaluation import GroupPairing, evaluate
    from painter_cli.inference import default_size, load_prompt_tensors, resolve_device
    from painter_cli.prompts import (
        ModelScorer,
        QueryStore,
        prompt_dependence,
        resolve_objective,
        resolve_scoring,
        safe_name,
        select_prompts,
        split_indices,
        tune_prompt,
    )
    from painter_cli.shards import ShardReader, TaskView

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device=str(device))
    train, probe = ShardReader(args.data), ShardReader(args.probe)
    heldout = ShardReader(args.heldout) if args.heldout else probe
    tasks = args.tasks or [t for t in train.tasks if t in probe.tasks and t in heldout.tasks]
    units = [(t, None) for t in tasks]
    if args.groups:
        if len(tasks) != 1:
            raise SystemExit("--groups needs exactly one task (--tasks T)")
        have = list(train.groups(tasks[0]))
        units = [(tasks[0], g) for g in (have if "all" in args.groups else args.groups)]
    # The same shard folders for candidates and probes (the concept task's ood split): the probe
    # and held-out queries are then taken out of the candidates and the tuning pool.
    same = [Path(d).resolve() for d in train.dirs] == [Path(d).resolve() for d in probe.dirs]
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-prompts-"))
    rows = []
    for task, group in units:
        t0 = time.perf_counter()
        name = task if group is None else f"{task}/{group}"
        kind = train.codec(task).kind
        mode, metric, hib = resolve_scoring(kind)
        size = default_size(model, kind)
        rng = np.random.default_rng(args.seed)
        perm = [int(i) for i in rng.permutation(_members(probe, task, group))]
        probes = perm[: args.probe_size]
        # The tuning is validated on other probes than the selection: on the selection probes the
        # selected prompt's score is the maximum of many, so it is biased upwards.
        n_tune = args.probe_size if args.tune_probe_size is None else args.tune_probe_size
        tune_probes = perm[args.probe_size : args.probe_size + n_tune]
        if not tune_probes:
            raise SystemExit(f"{name}: no tuning probes left after {len(probes)} probes")
        used = len(probes) + len(tune_probes)
        if args.heldout:
            held = [int(i) for i in rng.permutation(_members(heldout, task, group))]
            held = held[: args.heldout_size]
        else:
            held = perm[used : used + args.heldout_size]
        if not held:
            raise SystemExit(f"{name}: no held-out queries left after {len(probes)} probes")
        taken = set(probes) | set(tune_probes) | (set(held) if heldout is probe else set())
        pool = [int(i) for i in _members(train, task, group) if not (same and int(i) in taken)]
        if group is None:
            cands, _ = split_indices(train, task, args.candidates, 1, args.seed, probe)
        else:
            cands = [int(i) for i in rng.permutation(pool)[: args.candidates]]
        on_probe = ModelScorer(model, train, probe, task, size, mode=mode, device=device)
        on_held = ModelScorer(model, train, heldout, task, size, mode=mode, device=device)
        store = QueryStore(train, task, size)
        report = select_prompts(
            train,
            task,
            cands,
            probes,
            on_probe,
            out=work / safe_name(name) / "select",
            metric=metric,
            higher_is_better=hib,
            random=args.random,
            min_probes=args.min_probes,
            seed=args.seed,
            probe_reader=probe,
            progress=False,
            group=group,
        )
        best = store.pair(report["best"]["index"])
        rand_idx = np.random.default_rng(args.seed + 1).permutation(pool)[: args.random]
        random_scores = [on_held.set_score(store.pair(int(i)), held) for i in rand_idx]
        # The same random prompts on the tuning probes: if their ranking there does not carry over
        # to the held-out queries (r near 0), the model does not use its prompt's content for this
        # task and neither search nor tuning can gain more than the metric's noise.
        on_tune = [on_probe.set_score(store.pair(int(i)), tune_probes) for i in rand_idx]
        r = prompt_dependence(on_tune, random_scores).r
        selected = on_held.set_score(best, held)
        tune_prompt(
            model,
            train,
            task,
            pool,
            best,
            out=work / safe_name(name) / "tune",
            validate=lambda p, s=on_probe, pr=tune_probes: s.set_score(p, pr),
            higher_is_better=hib,
            metric=metric,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            val_every=max(1, args.steps // 6),
            save_every=args.steps,
            seed=args.seed,
            resume=True,
            progress=False,
            objective=resolve_objective(kind, args.objective),
        )
        tuned = on_held.set_score(
            load_prompt_tensors(work / safe_name(name) / "tune" / "prompt.safetensors"), held
        )
        # FSS-1000's one-shot protocol on the same queries: each prompted by a seeded random
        # other sample of its class in the held-out shards.
        one_shot = math.nan
        if group is not None and mode != "loss":
            one_shot = evaluate(
                on_held.predictor,
                TaskView(heldout, task, held),
                task,
                [],
                batch_size=args.batch_size,
                progress=False,
                pairing=GroupPairing(heldout, task, shots=1, seed=args.seed),
            )[metric]
        on_probe.close()
        on_held.close()
        rows.append(
            dict(
                task=name,
                metric=metric,
                hib=hib,
                random=float(np.nanmean(random_scores)),
                random_std=float(np.nanstd(random_scores)),
                r=r,
                noise=report["dependence"]["noise"],
                selected=selected,
                tuned=tuned,
                one_shot=float(one_shot),
                passes=report["forward_passes"],
                naive=report["naive_evaluations"],
                probes=len(probes),
                held=len(held),
                seconds=time.perf_counter() - t0,
            )
        )
        _print(rows[-1:], header=len(rows) == 1)
    print()
    wins_sel = sum(_better(r["selected"], r["random"], r["hib"]) for r in rows)
    wins_tun = sum(_better(r["tuned"], r["selected"], r["hib"]) for r in rows)
    print(f"selected beats random mean: {wins_sel}/{len(rows)}; ", end="")
    print(f"tuned beats selected: {wins_tun}/{len(rows)}  (work folder: {work})")
    if args.random:
        sel = sum(_better(r["selected"], r["random"], r["hib"], r["noise"]) for r in rows)
        tun = sum(_better(r["tuned"], r["selected"], r["hib"], r["noise"]) for r in rows)
        both = sum(
            _better(r["selected"], r["random"], r["hib"], r["noise"])
            and _better(r["tuned"], r["selected"], r["hib"], r["noise"])
            for r in rows
        )
        print(
            f"by more than the noise prompt-select reports: selected > random {sel}/{len(rows)}, "
            f"tuned > selected {tun}/{len(rows)}, both {both}/{len(rows)}"
        )
    if args.groups:
        wins = sum(_better(r["selected"], r["one_shot"], r["hib"]) for r in rows)
        print(f"selected beats the seeded one-shot protocol: {wins}/{len(rows)} classes")
        for r in rows:
            print(f"  {r['task']}: one-shot {r['one_shot']:.4f}, selected {r['selected']:.4f}")


def _members(reader, task: str, group: str | None) -> list[int]:
    idx = reader.indices(task) if group is None else reader.groups(task).get(group, [])
    return [int(i) for i in idx]


def _better(a: float, b: float, higher_is_better: bool, margin: float | None = 0.0) -> bool:
    """``a`` better than ``b`` by more than ``margin`` (None: never, no noise estimate)."""
    if margin is None or not (math.isfinite(a) and math.isfinite(b)):
        return False
    return a - b > margin if higher_is_better else b - a > margin


def _print(rows: list[dict], header: bool) -> None:
    if header:
        print(
            f"{'task':<20} {'metric':<6} {'random (mean±sd)':>18} {'selected':>9} {'tuned':>9} "
            f"{'sel/rand':>8} {'tun/sel':>8} {'r':>5} {'noise':>7} {'passes/naive':>13} {'probe':>5} {'held':>5} {'s':>5}"
        )
    for r in rows:
        sense = "↑" if r["hib"] else "↓"
        rand = f"{r['random']:.4f}±{r['random_std']:.4f}"
        ratio_s = r["selected"] / r["random"] if r["random"] else float("nan")
        ratio_t = r["tuned"] / r["selected"] if r["selected"] else float("nan")
        print(
            f"{r['task']:<20} {r['metric'] + sense:<6} {rand:>18} {r['selected']:>9.4f} "
            f"{r['tuned']:>9.4f} {ratio_s:>8.3f} {ratio_t:>8.3f} {r['r']:>5.2f} "
            f"{_num(r['noise']):>7} "
            f"{r['passes']:>6}/{r['naive']:<6} {r['probes']:>5} {r['held']:>5} {r['seconds']:>5.0f}"
        )


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


if __name__ == "__main__":
    main()
