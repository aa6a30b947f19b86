"""The encoder: drive a ``Source`` over its work units and write HDF5 shards (``painter encode``).

Shard ``k`` holds the samples of ``keys[k*S:(k+1)*S]`` (``S`` = shard size, in source keys), so
shards are independent units of work: workers write them in parallel, each file appears only when
complete, and a rerun skips every shard whose stored fingerprint (encoder version, source, split,
options, codec, resize and the shard's keys) matches, which makes an interrupted run resume to the
same bytes as an uninterrupted one. ``index.json`` is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli import shards
from painter_cli.errors import PainterError
from painter_cli.sources.base import (
    MAX_SIDE,
    Sample,
    SkipItem,
    Source,
    check_task_name,
)

log = logging.getLogger(__name__)


@dataclass
class EncodeSettings:
    """What shapes the shards besides the source. ``size``: None (keep), S (shorter side to S,
    aspect kept) or (H, W) exact, each side at most ``MAX_SIDE`` (8192); ``strict``: a corrupt
    input is fatal instead of skipped."""

    shard_size: int = 1000
    size: int | tuple[int, int] | None = None
    strict: bool = False


@dataclass
class EncodeSummary:
    """The outcome of one encode (``skipped``: (path, reason) pairs)."""

    out: Path
    source: str
    task: str
    codec: str
    split: str
    samples: int
    shards: int
    reused: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        """A short human summary (one or two lines)."""
        text = (
            f"{self.out}: {self.samples} {self.task} samples ({self.split}) in {self.shards} shards "
            f"({self.reused} reused), codec {self.codec}, {len(self.skipped)} skipped, "
            f"{self.seconds:.1f}s"
        )
        if self.skipped:
            text += f"\nskipped inputs are listed in {self.out / 'skipped.txt'}"
        return text


def parse_size(text: str | None) -> int | tuple[int, int] | None:
    """``"448"`` -> 448 (shorter side), ``"896x448"`` -> (896, 448) (H x W), None -> None.
    Sides are 1..``MAX_SIDE``."""
    if text is None or str(text).strip() == "":
        return None
    s = str(text).lower().strip()
    try:
        if "x" in s:
            h, w = (int(v) for v in s.split("x"))
            if h < 1 or w < 1:
                raise ValueError
            size: int | tuple[int, int] = (h, w)
        else:
            size = int(s)
            if size < 1:
                raise ValueError
    except ValueError:
        raise PainterError(
            f"--size {text!r}: expected S (shorter side) or HxW, e.g. 448 or 896x448"
        ) from None
    check_size(size)
    return size


def check_size(size: int | tuple[int, int] | None) -> None:
    """``PainterError`` when a ``--size`` side is above ``MAX_SIDE`` (the encode would run out of
    memory long before finishing)."""
    sides = size if isinstance(size, tuple) else (size,) if size is not None else ()
    if any(side > MAX_SIDE for side in sides):
        text = "x".join(str(v) for v in sides)
        raise PainterError(
            f"--size {text}: larger than the maximum side of {MAX_SIDE} pixels",
            hint=f"use a --size of at most {MAX_SIDE}",
        )


def _fingerprint(base: dict[str, Any], keys: list[str]) -> str:
    h = hashlib.sha256(json.dumps(base, sort_keys=True, default=str).encode())
    for key in keys:
        h.update(b"\0" + key.encode())
    return h.hexdigest()[:32]


def _target_size(h: int, w: int, size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, tuple):
        return size
    scale = size / min(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_sample(sample: Sample, size: int | tuple[int, int], discrete: bool) -> Sample:
    """Resize image (bicubic), target (nearest if ``discrete`` else bicubic) and (H, W, ...) extras
    (nearest, so stored values stay exact)."""
    from PIL import Image

    image = sample.image
    if not isinstance(image, np.ndarray):
        image = shards.unpack("jpeg", image, ()) if image[:3] == b"\xff\xd8\xff" else _decode(image)
    h, w = image.shape[:2]
    th, tw = _target_size(h, w, size)
    if (th, tw) == (h, w):
        return Sample(sample.id, image, sample.target, dict(sample.extras), sample.group)
    image = np.asarray(Image.fromarray(image).resize((tw, th), Image.BICUBIC))
    target = sample.target
    if target is not None:
        resample = Image.NEAREST if discrete else Image.BICUBIC
        target = np.asarray(Image.fromarray(target).resize((tw, th), resample))
    rows = np.minimum(((np.arange(th) + 0.5) * h / th).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(tw) + 0.5) * w / tw).astype(np.int64), w - 1)
    extras = {}
    for k, v in sample.extras.items():
        v = np.asarray(v)
        extras[k] = v[rows][:, cols] if v.ndim >= 2 and v.shape[:2] == (h, w) else v
    return Sample(sample.id, image, target, extras, sample.group)


def _decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB"))


# --- one shard (runs in a worker process or in-process) ------------------------------------------

# Shown with `error: interrupted` after a Ctrl-C (cli.py reads a KeyboardInterrupt's ``hint``).
RESUME_HINT = "rerun the same command to resume"

_state: dict[str, Any] = {}
# Test hook: SIGKILL the process that writes shard k right after the shard is in place.
KILL_ENV = "PAINTER_TEST_KILL_AFTER_SHARD"


def _init_worker(state: dict[str, Any], ticks: Any) -> None:
    _state.clear()
    _state.update(state)
    _state["ticks"] = ticks


def _tick(n: int = 1) -> None:
    ticks = _state.get("ticks")
    if ticks is None:
        return
    if callable(ticks):
        ticks(n)
    else:
        ticks.put(n)


def _encode_shard(k: int) -> dict[str, Any]:
    """Write shard ``k``; returns its summary, or ``{"error": message, "hint": hint}``."""
    try:
        return _encode_shard_inner(k)
    except PainterError as e:
        # PainterError's hint does not survive pickling back to the parent, so send it as data.
        return {"error": e.message, "hint": e.hint}


def _encode_shard_inner(k: int) -> dict[str, Any]:
    source: Source = _state["source"]
    settings: EncodeSettings = _state["settings"]
    keys: list[str] = _state["plan"][k]
    task: str = _state["task"]
    out = Path(_state["out"])
    shard = shards.ShardFile(out / shards.shard_name(k))
    skipped: list[list[str]] = []
    try:
        for key in keys:
            try:
                samples = source.load(key)
            except SkipItem as e:
                if settings.strict:
                    raise PainterError(
                        f"{e.path}: {e.reason}", hint="without --strict such inputs are skipped"
                    ) from None
                skipped.append([e.path, e.reason])
                _tick()
                continue
            for sample in samples:
                if settings.size is not None:
                    sample = resize_sample(sample, settings.size, _state["discrete"])
                shard.add(sample, task)
            _tick()
        summary = {
            "file": shard.path.name,
            "count": len(shard),
            "keys": len(keys),
            "tasks": shard.task_counts,
            **({"groups": shard.group_counts} if shard.group_counts else {}),
            "skipped": skipped,
            "fingerprint": _state["fingerprints"][k],
        }
        shard.commit(summary)
        if os.environ.get(KILL_ENV) == str(k):
            os.kill(os.getpid(), signal.SIGKILL)
        return summary
    except BaseException:
        shard.abort()
        raise


# --- the whole encode -----------------------------------------------------------------------------


def encode_dataset(
    source_name: str,
    root: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    workers: int = 1,
    settings: EncodeSettings | None = None,
    options: dict[str, Any] | None = None,
) -> EncodeSummary:
    """Encode source ``source_name`` over ``root`` (split ``split``) into shard directory ``out``.

    ``options`` go to the source constructor. Raises ``PainterError`` for a bad layout, a bad label
    or size (naming the file), a corrupt input under ``settings.strict``, or an ``out`` that holds
    shards of a different encode.
    """
    from painter_cli.console import make_progress
    from painter_cli.sources import get_source
    from painter_cli.tasks import get_codec

    settings = settings or EncodeSettings()
    if settings.shard_size < 1:
        raise PainterError("--shard-size must be >= 1")
    if workers < 1:
        raise PainterError("--workers must be >= 1")
    check_size(settings.size)
    out = Path(out)
    shards.check_dir_path(out, "--out")  # before reading the dataset
    options = {k: v for k, v in (options or {}).items() if v is not None}
    t0 = time.perf_counter()
    source = get_source(source_name, root, split, **options)
    check_task_name(source.task, f"source {source_name}: task")
    codec = get_codec(source.codec, **source.codec_params())
    if settings.size is not None and codec.kind == "keypoints":
        # Keypoint targets and their coordinate extras are tied to the codec's crop geometry.
        raise PainterError(
            f"--size cannot be used with {source_name}: keypoint crops have a fixed "
            f"{getattr(codec, 'width', '?')}x{getattr(codec, 'height', '?')} (WxH) geometry",
            hint="drop --size",
        )
    keys = list(source.keys())
    if not keys:
        raise PainterError(
            f"{source.root}: no {split} samples found for source {source_name}",
            hint="`painter encode --list` shows the expected layout",
        )
    if len(set(keys)) != len(keys):
        raise PainterError(f"source {source_name}: duplicate keys under {source.root}")
    created = shards.ensure_dir(out, "--out")
    with _remove_if_failed(created):
        size = settings.size if not isinstance(settings.size, tuple) else list(settings.size)
        base = {
            "version": shards.VERSION,
            "source": source_name,
            "split": split,
            "options": options,
            "task": source.task,
            "codec": codec.name,
            "params": codec.params(),
            "size": size,
        }
        s = settings.shard_size
        plan = [keys[i : i + s] for i in range(0, len(keys), s)]
        fingerprints = [_fingerprint(base, p) for p in plan]
        _clean_stale(out)
        summaries = _complete_shards(out, fingerprints)
        pending = [k for k in range(len(plan)) if k not in summaries]
        reused = len(plan) - len(pending)
        if reused:
            log.info("resuming: %d of %d shards already complete in %s", reused, len(plan), out)
        if pending:
            (out / shards.INDEX).unlink(missing_ok=True)  # a directory with index.json is complete
        state = {
            "source": source,
            "settings": settings,
            "plan": plan,
            "fingerprints": fingerprints,
            "task": source.task,
            "out": str(out),
            "discrete": bool(codec.discrete),
        }
        todo_keys = sum(len(plan[k]) for k in pending)
        # Workers fork before the progress bar starts its refresh thread.
        runner = _Runner(pending, state, workers)
        try:
            with make_progress() as bar:
                tid = bar.add_task(f"encode {source_name} ({split})", total=todo_keys, info="")
                summaries.update(runner.run(lambda n: bar.advance(tid, n)))
        finally:
            runner.close()
        ordered = [summaries[k] for k in range(len(plan))]
        skipped = [(p, r) for sm in ordered for p, r in sm["skipped"]]
        skipped_path = out / shards.SKIPPED
        if skipped:
            shards.atomic_write_text(skipped_path, "".join(f"{p}\t{r}\n" for p, r in skipped))
            log.warning(
                "skipped %d input(s), listed in %s (first: %s: %s)",
                len(skipped),
                skipped_path,
                *skipped[0],
            )
        else:
            skipped_path.unlink(missing_ok=True)
        index = shards.make_index(
            tasks={source.task: {"codec": codec.name, "params": codec.params()}},
            shards=[
                {
                    "file": sm["file"],
                    "count": sm["count"],
                    "keys": sm["keys"],
                    "tasks": sm["tasks"],
                    **({"groups": sm["groups"]} if sm.get("groups") else {}),
                    "skipped": len(sm["skipped"]),
                }
                for sm in ordered
            ],
            split=split,
            sources=[
                {
                    "name": source_name,
                    "root": str(Path(root).resolve()),
                    "split": split,
                    "options": options,
                }
            ],
            encoder={"version": shards.VERSION, "shard_size": s, "size": size},
            skipped=len(skipped),
        )
        shards.write_index(out, index)
        return EncodeSummary(
            out=out,
            source=source_name,
            task=source.task,
            codec=codec.name,
            split=split,
            samples=index["count"],
            shards=len(plan),
            reused=reused,
            skipped=skipped,
            seconds=time.perf_counter() - t0,
        )


@contextlib.contextmanager
def _remove_if_failed(created: list[Path]):
    """On an error (or Ctrl-C), remove the folders this encode created if they are still empty:
    a failed first run leaves no empty --out behind (complete shards stay for the rerun). A Ctrl-C
    carries the resume hint that ``painter``'s error line shows."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            exc.hint = RESUME_HINT
        shards.remove_empty_dirs(created)
        raise


