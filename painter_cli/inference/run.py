"""One ``painter predict`` run: settings, checkpoint, prompts and queries checked up front, batches
written atomically, ``predictions.json`` and ``predict_config.json`` last."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from painter_cli.errors import PainterError
from painter_cli.inference.images import (
    load_image,
    load_target,
    open_image,
    output_stems,
    resolve_queries,
    write_json,
)
from painter_cli.inference.outputs import (
    clear_previous,
    coco_image_id,
    prompt_panels,
    write_labels,
    write_outputs,
)
from painter_cli.inference.predictor import (
    ENSEMBLES,
    PRECISIONS,
    Predictor,
    Prompt,
    check_panoptic_prompts,
    check_prompt_size,
    check_size_option,
    default_size,
    file_target_resize,
    finish,
    load_prompt_tensors,
    paint_panoptic,
    prompt_sources,
    resolve_device,
    target_resample,
)

log = logging.getLogger(__name__)


def default_checkpoint() -> str | None:
    """The checkpoint used when ``--checkpoint`` is omitted: the bundled model when this
    installation has it (``painter_cli.defaults``, which says so once on stderr), else None."""
    from painter_cli.defaults import default_checkpoint as bundled

    return bundled()


# --------------------------------------------------------------------------------------------
# Settings of one ``painter predict`` run


@dataclass
class PredictSettings:
    """Resolved settings of a predict run (written as ``predict_config.json``)."""

    queries: list[str]
    prompts: list[str]
    checkpoint: str | None = None
    task: str | None = None
    out: str = "predictions"
    batch_size: int = 4
    device: str = "auto"
    precision: str = "fp32"
    size: int | None = None
    keep_aspect: bool = False
    # auto: as the checkpoint (``checkpoint.target_resize_rule``), else one of TARGET_RESIZES
    target_resize: str = "auto"
    ensemble: str | None = None
    seg_type: str | None = None
    # codec: the codec's palette; prompt: the colours the prompt targets show (segmentation)
    decode: str = "codec"
    codec: str | None = None
    codec_params: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The predict run


def check_batch_size(batch_size: int) -> None:
    """``--batch-size`` of predict and eval: at least one query per forward."""
    if batch_size < 1:
        raise PainterError(f"--batch-size {batch_size}: must be >= 1", "pass e.g. --batch-size 4")


def check_out_folder(out: Path) -> None:
    """``--out`` (or a folder above it) must not be an existing file."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise PainterError(
                f"{folder}: exists and is not a folder", "choose another --out folder"
            )


SYNTHETIC_SIDE = 64  # the synthetic source's default side (its keypoint codec's frame)


def parse_codec_params(values: Sequence[str] | None) -> dict[str, Any]:
    """``--codec-param k=v`` values -> parameters; ``v`` is read as JSON when it parses (numbers,
    true/false, lists), else kept as a string."""
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PainterError(f"--codec-param {item}: expected NAME=VALUE (e.g. num_classes=1)")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def _required_params(name: str) -> list[str]:
    import inspect

    from painter_cli.tasks.base import _REGISTRY

    factory = _REGISTRY[name]
    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _trained_match(task: str, trained: dict[str, dict[str, Any]]) -> str | None:
    """The checkpoint's task named by ``task``: its name, or a kind / codec naming exactly one."""
    from painter_cli.defaults import task_kind

    if task in trained:
        return task
    matches = [
        name
        for name, t in trained.items()
        if task in (t.get("kind"), t.get("codec"), task_kind(name))
    ]
    same = {json.dumps(trained[m], sort_keys=True) for m in matches}
    if len(matches) > 1 and len(same) > 1:  # e.g. three restoration tasks decode alike
        raise PainterError(
            f"--task {task} is ambiguous: the checkpoint learned {', '.join(matches)}",
            "name the task in full",
        )
    return matches[0] if matches else None


