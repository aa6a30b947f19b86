"""Prompt selection, the paper's "searched" prompt (spec section 8): candidate training pairs of a
task scored as the in-context prompt of probe queries that are never candidates, ranked by
successive halving (``halving``), the best kept; ``per_query`` adds retrieval."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.inference import write_json
from painter_cli.prompts.dependence import probe_dependence
from painter_cli.prompts.files import REPORT_FILE, TOP_DIR, sample_id, write_pair, write_top
from painter_cli.prompts.halving import (
    SCORES_FILE,
    HalvingResult,
    ScoreCache,
    ScoreFn,
    halving_cost,
    json_float,
    nanmean,
    successive_halving,
)

log = logging.getLogger(__name__)


CROSS_NO_PROBE = "--cross scores the candidates on each other: it takes no --probe shards"


def split_indices(
    train: Any,
    task: str,
    n_candidates: int | None,
    probe_size: int,
    seed: int = 0,
    probe_reader: Any = None,
    group: str | None = None,
    cross: bool = False,
) -> tuple[list[int], list[int]]:
    """``(candidates, probes)``: seeded random draws of ``task``. Without ``probe_reader`` the
    probes come from ``train`` and are never candidates. ``n_candidates`` None = all.

    ``cross``: the probes are drawn from the candidates' own pool (the first ``probe_size`` of the
    same draw), for ``select_prompts(cross=True)``, which never scores a pair on itself: a small
    group's pairs are then all both candidates and probes instead of split between the two.

    ``group``: only samples of that group (``reader.groups(task)``), in both readers; a group of
    fewer than ``probe_size + 1`` training pairs (and no ``probe_reader``) gives half of them to
    the probes (``search_warnings`` says so), so one small group does not stop ``--group all``.
    """
    if probe_size < 1:
        raise PainterError(f"--probe-size {probe_size}: must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9B0BE]))
    where = f"task {task!r}" if group is None else f"group {group!r} of {task!r}"
    pool = [int(i) for i in rng.permutation(_members(train, task, group))]
    if cross:
        if probe_reader is not None:
            raise PainterError(CROSS_NO_PROBE)
        if len(pool) < 2:
            raise PainterError(f"{where} has {len(pool)} training pairs: --cross needs 2")
        candidates = pool if n_candidates is None else pool[:n_candidates]
        return candidates, pool[:probe_size]
    if probe_reader is None:
        if group is not None and 2 <= len(pool) < probe_size + 1:
            probe_size = len(pool) // 2
        if len(pool) < probe_size + 1:
            raise PainterError(
                f"{where} has {len(pool)} training pairs: too few for {probe_size} probes "
                "and at least one candidate",
                "lower --probe-size or give --probe VAL_SHARDS",
            )
        probes, pool = pool[:probe_size], pool[probe_size:]
    else:
        avail = [int(i) for i in rng.permutation(_members(probe_reader, task, group))]
        if not avail:
            raise PainterError(f"{where} has no samples in the --probe shards")
        probes = avail[:probe_size]
    if not pool:
        raise PainterError(f"{where} has no training pairs to select from")
    candidates = pool if n_candidates is None else pool[:n_candidates]
    return candidates, probes


def _members(reader: Any, task: str, group: str | None) -> np.ndarray:
    """Indices of ``task`` in ``reader``, or of its ``group`` (empty when the group is absent)."""
    if group is None:
        return reader.indices(task)
    return reader.groups(task).get(group, np.zeros(0, np.int64))


def progress_bar(total: int, description: str):
    from painter_cli.console import make_progress

    progress = make_progress()
    task_id = progress.add_task(description, total=total, info="")
    return progress, (lambda k: progress.advance(task_id, k))


def select_prompts(
    train: Any,
    task: str,
    candidates: Sequence[int],
    probes: Sequence[int],
    score: ScoreFn,
    *,
    out: str | Path,
    metric: str,
    higher_is_better: bool,
    top: int = 5,
    random: int = 10,
    min_probes: int = 1,
    seed: int = 0,
    fingerprint: dict[str, Any] | None = None,
    per_query: Callable[[Sequence[int], Sequence[int]], Sequence[int]] | None = None,
    probe_reader: Any = None,
    progress: bool = True,
    requested: dict[str, int | None] | None = None,
    group: str | None = None,
    cross: bool = False,
) -> dict[str, Any]:
    """Successive-halving search of ``candidates`` (indices of ``train``) on ``probes`` with
    ``score`` (candidate, probes) -> per-probe scores, cached in ``out/scores.json``.

    ``random`` seeded random candidates are also scored on every probe, for ``random_mean`` and
    the report's ``dependence`` (their spread against the metric's noise, ``probe_dependence``).
    ``per_query(candidates, probes)`` -> the candidate retrieved for each probe (retrieval mode).
    ``requested``: the ``candidates`` (None = all) and ``probes`` the user asked for, so the
    report can say where fewer were searched; ``group``: the candidates and probes are that
    group's. Writes ``out/image.png`` + ``target.png`` (best), ``out/top/`` (top ``top``) and
    ``out/report.json``; returns the report. Its ``searched`` says what was actually scored,
    ``warnings`` where that is less than asked or probes are also candidates, ``tied`` the
    candidates that share the best score (a tie names no best; ``image.png`` is then the first
    of them in draw order).

    ``cross``: probes may be candidates (``split_indices(cross=True)``, one reader); a pair is
    never scored as its own prompt (its score there is missing, so each candidate's mean is over
    the other probes, and ``dependence`` fits around the missing cells).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PainterError(f"{out}: --out exists and is not a folder")
    if top < 1:
        raise PainterError(f"--top {top}: must be >= 1")
    if random < 0:
        raise PainterError(f"--random {random}: must be >= 0")
    candidates = list(dict.fromkeys(int(c) for c in candidates))
    probes = [int(p) for p in probes]
    probe_reader = train if probe_reader is None else probe_reader
    if cross and probe_reader is not train:
        raise PainterError("cross selection scores the candidates on each other: one reader")
    if cross:
        score = LeaveSelfOut(score)
    cache = ScoreCache(out / SCORES_FILE, fingerprint or {"task": task})
    passes_before = cache.forward_passes
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A2D]))
    randoms = [int(c) for c in rng.permutation(candidates)[: min(random, len(candidates))]]
    searched = {
        "pairs": int(len(_members(train, task, group))),
        "candidates": len(candidates),
        "probes": len(probes),
        "random": len(randoms),
        "overlap": shared_samples(train, candidates, probe_reader, probes),
        "cross": cross,
    }
    asked = {"candidates": len(candidates), "probes": len(probes), **(requested or {})}
    what = "the task" if group is None else f"group {group!r}"
    warnings = search_warnings(searched, {**asked, "random": random}, what)
    for line in warnings:
        log.warning("%s", line)
    total = halving_cost(len(candidates), len(probes), min_probes) + len(randoms) * len(probes)
    total += len(probes) if per_query is not None else 0
    bar, advance = progress_bar(total, f"scoring {task}") if progress else (None, None)
    scored = cache.wrap(score, advance)
    retrieval = None
    try:
        if bar is not None:
            bar.start()
        result = successive_halving(candidates, probes, scored, higher_is_better, min_probes)
        first = result.rounds[0]["probes"]  # every candidate has these scores (cached)
        all_tied = len(candidates) > 1 and _all_close(
            [nanmean(scored(c, probes[:first])) for c in candidates]
        )
        random_rows = {c: scored(c, probes) for c in randoms}
        random_scores = {c: nanmean(v) for c, v in random_rows.items()}
        if per_query is not None:
            picks = [int(c) for c in per_query(candidates, probes)]
            values = [scored(c, [p])[0] for c, p in zip(picks, probes, strict=True)]
            retrieval = {
                "score": json_float(nanmean(values)),
                "queries": [
                    {
                        "id": sample_id(probe_reader, p),
                        "prompt_id": sample_id(train, c),
                        "prompt_index": c,
                        "score": json_float(v),
                    }
                    for p, c, v in zip(probes, picks, values, strict=True)
                ],
            }
    finally:
        if bar is not None:
            bar.stop()
        cache.save(force=True)
    best = result.ranking[0]
    tied = tied_for_best(result)
    out.mkdir(parents=True, exist_ok=True)
    write_pair(out, "image", train, best)
    write_top(out, train, result.ranking[:top])
    rows = [
        {
            "id": sample_id(train, c),
            "index": c,
            "score": json_float(result.scores[c][0]),
            "probes": result.scores[c][1],
        }
        for c in result.ranking
    ]
    report = {
        "task": task,
        **({"group": group} if group is not None else {}),
        "metric": metric,
        "higher_is_better": higher_is_better,
        "best": {"id": sample_id(train, best), "index": best, "score": rows[0]["score"]},
        "tied": [sample_id(train, c) for c in tied],
        "all_tied": all_tied,
        "searched": searched,
        "requested": {k: asked[k] for k in ("candidates", "probes")} | {"random": random},
        "warnings": warnings,
        "dependence": probe_dependence(
            list(random_rows.values()),
            [[cross and p == c for p in probes] for c in random_rows],
        ).to_json(),
        "random_mean": json_float(nanmean(list(random_scores.values()))) if random_scores else None,
        "random": [
            {"id": sample_id(train, c), "index": c, "score": json_float(v)}
            for c, v in random_scores.items()
        ],
        "candidates": rows,
        "forward_passes": cache.forward_passes,
        "forward_passes_this_run": cache.forward_passes - passes_before,
        "evaluations": cache.evaluations,
        "search_evaluations": halving_cost(len(candidates), len(probes), min_probes),
        "naive_evaluations": len(candidates) * len(probes),
        "rounds": [
            {"candidates": r["candidates"], "probes": r["probes"], "kept": len(r["kept"])}
            for r in result.rounds
        ],
        "probes": [sample_id(probe_reader, p) for p in probes],
        "top": [row["id"] for row in rows[:top]],
        "prompt": str(out),
        "top_prompts": str(out / TOP_DIR),
    }
    if retrieval is not None:
        report["retrieval"] = retrieval
    write_json(out / REPORT_FILE, report)
    return report