def _complete_shards(out: Path, fingerprints: list[str]) -> dict[int, dict[str, Any]]:
    """Summaries of the shards in ``out`` that this encode can keep (their fingerprint matches);
    ``PainterError`` when ``out`` holds shards of another encode."""
    names = [shards.shard_name(k) for k in range(len(fingerprints))]
    extra = sorted(p.name for p in out.glob("shard-*.h5") if p.name not in set(names))
    if extra:
        raise PainterError(
            f"{out / extra[0]}: not part of this encode (a different dataset or --shard-size)",
            hint="use a new --out directory, or delete this one",
        )
    summaries: dict[int, dict[str, Any]] = {}
    for k, name in enumerate(names):
        path = out / name
        if not path.exists():
            continue
        old = shards.read_shard_summary(path)
        if old is None:
            # Shards appear only complete (rename), so an unreadable one was damaged later.
            log.warning("%s: unreadable, encoding it again", path)
        elif old.get("fingerprint") != fingerprints[k]:
            raise PainterError(
                f"{path}: written by a different encode (source, split, options or input files differ)",
                hint="use a new --out directory, or delete this one",
            )
        else:
            summaries[k] = old
    return summaries


def _clean_stale(out: Path) -> None:
    """Remove temporary files of a killed run (complete shards are never temporary)."""
    for p in out.glob(".shard-*.h5.tmp-*"):
        p.unlink(missing_ok=True)


