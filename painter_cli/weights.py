"""Download and cache of the released Painter / SegGPT weights (resumable, size-checked, atomic).

Files live in ``$PAINTER_CACHE/weights/`` (default ``~/.cache/painter/weights/``). A download
streams into ``<file>.part`` with an HTTP ``Range`` request that continues where an interrupted
run stopped, checks the size against the server's (and the catalogue's, when known) and only then
renames the file into place, so a file under its final name is always complete.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from painter_cli.errors import PainterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    """A released checkpoint: Hugging Face ``repo`` and ``file``; ``size`` in bytes when known."""

    repo: str
    file: str
    size: int | None = None
    description: str = ""
    # A lower bound when the exact byte count is unknown: 370.7 M fp32 parameters are ~1.48 GB, so
    # a smaller file under the final name cannot be the released checkpoint.
    min_size: int | None = None


# The spec gives only "1.48 GB" (370.7 M fp32 parameters), not the byte count, so the size is
# checked against the server's Content-Length / Content-Range instead.
KNOWN_WEIGHTS: dict[str, WeightsFile] = {
    "painter-vit-large": WeightsFile(
        "BAAI/Painter",
        "painter_vit_large.pth",
        None,
        "Painter ViT-L, 896x448 canvas (1.48 GB)",
        1_400_000_000,
    ),
    "seggpt-vit-large": WeightsFile(
        "BAAI/SegGPT", "seggpt_vit_large.pth", None, "SegGPT ViT-L (1.48 GB)", 1_400_000_000
    ),
}

DEFAULT_BASE_URL = "https://huggingface.co"
CHUNK = 1 << 20
DOWNLOAD_HINT = (
    "check the network, or fetch from a mirror with --url or PAINTER_WEIGHTS_URL; rerunning resumes"
)


def cache_dir(cache: str | Path | None = None) -> Path:
    """Where weights are stored: ``cache`` or ``$PAINTER_CACHE`` or ``~/.cache/painter``, + ``weights``."""
    root = cache or os.environ.get("PAINTER_CACHE") or Path.home() / ".cache" / "painter"
    return Path(root).expanduser() / "weights"


def _check_folder(folder: Path, option: str = "--cache") -> None:
    """``folder`` (or a folder above it) must not be an existing file."""
    for f in (folder, *folder.parents):
        if f.exists() and not f.is_dir():
            raise PainterError(
                f"{f}: exists and is not a folder", f"choose another {option} folder"
            )


def _record(path: Path) -> Path:
    """``<file>.verified``: the size a completed download was checked at (JSON ``{"size": N}``)."""
    return path.with_name(path.name + ".verified")


def _recorded_size(path: Path) -> int | None:
    import json

    try:
        return int(json.loads(_record(path).read_text())["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _size_ok(entry: WeightsFile, path: Path) -> bool:
    """Whether the file ``path`` can be the released one: the catalogue's exact size when known,
    else the size its download was verified at, else at least the plausible minimum."""
    if not path.is_file():
        return False
    size = path.stat().st_size
    if entry.size is not None:
        return size == entry.size
    recorded = _recorded_size(path)
    if recorded is not None:
        return size == recorded
    return entry.min_size is None or size >= entry.min_size


def _known(name: str) -> WeightsFile:
    try:
        return KNOWN_WEIGHTS[name]
    except KeyError:
        raise PainterError(
            f"unknown weights {name!r}", f"known: {', '.join(KNOWN_WEIGHTS)}"
        ) from None


def weights_url(name: str, base: str | None = None) -> str:
    """``{base}/{repo}/resolve/main/{file}``; ``base`` defaults to ``$PAINTER_WEIGHTS_URL`` or
    Hugging Face."""
    entry = _known(name)
    base = (base or os.environ.get("PAINTER_WEIGHTS_URL") or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{entry.repo}/resolve/main/{entry.file}"


def _total_from_headers(status: int, headers, offset: int) -> int | None:
    if status == 206:
        m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise PainterError(
                f"server answered a resume request with an unexpected range "
                f"{headers.get('Content-Range')!r}",
                "delete the .part file and retry",
            )
        return None if m.group(3) == "*" else int(m.group(3))
    length = headers.get("Content-Length")
    return int(length) if length is not None else None


def fetch(
    url: str, dest: str | Path, expected_size: int | None = None, timeout: float = 30.0
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` with a
    Range request; the file is renamed into place only once its size matches ``expected_size``
    (when given) and the server's announced size. Raises ``PainterError`` on network failure (the
    ``.part`` is kept for the next run) and on a size mismatch."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        logger.warning(
            "%s is larger than the expected %d bytes: starting over", part, expected_size
        )
        part.unlink()
        offset = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "painter-cli"})
    except ValueError as err:
        raise PainterError(f"could not download {url}: {err}", DOWNLOAD_HINT) from None
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code != 416 or not offset:
                raise
            # 416: nothing left past ``offset``: the .part already holds the whole file.
            total = expected_size
            m = re.search(r"/(\d+)", err.headers.get("Content-Range", "") if err.headers else "")
            if m:
                total = int(m.group(1))
            err.close()
            return _finish(part, dest, offset, total, expected_size, url)
        with response:
            status = response.status
            if offset and status != 206:
                logger.info("%s does not support resuming: downloading from the start", url)
                offset = 0
            total = _total_from_headers(status, response.headers, offset)
            if expected_size is not None and total is not None and total != expected_size:
                raise PainterError(
                    f"size mismatch for {url}: the server announces {total} bytes, "
                    f"expected {expected_size}",
                    "the mirror may serve a different file; check --url / PAINTER_WEIGHTS_URL",
                )
            _stream(response, part, offset, total or expected_size, dest.name)
    except PainterError:
        raise
    except urllib.error.HTTPError as err:
        raise PainterError(
            f"could not download {url}: HTTP {err.code} {err.reason}", DOWNLOAD_HINT
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise PainterError(f"could not download {url}: {reason}", DOWNLOAD_HINT) from None
    return _finish(part, dest, part.stat().st_size, total, expected_size, url)


def _stream(response, part: Path, offset: int, total: int | None, label: str) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from painter_cli.console import progress_enabled, stderr_console

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    mode = "ab" if offset else "wb"
    with (
        Progress(*columns, console=stderr_console(), disable=not progress_enabled()) as progress,
        open(part, mode) as out,
    ):
        task = progress.add_task(label, total=total, completed=offset)
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            out.write(chunk)
            progress.advance(task, len(chunk))
        out.flush()
        os.fsync(out.fileno())


def _finish(
    part: Path, dest: Path, size: int, total: int | None, expected: int | None, url: str
) -> Path:
    for want in (total, expected):
        if want is not None and size != want:
            if size > want:
                part.unlink()
            raise PainterError(
                f"size mismatch for {dest.name} from {url}: got {size} bytes, expected {want}",
                DOWNLOAD_HINT
                if size < want
                else "the partial file was deleted; rerun to download again",
            )
    os.replace(part, dest)
    logger.info("saved %s (%d bytes)", dest, size)
    return dest


def download_weights(
    name: str,
    cache: str | Path | None = None,
    url: str | None = None,
    force: bool = False,
) -> Path:
    """Fetch the released weights ``name`` (a key of ``KNOWN_WEIGHTS``) into the cache; returns the
    file. ``url``: the file's full URL (a mirror); default ``weights_url(name)``. An existing file
    is kept unless ``force``."""
    entry = _known(name)
    folder = cache_dir(cache)
    _check_folder(folder)
    dest = folder / entry.file
    for path in (dest, dest.with_name(dest.name + ".part")):
        if path.exists() and not path.is_file():
            raise PainterError(
                f"{path}: exists and is not a file", "remove or rename it, then download again"
            )
    if url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
            raise PainterError(
                f"--url {url}: not a URL",
                "give the file's full URL, e.g. https://host/path/file.pth",
            )
    if dest.exists() and not force:
        if _size_ok(entry, dest):
            logger.info("%s is already cached at %s", name, dest)
            return dest
        logger.warning("%s has the wrong size: downloading again", dest)
    if force:
        # Keep the old file until the new one is complete: os.replace swaps it atomically.
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
    path = fetch(url or weights_url(name), dest, entry.size)
    import json

    _record(path).write_text(json.dumps({"size": path.stat().st_size}) + "\n")
    return path


@dataclass(frozen=True)
class CachedWeights:
    """One row of ``list_weights``: ``status`` is "complete", "partial", "invalid" (a folder, or a
    file of the wrong size, under the final name) or "missing"."""

    name: str
    path: Path
    status: str
    size: int


def list_weights(cache: str | Path | None = None) -> list[CachedWeights]:
    """The known weights and their state in the cache (partial = an interrupted ``.part``)."""
    folder = cache_dir(cache)
    rows = []
    for name, entry in KNOWN_WEIGHTS.items():
        path = folder / entry.file
        part = path.with_name(path.name + ".part")
        if path.is_file():
            status = "complete" if _size_ok(entry, path) else "invalid"
            rows.append(CachedWeights(name, path, status, path.stat().st_size))
        elif path.exists():
            rows.append(CachedWeights(name, path, "invalid", 0))
        elif part.exists():
            rows.append(CachedWeights(name, part, "partial", part.stat().st_size))
        else:
            rows.append(CachedWeights(name, path, "missing", 0))
    return rows


def resolve_weights(name_or_path: str | Path, cache: str | Path | None = None) -> Path:
    """A checkpoint path from an existing file path or a known weights name (its cached file)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if name in KNOWN_WEIGHTS:
        cached = cache_dir(cache) / KNOWN_WEIGHTS[name].file
        if cached.is_file():
            return cached
        raise PainterError(
            f"weights {name!r} are not downloaded ({cached} does not exist)",
            f"run: painter weights download {name}",
        )
    raise PainterError(
        f"{name_or_path}: no such checkpoint file or known weights name",
        f"known weights: {', '.join(KNOWN_WEIGHTS)}",
    )
