"""Prompt selection, the paper's "searched" prompt (spec section 8): candidate training pairs of a
task scored as the in-context prompt of probe queries that are never candidates, ranked by
successive halving (``halving``), the best kept; ``per_query`` adds retrieval."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.inference import write_json
from painter_cli.prompts.files import REPORT_FILE, TOP_DIR, sample_id, write_pair, write_top
from painter_cli.prompts.halving import (
    SCORES_FILE,
    ScoreCache,
    ScoreFn,
    halving_cost,
    json_float,
    nanmean,
    successive_halving,
)


def split_indices(
    train: Any,
    task: str,
    n_candidates: int | None,
    probe_size: int,
    seed: int = 0,
    probe_reader: Any = None,
) -> tuple[list[int], list[int]]:
    """``(candidates, probes)``: seeded random draws of ``task``. Without ``probe_reader`` the
    probes come from ``train`` and are never candidates. ``n_candidates`` None = all."""
    if probe_size < 1:
        raise PainterError(f"--probe-size {probe_size}: must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9B0BE]))
    pool = [int(i) for i in rng.permutation(train.indices(task))]
    if probe_reader is None:
        if len(pool) < probe_size + 1:
            raise PainterError(
                f"task {task!r} has {len(pool)} training pairs: too few for {probe_size} probes "
                "and at least one candidate",
                "lower --probe-size or give --probe VAL_SHARDS",
            )
        probes, pool = pool[:probe_size], pool[probe_size:]
    else:
        avail = [int(i) for i in rng.permutation(probe_reader.indices(task))]
        if not avail:
            raise PainterError(f"task {task!r} has no samples in the --probe shards")
        probes = avail[:probe_size]
    if not pool:
        raise PainterError(f"task {task!r} has no training pairs to select from")
    candidates = pool if n_candidates is None else pool[:n_candidates]
    return candidates, probes


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
) -> dict[str, Any]:
    """Successive-halving search of ``candidates`` (indices of ``train``) on ``probes`` with
    ``score`` (candidate, probes) -> per-probe scores, cached in ``out/scores.json``.

    ``random`` seeded random candidates are also scored on every probe for ``random_mean``.
    ``per_query(candidates, probes)`` -> the candidate retrieved for each probe (retrieval mode).
    Writes ``out/image.png`` + ``target.png`` (best), ``out/top/`` (top ``top``) and
    ``out/report.json``; returns the report.
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
    cache = ScoreCache(out / SCORES_FILE, fingerprint or {"task": task})
    passes_before = cache.forward_passes
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A2D]))
    randoms = [int(c) for c in rng.permutation(candidates)[: min(random, len(candidates))]]
    total = halving_cost(len(candidates), len(probes), min_probes) + len(randoms) * len(probes)
    total += len(probes) if per_query is not None else 0
    bar, advance = progress_bar(total, f"scoring {task}") if progress else (None, None)
    scored = cache.wrap(score, advance)
    retrieval = None
    try:
        if bar is not None:
            bar.start()
        result = successive_halving(candidates, probes, scored, higher_is_better, min_probes)
        random_scores = {c: nanmean(scored(c, probes)) for c in randoms}
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
        "metric": metric,
        "higher_is_better": higher_is_better,
        "best": {"id": sample_id(train, best), "index": best, "score": rows[0]["score"]},
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
