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
(near 0: prompts of the task differ by noise only, and no search or tuning gain can carry over;
``content`` says whether their spread exceeds 1.5x the noise, ``prompt_dependence``), and
``noise``, the metric's noise ``prompt-select`` reports (its random prompts on the selection
probes; ``says``: prompt-select's own verdict); the last line counts the rows where selected >
random and tuned > selected by more. Prompts are painted as ``predict`` and ``eval`` paint them
(the checkpoint's prompt-target resize and, for a SegGPT checkpoint of ours, its type token).

``--groups G ... | all`` (one task, whose samples carry groups: the concept task
``synthetic-segment``, FSS-1000) makes one row per group: candidates, probes, random prompts,
tuning queries and held-out queries are all of that group, SegGPT's in-context tuning for one
class. With ``--data`` and ``--probe`` the same shards (the ood split), the probe and held-out
queries are taken out of the candidates and the tuning pool. The selected prompts are also
compared with FSS-1000's one-shot protocol (``painter eval``'s: each held-out query prompted by a
seeded random other sample of its class) on the same held-out queries, with the same meter
(``metrics.FewShotMeter``: mIoU over classes, FB-IoU; each class's queries all prompted by its
selected pair, ``evaluation.GroupPairing(fixed=...)``).

``--acceptance`` runs issue 17's acceptance on the synthetic suite (``--suite ROOT``, default the
cached suite of ``defaults.ensure_suite``) and prints every number it asks for, then a summary:

1. the concept task's held-out classes (``synthetic-segment``, ood split, one class at a time,
   searched with ``--cross``: each pair scored on the class's other pairs; held-out queries from
   the ood split generated with the next seed): random mean, selected, tuned, noise; how many
   classes have selected > random and tuned > selected by more than the noise (needed: 4);
2. FSS-style one-shot eval of those held-out queries: mIoU and FB-IoU of the per-class selected
   prompts against the seeded random one-shot protocol;
3. the seven original tasks (train split candidates, val selection and tuning probes, held-out
   queries from the task's val split generated with the suite's seed + ``TASKS_HELDOUT_SEED``):
   whether each one's prompt content matters (``content``, from ``r``); where it does not, no
   selected or tuned gain is claimed;
4. depth and restoration: tuned > selected on the held-out queries, paired (``paired_gain``: the
   mean per-query gain above ``PAIRED_SE`` standard errors); also against the noise.

Its settings per part are ``ACCEPTANCE`` (any option given on the command line overrides both
parts). ``--parts``, ``--tasks`` and ``--groups`` restrict it (for trying it out). ``--json
FILE`` writes everything (rows, counts, settings, timings); ``--out`` keeps the work folder, and
a rerun with the same ``--out`` resumes (scores and tuning states are cached there).

    python bench/prompts.py --checkpoint CKPT --data TRAIN_SHARDS --probe VAL_SHARDS
        [--heldout TEST_SHARDS] [--tasks T ...] [--candidates 16] [--probe-size 16]
        [--heldout-size 48] [--tune-probe-size M] [--random 10] [--steps 150] [--lr 0.01]
        [--groups G ... | all] [--objective loss] [--out WORKDIR] [--json FILE]
    python bench/prompts.py --acceptance --checkpoint CKPT [--suite ROOT] [--out WORKDIR]
        [--json FILE] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class Settings:
    """What one row is measured with (the options of the same names)."""

    candidates: int = 16
    probe_size: int = 16
    tune_probe_size: int | None = None  # None: probe_size
    heldout_size: int = 48
    random: int = 10
    min_probes: int = 4
    steps: int = 150
    lr: float = 0.01
    objective: str = "loss"
    batch_size: int = 8
    seed: int = 0
    cross: bool = False  # candidates scored on each other (prompt-select --cross)
    ema: float = 0.0  # prompt-tune --ema: the prompt's moving average is validated and kept