class _Runner:
    """Runs the pending shards in-process (one worker) or in a process pool."""

    def __init__(self, pending: list[int], state: dict[str, Any], workers: int):
        self.pending = pending
        self.state = state
        self.workers = min(workers, len(pending))
        self.pool = None
        if self.workers > 1:
            # fork shares the (possibly large) source without pickling it; spawn needs it picklable.
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            self.ticks = ctx.Queue()
            self.pool = ctx.Pool(
                self.workers, initializer=_init_worker, initargs=(state, self.ticks)
            )

    def run(self, advance) -> dict[int, dict[str, Any]]:
        results: dict[int, dict[str, Any]] = {}
        if self.pool is None:
            _init_worker(self.state, advance)
            try:
                for k in self.pending:
                    results[k] = _check(_encode_shard(k))
            finally:
                _state.clear()
            return results
        asyncs = {k: self.pool.apply_async(_encode_shard, (k,)) for k in self.pending}
        while asyncs:
            with contextlib.suppress(queue_mod.Empty):
                advance(self.ticks.get(timeout=0.05))
            for k in [k for k, a in asyncs.items() if a.ready()]:
                results[k] = _check(asyncs.pop(k).get())
        while True:
            try:
                advance(self.ticks.get_nowait())
            except queue_mod.Empty:
                break
        self.pool.close()
        self.pool.join()
        self.pool = None
        return results

    def close(self) -> None:
        """Stop workers still running (after an error or Ctrl-C) and drop their temp files."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
            _clean_stale(Path(self.state["out"]))


def _check(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        raise PainterError(result["error"], hint=result.get("hint"))
    return result


def nworkers_default() -> int:
    """A sensible default for ``--workers``: the CPUs this process may use, at most 8."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(8, os.cpu_count() or 1))


def parse_key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are parsed as JSON when they parse (numbers, lists...)."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PainterError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


def source_options(
    named: dict[str, Any], extra: list[str] | None, codec_params: list[str] | None
) -> dict[str, Any]:
    """The source constructor's options from ``painter encode`` flags: the named flags that were
    given, ``--option KEY=VALUE`` and ``--codec-param KEY=VALUE`` (as ``codec_params``)."""
    options = {k: v for k, v in named.items() if v is not None}
    options.update(parse_key_values(extra, "--option"))
    params = parse_key_values(codec_params, "--codec-param")
    if params:
        options["codec_params"] = params
    return options
