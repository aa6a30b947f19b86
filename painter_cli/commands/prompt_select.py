"""``painter prompt-select``: search the training set for the best prompt pair of a task."""

from __future__ import annotations

import typer


def prompt_select(
    task: str = typer.Option(..., "--task", help="Task name in the shards (or its codec kind)."),
    data: list[str] = typer.Option(
        None,
        "--data",
        help="Training shard folder(s): the candidates.",
        show_default="the synthetic suite's",
    ),
    out: str = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (resumes when it has scores).",
        show_default="prompt-select-TASK",
    ),
    checkpoint: str = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint dir, run dir, preset or official .pth."
    ),
    probe: list[str] = typer.Option(
        None, "--probe", help="Probe shard folder(s).", show_default="pairs held out of --data"
    ),
    candidates: str = typer.Option("64", "--candidates", "-n", help="Candidate pairs, or 'all'."),
    probe_size: int = typer.Option(32, "--probe-size", "-m", help="Probe queries."),
    top: int = typer.Option(5, "--top", "-k", help="Pairs in the multi-prompt folder OUT/top."),
    random: int = typer.Option(
        10,
        "--random",
        help="Random prompts scored on all probes: their mean, and whether the prompt matters.",
    ),
    min_probes: int = typer.Option(4, "--min-probes", help="Probes of the first halving round."),
    per_query: bool = typer.Option(
        False, "--per-query", help="Also score retrieval: each probe gets its most similar pair."
    ),
    features: str = typer.Option("pixels", "--features", help="Retrieval: pixels or encoder."),
    score: str = typer.Option("auto", "--score", help="auto, metric or loss (masked loss)."),
    size: int = typer.Option(
        None, "--size", help="Per-image side S.", show_default="the model's own"
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Probes per forward (loss)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the candidate/probe draw."),
    group: list[str] = typer.Option(
        None,
        "--group",
        help="Search one group's pairs only (repeat for several, 'all' for each; one folder per "
        "group in OUT when several).",
    ),
    cross: bool = typer.Option(
        False,
        "--cross",
        help="Score the candidates on each other, never a pair on itself, instead of on pairs "
        "held out as probes: for a small group, whose pairs would otherwise be split.",
    ),
    metric_variant: str = typer.Option(
        None,
        "--metric-variant",
        help="Restoration: sidd, derain or lol.",
        show_default="from the task",
    ),
) -> None:
    """Pick the training pair that prompts TASK best (successive halving), with top-K and report."""
    from rich.table import Table

    from painter_cli.console import stdout_console
    from painter_cli.prompts import SelectSettings, parse_count, run_select, verdict

    settings = SelectSettings(
        task=task,
        data=list(data or []),
        out=out,
        checkpoint=checkpoint,
        probe=list(probe) if probe else None,
        candidates=parse_count(candidates),
        probe_size=probe_size,
        top=top,
        random=random,
        min_probes=min_probes,
        per_query=per_query,
        features=features,
        score=score,
        size=size,
        batch_size=batch_size,
        device=device,
        seed=seed,
        metric_variant=metric_variant,
        group=list(group) if group else None,
        cross=cross,
    )
    r = run_select(settings)
    if "groups" in r:
        _print_groups(r)
        return
    sense = "higher" if r["higher_is_better"] else "lower"
    table = Table(title=f"{r['task']}: {r['metric']} ({sense} is better)")
    for col in ("rank", "pair", r["metric"], "probes"):
        table.add_column(col, justify="left" if col == "pair" else "right")
    shown = r["candidates"][:20]
    for rank, row in enumerate(shown, start=1):
        value = "nan" if row["score"] is None else f"{row['score']:.4f}"
        table.add_row(str(rank), row["id"], value, str(row["probes"]))
    console = stdout_console()
    console.print(table)
    if len(r["candidates"]) > len(shown):
        more = len(r["candidates"]) - len(shown)
        console.print(f"({more} more in {r['prompt']}/report.json)")
    for label, value in (
        ("random prompts (mean)", r["random_mean"]),
        ("per-query retrieval", r.get("retrieval", {}).get("score")),
    ):
        if value is not None:
            console.print(f"{label}: {value:.4f}")
    n = r["searched"]
    console.print(
        f"searched {n['candidates']} of {n['pairs']} training pairs on {n['probes']} probes"
        f"{' (each on the others, --cross)' if n.get('cross') else ''}, {n['random']} random "
        "prompts"
    )
    for line in r["warnings"]:
        console.print(f"warning: {line}", markup=False)
    if n["random"]:
        console.print(verdict(r["dependence"], r["task"]), markup=False)
    if r["all_tied"]:
        console.print(
            f"all {n['candidates']} candidates scored the same on the first "
            f"{r['rounds'][0]['probes']} probes: the first halving round kept arbitrary ones"
        )
    if r["tied"]:
        score = "nan" if r["best"]["score"] is None else f"{r['best']['score']:.4f}"
        console.print(
            f"no best: {len(r['tied'])} candidates tie at {r['metric']} {score} "
            f"({', '.join(r['tied'][:5])}{', ...' if len(r['tied']) > 5 else ''}); "
            f"{r['prompt']} holds the first of them by draw order",
            markup=False,
        )
        head = "tied"
    elif r["dependence"]["matters"] is False:
        head = f"chosen {r['best']['id']} (no better than the others beyond noise)"
    else:
        head = f"best {r['best']['id']}"
    console.print(
        f"{head} -> {r['prompt']}; top {len(r['top'])} -> {r['top_prompts']}\n"
        f"{r['forward_passes']} forward passes: search {r['search_evaluations']} (all pairs on all "
        f"probes: {r['naive_evaluations']}), the rest random prompts and retrieval"
    )
    console.print("(scores compare between rows with the same number of probes)")


def _print_groups(r: dict) -> None:
    """One row a group: its best pair and score on its probes, the random mean and the noise."""
    from rich.table import Table

    from painter_cli.console import stdout_console

    sense = "higher" if r["higher_is_better"] else "lower"
    table = Table(title=f"{r['task']}: {r['metric']} ({sense} is better), one search per group")
    for col in ("group", "best", r["metric"], "random mean", "noise", "prompt matters"):
        table.add_column(col, justify="left" if col in ("group", "best") else "right")
    says = {True: "yes", False: "no (noise)", None: "?"}
    for row in r["groups"]:
        best = f"{row['best']} (tie)" if row["tied"] else row["best"]
        table.add_row(
            row["group"],
            best,
            _fmt(row["score"]),
            _fmt(row["random_mean"]),
            _fmt(row["noise"]),
            says[row["matters"]],
        )
    console = stdout_console()
    console.print(table)
    console.print(
        f"{len(r['groups'])} groups -> {r['prompt']}/GROUP (each with its report.json); "
        f"summary in {r['prompt']}/report.json"
    )
    warned = sum(row["warnings"] for row in r["groups"])
    if warned:
        console.print(f"{warned} warnings: see the groups' report.json (searched less than asked)")


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4f}"