# Issue 17's acceptance. Concept: a held-out class has 18-34 samples in the ood split; 6 are
# the tuning probes and the other 12-28 are searched with prompt-select --cross, each scored on
# all the others (separate probes, 6 of them, left 6-20 candidates and a noise of 1.7-4.4 mIoU
# on the bundled model, and 3/8 classes passed; cross-scoring 8/8, noise 1.1-2.3); the held-out
# queries are all of the class in the next seed's ood split. On a class's few pairs tuning
# overfits early (the 1.76 M stand-in's validation peaked by step 50 and fell after, to
# painting black on one class by step 100), so 40 steps. Tasks: the val split's 100 queries a
# task are 16 selection and 84 tuning probes; 300 held-out queries of a split of their own (68
# left in val put 2 standard errors of low light's paired gain at 0.12 dB, its gain from the
# selected pair was 0.15-0.25 dB on the seed-1 val split); 200 steps of batch 16, the prompt
# averaged (--ema 0.95): on low light +0.17 dB from the selected pair, against +0.10 with 100
# steps of batch 8, live. With the bundled model the whole run takes about 25 minutes on 2 CPU
# cores, --threads 2 (instance 10 of them: its AP on 300 queries for every prompt).
ACCEPTANCE = {
    "concept": Settings(
        candidates=32,
        probe_size=32,
        tune_probe_size=6,
        heldout_size=30,
        min_probes=2,
        steps=40,
        lr=0.05,
        cross=True,
    ),  # fmt: skip
    "tasks": Settings(
        probe_size=16,
        tune_probe_size=84,
        heldout_size=300,
        steps=200,
        lr=0.02,
        batch_size=16,
        ema=0.95,
    ),  # fmt: skip
}
# The tasks' held-out queries: the suite's val split generated with the seed + 2, a split of its
# own (seed + 1's val split was where the tuning settings were chosen).
TASKS_HELDOUT_SEED = 2
CONCEPT_TASK = "synthetic-segment"
CLASSES_NEEDED = 4  # issue 17: both margins on at least 4 held-out classes
GAIN_KINDS = ("depth", "restoration")  # issue 17: tuned > selected still holds on these
# ... judged on the held-out queries, paired: the mean per-query gain above 2 standard errors.
PAIRED_SE = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", nargs="+", help="training shards (candidates)")
    ap.add_argument("--probe", nargs="+", help="probe/validation shards")
    ap.add_argument("--heldout", nargs="+", help="held-out shards [default: rest of --probe]")
    ap.add_argument("--tasks", nargs="+", help="tasks [default: all tasks of --data and --probe]")
    ap.add_argument(
        "--groups",
        nargs="+",
        help="one row per group of the (one) task: candidates, probes, random prompts and "
        "held-out queries all of that group ('all': every group)",
    )
    ap.add_argument(
        "--acceptance",
        action="store_true",
        help="issue 17's acceptance on the synthetic suite (no --data/--probe)",
    )
    ap.add_argument("--suite", help="suite root for --acceptance [default: the cached suite]")
    ap.add_argument(
        "--concept-task",
        default=CONCEPT_TASK,
        help=f"--acceptance: the grouped task of part 1 [default: {CONCEPT_TASK}]",
    )
    ap.add_argument(
        "--parts",
        nargs="+",
        choices=("concept", "tasks"),
        default=["concept", "tasks"],
        help="--acceptance: which parts to run",
    )
    for f in fields(Settings):  # None: the default of the mode (plain, or ACCEPTANCE's)
        kind = float if f.name in ("lr", "ema") else str if f.name == "objective" else int
        if f.name == "cross":
            kind = _yes
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", help="work folder [default: a temp folder]")
    ap.add_argument("--json", help="write every number into this JSON file")
    args = ap.parse_args()

    from painter_cli.checkpoint import load_model
    from painter_cli.inference import resolve_device

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device=str(device))
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-prompts-"))
    bench = Bench(model, args.checkpoint, device, work)
    if args.acceptance:
        doc = acceptance(bench, args)
    else:
        if not args.data or not args.probe:
            raise SystemExit("--data and --probe are needed (or --acceptance)")
        doc = plain(bench, args)
    doc["seconds"] = time.perf_counter() - t0
    doc["work"] = str(work)
    print(f"\n{doc['seconds']:.0f} s in all (work folder: {work})")
    if args.json:
        Path(args.json).write_text(json.dumps(_clean(doc), indent=2) + "\n")
        print(f"wrote {args.json}")


def _settings_key(s: Settings) -> dict[str, Any]:
    """``s`` as a cache fingerprint; ``cross`` and ``ema`` only when set, so older work folders
    resume."""
    return {k: v for k, v in asdict(s).items() if k not in ("cross", "ema") or v}