def task_codec(
    task: str | None,
    trained: dict[str, dict[str, Any]] | None = None,
    codec: str | None = None,
    codec_params: Sequence[str] | None = None,
) -> Any:
    """The codec that decodes predict's output (None: no decoding).

    ``--codec NAME --codec-param k=v``: that codec, for a checkpoint that does not know the task.
    ``--task``: a task the checkpoint learned (``trained``, its ``checkpoint.trained_tasks``) by
    name, kind or codec; else a synthetic task name, a synthetic kind (``depth``...) or a codec
    whose parameters all have defaults (``nyuv2-depth``...). A kind naming both a synthetic task
    and a codec (``semseg``: 6 synthetic classes or any number) is an error listing both.
    """
    from painter_cli.defaults import resolve_task
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS
    from painter_cli.tasks import get_codec
    from painter_cli.tasks.base import _REGISTRY, list_codecs

    if codec is not None:
        if task:
            raise PainterError(
                f"--task {task} and --codec {codec} both given",
                "--task names a task the checkpoint knows; --codec decodes any other",
            )
        if codec not in _REGISTRY:
            raise PainterError(
                f"--codec {codec}: unknown codec", f"codecs: {', '.join(list_codecs())}"
            )
        return get_codec(codec, **parse_codec_params(codec_params))
    if codec_params:
        raise PainterError("--codec-param without --codec", "pass --codec NAME too")
    if not task:
        return None
    trained = trained or {}
    name = _trained_match(task, trained)
    if name is not None:
        entry = trained[name]
        return get_codec(entry["codec"], **(entry.get("params") or {}))
    synthetic = None
    with contextlib.suppress(PainterError):
        synthetic = resolve_task(task, SYNTHETIC_TASKS, "the synthetic suite")
    if synthetic is not None and synthetic != task and task in _REGISTRY:
        raise PainterError(
            f"--task {task} is ambiguous: the synthetic task {synthetic} or the codec {task}",
            f"name the task (--task {synthetic}) or the codec with its parameters "
            f"(--codec {task} --codec-param NAME=VALUE)",
        )
    if synthetic is not None:
        spec = SYNTHETIC_TASKS[synthetic]
        return get_codec(spec.codec, **spec.codec_params(SYNTHETIC_SIDE))
    if task not in _REGISTRY:
        known = f"; this checkpoint's tasks: {', '.join(trained)}" if trained else ""
        raise PainterError(
            f"--task {task}: unknown task or codec",
            f"synthetic tasks: {', '.join(SYNTHETIC_TASKS)}; codecs: {', '.join(list_codecs())}"
            f"{known}",
        )
    required = _required_params(task)
    if required:
        raise PainterError(
            f"--task {task} needs parameters: {', '.join(required)}",
            f"pass --codec {task} --codec-param {required[0]}=VALUE, or name a task "
            "(e.g. synthetic-semseg)",
        )
    return get_codec(task)


def prompt_resize(
    checkpoint: str, model: torch.nn.Module, option: str, codec: Any, task: str | None = None
) -> tuple[str, str]:
    """``(rule, mode)``: how prompt targets are resized (``checkpoint.TARGET_RESIZES``) and what
    that means for ``codec`` (nearest/bicubic). ``option`` ``auto`` follows the checkpoint (a
    task it learned: as it was trained), anything else overrides it."""
    from painter_cli.checkpoint import TARGET_RESIZES, target_resize_rule, trained_tasks

    if option == "auto":
        entry = trained_tasks(checkpoint).get(task or "") if task else None
        rule = target_resize_rule(checkpoint, model)
        if entry and entry.get("target_resize") in ("nearest", "bicubic"):
            return rule, entry["target_resize"]
        return rule, target_resample(rule, codec)
    if option not in TARGET_RESIZES:
        raise PainterError(f"--target-resize {option}: expected auto, {', '.join(TARGET_RESIZES)}")
    return option, target_resample(option, codec)


def load_prompts(specs: Sequence[str], codec: Any) -> list[Any]:
    """Read every prompt before any model work: ``Prompt`` (tensors) or ``(name, image, target,
    target_file_mode)`` (the PIL mode of the target file, for ``file_target_resize``)."""
    if not specs:
        raise PainterError("no --prompt given", "pass --prompt FOLDER or --prompt IMAGE:TARGET")
    loaded: list[Any] = []
    for spec in specs:
        for src in prompt_sources(spec):
            if isinstance(src, str):
                loaded.append(load_prompt_tensors(src))
                continue
            image_path, target_path = src
            image, target = load_image(image_path), load_target(target_path, codec)
            if image.shape[:2] != target.shape[:2]:
                raise PainterError(
                    f"{target_path}: target is {target.shape[1]}x{target.shape[0]} but its image "
                    f"{image_path} is {image.shape[1]}x{image.shape[0]}"
                )
            mode = open_image(target_path).mode
            loaded.append((f"{image_path}:{target_path}", image, target, mode))
    return loaded


