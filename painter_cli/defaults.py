"""The self-contained default: the synthetic suite, the bundled model and its prompts.

Nothing here needs the network. ``painter encode synthetic --out DIR`` writes the whole synthetic
suite (``encode_suite``); ``painter train`` without arguments trains the ``tiny`` preset on it
(generated once into ``cache_dir()``, see ``ensure_suite``); ``painter predict``, ``eval``,
``prompt-select`` and ``prompt-tune`` fall back to the bundled model (``bundled_model``) and the
bundled prompt pairs (``bundled_prompt``) when no checkpoint or prompt is given.

Bundled files live in the package (``painter_cli/assets``, declared as package data, so they are
found the same way in a checkout, an editable install and a wheel; the repository's top-level
``assets`` is a link to it)::

    painter_cli/assets/
      models/<BUNDLED_MODEL>/ model.safetensors, config.json (a ``painter-checkpoint``),
                             metrics.json (every training stage, the benches' tables)
      prompts/<task>/        image.png + target.png, one pair per synthetic task
      prompts/concepts/<class>/ a prompt of a held-out synthetic-segment class
      examples/<task>.png    a query image per synthetic task (val split, not a prompt)
      examples/two-shapes.png  a query holding a shape of each concept class
      recipes/*.toml         the training recipes, in stages (``bench/bundle.py``'s CHAINS)
      grid.png               rows = tasks and concepts; prompt image, prompt target, query,
                             painted, truth

``bench/bundle.py`` writes all of these but the recipes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from painter_cli.errors import PainterError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED_MODEL = "bundled-mini"
SUITE_SPLITS = ("train", "val", "ood")
SUITE_SIZE = 64  # generation side in pixels (the bundled model was trained at this size)
SUITE_SEED = 0
# Bumped whenever a generator changes what it draws, so a cached suite of another version is not
# reused (the cache folder is named after it).
# 3: adds synthetic-segment; 4: restoration scenes with photographs' statistics (dead leaves),
# 3000 of them per restoration task, low light from gamma 1; the other tasks are byte-identical.
SUITE_VERSION = 4
CACHE_ENV = "PAINTER_CACHE"


# --- places -----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$PAINTER_CACHE``, else ``$XDG_CACHE_HOME/painter``, else ``~/.cache/painter``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "painter"


def bundled_model() -> Path:
    """The bundled checkpoint directory (``PainterError`` when the package was built without it)."""
    path = ASSETS / "models" / BUNDLED_MODEL
    if not (path / "model.safetensors").is_file():
        raise PainterError(
            f"{path}: the bundled model is missing from this installation",
            hint="pass --checkpoint CKPT, or reinstall painter-cli with its package data",
        )
    return path


def bundled_recipe() -> Path:
    """The committed training recipe of the bundled model."""
    return ASSETS / "recipes" / f"{BUNDLED_MODEL}.toml"


def bundled_prompt(task: str) -> Path:
    """The bundled prompt folder (image.png + target.png) of a synthetic task (full name or kind)."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    name = resolve_task(task, list(SYNTHETIC_TASKS))
    path = ASSETS / "prompts" / name
    if not (path / "image.png").is_file():
        raise PainterError(f"{path}: no bundled prompt for task {name}")
    return path


