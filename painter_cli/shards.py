"""HDF5 shards of painted (image, target) pairs: the one data format ``train``, ``eval`` and
``prompt-select`` read.

A shard directory holds ``shard-00000.h5``, ``shard-00001.h5``, ... and ``index.json`` (written
last, so a directory without it is incomplete). Every shard file is self-contained:

* ``manifest``: a JSON string, one entry per sample: ``{"id", "task", "image": [format, shape,
  offset, nbytes], "target": [...], "extras": [names]}`` plus ``"group"`` (a string: the sample's
  concept, e.g. its class) when the sample has one; read once per process and file.
* ``samples/<j>/image`` and ``samples/<j>/target``: contiguous 1-D uint8 payloads (format and shape
  repeated as dataset attributes for h5py users). ``offset``/``nbytes`` locate the raw bytes in the
  file, so the reader fetches a payload with one ``pread`` instead of h5py's per-object lookups.
* ``samples/<j>/extras/<name>``: native arrays of any dtype (gzip level 1 + shuffle).
* attributes ``painter_shard_version`` and ``summary`` (JSON: counts, tasks, skipped items and the
  fingerprint of the encode that wrote it, which lets a rerun skip complete shards).

Payload formats (chosen by measurement, see ``bench/shards.py``):

* ``jpeg``: the source file's bytes, kept when the source is an RGB JPEG without an EXIF rotation
  (a lossless re-encoding costs several times the bytes; the bytes are the source).
* ``zdelta``: an (H, W, C) uint8 array, differenced along W (mod 256, PNG's "Sub" filter) and
  raw-deflated. About the size of a PNG of the same pixels, 1.3-1.8x faster to decode than PIL's
  PNG reader. Used for photos (PNG sources, restoration targets, decoded non-RGB JPEGs).
* ``rle``: runs of identical pixels in row-major order (uint32 ``n``, then deflated run lengths
  ``<u4[n]`` and run values ``uint8[n, C]``). For painted label maps: tiny, and decoded by one
  ``np.repeat`` (~8x faster than their PNG). Chosen when the average run is >= 16 pixels.
* ``raw``: the array's bytes (empty or degenerate arrays only).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError

log = logging.getLogger(__name__)

FORMAT = "painter-shards"
# Bump when the on-disk layout changes; a reader refuses shards of another version.
VERSION = 1
INDEX = "index.json"
SKIPPED = "skipped.txt"
ZLIB_LEVEL = 6
# Painted maps whose pixels average at least this run length (row-major) are stored as ``rle``.
RLE_MIN_RUN = 16
_JPEG_MAGIC = b"\xff\xd8\xff"


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard-{k:05d}.h5"


# --- payloads ---------------------------------------------------------------------------------------


def pack_image(image: np.ndarray | bytes, what: str = "image") -> tuple[str, np.ndarray, tuple]:
    """``(format, payload uint8 1-D, shape)`` of an (H, W, 3) uint8 image or a file's encoded bytes.

    JPEG bytes of an RGB image without EXIF rotation are kept as is; anything else is decoded and
    stored as ``zdelta``.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        with _open_pil(data, what) as im:
            keep = (
                data[:3] == _JPEG_MAGIC
                and im.mode == "RGB"
                and im.getexif().get(0x0112, 1) in (0, 1)
            )
            if keep:
                return "jpeg", np.frombuffer(data, np.uint8), (im.height, im.width, 3)
            array = _pil_to_rgb(im, what)
        return pack_array(array)
    array = _check_image(image, what)
    return pack_array(array)


