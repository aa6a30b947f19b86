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
    prompt_resize,
    prompt_sources,
    resolve_device,
    write_json,
)
from painter_cli.prompts.dependence import Dependence, probe_dependence, verdict
from painter_cli.prompts.files import REPORT_FILE, load_prompt, safe_name
from painter_cli.prompts.objectives import resolve_objective
from painter_cli.prompts.retrieval import FEATURES, describe, retrieve
from painter_cli.prompts.scoring import ModelScorer, QueryStore, resolve_scoring
from painter_cli.prompts.selection import CROSS_NO_PROBE, select_prompts, split_indices
from painter_cli.prompts.tuning import check_ema, tune_prompt

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
    group: list[str] | None = None
    cross: bool = False


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
    group: list[str] | None = None
    ema: float = 0.0


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
    target_resize: str | None = None,
    seg_type: str | None = None,
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
        target_resize=target_resize,
        seg_type=seg_type,
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


def _seg_type(ckpt: str, model: Any, kind: str, task: str) -> str | None:
    """The SegGPT type token prompts are scored and tuned with: the one ``predict`` and ``eval``
    paint ``task`` with (``painter train``'s for a checkpoint of ours; None for Painter)."""
    from painter_cli.checkpoint import resolve_seg_type

    return resolve_seg_type(ckpt, model, None, kind, task)


ALL_GROUPS = "all"


def resolve_groups(
    train: Any, task: str, wanted: Sequence[str] | None, probe_reader: Any = None
) -> list[str] | None:
    """The groups ``--group`` names (``all``: every group of ``task`` in ``train``), checked
    against both readers; None without ``--group``."""
    if not wanted:
        return None
    have = train.groups(task)
    if not have:
        raise PainterError(
            f"--group: task {task!r} in {', '.join(map(str, train.dirs))} has no sample groups",
            "encode a source with groups (fss1000, synthetic-segment, pairs with group folders) "
            "or drop --group",
        )
    names = list(have) if ALL_GROUPS in wanted else list(dict.fromkeys(wanted))
    known = ", ".join(list(have)[:8]) + (", ..." if len(have) > 8 else "")
    for g in names:
        if g not in have:
            raise PainterError(f"--group {g}: no such group of {task!r}", f"groups: {known}")
        if probe_reader is not None and g not in probe_reader.groups(task):
            raise PainterError(f"--group {g}: the --probe shards hold no sample of it")
    return names


def per_group(groups: list[str] | None, wanted: Sequence[str] | None) -> bool:
    """Whether a run writes one folder per group (``--group all`` or several groups) rather than
    one prompt into ``--out`` (no group, or one named group)."""
    return groups is not None and (ALL_GROUPS in (wanted or []) or len(groups) > 1)


def _group_out(out: str, group: str | None, layout: bool) -> Path:
    return Path(out) / safe_name(group) if layout and group is not None else Path(out)


def _finish(
    settings: Any,
    ckpt: str,
    task: str,
    size: int,
    reports: dict[str | None, dict[str, Any]],
    metric: str,
    hib: bool,
    layout: bool,
    resize: tuple[str, str] | None = None,
    seg_type: str | None = None,
) -> dict[str, Any]:
    """Write the resolved settings into each report; with a folder per group (``layout``), also
    the summary ``OUT/report.json`` (one row a group); returns what the command prints.
    ``resize``: the checkpoint's target-resize rule and the mode the prompts used; ``seg_type``:
    the SegGPT type token painted with (None: not a SegGPT model)."""
    resolved = {**asdict(settings), "checkpoint": ckpt, "task": task, "size": size}
    if resize is not None:
        resolved.update(target_resize=resize[0], prompt_target_resize=resize[1])
    resolved["seg_type"] = seg_type
    for g, report in reports.items():
        report["settings"] = resolved
        write_json(_group_out(settings.out, g, layout) / REPORT_FILE, report)
    if not layout:
        return next(iter(reports.values()))
    summary = {
        "task": task,
        "metric": metric,
        "higher_is_better": hib,
        "groups": [{"group": g, **group_row(r)} for g, r in reports.items()],
        "prompt": str(settings.out),
        "settings": resolved,
    }
    write_json(Path(settings.out) / REPORT_FILE, summary)
    return summary


def group_row(report: dict[str, Any]) -> dict[str, Any]:
    """The summary row of one group's select or tune report."""
    dep = report.get("dependence") or {}
    row = {
        "noise": dep.get("noise"),
        "spread": dep.get("spread"),
        "matters": dep.get("matters"),
        "prompt": report["prompt"],
    }
    if "best" in report:  # a selection
        best = report["best"]
        return {
            "best": best["id"],
            "score": best["score"],
            "random_mean": report["random_mean"],
            "tied": len(report["tied"]),
            "warnings": len(report["warnings"]),
            **row,
        }
    return {"initial": report["initial"], "tuned": report["tuned"], **row}