def shared_samples(
    train: Any, candidates: Sequence[int], probe_reader: Any, probes: Sequence[int]
) -> int:
    """How many probes are also candidates: the same index when both come from one reader, the
    same sample id when the probe shards and the training shards share a folder."""
    if probe_reader is train:
        return len(set(candidates) & set(probes))
    dirs = {Path(d).resolve() for d in getattr(train, "dirs", [])}
    if not dirs & {Path(d).resolve() for d in getattr(probe_reader, "dirs", [])}:
        return 0
    ids = {sample_id(train, c) for c in candidates}
    return sum(sample_id(probe_reader, p) in ids for p in probes)


def search_warnings(
    searched: dict[str, int], requested: dict[str, int | None], what: str = "the task"
) -> list[str]:
    """One line for each way the search is less than asked: fewer candidates, probes or random
    prompts than requested (``requested`` None = all), or probes that are also candidates."""
    out = []
    pairs, n, m = searched["pairs"], searched["candidates"], searched["probes"]
    want = requested.get("candidates")
    if want is not None and n < want:
        held = f", {pairs - n} held out as probes" if pairs > n else ""
        out.append(f"--candidates {want}: {what} has {pairs} training pairs{held}; searched {n}")
    want = requested.get("probes")
    if want is not None and m < want:
        out.append(f"--probe-size {want}: only {m} probe queries available; scored on {m}")
    want = requested.get("random")
    if want and searched["random"] < want:
        out.append(
            f"--random {want}: only {n} candidates, so the random prompts are all of them "
            "(the random mean is the candidates' mean)"
        )
    if searched["overlap"] and not searched.get("cross"):
        out.append(
            f"{searched['overlap']} of the {m} probes are also candidates (--probe and --data share "
            "a folder): a pair prompting itself scores as if it copied its own target"
        )
    return out


