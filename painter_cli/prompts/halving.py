"""Successive halving over prompt candidates and its on-disk score cache.

``successive_halving`` scores every candidate on a few probes, keeps the best half, doubles the
probes and repeats, so the cost is about ``2 N m0 + M log2 N`` (candidate, probe) evaluations
instead of ``N M`` (``halving_cost``). ``ScoreCache`` keeps every per-(candidate, probe) score in
``OUT/scores.json`` (atomic writes), so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.inference import write_json

SCORES_FILE = "scores.json"

ScoreFn = Callable[[int, Sequence[int]], list[float]]


def nanmean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def rank_key(score: float, higher_is_better: bool) -> tuple[bool, float]:
    """Sort key, best first; NaN (no usable probe) sorts last."""
    if not math.isfinite(score):
        return (True, 0.0)
    return (False, -score if higher_is_better else score)


def json_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


class ScoreCache:
    """Per-(candidate, probe) scores in ``path`` (JSON, atomic writes, at most every
    ``interval`` seconds unless forced), bound to a ``fingerprint`` of what makes a score
    (checkpoint, task, shards, size, scoring): a cache of another selection is an error."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], interval: float = 2.0):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.interval = interval
        self.scores: dict[str, dict[str, float | None]] = {}
        self.forward_passes = 0
        self.evaluations = 0
        self._saved = time.monotonic()
        self._dirty = False
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise PainterError(f"{self.path}: unreadable score cache ({exc})") from None
            if doc.get("fingerprint") != self.fingerprint:
                raise PainterError(
                    f"{self.path}: holds scores of another selection (checkpoint, task, data, size "
                    "or scoring differ)",
                    "use another --out, or delete the file to start over",
                )
            self.scores = doc.get("scores", {})
            self.forward_passes = int(doc.get("forward_passes", 0))
            self.evaluations = int(doc.get("evaluations", 0))

    def get(self, candidate: int, probe: int) -> float | None:
        return self.scores.get(str(candidate), {}).get(str(probe))

    def has(self, candidate: int, probe: int) -> bool:
        return str(probe) in self.scores.get(str(candidate), {})

    def put(self, candidate: int, probe: int, value: float) -> None:
        self.scores.setdefault(str(candidate), {})[str(probe)] = json_float(value)
        self._dirty = True

    def save(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._saved < self.interval):
            return
        doc = {
            "fingerprint": self.fingerprint,
            "forward_passes": self.forward_passes,
            "evaluations": self.evaluations,
            "scores": self.scores,
        }
        write_json(self.path, doc)
        self._saved = time.monotonic()
        self._dirty = False

    def wrap(self, score: ScoreFn, advance: Callable[[int], None] | None = None) -> ScoreFn:
        """``score`` answered from the cache where possible; new scores are stored. Forward passes
        are the scorer's ``forward_passes`` counter when it has one, else one per evaluation."""

        def cached(candidate: int, probes: Sequence[int]) -> list[float]:
            missing = [p for p in probes if not self.has(candidate, p)]
            if missing:
                before = getattr(score, "forward_passes", None)
                values = list(score(candidate, missing))
                if len(values) != len(missing):
                    raise PainterError(
                        f"scorer returned {len(values)} scores for {len(missing)} probes"
                    )
                after = getattr(score, "forward_passes", None)
                passes = len(missing) if before is None else after - before
                for p, v in zip(missing, values, strict=True):
                    self.put(candidate, p, v)
                self.evaluations += len(missing)
                self.forward_passes += passes
                self.save()
                if advance is not None:
                    advance(len(missing))
            return [nan_if_none(self.get(candidate, p)) for p in probes]

        return cached


def nan_if_none(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def halving_schedule(
    n_candidates: int, n_probes: int, min_probes: int = 1
) -> list[tuple[int, int]]:
    """Rounds as ``(candidates scored, probes used)``.

    The candidate count halves (rounding up) until two are left; the probe count doubles, ending at
    ``n_probes``: round r of R uses ``max(ceil(n_probes / 2^(R-1-r)), min(min_probes, n_probes))``
    probes (``min_probes`` keeps the first, noisiest rounds from ranking on one or two queries).
    One candidate: one round.
    """
    if n_candidates < 1 or n_probes < 1:
        raise PainterError("successive halving needs at least one candidate and one probe")
    alive = [n_candidates]
    while alive[-1] > 2:
        alive.append(math.ceil(alive[-1] / 2))
    rounds = len(alive)
    floor = max(1, min(min_probes, n_probes))
    return [
        (n, max(floor, math.ceil(n_probes / 2 ** (rounds - 1 - r)))) for r, n in enumerate(alive)
    ]


def halving_cost(n_candidates: int, n_probes: int, min_probes: int = 1) -> int:
    """(candidate, probe) evaluations of a halving run: ``sum_r n_r (m_r - m_{r-1})`` (probes
    scored in an earlier round are reused)."""
    total, prev = 0, 0
    for n, m in halving_schedule(n_candidates, n_probes, min_probes):
        total += n * (m - prev)
        prev = m
    return total


@dataclass
class HalvingResult:
    """``ranking``: candidates best first (later-eliminated first, then by score); ``scores``:
    candidate -> (mean score, probes it was scored on); ``rounds``: per round the candidates
    scored, the probes used and the candidates kept."""

    ranking: list[int]
    scores: dict[int, tuple[float, int]]
    rounds: list[dict[str, Any]]


def successive_halving(
    candidates: Sequence[int],
    probes: Sequence[int],
    score: ScoreFn,
    higher_is_better: bool,
    min_probes: int = 1,
) -> HalvingResult:
    """Rank ``candidates`` by ``score(candidate, probes) -> per-probe scores`` with successive
    halving: every round scores the survivors on the first ``m_r`` probes (asking ``score`` only
    for probes they have not been scored on) and keeps the best half."""
    candidates = list(dict.fromkeys(int(c) for c in candidates))
    probes = [int(p) for p in probes]
    schedule = halving_schedule(len(candidates), len(probes), min_probes)
    per: dict[int, list[float]] = {c: [] for c in candidates}
    final: dict[int, tuple[float, int]] = {}
    rounds = []
    alive = candidates
    for r, (n, m) in enumerate(schedule):
        for c in alive:
            have = len(per[c])
            if have < m:
                new = list(score(c, probes[have:m]))
                if len(new) != m - have:
                    raise PainterError(f"scorer returned {len(new)} scores for {m - have} probes")
                per[c].extend(new)
        means = {c: nanmean(per[c][:m]) for c in alive}
        order = sorted(alive, key=lambda c: rank_key(means[c], higher_is_better))
        for c in alive:
            final[c] = (means[c], m)
        keep = order if r == len(schedule) - 1 else order[: math.ceil(n / 2)]
        rounds.append({"candidates": n, "probes": m, "kept": list(keep)})
        alive = keep
    ranking = sorted(
        candidates, key=lambda c: (-final[c][1], *rank_key(final[c][0], higher_is_better))
    )
    return HalvingResult(ranking, final, rounds)
