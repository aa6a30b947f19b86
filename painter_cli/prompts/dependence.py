"""Does a task's score depend on its prompt's content? The spread of several prompts' scores
against the metric's own noise.

Each of ``n`` prompts is scored on two disjoint query sets (``a``, ``b``: the two halves of the
probes, or tuning probes and held-out queries). For a prompt with true quality ``q``, ``a = q +
e_a`` and ``b = q + e_b`` with independent noise of the queries drawn. Then

- ``spread``: the standard deviation over prompts of ``(a + b) / 2``, their score on both sets;
- ``noise``: the standard deviation the metric's noise alone gives that score, from the same
  prompt's two halves: ``sd(d - mean(d)) / 2`` with ``d = a - b`` (the mean removes a difficulty
  shift between the sets, which moves every prompt alike and ranks none);
- ``r``: the correlation of ``a`` and ``b`` over prompts, how consistently the sets rank them.

Without a prompt effect both estimate the same number (``spread / noise`` near 1, ``r`` near 0);
``spread / noise = sqrt((1 + r) / (1 - r))`` for equal-sized sets. A task depends on its prompt
when ``spread > SIGNAL_RATIO * noise`` (``r`` above 0.6): with 10 prompts, noise alone gets
there about one time in 40.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from painter_cli.prompts.halving import json_float, nanmean

# spread / noise above which the prompts' scores differ by more than the metric's noise.
SIGNAL_RATIO = 2.0
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
    probes: int | None = None  # the queries of both halves (None: two given query sets)

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


def split_half(per_probe: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Each prompt's mean score on the even and on the odd probes (the probes are a seeded
    random draw, so alternate positions are two random halves)."""
    a = [nanmean(list(v)[0::2]) for v in per_probe]
    b = [nanmean(list(v)[1::2]) for v in per_probe]
    return a, b


def probe_dependence(per_probe: Sequence[Sequence[float]]) -> Dependence:
    """``Dependence`` of prompts from their per-probe scores (one row a prompt, the same probes
    in each row): the two halves of the probes are the two query sets. Needs two probes."""
    m = min((len(v) for v in per_probe), default=0)
    if m < 2:
        return Dependence(len(per_probe), math.nan, math.nan, math.nan, None, m)
    return replace(prompt_dependence(*split_half(per_probe)), probes=m)


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
