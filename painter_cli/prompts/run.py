"""``painter prompt-select`` and ``painter prompt-tune``: their resolved settings, and the runs that
check every input before the model is loaded, then call ``selection`` / ``tuning``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError
from painter_cli.inference import (
    checkpoint_or_default,
    default_size,
    load_checkpoint,
    prompt_sources,
    resolve_device,
    write_json,
)
from painter_cli.prompts.dependence import Dependence, probe_dependence, verdict
from painter_cli.prompts.files import REPORT_FILE, load_prompt
from painter_cli.prompts.objectives import resolve_objective
from painter_cli.prompts.retrieval import FEATURES, describe, retrieve
from painter_cli.prompts.scoring import ModelScorer, QueryStore, resolve_scoring
from painter_cli.prompts.selection import select_prompts, split_indices
from painter_cli.prompts.tuning import tune_prompt

log = logging.getLogger(__name__)


def parse_count(value: str | int | None, option: str = "--candidates") -> int | None:
    """``"all"``/None -> None (every pair), else a positive int."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise PainterError(f"{option} {value}: expected a number or 'all'") from None
    if n < 1:
        raise PainterError(f"{option} {value}: must be >= 1")
    return n


@dataclass
class SelectSettings:
    """Resolved settings of ``painter prompt-select``."""

    task: str
    data: list[str] = field(default_factory=list)
    out: str | None = None
    checkpoint: str | None = None
    probe: list[str] | None = None
    candidates: int | None = 64
    probe_size: int = 32
    top: int = 5
    random: int = 10
    min_probes: int = 4
    per_query: bool = False
    features: str = "pixels"
    score: str = "auto"
    size: int | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0
    metric_variant: str | None = None


@dataclass
class TuneSettings:
    """Resolved settings of ``painter prompt-tune``."""

    task: str
    data: list[str] = field(default_factory=list)
    out: str | None = None
    checkpoint: str | None = None
    probe: list[str] | None = None
    init: str | None = None
    steps: int = 200
    lr: float = 0.01
    batch_size: int = 8
    probe_size: int = 16
    val_every: int = 25
    save_every: int = 25
    score: str = "auto"
    objective: str = "loss"
    size: int | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    metric_variant: str | None = None
    random: int = 8


def with_suite_defaults(settings: Any, command: str) -> Any:
    """``settings`` with no ``data`` pointed at the synthetic suite's train split (``task`` then
    resolved there, kind accepted) and no ``out`` set to ``<command>-<task>``."""
    if not settings.data:
        from painter_cli.defaults import suite_data

        data, task = suite_data(settings.task, "train")
        settings = replace(settings, data=data, task=task)
    if not settings.out:
        settings = replace(settings, out=f"{command}-{settings.task}")
    return settings


def _open_task(data: Sequence[str], task: str) -> tuple[Any, str]:
    from painter_cli.evaluation import resolve_task
    from painter_cli.shards import ShardReader

    reader = ShardReader(list(data))
    return reader, resolve_task(reader, task)


def _open_data(settings: SelectSettings | TuneSettings) -> tuple[Any, Any, str]:
    """``(train reader, probe reader or None, task)`` of ``--data`` and ``--probe`` (which must hold
    the same task)."""
    train, task = _open_task(settings.data, settings.task)
    probe_reader = None
    if settings.probe:
        probe_reader, ptask = _open_task(settings.probe, task)
        if ptask != task:
            raise PainterError(f"--probe shards name the task {ptask!r}, --data {task!r}")
    return train, probe_reader, task


def _model_scorer(
    settings: SelectSettings | TuneSettings,
    model: Any,
    train: Any,
    preader: Any,
    task: str,
    size: int,
    mode: str,
    device: torch.device,
) -> ModelScorer:
    return ModelScorer(
        model,
        train,
        preader,
        task,
        size,
        mode=mode,
        batch_size=settings.batch_size,
        metric_variant=settings.metric_variant,
        device=device,
    )


def _data_fingerprint(
    settings: SelectSettings | TuneSettings, ckpt: str, task: str
) -> dict[str, Any]:
    """The leading fingerprint keys of a run: the weights, the task and the shards it reads."""
    return {
        "checkpoint": _checkpoint_key(ckpt),
        "task": task,
        "data": [str(Path(d).resolve()) for d in settings.data],
        "probe": [str(Path(d).resolve()) for d in settings.probe or []],
    }


