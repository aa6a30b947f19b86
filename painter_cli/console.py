"""Logging set-up (once, rank 0 only) and a rich progress helper that stays quiet off a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_configured = False


def rank() -> int:
    """Process rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def setup_logging(debug: bool = False) -> None:
    """Configure the ``painter_cli`` logger once; non-zero ranks only log warnings."""
    global _configured
    if _configured:
        return
    _configured = True
    from rich.logging import RichHandler

    level = logging.DEBUG if debug else logging.INFO
    if rank() != 0:
        level = logging.WARNING
    handler = RichHandler(console=stderr_console(), show_path=debug, show_time=False, markup=False)
    logger = logging.getLogger("painter_cli")
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False


_stderr = None
_stdout = None


def stderr_console():
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True)
    return _stderr


def stdout_console():
    global _stdout
    if _stdout is None:
        from rich.console import Console

        _stdout = Console()
    return _stdout


def progress_enabled() -> bool:
    return rank() == 0 and sys.stderr.isatty() and not os.environ.get("PAINTER_NO_PROGRESS")


def _columns() -> tuple:
    """The columns every painter progress bar starts with: description, bar, done/total, times."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def track(items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar on rank 0 when stderr is a terminal; plain iteration otherwise."""
    if not progress_enabled():
        yield from items
        return
    from rich.progress import Progress

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(*_columns(), console=stderr_console(), transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def make_progress():
    """A rich ``Progress`` for loops that update several fields (loss, lr...); disabled off a terminal."""
    from rich.progress import Progress, TextColumn

    return Progress(
        *_columns(),
        TextColumn("{task.fields[info]}"),
        console=stderr_console(),
        disable=not progress_enabled(),
    )
