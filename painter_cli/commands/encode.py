"""``painter encode``: a dataset in its original layout -> HDF5 shards of painted pairs."""

from __future__ import annotations

from pathlib import Path

import typer

_SRC = "Source options (forwarded to the source; see --list for which source takes which)"


def encode(
    source: str = typer.Argument(None, help="Source name (see --list)."),
    root: Path = typer.Argument(None, help="Dataset root in its original layout."),
    out: Path = typer.Option(None, "--out", "-o", help="Output shard directory."),
    split: str = typer.Option(
        None,
        "--split",
        help="train, val or test (per source; synthetic: only with --task).",
        show_default="train",
    ),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Worker processes (default: CPUs, at most 8)."
    ),
    shard_size: int = typer.Option(1000, "--shard-size", help="Source items per shard file."),
    size: str = typer.Option(
        None, "--size", help="Resize: S (shorter side) or HxW, at most 8192 (default: keep)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on a corrupt input instead of skipping it."
    ),
    list_: bool = typer.Option(
        False, "--list", help="List the sources with their layouts and exit."
    ),
    task: str = typer.Option(
        None,
        "--task",
        help="pairs, synthetic: task name (synthetic without it: the whole suite).",
        rich_help_panel=_SRC,
    ),
    codec: str = typer.Option(None, "--codec", help="pairs: codec name.", rich_help_panel=_SRC),
    codec_param: list[str] = typer.Option(
        None, "--codec-param", help="pairs: KEY=VALUE.", rich_help_panel=_SRC
    ),
    json_list: str = typer.Option(
        None, "--json", help="pairs: a pair-list JSON.", rich_help_panel=_SRC
    ),
    groups: str = typer.Option(
        None,
        "--groups",
        help="pairs: 'folders' = each sub-folder of images/ and targets/ is a group.",
        rich_help_panel=_SRC,
    ),
    copies: int = typer.Option(
        None, "--copies", help="coco-instance: augmented copies.", rich_help_panel=_SRC
    ),
    seed: int = typer.Option(
        None, "--seed", help="coco-instance, sidd, synthetic: seed.", rich_help_panel=_SRC
    ),
    boxes: str = typer.Option(
        None, "--boxes", help="coco-keypoints: detections JSON.", rich_help_panel=_SRC
    ),
    crops: int = typer.Option(
        None, "--crops-per-image", help="sidd: crops per pair.", rich_help_panel=_SRC
    ),
    count: int = typer.Option(
        None, "--count", help="synthetic: number of samples.", rich_help_panel=_SRC
    ),
    option: list[str] = typer.Option(
        None, "--option", help="Any source option KEY=VALUE.", rich_help_panel=_SRC
    ),
) -> None:
    """Encode a dataset into HDF5 shards that train, eval and prompt-select read (resumable)."""
    from painter_cli.encode import (
        EncodeSettings,
        encode_dataset,
        nworkers_default,
        parse_size,
        source_options,
    )
    from painter_cli.errors import PainterError

    if list_:
        from painter_cli.sources import describe_sources

        typer.echo(describe_sources())
        return
    if source == "synthetic" and out is not None:
        # Generated, not read: ROOT is optional and --size is the generation size (no resize).
        from painter_cli.defaults import encode_synthetic

        typer.echo(encode_synthetic(out, task=task, split=split, size=size, count=count,
                                    seed=seed, workers=workers or nworkers_default(),
                                    shard_size=shard_size, options=option))  # fmt: skip
        return
    if source is None or root is None or out is None:
        raise PainterError(
            "painter encode needs SOURCE ROOT --out DIR", hint="painter encode --list"
        )
    named = {
        "task": task,
        "codec": codec,
        "json": json_list,
        "groups": groups,
        "copies": copies,
        "seed": seed,
        "boxes": boxes,
        "crops_per_image": crops,
        "count": count,
    }
    settings = EncodeSettings(shard_size=shard_size, size=parse_size(size), strict=strict)
    s = encode_dataset(
        source,
        root,
        out,
        split=split or "train",
        workers=workers or nworkers_default(),
        settings=settings,
        options=source_options(named, option, codec_param),
    )
    typer.echo(s.describe())