def pack_array(array: np.ndarray) -> tuple[str, np.ndarray, tuple]:
    """``(format, payload, shape)`` of a uint8 (H, W[, C]) array, lossless: ``rle`` when the pixels
    form long runs (painted label maps), else ``zdelta``."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    if a.ndim < 2 or a.size == 0:
        return "raw", np.frombuffer(a.tobytes(), np.uint8), a.shape
    pixels = a.reshape(a.shape[0] * a.shape[1], -1)
    starts = _run_starts(pixels)
    if len(starts) * RLE_MIN_RUN <= len(pixels):
        lengths = np.diff(np.append(starts, len(pixels))).astype("<u4")
        body = lengths.tobytes() + pixels[starts].tobytes()
        payload = np.uint32(len(starts)).astype("<u4").tobytes() + _deflate(body)
        return "rle", np.frombuffer(payload, np.uint8), a.shape
    delta = a.copy()
    # Differences along W make smooth photos compress 1.3-1.5x better (PNG's "Sub" filter).
    np.subtract(a[:, 1:], a[:, :-1], out=delta[:, 1:])
    return "zdelta", np.frombuffer(_deflate(delta.tobytes()), np.uint8), a.shape


def _run_starts(pixels: np.ndarray) -> np.ndarray:
    """Indices where a run of identical rows of ``pixels`` (N, C) starts."""
    change = np.zeros(len(pixels), bool)
    change[0] = True
    np.any(pixels[1:] != pixels[:-1], axis=1, out=change[1:])
    return np.flatnonzero(change)


def _deflate(data: bytes) -> bytes:
    # A raw deflate stream (no zlib header and checksum): the checksum costs ~10% of a decode.
    c = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def unpack(fmt: str, payload: np.ndarray | bytes, shape: Sequence[int]) -> np.ndarray:
    """Decode a payload written by ``pack_image``/``pack_array`` into a writable uint8 array."""
    shape = tuple(int(s) for s in shape)
    if fmt == "zdelta":
        delta = np.frombuffer(zlib.decompress(payload, -15), np.uint8).reshape(shape)
        return np.cumsum(delta, axis=1, dtype=np.uint8)
    if fmt == "rle":
        data = bytes(payload)
        n = int(np.frombuffer(data[:4], "<u4")[0])
        body = zlib.decompress(data[4:], -15)
        lengths = np.frombuffer(body, "<u4", n)
        values = np.frombuffer(body, np.uint8, offset=4 * n).reshape(n, -1)
        return np.repeat(values, lengths, axis=0).reshape(shape)
    if fmt == "jpeg":
        from PIL import Image

        with Image.open(io.BytesIO(payload)) as im:
            im.load()
            return np.array(im if im.mode == "RGB" else im.convert("RGB"))
    if fmt == "raw":
        return np.frombuffer(bytes(payload), np.uint8).reshape(shape).copy()
    raise PainterError(f"unknown payload format {fmt!r} in a shard")


def _open_pil(data: bytes, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as e:
        raise PainterError(f"{what}: not a readable image ({e})") from None


def _pil_to_rgb(im, what: str) -> np.ndarray:
    from PIL import ImageOps

    from painter_cli.pixels import to_rgb

    try:
        # The conversion predict uses too: 16-bit and float gray keep their range.
        return to_rgb(ImageOps.exif_transpose(im))
    except (OSError, ValueError) as e:
        raise PainterError(f"{what}: not a readable image ({e})") from None


def _check_image(image: Any, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise PainterError(f"{what}: expected an (H, W, 3) uint8 array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise PainterError(
            f"{what}: expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}"
        )
    return image


def image_size(image: np.ndarray | bytes) -> tuple[int, int]:
    """(H, W) of an array or of encoded image bytes (reads the header only)."""
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    from PIL import Image

    with Image.open(io.BytesIO(bytes(image))) as im:
        return im.height, im.width


# --- writing ----------------------------------------------------------------------------------------


def check_dir_path(path: str | Path, what: str = "the output") -> list[Path]:
    """The missing folders of ``path`` (itself and parents, deepest first), after checking that
    none of them exists as something other than a folder (``PainterError`` naming it)."""
    missing: list[Path] = []
    p = Path(path)
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise PainterError(
            f"{p}: exists and is not a folder", hint=f"give {what} a folder path (new or existing)"
        )
    return missing


def ensure_dir(path: str | Path, what: str = "the output") -> list[Path]:
    """Create folder ``path`` and its missing parents; returns the folders this call created,
    deepest first (so a failed command can remove the ones it left empty). ``PainterError`` when
    ``path`` or a parent exists as something other than a folder, or cannot be created."""
    missing = check_dir_path(path, what)
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PainterError(f"{path}: cannot create the folder ({e.strerror or e})") from None
    return missing


def remove_empty_dirs(dirs: Iterable[Path]) -> None:
    """Remove ``dirs`` (deepest first, as ``ensure_dir`` returns them) while they are empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (or already gone): keep it and everything above it
            return


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class ShardFile:
    """One shard being written: samples go to a temporary file that ``commit`` renames into place.

    ``add`` validates and packs a sample; nothing appears under ``path`` until ``commit``.
    """

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._h5 = h5py.File(self.tmp, "w", libver="earliest", track_order=False)
        self._samples = self._h5.create_group("samples")
        self._manifest: list[dict[str, Any]] = []
        # task -> group -> count, for the index (only samples that carry a group).
        self.group_counts: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._manifest)

    def add(self, sample: Any, task: str) -> None:
        """Append a ``Sample`` (image, target (H, W, 3) uint8 of the same size, extras).

        ``target`` may be None for image-only test samples (e.g. keypoint crops from detected
        boxes); the reader then returns ``target=None``.
        """
        what = f"sample {sample.id!r}"
        target = None if sample.target is None else _check_image(sample.target, f"{what} target")
        if target is not None and image_size(sample.image) != target.shape[:2]:
            raise PainterError(
                f"{what}: image is {image_size(sample.image)} but target is {target.shape[:2]} (H, W)"
            )
        group = self._samples.create_group(str(len(self._manifest)))
        entry: dict[str, Any] = {"id": str(sample.id), "task": task}
        sample_group = getattr(sample, "group", None)
        if sample_group is not None:
            if not isinstance(sample_group, str) or not sample_group:
                raise PainterError(
                    f"{what}: group must be a non-empty string, not {sample_group!r}"
                )
            entry["group"] = sample_group
            per_task = self.group_counts.setdefault(task, {})
            per_task[sample_group] = per_task.get(sample_group, 0) + 1
        entry["target"] = None
        for field, value in (("image", sample.image), ("target", target)):
            if value is None:
                continue
            fmt, payload, shape = pack_image(value, f"{what} {field}")
            ds = group.create_dataset(field, data=payload)
            ds.attrs["format"] = fmt
            ds.attrs["shape"] = np.asarray(shape, np.int64)
            # Contiguous raw data never moves: readers fetch it with one pread, bypassing h5py.
            offset = ds.id.get_offset() if payload.size else None
            entry[field] = [fmt, [int(s) for s in shape], offset, int(payload.size)]
        extras = sorted(sample.extras or {})
        if extras:
            eg = group.create_group("extras")
            for name in extras:
                value = np.asarray(sample.extras[name])
                if value.ndim == 0 or value.size < 64:
                    eg.create_dataset(name, data=value)
                else:
                    eg.create_dataset(
                        name, data=value, compression="gzip", compression_opts=1, shuffle=True
                    )
        entry["extras"] = extras
        self._manifest.append(entry)

    def commit(self, summary: dict[str, Any]) -> None:
        """Write the manifest and ``summary`` attribute, close and rename into place."""
        self._h5.create_dataset("manifest", data=json.dumps(self._manifest, sort_keys=True))
        self._h5.attrs["painter_shard_version"] = VERSION
        self._h5.attrs["summary"] = json.dumps(summary, sort_keys=True)
        self._h5.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (nothing is written for a failed shard)."""
        # Already closed or half-written: the file is removed anyway.
        with contextlib.suppress(Exception):
            self._h5.close()
        self.tmp.unlink(missing_ok=True)

    @property
    def task_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._manifest:
            counts[e["task"]] = counts.get(e["task"], 0) + 1
        return counts


def read_shard_summary(path: str | Path) -> dict[str, Any] | None:
    """The ``summary`` attribute of a complete shard file, or None when it is unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs.get("painter_shard_version", -1)) != VERSION:
                return None
            return json.loads(f.attrs["summary"])
    except (OSError, KeyError, ValueError):
        return None