def checkpoint_or_default(checkpoint: str | None) -> str:
    """``--checkpoint`` or the bundled default; the one place a default model plugs in."""
    ckpt = checkpoint or default_checkpoint()
    if ckpt is None:
        raise PainterError(
            "no --checkpoint given and no default model is bundled yet",
            "pass --checkpoint CKPT (a checkpoint folder, a run folder, a preset or an official .pth)",
        )
    return str(ckpt)


def load_checkpoint(
    checkpoint: str, device: torch.device, precision: str = "fp32"
) -> torch.nn.Module:
    """The model for predict/eval. A released-weights name (``painter-vit-large``,
    ``seggpt-vit-large``) means its downloaded file, never a randomly initialised preset; other
    values go to ``checkpoint.load_model`` (a checkpoint or run folder, a weights file, a preset).

    ``bf16``: the weights are cast once here, so autocast does not re-cast 370M parameters at every
    forward (autocast still runs layer norms and softmax-sensitive ops in fp32)."""
    from painter_cli.checkpoint import load_model
    from painter_cli.weights import KNOWN_WEIGHTS, resolve_weights

    target: str | Path = checkpoint
    if checkpoint in KNOWN_WEIGHTS and not Path(checkpoint).exists():
        target = resolve_weights(checkpoint)
    model = load_model(target, device=str(device))
    return model.to(torch.bfloat16) if precision == "bf16" else model


def prompt_target_colours(prompts: Sequence[Prompt]) -> Any:
    """``tasks.prompt_colours.prompt_colours`` of the prompts' target images (row 0 black, then
    their colours sorted by (R, G, B)); a prompt given as tensors has none to read."""
    from painter_cli.tasks.prompt_colours import prompt_colours

    for p in prompts:
        if p.target_rgb is None:
            raise PainterError(
                f"--decode prompt: prompt {p.name} has no target image to read colours from",
                "prompt with an image pair (IMAGE:TARGET or a folder), not prompt tensors",
            )
    return prompt_colours([p.target_rgb for p in prompts])


