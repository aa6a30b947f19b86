"""``painter prompt-tune``: learn the prompt pair of a task with the model frozen."""

from __future__ import annotations

import typer


def prompt_tune(
    task: str = typer.Option(..., "--task", help="Task name in the shards (or its codec kind)."),
    data: list[str] = typer.Option(
        None, "--data", help="Training shard folder(s).", show_default="the synthetic suite's"
    ),
    out: str = typer.Option(
        None, "--out", "-o", help="Output prompt folder.", show_default="prompt-tune-TASK"
    ),
    checkpoint: str = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint dir, run dir, preset or official .pth."
    ),
    init: str = typer.Option(
        None,
        "--init",
        help="Initial prompt: a folder (its first pair, or its prompt.safetensors), IMAGE:TARGET or a .safetensors file.",
        show_default="a random pair",
    ),
    probe: list[str] = typer.Option(
        None, "--probe", help="Validation shard folder(s).", show_default="pairs held out of --data"
    ),
    steps: int = typer.Option(200, "--steps", help="Adam steps."),
    lr: float = typer.Option(0.01, "--lr", help="Learning rate (normalised pixel units)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Training queries per step."),
    probe_size: int = typer.Option(16, "--probe-size", "-m", help="Validation queries."),
    random: int = typer.Option(
        8,
        "--random",
        help="Random pairs scored on the probes first, to tell whether the prompt matters (0: skip).",
    ),
    val_every: int = typer.Option(25, "--val-every", help="Validate every N steps."),
    save_every: int = typer.Option(25, "--save-every", help="Save resumable state every N steps."),
    score: str = typer.Option("auto", "--score", help="auto, metric or loss (masked loss)."),
    objective: str = typer.Option(
        "loss",
        "--objective",
        help="loss (the training loss), palette (semseg/instance), heatmap (keypoints) or psnr "
        "(restoration).",
    ),
    ema: float = typer.Option(
        0.0,
        "--ema",
        help="Validate and keep the prompt's moving average over the steps, with this decay "
        "(0: the live prompt).",
    ),
    size: int = typer.Option(
        None, "--size", help="Per-image side S.", show_default="the model's own"
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe split and the batches."),
    group: list[str] = typer.Option(
        None,
        "--group",
        help="Tune on one group's pairs only (repeat for several, 'all' for each; one prompt "
        "folder per group in OUT when several).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    metric_variant: str = typer.Option(
        None,
        "--metric-variant",
        help="Restoration: sidd, derain or lol.",
        show_default="from the task",
    ),
) -> None:
    """Tune the prompt image and target of TASK (model frozen); writes a prompt folder."""
    from painter_cli.console import stdout_console
    from painter_cli.prompts import TuneSettings, run_tune

    settings = TuneSettings(
        task=task,
        data=list(data or []),
        out=out,
        checkpoint=checkpoint,
        probe=list(probe) if probe else None,
        init=init,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        probe_size=probe_size,
        val_every=val_every,
        save_every=save_every,
        score=score,
        objective=objective,
        ema=ema,
        size=size,
        device=device,
        seed=seed,
        resume=resume,
        metric_variant=metric_variant,
        random=random,
        group=list(group) if group else None,
    )
    r = run_tune(settings)
    sense = "higher" if r["higher_is_better"] else "lower"
    console = stdout_console()
    if "groups" in r:
        _print_groups(r, sense)
        return
    console.print(
        f"{r['task']}: {r['metric']} ({sense} is better) on the probe set: "
        f"initial {_fmt(r['initial'])} -> tuned {_fmt(r['tuned'])} (step {r['best_step']})"
    )
    dep = r.get("dependence")
    if dep is not None and dep["noise"] is not None:
        says = {
            True: "the task depends on its prompt",
            False: "the task does not measurably depend on its prompt",
            None: "too few random pairs to tell whether the prompt matters",
        }[dep["matters"]]
        console.print(
            f"the metric's noise on these probes: {_fmt(dep['noise'])} ({says}: "
            f"{dep['prompts']} random pairs spread {_fmt(dep['spread'])})"
        )
    console.print(f"prompt written to {r['prompt']} (image.png, target.png, prompt.safetensors)")


def _print_groups(r: dict, sense: str) -> None:
    """One row a group: the initial and the tuned prompt's score on its probes, and the noise."""
    from rich.table import Table

    from painter_cli.console import stdout_console

    table = Table(title=f"{r['task']}: {r['metric']} ({sense} is better), one prompt per group")
    for col in ("group", "initial", "tuned", "noise", "prompt matters"):
        table.add_column(col, justify="left" if col == "group" else "right")
    says = {True: "yes", False: "no (noise)", None: "?"}
    for row in r["groups"]:
        table.add_row(
            row["group"],
            _fmt(row["initial"]),
            _fmt(row["tuned"]),
            _fmt(row["noise"]),
            says[row["matters"]],
        )
    console = stdout_console()
    console.print(table)
    console.print(
        f"{len(r['groups'])} prompts -> {r['prompt']}/GROUP (image.png, target.png, "
        f"prompt.safetensors); summary in {r['prompt']}/report.json"
    )


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4f}"