def bundled_example(task: str) -> Path:
    """A bundled example query image of a synthetic task (full name or kind)."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    name = resolve_task(task, list(SYNTHETIC_TASKS))
    path = ASSETS / "examples" / f"{name}.png"
    if not path.is_file():
        raise PainterError(f"{path}: no bundled example for task {name}")
    return path


# --- task names ---------------------------------------------------------------------------------------


def task_kind(task: str) -> str:
    """The kind of a task name: ``synthetic-depth`` -> ``depth``, ``ade20k-semseg`` -> ``semseg``
    (the suite's and the paper's tables first, else the name's last dash-separated word)."""
    from painter_cli.sources.base import PAPER_TASKS
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    if task in SYNTHETIC_TASKS:
        return SYNTHETIC_TASKS[task].kind
    if task in PAPER_TASKS:
        return PAPER_TASKS[task][0]
    return task.rsplit("-", 1)[-1]


def resolve_task(name: str, tasks: Iterable[str], where: str = "the data") -> str:
    """A task of ``tasks`` named by its full name or by its kind (``depth``, ``semseg``, ...).

    ``PainterError`` when no task matches, or when the kind names several tasks.
    """
    tasks = list(tasks)
    if name in tasks:
        return name
    matches = [t for t in tasks if task_kind(t) == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PainterError(
            f"task {name!r} is ambiguous in {where}: {', '.join(matches)}",
            hint="name the task in full",
        )
    raise PainterError(
        f"unknown task {name!r} in {where}", hint=f"tasks there: {', '.join(tasks) or 'none'}"
    )


# --- the synthetic suite ------------------------------------------------------------------------------


def suite_tasks(split: str) -> list[str]:
    """The synthetic tasks that have ``split`` (train/val: the seven in-domain tasks,
    synthetic-segment and synthetic-segment-outline; ood: synthetic-fgseg and both segment
    tasks)."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    return [t for t, spec in SYNTHETIC_TASKS.items() if split in spec.splits]


def _suite_source(split: str, size: int, count: int | None, seed: int) -> dict[str, Any]:
    return {
        "name": "synthetic",
        "root": "",
        "split": split,
        "options": {"size": size, "count": count, "seed": seed, "suite": True},
    }


def _generate_one(job: tuple[str, int, str, int, int]):
    from painter_cli.sources.synthetic import generate

    task, index, split, size, seed = job
    return task, generate(task, index, split=split, size=size, seed=seed)


def encode_suite(
    out: str | Path,
    *,
    size: int = SUITE_SIZE,
    count: int | None = None,
    seed: int = SUITE_SEED,
    workers: int = 1,
    shard_size: int = 1000,
    splits: tuple[str, ...] = SUITE_SPLITS,
) -> dict[str, Path]:
    """Write the synthetic suite (``splits``: every split by default) into ``out``: one shard
    directory per split (``out/train``, ``out/val``: the seven in-domain tasks and
    synthetic-segment; ``out/ood``: synthetic-fgseg and synthetic-segment's held-out classes),
    several tasks a directory, through ``shards.ShardWriter``. ``size``: generation side in
    pixels; ``count``: samples per task and split (default: each task's ``SyntheticTask.count``,
    1000 train, 100 val/ood). Deterministic: the same arguments write identical shards. A split
    whose ``index.json`` records these arguments is kept (an interrupted run resumes by split).
    Returns ``{split: directory}``.
    """
    from painter_cli.console import make_progress
    from painter_cli.shards import INDEX, ShardWriter, read_index
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS, render

    if count is not None and count < 1:
        raise PainterError(f"synthetic suite: count must be >= 1, got {count}")
    render("synthetic-semseg", 0, size=size, seed=seed)  # checks size and seed
    out = Path(out)
    unknown = sorted(set(splits) - set(SUITE_SPLITS))
    if unknown:
        raise PainterError(
            f"synthetic suite: no split {', '.join(unknown)}", hint=str(SUITE_SPLITS)
        )
    dirs: dict[str, Path] = {}
    for split in (s for s in SUITE_SPLITS if s in splits):
        d = out / split
        dirs[split] = d
        source = _suite_source(split, size, count, seed)
        if (d / INDEX).is_file():
            try:
                if read_index(d).get("sources") == [source]:
                    log.info("%s: complete, kept", d)
                    continue
            except PainterError:
                pass
            raise PainterError(
                f"{d}: holds shards of another encode (other size, count or seed)",
                hint="use a new --out directory, or delete this one",
            )
        if d.exists():  # an interrupted run of this split: start the split afresh
            shutil.rmtree(d)
        tasks = suite_tasks(split)
        specs = {
            t: {"codec": SYNTHETIC_TASKS[t].codec, "params": SYNTHETIC_TASKS[t].codec_params(size)}
            for t in tasks
        }
        jobs = [
            (t, i, split, size, seed)
            for t in tasks
            for i in range(count if count is not None else SYNTHETIC_TASKS[t].count(split))
        ]
        writer = ShardWriter(d, specs, split=split, sources=[source], shard_size=shard_size)
        with writer as w, make_progress() as bar:
            tid = bar.add_task(f"synthetic suite ({split})", total=len(jobs), info="")
            for task, sample in _map(_generate_one, jobs, workers):
                w.add(sample, task)
                bar.advance(tid)
    return dirs


def _map(fn, jobs: list, workers: int):
    """``map(fn, jobs)`` in order, in a process pool when ``workers`` > 1."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(fn, jobs, chunksize=16)


def suite_root(size: int = SUITE_SIZE, seed: int = SUITE_SEED) -> Path:
    """Where the cached suite of generation side ``size`` and seed ``seed`` lives."""
    return cache_dir() / f"synthetic-v{SUITE_VERSION}-s{size}-seed{seed}"


def ensure_suite(
    size: int = SUITE_SIZE, seed: int = SUITE_SEED, workers: int | None = None
) -> Path:
    """The default synthetic suite in the cache
    (``cache_dir()/synthetic-v<SUITE_VERSION>-s<size>-seed<seed>``),
    generated on first use (``workers`` processes, default: the CPUs, at most 8). Returns its root
    (with ``train``, ``val`` and ``ood`` inside). Processes that start together generate it once:
    the first holds ``<root>.lock`` while it generates, the others wait and use its result."""
    root = suite_root(size, seed)
    if _suite_complete(root):
        return root
    # Two processes generating one cache would each restart the other's half-written split
    # (``encode_suite`` clears a split without an index): one generates, the others wait for it.
    with _exclusive(root.with_name(root.name + ".lock"), f"generating {root}"):
        if not _suite_complete(root):  # else a process that held the lock first made it
            if workers is None:
                from painter_cli.encode import nworkers_default

                workers = nworkers_default()
            log.info("generating the synthetic suite into %s (once)", root)
            encode_suite(root, size=size, seed=seed, workers=workers)
    return root


def _suite_complete(root: Path) -> bool:
    """Every split of the suite in ``root`` has its ``index.json`` (written last, atomically)."""
    return all((root / s / "index.json").is_file() for s in SUITE_SPLITS)


@contextlib.contextmanager
def _exclusive(lock: Path, what: str):
    """Hold an exclusive ``flock`` on the file ``lock`` (created, kept afterwards: removing it would
    let a late process lock a new file while another still holds the old one); blocks while
    another process holds it, saying so once. Without ``fcntl`` (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another process is %s: waiting for it", what)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def encode_synthetic(
    out: str | Path,
    *,
    task: str | None = None,
    split: str | None = None,
    size: str | int | None = None,
    count: int | None = None,
    seed: int | None = None,
    workers: int = 1,
    shard_size: int = 1000,
    options: list[str] | None = None,
) -> str:
    """``painter encode synthetic``: without ``task`` the whole suite (``encode_suite``, all
    splits), with it one task and ``split`` (default train) through the encoder. ``size`` (pixels,
    also accepted as ``--option size=N``) is the generation side, not a resize. A ``split``
    without a task is refused (the suite always holds every split). Complete splits (or shards)
    are kept on Ctrl-C, whose hint says to rerun. Returns a summary line per split."""
    from painter_cli.encode import RESUME_HINT

    try:
        return _encode_synthetic(out, task, split, size, count, seed, workers, shard_size, options)
    except KeyboardInterrupt as exc:
        exc.hint = RESUME_HINT
        raise


def _encode_synthetic(out, task, split, size, count, seed, workers, shard_size, options) -> str:
    from painter_cli.encode import EncodeSettings, encode_dataset, parse_key_values
    from painter_cli.shards import check_dir_path

    opts = parse_key_values(options, "--option")
    if split is not None and task is None and "task" not in opts:
        raise PainterError(
            f"--split {split}: synthetic without --task writes the whole suite (train, val and ood)",
            hint="add --task, e.g. --task synthetic-depth --split val; or drop --split",
        )
    check_dir_path(out, "--out")
    if size is not None:
        try:
            opts["size"] = int(size)
        except ValueError:
            raise PainterError(
                f"--size {size!r}: synthetic takes one number, the generated side in pixels"
            ) from None
    if count is not None:
        opts["count"] = count
    if seed is not None:
        opts["seed"] = seed
    if task is not None:
        opts["task"] = task
    if "task" in opts:
        s = encode_dataset(
            "synthetic",
            ".",
            out,
            split=split or "train",
            workers=workers,
            settings=EncodeSettings(shard_size=shard_size),
            options=opts,
        )
        return s.describe()
    unknown = sorted(set(opts) - {"size", "count", "seed"})
    if unknown:
        raise PainterError(
            f"synthetic suite: unknown option {unknown[0]!r}", hint="options: size, count, seed"
        )
    dirs = encode_suite(
        out,
        size=int(opts.get("size", SUITE_SIZE)),
        count=opts.get("count"),
        seed=int(opts.get("seed", SUITE_SEED)),
        workers=workers,
        shard_size=shard_size,
    )
    from painter_cli.shards import read_index

    lines = []
    for split_name, d in dirs.items():
        index = read_index(d)
        tasks = ", ".join(f"{t} {v['count']}" for t, v in index["tasks"].items())
        lines.append(f"{d}: {index['count']} samples ({split_name}): {tasks}")
    return "\n".join(lines)


def apply_train_defaults(cfg: Any, out: str | Path | None) -> Path:
    """Fill what ``painter train`` was not given, in place, and return the run directory.

    No ``data.paths``: the cached synthetic suite's train split (and its val split when no
    ``data.val_paths``), generated on first use. Synthetic tasks without a sampling weight get
    their ``SyntheticTask.weight`` (1.0: equal sampling; 0 for synthetic-segment, which only a
    recipe that pairs by group trains; the paper's tasks keep their defaults). No ``out``: ``runs/<timestamp>``.
    """
    import time

    from painter_cli.shards import ShardReader
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    if not cfg.data.paths:
        root = ensure_suite()
        cfg.data.paths = [str(root / "train")]
        if not cfg.data.val_paths:
            cfg.data.val_paths = [str(root / "val")]
        log.info("training on the synthetic suite in %s", root)
    tasks = ShardReader(cfg.data.paths).tasks
    for t in tasks:
        if t in SYNTHETIC_TASKS and t not in cfg.data.weights:
            cfg.data.weights[t] = SYNTHETIC_TASKS[t].weight
    if out is None:
        out = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        log.info("run directory: %s", out)
    return Path(out)


_announced = False


def default_checkpoint() -> str | None:
    """The bundled model's directory for commands given no ``--checkpoint`` (None when this
    installation lacks it). Says so once per process on stderr, so a result is never mistaken for
    one of a user's own model."""
    global _announced
    try:
        path = bundled_model()
    except PainterError:
        return None
    if not _announced:
        _announced = True
        import sys

        print(f"painter: no --checkpoint given, using the bundled model {path}", file=sys.stderr)
    return str(path)


def suite_data(task: str, split: str = "val") -> tuple[list[str], str]:
    """``([shard dir], full task name)`` of a synthetic task (full name or kind) in the cached
    suite (generated on first use): its ``split`` (``train`` or ``val``), or ``ood`` for the
    held-out task, which has no other split. For commands given ``--task`` but no ``--data``."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    name = resolve_task(task, list(SYNTHETIC_TASKS), where="the synthetic suite")
    if split not in SYNTHETIC_TASKS[name].splits:
        split = SYNTHETIC_TASKS[name].splits[0]
    return [str(ensure_suite() / split)], name


def suite_queries(reader: Any, task: str) -> list[int]:
    """Indices of ``task`` in a suite split that may be scored as queries: all but the sample the
    bundled prompt of a task with only an ood split (synthetic-fgseg) was taken from, its sample 0
    (id ``...-000000``)."""
    from painter_cli.sources.synthetic import SYNTHETIC_TASKS

    idx = [int(i) for i in reader.indices(task)]
    if task in SYNTHETIC_TASKS and "val" not in SYNTHETIC_TASKS[task].splits:
        idx = [i for i in idx if not reader.sample_id(i).endswith("-000000")]
    return idx


def default_prompt(task: str) -> list[str]:
    """``[bundled prompt folder]`` of a synthetic task, said once on stderr (for ``--prompt``)."""
    import sys

    path = bundled_prompt(task)
    print(f"painter: no --prompt given, using the bundled prompt {path}", file=sys.stderr)
    return [str(path)]