def _yes(text: str) -> bool:
    if text.lower() not in ("0", "1", "no", "yes", "false", "true"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected yes or no")
    return text.lower() in ("1", "yes", "true")


def settings_from(args: argparse.Namespace, base: Settings) -> Settings:
    """``base`` with every option given on the command line."""
    given = {f.name: getattr(args, f.name) for f in fields(Settings)}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


# --- one row ----------------------------------------------------------------------------------


class Bench:
    """The frozen model and where its rows are measured."""

    def __init__(self, model: Any, checkpoint: str, device: torch.device, work: Path):
        self.model, self.checkpoint, self.device, self.work = model, checkpoint, device, work

    def paint_as(self, reader: Any, task: str) -> tuple[str, str | None]:
        """``(prompt target resize, SegGPT type token)`` as ``predict``/``eval`` paint ``task``."""
        from painter_cli.checkpoint import resolve_seg_type
        from painter_cli.inference import prompt_resize

        codec = reader.codec(task)
        resize = prompt_resize(self.checkpoint, self.model, "auto", codec, task)[1]
        return resize, resolve_seg_type(self.checkpoint, self.model, None, codec.kind, task)

    def measure(
        self,
        train: Any,
        probe: Any,
        heldout: Any,
        task: str,
        group: str | None,
        s: Settings,
        folder: str,
    ) -> dict[str, Any]:
        """One row: ``task`` (or its ``group``) searched on ``probe``, tuned, scored on ``heldout``
        (``heldout is probe``: the probe shards' samples left after both probe sets)."""
        from painter_cli.inference import default_size, load_prompt_tensors
        from painter_cli.prompts import (
            ModelScorer,
            QueryStore,
            prompt_dependence,
            resolve_objective,
            resolve_scoring,
            safe_name,
            select_prompts,
            tune_prompt,
            verdict,
        )

        t0 = time.perf_counter()
        name = task if group is None else f"{task}/{group}"
        codec = train.codec(task)
        mode, metric, hib = resolve_scoring(codec.kind, codec=codec)
        size = default_size(self.model, codec.kind)
        resize, seg_type = self.paint_as(train, task)
        probes, tune_probes, held, pool, cands = split(train, probe, heldout, task, group, s)
        if not tune_probes:
            raise SystemExit(f"{name}: no tuning probes left after {len(probes)} probes")
        if not held:
            raise SystemExit(f"{name}: no held-out queries left after {len(probes)} probes")
        kw = dict(mode=mode, device=self.device, target_resize=resize, seg_type=seg_type)
        kw["batch_size"] = s.batch_size
        on_probe = ModelScorer(self.model, train, probe, task, size, **kw)
        on_held = ModelScorer(self.model, train, heldout, task, size, **kw)
        store = QueryStore(train, task, size, target_resize=resize)
        where = self.work / folder / safe_name(name)
        key = {
            "checkpoint": str(Path(self.checkpoint).resolve()),
            "task": name,
            "data": _dirs(train),
            "probe": _dirs(probe),
            "size": size,
            "seg_type": seg_type,
            "resize": resize,
            **({"cross": True} if s.cross else {}),
        }
        report = select_prompts(
            train,
            task,
            cands,
            probes,
            on_probe,
            out=where / "select",
            metric=metric,
            higher_is_better=hib,
            random=s.random,
            min_probes=s.min_probes,
            seed=s.seed,
            fingerprint=key,
            probe_reader=probe,
            progress=False,
            group=group,
            cross=s.cross,
        )
        t_select = time.perf_counter()
        best = store.pair(report["best"]["index"])
        rand_idx = np.random.default_rng(s.seed + 1).permutation(pool)[: s.random]
        random_scores = [on_held.set_score(store.pair(int(i)), held) for i in rand_idx]
        # The same random prompts on the tuning probes: if their ranking there does not carry over
        # to the held-out queries (r near 0), the model does not use its prompt's content for this
        # task and neither search nor tuning can gain more than the metric's noise.
        on_tune = [on_probe.set_score(store.pair(int(i)), tune_probes) for i in rand_idx]
        content = prompt_dependence(on_tune, random_scores)
        selected = on_held.set_score(best, held)
        t_random = time.perf_counter()
        tuned_report = tune_prompt(
            self.model,
            train,
            task,
            pool,
            best,
            out=where / "tune",
            validate=lambda p, sc=on_probe, pr=tune_probes: sc.set_score(p, pr),
            higher_is_better=hib,
            metric=metric,
            steps=s.steps,
            lr=s.lr,
            batch_size=s.batch_size,
            val_every=max(1, s.steps // 6),
            save_every=s.steps,
            seed=s.seed,
            resume=True,
            fingerprint={**key, **_settings_key(s), "tune_probes": tune_probes, "init": best.name},
            progress=False,
            objective=resolve_objective(codec.kind, s.objective),
            seg_type=seg_type,
            ema=s.ema,
        )
        t_tune = time.perf_counter()
        tuned_prompt = load_prompt_tensors(where / "tune" / "prompt.safetensors")
        tuned = on_held.set_score(tuned_prompt, held)
        paired = None
        if codec.kind in GAIN_KINDS:  # set scores that are means of per-query scores
            paired = paired_gain(
                on_held.score_prompt(best, held), on_held.score_prompt(tuned_prompt, held), hib
            )
        on_probe.close()
        on_held.close()
        dep = report["dependence"]
        return dict(
            task=name,
            group=group,
            kind=codec.kind,
            metric=metric,
            hib=hib,
            random=float(np.nanmean(random_scores)),
            random_std=float(np.nanstd(random_scores)),
            random_scores=random_scores,
            selected=selected,
            tuned=tuned,
            noise=dep["noise"],
            says=dep,
            says_line=verdict(dep, name),
            r=content.r,
            content=content.to_json(),
            tune_kept_initial=tuned_report["best_step"] == 0,
            paired=paired,
            selected_index=int(report["best"]["index"]),
            selected_id=report["best"]["id"],
            passes=report["forward_passes"],
            naive=report["naive_evaluations"],
            candidates=len(cands),
            probes=len(probes),
            tune_probes=len(tune_probes),
            held=len(held),
            held_indices=held,
            seg_type=seg_type,
            seconds=time.perf_counter() - t0,
            phases={
                "select": t_select - t0,
                "random_and_selected": t_random - t_select,
                "tune": t_tune - t_random,
                "tuned": time.perf_counter() - t_tune,
            },
        )

    def fewshot(self, train: Any, heldout: Any, task: str, rows: list[dict], s: Settings) -> dict:
        """The rows' held-out queries (all classes) under ``painter eval``'s one-shot protocol and
        under each class's selected pair, scored by the same few-shot meter."""
        from painter_cli.evaluation import GroupPairing, evaluate
        from painter_cli.inference import Predictor, default_size
        from painter_cli.shards import TaskView

        t0 = time.perf_counter()
        resize, seg_type = self.paint_as(heldout, task)
        size = default_size(self.model, heldout.codec(task).kind)
        predictor = Predictor(self.model, size=size, device=self.device, seg_type=seg_type)
        view = TaskView(heldout, task, sorted(i for r in rows for i in r["held_indices"]))
        pairings = {
            "one_shot": GroupPairing(heldout, task, shots=1, seed=s.seed, target_resize=resize),
            "selected": GroupPairing(
                train,
                task,
                target_resize=resize,
                fixed={r["group"]: [r["selected_index"]] for r in rows},
            ),
        }
        out: dict[str, Any] = {"queries": len(view)}
        for label, pairing in pairings.items():
            res = evaluate(
                predictor, view, task, [], batch_size=s.batch_size, progress=False, pairing=pairing
            )
            out[label] = {
                k: res.get(k) for k in ("miou", "fb_iou", "fg_iou", "bg_iou", "class_iou", "images")
            }
            out[label]["skipped"] = res["pairing"]["skipped_queries"]
        wins = [
            g
            for g, v in out["selected"]["class_iou"].items()
            if v > out["one_shot"]["class_iou"].get(g, math.inf)
        ]
        out["classes_won"] = len(wins)
        out["classes"] = len(out["selected"]["class_iou"])
        out["seconds"] = time.perf_counter() - t0
        return out


def _dirs(reader: Any) -> list[str]:
    return [str(Path(d).resolve()) for d in reader.dirs]


def split(
    train: Any, probe: Any, heldout: Any, task: str, group: str | None, s: Settings
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """``(selection probes, tuning probes, held-out queries, tuning pool, candidates)`` of one
    row, seeded by ``s.seed``."""
    from painter_cli.prompts import split_indices

    name = task if group is None else f"{task}/{group}"
    # The same shard folders for candidates and probes (the concept task's ood split): the
    # probe and held-out queries are then taken out of the candidates and the tuning pool.
    same = _dirs(train) == _dirs(probe)
    rng = np.random.default_rng(s.seed)
    perm = [int(i) for i in rng.permutation(_members(probe, task, group))]
    # The tuning is validated on other probes than the selection: on the selection probes the
    # selected prompt's score is the maximum of many, so it is biased upwards.
    n_tune = s.probe_size if s.tune_probe_size is None else s.tune_probe_size
    if s.cross:
        # prompt-select --cross: the pairs left after the tuning probes are the candidates, the
        # selection probes (never a pair on itself) and the tuning pool.
        if not same or heldout is probe:
            raise SystemExit(f"{name}: --cross needs --probe = --data and --heldout shards")
        tune_probes, rest = perm[:n_tune], perm[n_tune:]
        held = _draw(heldout, task, group, rng, s.heldout_size)
        return rest[: s.probe_size], tune_probes, held, rest, rest[: s.candidates]
    used = s.probe_size + n_tune
    probes, tune_probes = perm[: s.probe_size], perm[s.probe_size : used]
    if heldout is not probe:
        held = _draw(heldout, task, group, rng, s.heldout_size)
    else:
        held = perm[used : used + s.heldout_size]
    taken = set(perm[:used]) | (set(held) if heldout is probe else set())
    pool = [int(i) for i in _members(train, task, group) if not (same and int(i) in taken)]
    if group is None:
        cands, _ = split_indices(train, task, s.candidates, 1, s.seed, probe)
    else:
        cands = [int(i) for i in rng.permutation(pool)[: s.candidates]]
    return probes, tune_probes, held, pool, cands


def _draw(reader: Any, task: str, group: str | None, rng: np.random.Generator, n: int) -> list[int]:
    """``n`` seeded random samples of ``task`` (of its ``group``) in ``reader``."""
    return [int(i) for i in rng.permutation(_members(reader, task, group))][:n]


def _members(reader: Any, task: str, group: str | None) -> list[int]:
    idx = reader.indices(task) if group is None else reader.groups(task).get(group, [])
    return [int(i) for i in idx]


def _better(a: float, b: float, higher_is_better: bool, margin: float | None = 0.0) -> bool:
    """``a`` better than ``b`` by more than ``margin`` (None: never, no noise estimate)."""
    if margin is None or a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return False
    return a - b > margin if higher_is_better else b - a > margin


# --- the plain bench -----------------------------------------------------------------------------


def plain(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from painter_cli.shards import ShardReader

    s = settings_from(args, Settings())
    train, probe = ShardReader(args.data), ShardReader(args.probe)
    heldout = ShardReader(args.heldout) if args.heldout else probe
    tasks = args.tasks or [t for t in train.tasks if t in probe.tasks and t in heldout.tasks]
    units = [(t, None) for t in tasks]
    if args.groups:
        if len(tasks) != 1:
            raise SystemExit("--groups needs exactly one task (--tasks T)")
        have = list(train.groups(tasks[0]))
        units = [(tasks[0], g) for g in (have if "all" in args.groups else args.groups)]
    rows = []
    for task, group in units:
        rows.append(bench.measure(train, probe, heldout, task, group, s, "rows"))
        print_rows(rows[-1:], header=len(rows) == 1)
    print()
    doc: dict[str, Any] = {"settings": asdict(s), "rows": rows, "counts": counts(rows)}
    c = doc["counts"]
    print(f"selected beats random mean: {c['selected_beats_random']}/{len(rows)}; ", end="")
    print(f"tuned beats selected: {c['tuned_beats_selected']}/{len(rows)}")
    if s.random:
        print(
            "by more than the noise prompt-select reports: selected > random "
            f"{c['selected_beats_random_by_noise']}/{len(rows)}, tuned > selected "
            f"{c['tuned_beats_selected_by_noise']}/{len(rows)}, both "
            f"{c['both_by_noise']}/{len(rows)}"
        )
    for r in rows:
        print(r["says_line"])
    from painter_cli.evaluation import fewshot_task

    if args.groups and fewshot_task(heldout.codec(tasks[0]), True):  # one class on black
        doc["fewshot"] = fs = bench.fewshot(train, heldout, tasks[0], rows, s)
        print_fewshot(fs)
    return doc


def counts(rows: list[dict]) -> dict[str, int]:
    """How many rows have selected > random and tuned > selected, plainly and by more than the
    noise prompt-select reports."""

    def n(pred) -> int:
        return sum(bool(pred(r)) for r in rows)

    def sel(r, m=0.0):
        return _better(r["selected"], r["random"], r["hib"], m)

    def tun(r, m=0.0):
        return _better(r["tuned"], r["selected"], r["hib"], m)

    return {
        "rows": len(rows),
        "selected_beats_random": n(sel),
        "tuned_beats_selected": n(tun),
        "selected_beats_random_by_noise": n(lambda r: sel(r, r["noise"])),
        "tuned_beats_selected_by_noise": n(lambda r: tun(r, r["noise"])),
        "both_by_noise": n(lambda r: sel(r, r["noise"]) and tun(r, r["noise"])),
    }


# --- issue 17's acceptance --------------------------------------------------------------------


def acceptance(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from painter_cli.shards import ShardReader

    suite = Path(args.suite) if args.suite else _default_suite()
    doc: dict[str, Any] = {"suite": str(suite), "checkpoint": args.checkpoint}
    if "concept" in args.parts:
        t0 = time.perf_counter()
        s = settings_from(args, ACCEPTANCE["concept"])
        task = args.concept_task
        ood = ShardReader(suite / "ood")
        held = ShardReader(generated_split(suite / "ood", task, bench.work))
        groups = sorted(ood.groups(task))
        if sorted(held.groups(task)) != groups:
            raise SystemExit(f"{held.dirs[0]}: other classes than {suite / 'ood'}")
        if args.groups and "all" not in args.groups:
            groups = [g for g in groups if g in args.groups]
        print(f"1. {task}, held-out classes (ood split), one class at a time")
        print(f"   {_describe(s)}; held out: {held.dirs[0]}")
        rows = []
        for g in groups:
            rows.append(bench.measure(ood, ood, held, task, g, s, "concept"))
            print_rows(rows[-1:], header=len(rows) == 1)
        fs = bench.fewshot(ood, held, task, rows, s)
        print()
        print_fewshot(fs)
        doc["concept"] = {
            "task": task,
            "settings": asdict(s),
            "heldout": [str(d) for d in held.dirs],
            "rows": rows,
            "counts": counts(rows),
            "fewshot": fs,
            "seconds": time.perf_counter() - t0,
        }
    if "tasks" in args.parts:
        t0 = time.perf_counter()
        s = settings_from(args, ACCEPTANCE["tasks"])
        train, val = ShardReader(suite / "train"), ShardReader(suite / "val")
        tasks = [t for t in _suite_order(val.tasks) if t in train.tasks and not val.has_groups(t)]
        if args.tasks:
            tasks = [t for t in tasks if t in args.tasks]
        print(
            "\n3-4. the original tasks (train candidates, val selection and tuning probes, "
            f"held out: each task's val split generated with seed + {TASKS_HELDOUT_SEED})"
        )
        print(f"   {_describe(s)}")
        rows = []
        for t in tasks:
            where = generated_split(
                suite / "val", t, bench.work, TASKS_HELDOUT_SEED, s.heldout_size
            )
            rows.append(bench.measure(train, val, ShardReader(where), t, None, s, "tasks"))
            print_rows(rows[-1:], header=len(rows) == 1)
        print()
        for r in rows:
            print(content_line(r))
        print_claims([claims(r) for r in rows])
        doc["tasks"] = {
            "settings": asdict(s),
            "rows": rows,
            "claims": [claims(r) for r in rows],
            "counts": counts(rows),
            "seconds": time.perf_counter() - t0,
        }
    doc["summary"] = summary(doc)
    print_summary(doc["summary"])
    return doc


def _suite_order(tasks: list[str]) -> list[str]:
    """``tasks`` in the suite's order (depth, semseg, instance, keypoints, restoration...)."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    order = list(SYNTHETIC_TASKS)
    return sorted(tasks, key=lambda t: order.index(t) if t in order else len(order))


def _describe(s: Settings) -> str:
    tune = s.probe_size if s.tune_probe_size is None else s.tune_probe_size
    search = f"{s.candidates} candidates, {s.probe_size} selection + {tune} tuning probes"
    if s.cross:
        search = (
            f"{tune} tuning probes, the rest <= {s.candidates} candidates scored on <= "
            f"{s.probe_size} of each other (--cross)"
        )
    return (
        f"{search}, "
        f"{s.random} random prompts, <= {s.heldout_size} held-out queries, {s.steps} steps at "
        f"lr {s.lr:g} batch {s.batch_size} ({s.objective}"
        + (f", prompt averaged at ema {s.ema:g})" if s.ema else ")")
    )


def _default_suite() -> Path:
    from painter_cli.defaults import ensure_suite

    return ensure_suite()


def generated_split(
    split_dir: Path, task: str, work: Path, offset: int = 1, count: int | None = None
) -> Path:
    """``task``'s split of ``split_dir`` (the suite's ``ood`` or ``val``) generated again with the
    suite's seed + ``offset`` (``count`` samples; None: the split's own count), in ``work``
    (kept; named after the suite's folder, which names its version, so another version's split
    is not reused)."""
    from painter_cli.encode import encode_dataset
    from painter_cli.shards import read_index

    opts = read_index(split_dir)["sources"][0]["options"]
    seed = int(opts["seed"]) + offset
    split = split_dir.name
    name = f"{split_dir.resolve().parent.name}-{task}-{split}-seed{seed}"
    out = work / (name if count is None else f"{name}-n{count}")
    if not (out / "index.json").is_file():
        if out.exists():  # an interrupted encode
            shutil.rmtree(out)
        options = {"task": task, "size": int(opts["size"]), "seed": seed, "count": count}
        encode_dataset("synthetic", ".", out, split=split, options=options)
    return out


def paired_gain(before: list[float], after: list[float], higher_is_better: bool) -> dict:
    """``after`` against ``before`` on the same queries (per-query scores; the set score is their
    mean): the mean gain (positive = better), the standard error of the per-query differences,
    and on how many queries ``after`` is better. Two prompts compared on the same queries differ
    by this noise, not by the random prompts' spread (``noise``), which also holds how much
    other prompts vary from query to query."""
    pairs = [
        (a, b)
        for a, b in zip(before, after, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    d = np.array([b - a for a, b in pairs]) * (1 if higher_is_better else -1)
    n = len(d)
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"gain": float(d.mean()) if n else math.nan, "se": se, "queries": n,
            "better_on": int((d > 0).sum()), "worse_on": int((d < 0).sum())}  # fmt: skip


def claims(row: dict) -> dict[str, Any]:
    """What the report may claim for a task: the gains by more than the noise, only where the
    prompt's content matters (``content``: the random prompts' spread over the tuning probes and
    held-out queries exceeds 1.5x its noise); None: no claim."""
    matters = row["content"]["matters"]

    def claim(a: float, b: float) -> bool | None:
        return _better(a, b, row["hib"], row["noise"]) if matters else None

    paired = row.get("paired")
    significant = None
    if matters and paired is not None:
        significant = bool(paired["gain"] > PAIRED_SE * paired["se"])
    return {
        "task": row["task"],
        "content_matters": matters,
        "selected_beats_random": claim(row["selected"], row["random"]),
        "tuned_beats_selected": claim(row["tuned"], row["selected"]),
        "tuned_beats_selected_paired": significant,
    }


def content_line(row: dict) -> str:
    """Whether ``row``'s task depends on its prompt's content, as the claims judge it, and what
    ``prompt-select`` said on its own probes."""
    c, says = row["content"], row["says"]
    n = c["prompts"]
    numbers = (
        f"r {_num(c['r'], 2)}; {n} random prompts spread {_num(c['spread'])} against a noise of "
        f"{_num(c['noise'])} between tuning probes and held-out queries, {_num(c['ratio'], 1)}x"
    )
    if c["matters"] is None:
        head = f"too few random prompts ({n}) to tell whether the prompt's content matters"
    elif c["matters"]:
        head = f"the prompt's content matters ({numbers})"
    else:
        head = f"the prompt's content does not measurably matter ({numbers}): no gain is claimed"
    said = "?" if says["matters"] is None else "depends" if says["matters"] else "not measurable"
    return (
        f"{row['task']}: {head}; prompt-select on its {row['probes']} probes: {said} "
        f"({_num(says.get('ratio'), 1)}x)"
    )


def summary(doc: dict) -> list[dict[str, Any]]:
    """One line per acceptance item: what it needs, what was measured, whether it is met."""
    lines = []
    if "concept" in doc:
        c, fs = doc["concept"]["counts"], doc["concept"]["fewshot"]
        n = c["rows"]
        lines.append(
            {
                "item": "1. concept classes: selected > random and tuned > selected, by > noise",
                "measured": f"{c['both_by_noise']}/{n} (selected > random "
                f"{c['selected_beats_random_by_noise']}/{n}, tuned > selected "
                f"{c['tuned_beats_selected_by_noise']}/{n})",
                "needed": f">= {CLASSES_NEEDED} classes",
                "met": c["both_by_noise"] >= CLASSES_NEEDED,
            }
        )
        sel, one = fs["selected"], fs["one_shot"]
        lines.append(
            {
                "item": "2. FSS one-shot of the held-out queries: selected vs seeded random",
                "measured": f"mIoU {sel['miou']:.2f} vs {one['miou']:.2f}, FB-IoU "
                f"{sel['fb_iou']:.2f} vs {one['fb_iou']:.2f}, classes "
                f"{fs['classes_won']}/{fs['classes']}",
                "needed": "selected mIoU higher",
                "met": _better(sel["miou"], one["miou"], True),
            }
        )
    if "tasks" in doc:
        cl = doc["tasks"]["claims"]
        yes = [x["task"] for x in cl if x["content_matters"]]
        no = [x["task"] for x in cl if not x["content_matters"]]
        lines.append(
            {
                "item": "3. tasks whose prompt content matters (r, held out); no claim elsewhere",
                "measured": f"matters: {', '.join(_short(t) for t in yes) or 'none'}; "
                f"no claim: {', '.join(_short(t) for t in no) or 'none'}",
                "needed": "stated",
                "met": True,
            }
        )
        rows = [r for r in doc["tasks"]["rows"] if r["kind"] in GAIN_KINDS]
        word = {True: "yes", False: "no", None: "no claim"}
        paired = [claims(r)["tuned_beats_selected_paired"] for r in rows]
        lines.append(
            {
                "item": f"4. depth and restoration: tuned > selected on the held-out queries "
                f"(paired, > {PAIRED_SE:g} SE)",
                "measured": ", ".join(
                    f"{_short(r['task'])} {word[g]} ({_num(r['paired']['gain'])} ± "
                    f"{_num(r['paired']['se'])}, better on {r['paired']['better_on']}/"
                    f"{r['paired']['queries']})"
                    for r, g in zip(rows, paired, strict=True)
                )
                + "; by > prompt-select's noise: "
                + ", ".join(
                    f"{_short(r['task'])} {word[claims(r)['tuned_beats_selected']]}" for r in rows
                ),  # fmt: skip
                "needed": "yes on each",
                "met": bool(rows) and all(g is True for g in paired),
            }
        )
    return lines


def _short(task: str) -> str:
    return task.removeprefix("synthetic-")


# --- printing ----------------------------------------------------------------------------------


def print_rows(rows: list[dict], header: bool) -> None:
    if header:
        print(
            f"{'task':<28} {'metric':<6} {'random (mean±sd)':>18} {'selected':>9} {'tuned':>9} "
            f"{'noise':>7} {'sel-rnd':>8} {'tun-sel':>8} {'r':>5} {'content':>7} {'says':>7} "
            f"{'passes/naive':>13} {'probe':>5} {'held':>4} {'s':>5}"
        )
    for r in rows:
        sense = "↑" if r["hib"] else "↓"
        rand = f"{r['random']:.4f}±{r['random_std']:.4f}"
        print(
            f"{r['task']:<28} {r['metric'] + sense:<6} {rand:>18} {r['selected']:>9.4f} "
            f"{r['tuned']:>9.4f} {_num(r['noise']):>7} {r['selected'] - r['random']:>+8.4f} "
            f"{r['tuned'] - r['selected']:>+8.4f} {_num(r['r'], 2):>5} "
            f"{_matters(r['content']):>7} {_matters(r['says']):>7} "
            f"{r['passes']:>6}/{r['naive']:<6} {r['probes']:>5} {r['held']:>4} {r['seconds']:>5.0f}"
        )


def print_fewshot(fs: dict) -> None:
    sel, one = fs["selected"], fs["one_shot"]
    print(
        f"2. few-shot meter on {fs['queries']} held-out queries: per-class selected prompt mIoU "
        f"{sel['miou']:.2f} FB-IoU {sel['fb_iou']:.2f}; seeded one-shot protocol mIoU "
        f"{one['miou']:.2f} FB-IoU {one['fb_iou']:.2f}; selected higher on "
        f"{fs['classes_won']}/{fs['classes']} classes"
    )
    for g in sorted(sel["class_iou"]):
        print(f"   {g:<14} one-shot {one['class_iou'].get(g, math.nan):7.2f}  selected "
              f"{sel['class_iou'][g]:7.2f}")  # fmt: skip


def print_claims(rows: list[dict]) -> None:
    word = {True: "yes", False: "no", None: "no claim"}
    print("\nclaims (by more than the noise; only where the prompt's content matters)")
    print(f"   {'task':<20} {'selected > random':<18} tuned > selected")
    for c in rows:
        sel, tun = word[c["selected_beats_random"]], word[c["tuned_beats_selected"]]
        print(f"   {_short(c['task']):<20} {sel:<18} {tun}")


def print_summary(lines: list[dict]) -> None:
    print("\nissue 17 acceptance (held-out queries)")
    width = max(len(x["item"]) for x in lines) if lines else 0
    for x in lines:
        met = "MET" if x["met"] else "not met"
        print(f"{x['item']:<{width}}  {x['measured']}  [needed: {x['needed']}: {met}]")


def _matters(dep: dict) -> str:
    """``dep``'s verdict in a few characters: yes/no (spread/noise ratio), ``?`` too few."""
    if dep.get("matters") is None:
        return "?"
    ratio = dep.get("ratio")
    tail = "" if ratio is None or not math.isfinite(ratio) else f" {ratio:.1f}"
    return ("yes" if dep["matters"] else "no") + tail


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats as None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


if __name__ == "__main__":
    main()
