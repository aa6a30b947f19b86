"""``painter train``: train a Painter on shards (``painter encode`` output) into a run directory."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def train(
    config: Path = typer.Argument(
        None, help="A TOML run config (sections model, data, mask, optim, schedule, run)."
    ),
    data: list[Path] = typer.Option(
        None,
        "--data",
        help="Train shard directory (repeatable).",
        show_default="the synthetic suite",
    ),
    preset: str = typer.Option(
        None,
        "--preset",
        help="Run preset: tiny, painter-vit-large, painter-vit-large-code.",
        show_default="the config's preset, else tiny",
    ),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (schedule.steps)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Global batch per optimizer step."),
    seed: int = typer.Option(None, "--seed", help="Seed of the data order, masks and init."),
    out: Path = typer.Option(
        None, "--out", help="Run directory to create.", show_default="runs/<timestamp>"
    ),
    resume: Path = typer.Option(
        None, "--resume", help="Continue RUN_DIR from its latest checkpoint."
    ),
    overrides: list[str] = typer.Option(
        None, "--set", help="section.key=value override (repeatable)."
    ),
    val_data: list[Path] = typer.Option(
        None, "--val-data", help="Validation shard directory (repeatable)."
    ),
    init: str = typer.Option(
        None, "--init", help="Initial weights: mae:PATH, or a checkpoint / RUN_DIR."
    ),
) -> None:
    """Train on mixed-task canvases; writes config.toml, metrics.jsonl and checkpoints/ to --out."""
    from painter_cli import config as cfgmod
    from painter_cli import engine
    from painter_cli.console import stdout_console
    from painter_cli.errors import PainterError

    flags = {"CONFIG": config, "--data": data, "--preset": preset, "--steps": steps,
             "--batch-size": batch_size, "--seed": seed, "--out": out, "--set": overrides,
             "--val-data": val_data, "--init": init}  # fmt: skip
    if resume is not None:
        given = [name for name, v in flags.items() if v is not None and v != [] and v != ()]
        if given:
            raise PainterError(
                f"--resume continues with {resume / engine.CONFIG_NAME}; drop {', '.join(given)}",
                hint="edit nothing mid-run: start a new run with --init RUN_DIR to change settings",
            )
        cfg, run_dir = engine.resume_config(resume), resume
    else:
        cfg = cfgmod.resolve(config, preset=preset, overrides=overrides or [])
        cfgmod.apply_flags(
            cfg,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            data=data,
            val_data=val_data,
            init=init,
        )
        # No --data: the synthetic suite (cached); no --out: ./runs/<timestamp>.
        from painter_cli.defaults import apply_train_defaults

        run_dir = apply_train_defaults(cfg, out)
    result = engine.train(cfg, run_dir, resume=resume is not None)
    if os.environ.get("RANK", "0") == "0" and result.already_complete:
        stdout_console().print(
            f"{run_dir}: already complete ({result.step}/{result.total_steps} steps) "
            f"-> {result.checkpoint}; to train further, start a run with --init {run_dir}"
        )
    elif os.environ.get("RANK", "0") == "0":
        stdout_console().print(
            f"trained {result.step}/{result.total_steps} steps: loss {result.loss:.4f}, "
            f"{result.samples_per_s:.1f} samples/s, data wait {100 * result.data_wait_share:.1f}% "
            f"-> {result.checkpoint}",
            highlight=False,
        )
