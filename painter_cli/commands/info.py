"""``painter info``: what a shard directory holds (counts per task and split), optionally a look."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def info(
    dirs: list[Path] = typer.Argument(..., help="One or more shard directories."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    export: int = typer.Option(
        0, "--export", help="Write N (image, target) pairs as PNGs (0: none)."
    ),
    export_dir: Path = typer.Option(
        None,
        "--export-dir",
        help="Where --export writes (its earlier exported PNGs are replaced).",
        show_default="DIR/export",
    ),
) -> None:
    """Show the tasks, splits, sample counts and codecs of shard directories."""
    from painter_cli.console import stdout_console
    from painter_cli.shards import group_summary, inspect_dirs, sizes_line

    summary, target = inspect_dirs(dirs, export=export, export_dir=export_dir)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.table import Table

    table = Table()
    # Names the other commands take are never cut; the params column wraps instead.
    for name in ("task", "split", "samples", "groups", "codec", "params", "skipped"):
        table.add_column(name, no_wrap=name not in ("params", "groups"), overflow="fold")
    for row in summary["rows"]:
        table.add_row(
            row["task"],
            row["split"],
            str(row["count"]),
            group_summary(row["groups"]),
            row["codec"],
            json.dumps(row["params"]),
            str(row["skipped"]),
        )
    console = stdout_console()
    console.print(table)
    # Sizes below the table, which an 80-column terminal cannot widen: one line when all agree.
    console.print(f"sizes (W x H): {sizes_line(summary['rows'])}", highlight=False)
    console.print(f"{summary['count']} samples in {summary['shards']} shards", highlight=False)
    if target is not None:
        console.print(f"wrote {len(summary['exported'])} PNGs to {target}", highlight=False)