def run_select(settings: SelectSettings) -> dict[str, Any]:
    """Run ``painter prompt-select``: everything is checked before the model is loaded. With
    ``group``: one search per group, on that group's candidates and probes only."""
    settings = with_suite_defaults(settings, "prompt-select")
    if settings.features not in FEATURES:
        raise PainterError(f"--features {settings.features}: expected pixels or encoder")
    if settings.cross and settings.probe:
        raise PainterError(CROSS_NO_PROBE)
    if settings.cross and settings.per_query:
        raise PainterError(
            "--per-query with --cross: every probe's most similar pair would be itself",
            "drop one of them",
        )
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score, codec)
    groups = resolve_groups(train, task, settings.group, probe_reader)
    layout = per_group(groups, settings.group)
    splits = {
        g: split_indices(
            train,
            task,
            settings.candidates,
            settings.probe_size,
            settings.seed,
            probe_reader,
            g,
            cross=settings.cross,
        )
        for g in groups or [None]
    }
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    resize = prompt_resize(ckpt, model, "auto", codec, task)  # prompts as the checkpoint's
    seg_type = _seg_type(ckpt, model, codec.kind, task)
    scorer = _model_scorer(
        settings, model, train, preader, task, size, mode, device, resize[1], seg_type
    )
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        **({"seg_type": seg_type} if seg_type else {}),  # older runs resume as they were
        "size": size,
        "score": mode,
        "metric_variant": settings.metric_variant,
        **({"cross": True} if settings.cross else {}),  # older runs resume as they were
    }
    per_query = None
    if settings.per_query:

        def per_query(cands: Sequence[int], qs: Sequence[int]) -> list[int]:
            cdesc = describe(settings.features, train, cands, model, size)
            qdesc = describe(settings.features, preader, qs, model, size)
            return [cands[k] for k in retrieve(qdesc, cdesc)]

    reports = {}
    try:
        for g, (candidates, probes) in splits.items():
            reports[g] = select_prompts(
                train,
                task,
                candidates,
                probes,
                scorer,
                out=_group_out(settings.out, g, layout),
                metric=metric,
                higher_is_better=hib,
                top=settings.top,
                random=settings.random,
                min_probes=settings.min_probes,
                seed=settings.seed,
                fingerprint={**fingerprint, **({"group": g} if g is not None else {})},
                per_query=per_query,
                probe_reader=preader,
                requested={"candidates": settings.candidates, "probes": settings.probe_size},
                group=g,
                cross=settings.cross,
            )
    finally:
        scorer.close()
    return _finish(settings, ckpt, task, size, reports, metric, hib, layout, resize, seg_type)


def run_tune(settings: TuneSettings) -> dict[str, Any]:
    """Run ``painter prompt-tune``: inputs are checked before the model is loaded. With
    ``group``: one prompt per group, tuned on that group's pairs and validated on its probes."""
    settings = with_suite_defaults(settings, "prompt-tune")
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score, codec)
    objective = resolve_objective(codec.kind, settings.objective)
    groups = resolve_groups(train, task, settings.group, probe_reader)
    layout = per_group(groups, settings.group)
    splits = {
        g: split_indices(train, task, None, settings.probe_size, settings.seed, probe_reader, g)
        for g in groups or [None]
    }
    if settings.random < 0:
        raise PainterError(f"--random {settings.random}: must be >= 0")
    check_ema(settings.ema)
    if settings.init is not None:
        prompt_sources(settings.init)  # fail on a bad folder before loading the model
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    resize = prompt_resize(ckpt, model, "auto", codec, task)  # prompts as the checkpoint's
    given = None
    if settings.init is not None:
        given = load_prompt(settings.init, size, codec, target_resize=resize[1])
    seg_type = _seg_type(ckpt, model, codec.kind, task)
    scorer = _model_scorer(
        settings, model, train, preader, task, size, mode, device, resize[1], seg_type
    )
    scorer.close()  # only its scoring is used here, not its pass counter
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        **({"seg_type": seg_type} if seg_type else {}),  # older runs resume as they were
        "init": settings.init,
        "size": size,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "probe_size": settings.probe_size,
        "score": mode,
        "objective": objective,
        "seed": settings.seed,
        **({"ema": settings.ema} if settings.ema else {}),  # older runs resume as they were
    }
    reports = {}
    for g, (pool, probes) in splits.items():
        name = task if g is None else f"{task} group {g}"
        if given is not None:
            init = given
        else:  # a seeded random training pair (never a probe)
            rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x1217]))
            store = QueryStore(train, task, size, target_resize=resize[1])
            init = store.pair(pool[int(rng.integers(len(pool)))])
        dependence = None
        if settings.random:  # said before any step is spent
            dependence = random_dependence(scorer, pool, probes, settings.random, settings.seed)
            (log.info if dependence.matters else log.warning)("%s", verdict(dependence, name))
        report = tune_prompt(
            model,
            train,
            task,
            pool,
            init,
            out=_group_out(settings.out, g, layout),
            validate=lambda p, probes=probes: scorer.set_score(p, probes),
            higher_is_better=hib,
            metric=metric,
            steps=settings.steps,
            lr=settings.lr,
            batch_size=settings.batch_size,
            val_every=settings.val_every,
            save_every=settings.save_every,
            seed=settings.seed,
            resume=settings.resume,
            fingerprint={**fingerprint, **({"group": g} if g is not None else {})},
            objective=objective,
            seg_type=seg_type,
            ema=settings.ema,
        )
        if g is not None:
            report["group"] = g
        if dependence is not None:
            report["dependence"] = dependence.to_json()
        reports[g] = report
    return _finish(settings, ckpt, task, size, reports, metric, hib, layout, resize, seg_type)


def random_dependence(
    scorer: ModelScorer, pool: Sequence[int], probes: Sequence[int], n: int, seed: int = 0
) -> Dependence:
    """``Dependence`` of ``n`` seeded random training pairs of ``pool`` as prompts, from their
    per-probe scores (``scorer.score_prompt``) on the two halves of ``probes``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE9]))
    picks = [int(i) for i in rng.permutation(list(pool))[:n]]
    return probe_dependence([scorer.score_prompt(scorer.prompt(c), probes) for c in picks])