def _checkpoint_key(ckpt: str) -> str:
    """What identifies the weights: the resolved checkpoint (a run dir's latest), or a preset."""
    from painter_cli.checkpoint import resolve_checkpoint
    from painter_cli.model import PRESETS
    from painter_cli.weights import KNOWN_WEIGHTS

    if (ckpt in PRESETS or ckpt in KNOWN_WEIGHTS) and not Path(ckpt).exists():
        return ckpt
    return str(resolve_checkpoint(ckpt).resolve())


def run_select(settings: SelectSettings) -> dict[str, Any]:
    """Run ``painter prompt-select``: everything is checked before the model is loaded."""
    settings = with_suite_defaults(settings, "prompt-select")
    if settings.features not in FEATURES:
        raise PainterError(f"--features {settings.features}: expected pixels or encoder")
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score)
    candidates, probes = split_indices(
        train, task, settings.candidates, settings.probe_size, settings.seed, probe_reader
    )
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    scorer = _model_scorer(settings, model, train, preader, task, size, mode, device)
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        "size": size,
        "score": mode,
        "metric_variant": settings.metric_variant,
    }
    per_query = None
    if settings.per_query:

        def per_query(cands: Sequence[int], qs: Sequence[int]) -> list[int]:
            cdesc = describe(settings.features, train, cands, model, size)
            qdesc = describe(settings.features, preader, qs, model, size)
            return [cands[k] for k in retrieve(qdesc, cdesc)]

    try:
        report = select_prompts(
            train,
            task,
            candidates,
            probes,
            scorer,
            out=settings.out,
            metric=metric,
            higher_is_better=hib,
            top=settings.top,
            random=settings.random,
            min_probes=settings.min_probes,
            seed=settings.seed,
            fingerprint=fingerprint,
            per_query=per_query,
            probe_reader=preader,
            requested={"candidates": settings.candidates, "probes": settings.probe_size},
        )
    finally:
        scorer.close()
    report["settings"] = {**asdict(settings), "checkpoint": ckpt, "task": task, "size": size}
    write_json(Path(settings.out) / REPORT_FILE, report)
    return report


def run_tune(settings: TuneSettings) -> dict[str, Any]:
    """Run ``painter prompt-tune``: inputs are checked before the model is loaded."""
    settings = with_suite_defaults(settings, "prompt-tune")
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score)
    objective = resolve_objective(codec.kind, settings.objective)
    pool, probes = split_indices(
        train, task, None, settings.probe_size, settings.seed, probe_reader
    )
    if settings.random < 0:
        raise PainterError(f"--random {settings.random}: must be >= 0")
    if settings.init is not None:
        prompt_sources(settings.init)  # fail on a bad folder before loading the model
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    if settings.init is not None:
        init = load_prompt(settings.init, size, codec)
    else:  # a seeded random training pair (never a probe)
        rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x1217]))
        init = QueryStore(train, task, size).pair(pool[int(rng.integers(len(pool)))])
    scorer = _model_scorer(settings, model, train, preader, task, size, mode, device)
    scorer.close()  # only its scoring is used here, not its pass counter
    dependence = None
    if settings.random:  # said before any step is spent
        dependence = random_dependence(scorer, pool, probes, settings.random, settings.seed)
        line = verdict(dependence, task)
        (log.info if dependence.matters else log.warning)("%s", line)
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        "init": settings.init,
        "size": size,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "probe_size": settings.probe_size,
        "score": mode,
        "objective": objective,
        "seed": settings.seed,
    }
    report = tune_prompt(
        model,
        train,
        task,
        pool,
        init,
        out=settings.out,
        validate=lambda p: scorer.set_score(p, probes),
        higher_is_better=hib,
        metric=metric,
        steps=settings.steps,
        lr=settings.lr,
        batch_size=settings.batch_size,
        val_every=settings.val_every,
        save_every=settings.save_every,
        seed=settings.seed,
        resume=settings.resume,
        fingerprint=fingerprint,
        objective=objective,
    )
    if dependence is not None:
        report["dependence"] = dependence.to_json()
    report["settings"] = {**asdict(settings), "checkpoint": ckpt, "task": task, "size": size}
    write_json(Path(settings.out) / REPORT_FILE, report)
    return report


def random_dependence(
    scorer: ModelScorer, pool: Sequence[int], probes: Sequence[int], n: int, seed: int = 0
) -> Dependence:
    """``Dependence`` of ``n`` seeded random training pairs of ``pool`` as prompts, from their
    per-probe scores (``scorer.score_prompt``) on the two halves of ``probes``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE9]))
    picks = [int(i) for i in rng.permutation(list(pool))[:n]]
    return probe_dependence([scorer.score_prompt(scorer.prompt(c), probes) for c in picks])