def write_index(out_dir: str | Path, index: dict[str, Any]) -> None:
    """Write ``index.json`` atomically (the last file of an encode)."""
    atomic_write_text(Path(out_dir) / INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")


def make_index(
    *,
    tasks: dict[str, dict[str, Any]],
    shards: list[dict[str, Any]],
    split: str,
    sources: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """An ``index.json`` dict. ``tasks``: task -> {"codec", "params"}; ``shards``: per file
    {"file", "count", "tasks": {task: n}, optional "groups": {task: {group: n}}, ...}; counts per
    task (and per group, for tasks whose samples carry groups) are summed from ``shards``."""
    per_task = {t: 0 for t in tasks}
    groups: dict[str, dict[str, int]] = {}
    for s in shards:
        for t, n in s["tasks"].items():
            if t not in tasks:
                raise PainterError(f"shard {s['file']}: task {t!r} has no codec in the index")
            per_task[t] += n
        for t, counts in (s.get("groups") or {}).items():
            merged = groups.setdefault(t, {})
            for g, n in counts.items():
                merged[g] = merged.get(g, 0) + int(n)
    return {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "sources": sources,
        "tasks": {
            t: {
                "codec": v["codec"],
                "params": dict(v.get("params") or {}),
                "count": per_task[t],
                **({"groups": dict(sorted(groups[t].items()))} if groups.get(t) else {}),
            }
            for t, v in tasks.items()
        },
        "count": sum(s["count"] for s in shards),
        "shards": shards,
        **extra,
    }


class ShardWriter:
    """Write samples into a shard directory: ``shard_size`` samples a file, ``index.json`` last.

    >>> with ShardWriter(out, tasks={"my-task": {"codec": "restoration", "params": {}}}) as w:
    ...     w.add(Sample(id="a", image=img, target=tgt))

    Each file appears only when complete (temp file + rename); on an exception the open shard is
    dropped and no ``index.json`` is written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        tasks: dict[str, dict[str, Any]],
        *,
        split: str = "train",
        sources: list[dict[str, Any]] | None = None,
        shard_size: int = 1000,
    ):
        if shard_size < 1:
            raise PainterError("shard size must be >= 1")
        if not tasks:
            raise PainterError("ShardWriter needs at least one task (task -> codec and params)")
        self.out = Path(out_dir)
        self.tasks = tasks
        self.split = split
        self.sources = sources or []
        self.shard_size = shard_size
        self.shards: list[dict[str, Any]] = []
        self._current: ShardFile | None = None

    def __enter__(self) -> ShardWriter:
        ensure_dir(self.out)
        return self

    def add(self, sample: Any, task: str | None = None) -> None:
        """Append one ``Sample``; ``task`` may be omitted when the writer has one task."""
        if task is None:
            if len(self.tasks) != 1:
                raise PainterError("ShardWriter.add: name the task (the writer has several)")
            task = next(iter(self.tasks))
        if task not in self.tasks:
            raise PainterError(f"ShardWriter.add: unknown task {task!r}")
        if self._current is None:
            self._current = ShardFile(self.out / shard_name(len(self.shards)))
        self._current.add(sample, task)
        if len(self._current) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        shard = self._current
        if shard is None or len(shard) == 0:
            return
        info = {"file": shard.path.name, "count": len(shard), "tasks": shard.task_counts}
        if shard.group_counts:
            info["groups"] = shard.group_counts
        shard.commit(info)
        self.shards.append(info)
        self._current = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            if self._current is not None:
                self._current.abort()
            return
        self._flush()
        index = make_index(
            tasks=self.tasks, shards=self.shards, split=self.split, sources=self.sources
        )
        write_index(self.out, index)


# --- reading ----------------------------------------------------------------------------------------


def read_index(directory: str | Path) -> dict[str, Any]:
    """The parsed and checked ``index.json`` of a shard directory (``PainterError`` otherwise)."""
    d = Path(directory)
    path = d / INDEX
    if d.is_file():
        raise PainterError(
            f"{d}: a file, not a shard directory",
            hint="pass the folder `painter encode --out` wrote (it holds index.json)",
        )
    if not d.is_dir():
        raise PainterError(f"{d}: no such shard directory", hint="create it with `painter encode`")
    if not path.is_file():
        splits = _split_folders(d)
        if splits:  # e.g. the root of `painter encode synthetic --out DIR` (train/, val/, ood/)
            first = "train" if "train" in splits else splits[0]
            raise PainterError(
                f"{d}: a folder of splits ({', '.join(splits)}), not a shard folder",
                hint=f"pass {d / first}",
            )
        raise PainterError(
            f"{path}: missing (not a shard directory, or its encode did not finish)",
            hint="run `painter encode ... --out DIR` (it resumes where it stopped)",
        )
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PainterError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise PainterError(f"{path}: not a painter shard index")
    if index.get("version") != VERSION:
        raise PainterError(
            f"{path}: written by shard encoder version {index.get('version')}, "
            f"this painter reads version {VERSION}",
            hint="re-encode the dataset with this version's `painter encode`",
        )
    for key in ("tasks", "shards", "split"):
        if key not in index:
            raise PainterError(f"{path}: missing key {key!r}")
    return index


_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2, "ood": 3}


def _split_folders(d: Path) -> list[str]:
    """Names of the subfolders of ``d`` that are shard folders (complete or not), splits first in
    train, val, test, ood order."""
    try:
        subs = [p for p in d.iterdir() if p.is_dir()]
    except OSError:
        return []
    names = [p.name for p in subs if (p / INDEX).is_file() or any(p.glob("shard-*.h5"))]
    return sorted(names, key=lambda n: (_SPLIT_ORDER.get(n, len(_SPLIT_ORDER)), n))


@dataclass(frozen=True)
class _File:
    path: Path
    count: int
    tasks: dict[str, int]
    split: str


class ShardReader:
    """Random access to the samples of one or more shard directories.

    ``reader[i]`` -> ``{"image": uint8 (H, W, 3), "target": uint8 (H, W, 3), "task": str, "id": str,
    **extras}`` (extras as stored, e.g. ``depth_m`` float32 (H, W) in metres). HDF5 handles open
    lazily in each process (a forked DataLoader worker opens its own), so a reader can be built
    before ``fork`` and pickled to ``spawn`` workers.
    """

    def __init__(self, dirs: str | Path | ShardReader | Iterable[str | Path | ShardReader]):
        if isinstance(dirs, (str, Path, ShardReader)):
            dirs = [dirs]
        flat: list[Path] = []
        for d in dirs:
            flat.extend(d.dirs if isinstance(d, ShardReader) else [Path(d)])
        if not flat:
            raise PainterError("ShardReader: no shard directory given")
        self.dirs = flat
        self.indexes = [read_index(d) for d in flat]
        self._tasks: dict[str, dict[str, Any]] = {}
        self._files: list[_File] = []
        for d, index in zip(flat, self.indexes, strict=True):
            for task, info in index["tasks"].items():
                known = self._tasks.get(task)
                if known is None:
                    self._tasks[task] = {
                        "codec": info["codec"],
                        "params": dict(info.get("params") or {}),
                        "count": 0,
                        "splits": {},
                        "groups": {},
                    }
                elif (known["codec"], known["params"]) != (info["codec"], info.get("params") or {}):
                    raise PainterError(
                        f"{d / INDEX}: task {task!r} uses codec {info['codec']} {info.get('params')}, "
                        f"but another directory uses {known['codec']} {known['params']}"
                    )
            for s in index["shards"]:
                path = d / s["file"]
                if not path.is_file():
                    raise PainterError(f"{path}: listed in {d / INDEX} but missing")
                self._files.append(_File(path, int(s["count"]), dict(s["tasks"]), index["split"]))
                for task, n in s["tasks"].items():
                    info = self._tasks[task]
                    info["count"] += n
                    info["splits"][index["split"]] = info["splits"].get(index["split"], 0) + n
                for task, counts in (s.get("groups") or {}).items():
                    merged = self._tasks[task]["groups"]
                    for g, n in counts.items():
                        merged[g] = merged.get(g, 0) + int(n)
        self._starts = np.cumsum([0] + [f.count for f in self._files]).tolist()
        self._pid = os.getpid()
        self._handles: dict[int, Any] = {}
        self._fds: dict[int, int] = {}
        self._manifests: dict[int, list[dict[str, Any]]] = {}
        self._groups: dict[str, dict[str, np.ndarray]] = {}

    # -- metadata (no image decoding) --

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def tasks(self) -> list[str]:
        """Task names, in order of first appearance."""
        return list(self._tasks)

    @property
    def index(self) -> dict[str, Any]:
        """The parsed ``index.json`` (for several directories: their indexes merged)."""
        if len(self.indexes) == 1:
            return self.indexes[0]
        splits = sorted({ix["split"] for ix in self.indexes})
        return {
            "format": FORMAT,
            "version": VERSION,
            "split": splits[0] if len(splits) == 1 else "mixed",
            "sources": [s for ix in self.indexes for s in ix.get("sources", [])],
            "tasks": {
                t: {
                    "codec": v["codec"],
                    "params": v["params"],
                    "count": v["count"],
                    **({"groups": dict(sorted(v["groups"].items()))} if v["groups"] else {}),
                }
                for t, v in self._tasks.items()
            },
            "count": len(self),
            "shards": [
                {"file": str(f.path), "count": f.count, "tasks": f.tasks} for f in self._files
            ],
            "dirs": [str(d) for d in self.dirs],
        }

    def task_info(self, task: str) -> dict[str, Any]:
        """``{"codec", "params", "count", "splits": {split: count}, "groups": {group: count}}`` of
        ``task`` (``groups`` is empty when its samples carry none)."""
        self._check_task(task)
        return self._tasks[task]

    def codec(self, task: str):
        """The task's codec, rebuilt from the index: ``get_codec(name, **params)``."""
        from painter_cli.tasks import get_codec

        info = self.task_info(task)
        return get_codec(info["codec"], **info["params"])

    def indices(self, task: str) -> np.ndarray:
        """int64 indices of the samples of ``task`` (reads manifests only for mixed shards)."""
        self._check_task(task)
        out = []
        for k, f in enumerate(self._files):
            n = f.tasks.get(task, 0)
            if n == 0:
                continue
            if n == f.count:
                out.append(np.arange(self._starts[k], self._starts[k + 1]))
            else:
                tasks = [e["task"] for e in self._manifest(k)]
                out.append(self._starts[k] + np.flatnonzero(np.asarray(tasks) == task))
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def sample_id(self, i: int) -> str:
        """The source id of sample ``i`` (no decoding)."""
        k, j = self._locate(i)
        return self._manifest(k)[j]["id"]

    def group_of(self, i: int) -> str | None:
        """The group (concept) of sample ``i``, or None when it has none (no decoding)."""
        k, j = self._locate(i)
        return self._manifest(k)[j].get("group")

    def has_groups(self, task: str) -> bool:
        """True when the samples of ``task`` carry groups (from the index; no manifest read)."""
        return bool(self.task_info(task)["groups"])

    def groups(self, task: str) -> dict[str, np.ndarray]:
        """group -> int64 global indices of the samples of ``task`` in that group, groups sorted
        by name; ``{}`` when the task's samples carry no groups. Samples of a grouped task that
        lack a group are left out. Reads the manifests once; cached."""
        cached = self._groups.get(task)
        if cached is not None:
            return cached
        out: dict[str, list[int]] = {}
        if self.has_groups(task):
            for i in self.indices(task):
                g = self.group_of(int(i))
                if g is not None:
                    out.setdefault(g, []).append(int(i))
        result = {g: np.asarray(out[g], np.int64) for g in sorted(out)}
        self._groups[task] = result
        return result

    def task_of(self, i: int) -> str:
        """The task of sample ``i`` (no decoding)."""
        k, j = self._locate(i)
        f = self._files[k]
        if len(f.tasks) == 1:
            return next(iter(f.tasks))
        return self._manifest(k)[j]["task"]

    def _check_task(self, task: str) -> None:
        if task not in self._tasks:
            raise PainterError(
                f"task {task!r} is not in {', '.join(map(str, self.dirs))}",
                hint=f"tasks there: {', '.join(self._tasks)}",
            )

    # -- samples --

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, j = self._locate(i)
        entry = self._manifest(k)[j]
        out: dict[str, Any] = {"task": entry["task"], "id": entry["id"]}
        out["target"] = None
        for field in ("image", "target"):
            if entry[field] is None:
                continue
            fmt, shape, offset, nbytes = entry[field]
            if offset is None:
                payload = self._handle(k)[f"samples/{j}/{field}"][()]
            else:
                payload = self._pread(k, offset, nbytes)
            out[field] = unpack(fmt, payload, shape)
        if entry["extras"]:
            group = self._handle(k)[f"samples/{j}/extras"]
            for name in entry["extras"]:
                out[name] = group[name][()]
        return out

    def _pread(self, k: int, offset: int, nbytes: int) -> bytes:
        self._handle(k)  # checks the version once and resets state after a fork
        fd = self._fds.get(k)
        if fd is None:
            fd = self._fds[k] = os.open(self._files[k].path, os.O_RDONLY)
        data = os.pread(fd, nbytes, offset)
        while len(data) < nbytes:  # a short read (rare): fetch the rest
            more = os.pread(fd, nbytes - len(data), offset + len(data))
            if not more:
                raise PainterError(f"{self._files[k].path}: truncated shard")
            data += more
        return data

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range (0..{n - 1})")
        k = bisect.bisect_right(self._starts, i) - 1
        return k, i - self._starts[k]

    def _handle(self, k: int):
        if os.getpid() != self._pid:
            # A forked child must not share the parent's HDF5 handles: start afresh.
            self._handles = {}
            self._fds = {}
            self._pid = os.getpid()
        h = self._handles.get(k)
        if h is None:
            import h5py

            path = self._files[k].path
            try:
                h = h5py.File(path, "r")
            except OSError as e:
                raise PainterError(f"{path}: cannot open shard ({e})") from None
            version = int(h.attrs.get("painter_shard_version", -1))
            if version != VERSION:
                h.close()
                raise PainterError(
                    f"{path}: written by shard encoder version {version}, this painter reads {VERSION}",
                    hint="re-encode the dataset",
                )
            self._handles[k] = h
        return h

    def _manifest(self, k: int) -> list[dict[str, Any]]:
        m = self._manifests.get(k)
        if m is None:
            raw = self._handle(k)["manifest"][()]
            m = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            self._manifests[k] = m
        return m

    def close(self) -> None:
        """Close this process's open handles (they reopen on the next access)."""
        if os.getpid() == self._pid:
            for h in self._handles.values():
                h.close()
            for fd in self._fds.values():
                os.close(fd)
        self._handles = {}
        self._fds = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_fds"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardReader({len(self)} samples, tasks={self.tasks}, dirs={[str(d) for d in self.dirs]})"


class TaskView:
    """A shard reader seen through some samples of one task: what ``evaluate`` reads
    (``tasks``, ``codec``, ``indices``, ``reader[i]``, ``dirs``, groups), so its queries
    (prompt-search probes, eval's suite queries) are any index list of the reader."""

    def __init__(self, reader: Any, task: str, indices: Sequence[int]):
        self.reader = reader
        self.task = task
        self.dirs = reader.dirs
        self._indices = np.asarray(list(indices), dtype=np.int64)

    @property
    def tasks(self) -> list[str]:
        return [self.task]

    def codec(self, task: str) -> Any:
        return self.reader.codec(task)

    def task_info(self, task: str) -> dict[str, Any]:
        return self.reader.task_info(task)

    def indices(self, task: str) -> np.ndarray:
        if task != self.task:
            raise PainterError(f"task {task!r} is not in this view (it holds {self.task!r})")
        return self._indices

    def has_groups(self, task: str) -> bool:
        return self.reader.has_groups(task)

    def group_of(self, i: int) -> str | None:
        return self.reader.group_of(int(i))

    def groups(self, task: str) -> dict[str, np.ndarray]:
        """The whole reader's groups (a view selects queries, not the samples that prompt)."""
        return self.reader.groups(task)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.reader[int(i)]


# --- inspection (painter info) ------------------------------------------------------------------------


def summarize(reader: ShardReader) -> dict[str, Any]:
    """Counts per (directory, task, split) with codecs: ``{"rows": [...], "count", "shards", "dirs"}``."""
    rows = []
    sizes = _sizes(reader)
    for d, index in zip(reader.dirs, reader.indexes, strict=True):
        for task, t in index["tasks"].items():
            image_sizes, target_sizes = sizes.get((Path(d), task), ([], []))
            rows.append(
                {
                    "dir": str(d),
                    "task": task,
                    "split": index["split"],
                    "count": int(t["count"]),
                    "groups": dict(t.get("groups") or {}),
                    "codec": t["codec"],
                    "params": t.get("params") or {},
                    "skipped": int(index.get("skipped", 0)),
                    "sources": [s.get("name") for s in index.get("sources", [])],
                    "image_size": size_range(image_sizes),
                    "target_size": size_range(target_sizes),
                }
            )
    return {
        "rows": rows,
        "count": len(reader),
        "shards": sum(len(ix["shards"]) for ix in reader.indexes),
        "dirs": [str(d) for d in reader.dirs],
    }


def _sizes(reader: ShardReader) -> dict[tuple[Path, str], tuple[list, list]]:
    """(directory, task) -> ((H, W) of every image, of every target), from the manifests only."""
    out: dict[tuple[Path, str], tuple[list, list]] = {}
    for k, f in enumerate(reader._files):
        for entry in reader._manifest(k):
            images, targets = out.setdefault((f.path.parent, entry["task"]), ([], []))
            images.append(tuple(entry["image"][1][:2]))
            if entry.get("target"):
                targets.append(tuple(entry["target"][1][:2]))
    return out


def size_range(shapes: Sequence[tuple[int, int]]) -> dict[str, Any] | None:
    """``{"height": [min, max], "width": [min, max], "distinct": N}`` of (H, W) pairs (pixels);
    None for none (a task stored without targets)."""
    if not shapes:
        return None
    hs, ws = [int(s[0]) for s in shapes], [int(s[1]) for s in shapes]
    return {
        "height": [min(hs), max(hs)],
        "width": [min(ws), max(ws)],
        "distinct": len(set(shapes)),
    }


def size_text(size: dict[str, Any] | None) -> str:
    """``"48x40"`` (W x H) for one size, ``"32-64 x 40-48 (7 sizes)"`` for several, ``"-"``."""
    if not size:
        return "-"
    (h0, h1), (w0, w1) = size["height"], size["width"]
    if size["distinct"] == 1:
        return f"{w0}x{h0}"
    width = f"{w0}" if w0 == w1 else f"{w0}-{w1}"
    height = f"{h0}" if h0 == h1 else f"{h0}-{h1}"
    return f"{width} x {height} ({size['distinct']} sizes)"


def sizes_line(rows: Sequence[dict[str, Any]]) -> str:
    """``painter info``'s sizes of ``summarize`` rows: ``"64x64"`` when every image and target has
    it, else ``"task 48x40, other 30-32 x 20-21 (2 sizes) (targets 32x32)"`` per task and split."""
    texts = []
    for row in rows:
        image, target = size_text(row["image_size"]), size_text(row["target_size"])
        texts.append(image if target in (image, "-") else f"{image} (targets {target})")
    if len(set(texts)) == 1:
        return texts[0]
    return ", ".join(
        f"{row['task']} ({row['split']}) {t}" for row, t in zip(rows, texts, strict=True)
    )


def group_summary(groups: dict[str, int], show: int = 3) -> str:
    """``"12: crescent (10), ring (10), star (8), ..."`` for ``painter info``; ``"-"`` for none."""
    if not groups:
        return "-"
    names = [f"{g} ({n})" for g, n in list(groups.items())[:show]]
    more = ", ..." if len(groups) > show else ""
    return f"{len(groups)}: {', '.join(names)}{more}"


# ``export_pairs`` names: ``<k>_<task>_<id>.png``, every part made file-name safe.
_EXPORT_NAME = re.compile(r"\d{4,}_[A-Za-z0-9._-]+\.png")


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def export_pairs(reader: ShardReader, n: int, out_dir: str | Path) -> list[Path]:
    """Write ``n`` samples spread over the reader as PNGs, image above target (like a canvas half).

    Returns the written paths, named ``<k>_<task>_<id>.png``. Each file appears complete (temp file
    + rename), and PNGs of that name pattern left in ``out_dir`` by an earlier export are removed,
    so the folder holds exactly this export (other files are kept).
    """
    from PIL import Image

    if n < 1 or len(reader) == 0:
        return []
    out = Path(out_dir)
    ensure_dir(out, "--export-dir")
    picks = np.unique(np.linspace(0, len(reader) - 1, min(n, len(reader))).round().astype(int))
    paths = []
    for k, i in enumerate(picks):
        s = reader[int(i)]
        path = out / f"{k:04d}_{_safe_name(s['task'])}_{_safe_name(s['id'])}.png"
        parts = [s["image"]] if s["target"] is None else [s["image"], s["target"]]
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            Image.fromarray(np.concatenate(parts, axis=0)).save(tmp, format="PNG")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    written = {p.name for p in paths}
    for p in out.iterdir():
        if p.name not in written and _EXPORT_NAME.fullmatch(p.name) and p.is_file():
            p.unlink()
    return paths


def inspect_dirs(
    dirs: str | Path | Iterable[str | Path],
    *,
    export: int = 0,
    export_dir: str | Path | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """``painter info``: ``(summarize(reader), export folder or None)``; with ``export`` N > 0
    also writes N pairs (``export_pairs``) into ``export_dir`` (default: the first directory's
    ``export/``) and lists them under ``summary["exported"]``. ``export`` 0 writes none."""
    if export < 0:
        raise PainterError(
            f"--export {export}: must be >= 0 (the number of pairs to write; 0 writes none)"
        )
    if export_dir is not None and export == 0:
        raise PainterError("--export-dir needs --export N", hint="add --export 8, for example")
    reader = ShardReader(dirs)
    summary = summarize(reader)
    if not export:
        return summary, None
    target = Path(export_dir) if export_dir is not None else reader.dirs[0] / "export"
    summary["exported"] = [str(p) for p in export_pairs(reader, export, target)]
    return summary, target
