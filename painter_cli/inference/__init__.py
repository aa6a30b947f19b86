"""In-context prediction: load prompts and queries, assemble canvases, paint, resize back, write.

The canvas follows the official inference (spec section 5.1): the prompt pair is stacked on top of
the query, the target canvas is ``[prompt target ; anything]`` with its whole bottom half masked,
both canvases are ImageNet-normalised, and the painted bottom half is de-normalised and resized
back to the query's size. Canvas size and patch size are read from the loaded model.

Modules: ``images`` (reading any image mode, square fitting, atomic writes), ``predictor``
(``Prompt``, ``make_prompt``, ``Predictor``, ``finish``), ``outputs`` (files per codec kind) and
``run`` (``run_predict``, ``default_checkpoint``). The names below are the public API.
"""

from __future__ import annotations

from painter_cli.inference.images import (
    IMAGE_EXTS,
    atomic_write,
    fit_square,
    load_image,
    load_target,
    open_image,
    output_stems,
    resize_float,
    resolve_queries,
    unfit_square,
    write_json,
    write_npy,
    write_png,
)
from painter_cli.inference.outputs import (
    coco_image_id,
    decode_painted,
    id_to_rgb,
    preview_image,
    prompt_panels,
    turbo,
    write_depth,
    write_instances,
    write_keypoints,
    write_labels,
    write_outputs,
    write_panoptic,
)
from painter_cli.inference.predictor import (
    ENSEMBLES,
    PRECISIONS,
    PROMPT_TENSORS,
    Predictor,
    Prompt,
    back_resize_mode,
    check_panoptic_prompts,
    default_size,
    finish,
    load_prompt_tensors,
    make_prompt,
    model_image_size,
    normalize_rgb,
    paint_panoptic,
    prompt_sources,
    resolve_device,
    to_uint8,
)
from painter_cli.inference.run import (
    PredictSettings,
    checkpoint_or_default,
    default_checkpoint,
    load_checkpoint,
    load_prompts,
    run_predict,
)

__all__ = [
    "ENSEMBLES",
    "IMAGE_EXTS",
    "PRECISIONS",
    "PROMPT_TENSORS",
    "PredictSettings",
    "Predictor",
    "Prompt",
    "atomic_write",
    "back_resize_mode",
    "check_panoptic_prompts",
    "checkpoint_or_default",
    "coco_image_id",
    "decode_painted",
    "default_checkpoint",
    "default_size",
    "finish",
    "fit_square",
    "id_to_rgb",
    "load_checkpoint",
    "load_image",
    "load_prompt_tensors",
    "load_prompts",
    "load_target",
    "make_prompt",
    "model_image_size",
    "normalize_rgb",
    "open_image",
    "output_stems",
    "paint_panoptic",
    "preview_image",
    "prompt_panels",
    "prompt_sources",
    "resize_float",
    "resolve_device",
    "resolve_queries",
    "run_predict",
    "to_uint8",
    "turbo",
    "unfit_square",
    "write_depth",
    "write_instances",
    "write_json",
    "write_keypoints",
    "write_labels",
    "write_npy",
    "write_outputs",
    "write_panoptic",
    "write_png",
]