def run_predict(settings: PredictSettings) -> list[dict[str, Any]]:
    """Run ``painter predict``: every input is checked before the model is loaded and before
    anything is written; returns the ``predictions.json`` records."""
    from painter_cli.console import track

    check_batch_size(settings.batch_size)
    check_size_option(settings.size)
    if settings.ensemble is not None and settings.ensemble not in ENSEMBLES:
        raise PainterError(
            f"--ensemble {settings.ensemble}: expected one of {', '.join(ENSEMBLES)}"
        )
    if settings.precision not in PRECISIONS:
        raise PainterError(f"--precision {settings.precision}: expected fp32 or bf16")
    if settings.seg_type not in (None, "instance", "semantic"):
        raise PainterError(f"--seg-type {settings.seg_type}: expected instance or semantic")
    if settings.decode not in ("codec", "prompt"):
        raise PainterError(f"--decode {settings.decode}: expected codec or prompt")
    ckpt = checkpoint_or_default(settings.checkpoint)
    if settings.target_resize != "auto":
        target_resample(settings.target_resize)  # a bad value fails before any work
    from painter_cli.checkpoint import resolve_seg_type, trained_tasks

    trained = trained_tasks(ckpt)
    codec = task_codec(settings.task, trained, settings.codec, settings.codec_params)
    task_name = (
        _trained_match(settings.task, trained) if settings.task and not settings.codec else None
    )
    kind = codec.kind if codec is not None else None
    by_prompt = settings.decode == "prompt"
    if by_prompt and kind not in (None, "semseg"):
        raise PainterError(
            f"--decode prompt: decoding by the prompt's colours applies to segmentation; "
            f"--task {settings.task} is a {kind} task",
            "drop --task, or drop --decode prompt",
        )
    out = Path(settings.out)
    check_out_folder(out)
    queries = resolve_queries(settings.queries)
    loaded = load_prompts(settings.prompts, codec)
    panoptic = kind == "panoptic"
    if panoptic:
        check_panoptic_prompts(len(loaded), settings.task)
    for p in loaded:  # a tensor prompt fixes the side: --size must agree (before any model work)
        if isinstance(p, Prompt):
            check_prompt_size(p, settings.size, 1)
    for q in queries:  # fail on a corrupt query now, not after half the outputs are written
        open_image(q)
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device, settings.precision)
    if settings.seg_type and not model.config.num_type_tokens:
        raise PainterError(
            f"{ckpt}: --seg-type needs a SegGPT checkpoint (this model has no type tokens)"
        )
    patch = int(model.config.patch_size)
    for p in loaded:
        if isinstance(p, Prompt):
            check_prompt_size(p, None, patch)
    tensor_sizes = {p.size for p in loaded if isinstance(p, Prompt)}
    size = settings.size
    if size is None:
        size = min(tensor_sizes) if tensor_sizes else default_size(model, kind)
    seg_type = resolve_seg_type(ckpt, model, settings.seg_type, kind, task_name)
    predictor = Predictor(
        model, size=size, device=device, precision=settings.precision, seg_type=seg_type
    )
    rule, target_mode = prompt_resize(ckpt, model, settings.target_resize, codec, task_name)
    prompts = [
        p
        if isinstance(p, Prompt)
        else predictor.prompt(
            p[1],
            p[2],
            target_resize=file_target_resize(target_mode, p[3]),
            keep_aspect=settings.keep_aspect,
            name=p[0],
        )
        for p in loaded
    ]
    for p in prompts:
        predictor.check_prompt(p)
    colours = prompt_target_colours(prompts) if by_prompt else None
    # Black is background unless the codec leaves it unlabelled (ADE20K's "other").
    background = codec is None or bool(getattr(codec, "background", False))
    ensemble = settings.ensemble or "features"
    pairs_shown = [prompt_panels(p) for p in prompts]
    stems = output_stems(queries)
    removed = clear_previous(out)
    if removed:
        log.info("removed %d files of the earlier predict run in %s", removed, out)
    records: list[dict[str, Any]] = []
    bs = settings.batch_size
    batches = [list(range(i, min(i + bs, len(queries)))) for i in range(0, len(queries), bs)]
    for batch in track(batches, "painting", total=len(batches)):
        images = [load_image(queries[i]) for i in batch]
        tensors = torch.stack([predictor.query(img, settings.keep_aspect) for img in images])
        sizes = [img.shape[:2] for img in images]
        if panoptic:  # semantic and instance outputs, each with its own prompt
            pairs = paint_panoptic(predictor, tensors, prompts, sizes, settings.keep_aspect)
        else:
            painted = predictor.paint(tensors, prompts, ensemble)
        for j, i in enumerate(batch):
            h, w = sizes[j]
            if panoptic:
                arr = pairs[j]
            else:
                arr = finish(painted[j], h, w, kind, settings.keep_aspect)
            image_id = coco_image_id(stems[i], i)
            if by_prompt:
                from painter_cli.tasks.prompt_colours import decode_by_prompt

                labels = decode_by_prompt(arr, [], background=background, colours=colours)
                rec = write_outputs(out, stems[i], arr, images[j], pairs_shown, None, image_id)
                shown = colours[labels]
                rec["outputs"].update(write_labels(out, stems[i], labels, images[j], shown))
                rec["colours"] = colours.tolist()
            else:
                rec = write_outputs(out, stems[i], arr, images[j], pairs_shown, codec, image_id)
            records.append({"query": str(queries[i]), **rec})
    write_json(out / "predictions.json", records)
    config = settings.to_dict()
    config.update(
        checkpoint=ckpt,
        size=predictor.size,
        canvas=[2 * predictor.size, predictor.size],
        ensemble=ensemble if len(prompts) > 1 and not panoptic else None,
        prompts=[p.name for p in prompts],
        queries=[str(q) for q in queries],
        codec=None if codec is None else {"name": codec.name, "params": codec.params()},
        device=str(device),
        model=model.config.to_dict(),
        target_resize=rule,
        prompt_target_resize=target_mode,
        seg_type=seg_type,
    )
    write_json(out / "predict_config.json", config)
    log.info("painted %d queries into %s", len(records), out)
    return records