class LeaveSelfOut:
    """A ``ScoreFn`` that never scores a pair as its own prompt: NaN (missing) for the probe that
    is the candidate itself, the wrapped scorer's scores for the others."""

    def __init__(self, score: ScoreFn):
        self.score = score

    @property
    def forward_passes(self) -> int | None:
        return getattr(self.score, "forward_passes", None)

    def __call__(self, candidate: int, probes: Sequence[int]) -> list[float]:
        others = [p for p in probes if p != candidate]
        values = iter(self.score(candidate, others) if others else [])
        return [math.nan if p == candidate else next(values) for p in probes]


def _all_close(values: Sequence[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return len(finite) == len(values) and all(
        math.isclose(v, finite[0], rel_tol=1e-9, abs_tol=1e-12) for v in finite
    )


def tied_for_best(result: HalvingResult) -> list[int]:
    """The candidates that share the best candidate's score on the same probes (best first), or
    ``[]`` when the best is alone: ties are reported as ties, not as a ranking."""
    best = result.ranking[0]
    score, m = result.scores[best]
    if not math.isfinite(score):
        return []
    tied = [
        c
        for c in result.ranking
        if result.scores[c][1] == m and _all_close([score, result.scores[c][0]])
    ]
    return tied if len(tied) > 1 else []
