"""``painter weights download|list``: fetch the released checkpoints into the cache, show the cache."""

from __future__ import annotations

from pathlib import Path

import typer

weights = typer.Typer(
    help="Download the released Painter / SegGPT weights and list the cache.",
    no_args_is_help=True,
)

CACHE_HELP = (
    "Cache folder (default: $PAINTER_CACHE or ~/.cache/painter); files go to <cache>/weights."
)


@weights.command("download")
def download(
    name: str = typer.Argument(..., help="painter-vit-large or seggpt-vit-large."),
    url: str = typer.Option(
        None,
        "--url",
        help="Full URL of the file on a mirror (default: $PAINTER_WEIGHTS_URL or Hugging Face).",
    ),
    cache: Path = typer.Option(None, "--cache", help=CACHE_HELP),
    force: bool = typer.Option(False, "--force", help="Download again even if the file is cached."),
) -> None:
    """Download released weights (resumable: rerun after an interruption to continue)."""
    from painter_cli.weights import download_weights

    path = download_weights(name, cache=cache, url=url, force=force)
    typer.echo(str(path))


@weights.command("list")
def list_cached(cache: Path = typer.Option(None, "--cache", help=CACHE_HELP)) -> None:
    """List the known weights with their cache state (complete, partial, invalid, missing) and size."""
    from painter_cli.weights import list_weights

    for row in list_weights(cache):
        size = f"{row.size / 1e9:.2f} GB" if row.size >= 1e8 else f"{row.size / 1e6:.1f} MB"
        size = "-" if row.status == "missing" else size
        typer.echo(f"{row.name:<20} {row.status:<9} {size:>10}  {row.path}")
