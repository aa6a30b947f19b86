"""``painter info``: what a shard directory holds (counts per task and split), optionally a look."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def info(
    dirs: list[Path] = typer.Argument(..., help="One or more shard directories."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    export: int = typer.Option(0, "--export", help="Write N (image, target) pairs as PNGs."),
    export_dir: Path = typer.Option(
        None, "--export-dir", help="Where --export writes.", show_default="DIR/export"
    ),
) -> None:
    """Show the tasks, splits, sample counts and codecs of shard directories."""
    from painter_cli.console import stdout_console
    from painter_cli.shards import ShardReader, export_pairs, summarize

    reader = ShardReader(dirs)
    summary = summarize(reader)
    if export:
        target = export_dir or Path(dirs[0]) / "export"
        summary["exported"] = [str(p) for p in export_pairs(reader, export, target)]
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.table import Table

    table = Table()
    # Names the other commands take are never cut; the params column wraps instead.
    for name in ("task", "split", "samples", "codec", "params", "skipped"):
        table.add_column(name, no_wrap=name != "params", overflow="fold")
    for row in summary["rows"]:
        table.add_row(
            row["task"],
            row["split"],
            str(row["count"]),
            row["codec"],
            json.dumps(row["params"]),
            str(row["skipped"]),
        )
    console = stdout_console()
    console.print(table)
    console.print(f"{summary['count']} samples in {summary['shards']} shards", highlight=False)
    if export:
        console.print(f"wrote {len(summary['exported'])} PNGs to {target}", highlight=False)
