"""Does a task's score depend on its prompt's content? The spread of several prompts' scores
against the metric's own noise.

``probe_dependence``: ``n`` prompts each scored on the same ``m`` probes (an (n, m) table).

- ``spread``: the standard deviation over prompts of their mean score on all probes;
- ``noise``: the standard deviation the metric's noise alone gives such a mean: the same prompt
  on two halves of the probes, ``sd(d) / 2`` with ``d`` the difference of its two half-means,
  averaged (as a variance) over every way of halving the probes. That average has a closed form,
  ``sum(E^2) / ((n - 1)(m - 1)) / m`` with ``E`` the prompt x probe residuals of the table (each
  score minus its prompt's mean and its probe's mean plus the overall mean): a probe that is hard
  for every prompt moves all prompts alike and ranks none, so it is not noise. One fixed halving
  would do too, but a few outlying probes (per-query RMSE or AP are heavy-tailed) then make the
  estimate depend on which half they fall in;
- ``r``: the correlation over prompts two random halves of the probes are expected to have,
  ``(spread^2 - noise^2) / (spread^2 + noise^2)``.

Without a prompt effect spread and noise estimate the same number (``r`` near 0). A task depends on
its prompt when ``spread > SIGNAL_RATIO * noise`` (``r`` above 0.38): noise alone gets there about
one time in 50 with 10 prompts, one in 30 with 8 (``spread^2 / noise^2`` is then a chi-square of
``n - 1`` degrees of freedom over ``n - 1``; measured by simulation, heavy-tailed scores included).

``prompt_dependence(a, b)`` does the same for prompts scored on two given query sets (e.g. tuning
probes and held-out queries, as ``bench/prompts.py``): ``noise = sd(a - b) / 2`` (the mean
difference removed) and ``r`` the observed correlation of ``a`` and ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from painter_cli.prompts.halving import json_float

# spread / noise above which the prompts' scores differ by more than the metric's noise.
SIGNAL_RATIO = 1.5
# Fewer prompts than this give no estimate (a standard deviation of two values says little).
MIN_PROMPTS = 3


@dataclass
class Dependence:
    """How much ``prompts`` prompts' scores differ against the metric's noise (module docstring);
    ``matters`` is None when there are too few prompts or probes to tell."""

    prompts: int
    spread: float
    noise: float
    r: float
    matters: bool | None
    probes: int | None = None  # the probes of the table (None: two given query sets)

    @property
    def ratio(self) -> float:
        if self.noise > 0:
            return self.spread / self.noise
        return math.inf if self.spread > 0 else math.nan

    def to_json(self) -> dict:
        doc = {k: json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**doc, "ratio": json_float(self.ratio), "signal_ratio": SIGNAL_RATIO}


def prompt_dependence(a: Sequence[float], b: Sequence[float]) -> Dependence:
    """``Dependence`` of prompts scored ``a[k]`` and ``b[k]`` on two disjoint query sets
    (prompts with a non-finite score on either set are left out)."""
    pairs = [
        (float(x), float(y))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    n = len(pairs)
    if n < 2:
        return Dependence(n, math.nan, math.nan, math.nan, None)
    x, y = np.array(pairs).T
    spread = float(np.std((x + y) / 2, ddof=1))
    noise = float(np.std(x - y, ddof=1) / 2)
    r = float(np.corrcoef(x, y)[0, 1]) if np.std(x) > 0 and np.std(y) > 0 else math.nan
    matters = None if n < MIN_PROMPTS else bool(spread > SIGNAL_RATIO * noise)
    return Dependence(n, spread, noise, r, matters)


def probe_dependence(
    per_probe: Sequence[Sequence[float]], skip: Sequence[Sequence[bool]] | None = None
) -> Dependence:
    """``Dependence`` of prompts from their per-probe scores: one row a prompt, the same probes in
    every row (a probe with a non-finite score in any row is left out). Needs two probes.

    ``skip``: cells never scored by design (a prompt is no probe of itself, ``select_prompts``'
    cross mode), same shape. The prompt and probe effects are then a least-squares additive fit
    of the other cells, ``spread`` the standard deviation of the prompt effects, and the noise
    the residuals' variance over their degrees of freedom (cells - n - m + 1) per mean of a
    row's scored cells; without skipped cells this is the closed form above.
    """
    rows = [list(map(float, v)) for v in per_probe]
    table = np.asarray(rows, np.float64) if rows else np.zeros((0, 0))
    none = skip is None or table.size == 0
    held = np.zeros(table.shape, bool) if none else np.asarray(skip, bool)
    if held.shape != table.shape:
        raise ValueError(f"skip has shape {held.shape}, the scores {table.shape}")
    keep = (np.isfinite(table) | held).all(axis=0)
    table, held = table[:, keep], held[:, keep]
    n, m = table.shape
    if n < 2 or m < 2:
        return Dependence(n, math.nan, math.nan, math.nan, None, m)
    if held.any():
        effects, residual = _additive_fit(table, ~held)
        dof = int((~held).sum()) - n - m + 1
        per_row = float((~held).sum(axis=1).mean())
        noise = math.sqrt(float((residual**2).sum()) / dof / per_row) if dof > 0 else math.nan
        spread = float(np.std(effects, ddof=1))
    else:
        means = table.mean(axis=1)
        residual = table - means[:, None] - table.mean(axis=0)[None, :] + table.mean()
        noise = math.sqrt(float((residual**2).sum()) / ((n - 1) * (m - 1)) / m)
        spread = float(np.std(means, ddof=1))
    total = spread**2 + noise**2
    r = (spread**2 - noise**2) / total if total > 0 else math.nan
    matters = (
        None if n < MIN_PROMPTS or not math.isfinite(noise) else bool(spread > SIGNAL_RATIO * noise)
    )
    return Dependence(n, spread, noise, r, matters, m)


def _additive_fit(table: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(prompt effects (n,), residuals (n, m), zero where not scored)`` of the least-squares fit
    ``score = mu + prompt + probe`` to the ``scored`` cells of ``table``."""
    n, m = table.shape
    i, j = np.nonzero(scored)
    design = np.zeros((len(i), 1 + n + m))
    design[:, 0] = 1.0
    design[np.arange(len(i)), 1 + i] = 1.0
    design[np.arange(len(i)), 1 + n + j] = 1.0
    coef, *_ = np.linalg.lstsq(design, table[i, j], rcond=None)
    residual = np.zeros_like(table)
    residual[i, j] = table[i, j] - design @ coef
    return coef[1 : 1 + n], residual


def verdict(dep: Dependence | dict, task: str, what: str = "random prompts") -> str:
    """One line that says whether ``task``'s scores depend on the prompt's content."""
    d = dep if isinstance(dep, dict) else dep.to_json()
    if d["matters"] is None:
        return (
            f"{task}: too few {what} ({d['prompts']}) or probes to tell whether the prompt "
            f"matters (needs {MIN_PROMPTS} prompts and 2 probes)"
        )
    numbers = (
        f"{d['prompts']} {what} spread {_num(d['spread'])} against a noise of {_num(d['noise'])} "
        "(one prompt on two probe halves)"
    )
    on = f" on {d['probes']} probes" if d.get("probes") else ""
    if d["matters"]:
        return f"{task} depends on its prompt{on}: {numbers}, {_num(d['ratio'], 1)}x"
    more = "; more probes shrink the noise as 1/sqrt(probes)" if on else ""
    return (
        f"{task} does not measurably depend on the prompt's content{on}: {numbers}, within "
        f"{SIGNAL_RATIO:g}x; a ranking of its prompts is noise{more}"
    )


def _num(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "nan"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"
