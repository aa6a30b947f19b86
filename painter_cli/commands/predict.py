"""``painter predict``: paint the target of query images given one or more prompt pairs."""

from __future__ import annotations

import typer

from painter_cli.commands import _help


def predict(
    queries: list[str] = typer.Argument(..., help="Query images: files, folders or globs."),
    prompt: list[str] = typer.Option(
        ...,
        "--prompt",
        "-p",
        help="A prompt pair: a folder (image.* + target.*, NAME + NAME_target pairs, or "
        "prompt.safetensors) or IMAGE:TARGET. Repeat for an ensemble.",
    ),
    checkpoint: str = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint dir, run dir, preset or official .pth."
    ),
    task: str = typer.Option(
        None,
        "--task",
        help="Decode the painted output: a task the checkpoint learned (name or kind), a synthetic "
        "task or a codec without parameters.",
    ),
    out: str = typer.Option("predictions", "--out", "-o", help="Output folder."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Queries per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    size: int = typer.Option(
        None, "--size", help="Per-image side S (canvas 2S x S).", show_default="the model's own"
    ),
    keep_aspect: bool = typer.Option(
        False, "--keep-aspect", help="Pad to square instead of stretching; crop the result back."
    ),
    target_resize: str = typer.Option(
        "auto",
        "--target-resize",
        help=_help.TARGET_RESIZE,
    ),
    codec: str = typer.Option(
        None, "--codec", help="Decode with this codec (a task the checkpoint does not know)."
    ),
    codec_param: list[str] = typer.Option(
        None, "--codec-param", help="A --codec parameter NAME=VALUE (repeat)."
    ),
    ensemble: str = typer.Option(
        None, "--ensemble", help="Several prompts: features (default) or outputs."
    ),
    seg_type: str = typer.Option(
        None,
        "--seg-type",
        help=_help.SEG_TYPE,
    ),
    decode: str = typer.Option(
        "codec",
        "--decode",
        help="codec (the --task codec's palette) or prompt: segmentation read by the colours the "
        "prompt targets show (labels: 0 black, then those colours by RGB).",
    ),
) -> None:
    """Paint the target of every query given the prompt pair(s); writes images, decoded outputs
    and predictions.json into --out."""
    from painter_cli.console import stdout_console
    from painter_cli.inference import PredictSettings, run_predict

    settings = PredictSettings(
        queries=list(queries),
        prompts=list(prompt),
        checkpoint=checkpoint,
        task=task,
        out=out,
        batch_size=batch_size,
        device=device,
        precision=precision,
        size=size,
        keep_aspect=keep_aspect,
        target_resize=target_resize,
        codec=codec,
        codec_params=list(codec_param) if codec_param else None,
        ensemble=ensemble,
        seg_type=seg_type,
        decode=decode,
    )
    records = run_predict(settings)
    stdout_console().print(f"painted {len(records)} queries -> {out}/predictions.json")
