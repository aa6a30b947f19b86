"""``painter eval``: in-context prediction over a shard split and the task's official metric."""

from __future__ import annotations

import typer

from painter_cli.commands import _help


def eval_command(
    task: str = typer.Option(..., "--task", help="Task name in the shards (or its codec kind)."),
    data: list[str] = typer.Option(
        None, "--data", help="Validation shard folder(s).", show_default="the synthetic suite's"
    ),
    checkpoint: str = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint dir, run dir, preset or official .pth."
    ),
    prompt: list[str] = typer.Option(
        None,
        "--prompt",
        "-p",
        help="Prompt pair (folder or IMAGE:TARGET); repeat to ensemble. Panoptic: exactly two, "
        "a coco-semseg pair then a coco-instance pair.",
    ),
    prompt_data: list[str] = typer.Option(
        None, "--prompt-data", help="Train shards: prompt with the task's first pair."
    ),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N samples only."),
    out: str = typer.Option(None, "--out", "-o", help="Output folder.", show_default="eval-TASK"),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Queries per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    size: int = typer.Option(
        None, "--size", help="Per-image side S.", show_default="the model's own"
    ),
    ensemble: str = typer.Option("features", "--ensemble", help="features or outputs."),
    metric_variant: str = typer.Option(
        None,
        "--metric-variant",
        help="Restoration: sidd, derain or lol.",
        show_default="from the task",
    ),
    flip_test: bool = typer.Option(True, "--flip-test/--no-flip-test", help="Keypoints flip test."),
    target_resize: str = typer.Option(
        "auto",
        "--target-resize",
        help=_help.TARGET_RESIZE,
    ),
    seg_type: str = typer.Option(
        None,
        "--seg-type",
        help=_help.SEG_TYPE,
    ),
    pair_by_group: bool = typer.Option(
        None,
        "--pair-by-group/--no-pair-by-group",
        help="Prompt each query with other samples of its own group (class, video).",
        show_default="on when the samples carry groups and no --prompt is given",
    ),
    shots: int = typer.Option(
        1, "--shots", help="Prompts per query drawn from shards (a feature ensemble)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-query prompt draw."),
    decode: str = typer.Option(
        "codec",
        "--decode",
        help="Segmentation: codec (its palette) or prompt (the colours the prompt shows).",
    ),
    recolor: bool = typer.Option(
        False,
        "--recolor",
        help="With --decode prompt: repaint each query's prompt targets in random colours "
        "(seeded), as SegGPT trains.",
    ),
    save_predictions: str = typer.Option(
        None,
        "--save-predictions",
        help="Also write every scored painting (as predict does) into this folder.",
    ),
) -> None:
    """Evaluate a checkpoint on a validation split: prints the metrics and writes metrics.json."""
    from rich.table import Table

    from painter_cli.console import stdout_console
    from painter_cli.evaluation import EvalSettings, run_eval, scalar_metrics

    settings = EvalSettings(
        task=task,
        data=list(data or []),
        checkpoint=checkpoint,
        prompts=list(prompt) if prompt else None,
        prompt_data=list(prompt_data) if prompt_data else None,
        limit=limit,
        out=out,
        batch_size=batch_size,
        device=device,
        precision=precision,
        size=size,
        ensemble=ensemble,
        metric_variant=metric_variant,
        flip_test=flip_test,
        target_resize=target_resize,
        seg_type=seg_type,
        pair_by_group=pair_by_group,
        shots=shots,
        seed=seed,
        decode=decode,
        recolor=recolor,
        save_predictions=save_predictions,
    )
    doc = run_eval(settings)
    result = doc["metrics"]
    table = Table(title=f"{result['task']} ({result['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in scalar_metrics(result):
        label = f"{name} *" if name == result["metric"] else name
        table.add_row(label, f"{value:.4f}")
    console = stdout_console()
    console.print(table)
    pairing = result.get("pairing")
    if pairing:
        line = (
            f"each query prompted by {pairing['shots']} other sample(s) of its group "
            f"(seed {pairing['seed']})"
        )
        if pairing["skipped_queries"]:
            line += (
                f"; {pairing['skipped_queries']} queries of {pairing['skipped_groups']} groups "
                "skipped (too few samples in their group)"
            )
        console.print(line)
    console.print(
        f"* headline ({'higher' if result['higher_is_better'] else 'lower'} is better); "
        f"written {doc['settings']['out']}/metrics.json"
    )
