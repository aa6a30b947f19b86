"""The source interface: a dataset in its original layout -> painted (image, target) samples.

A source is constructed from ``(root, split, **options)``, checks the layout up front (a
``PainterError`` naming the expected path when it is wrong), lists its work units as an ordered list
of keys, and turns one key into zero or more ``Sample``s. The encoder (``painter encode``) shards
the keys, runs ``load`` in worker processes and writes shards in key order, so a source must be
deterministic given its options (seed included) and picklable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# The largest image side ``painter encode --size`` (and the synthetic generator) accepts: one
# 8192 x 8192 RGB image is 192 MiB before its target and the resize buffers.
MAX_SIDE = 8192
# Task names become file names (``painter info --export``): letters, digits, ``.``, ``_``, ``-``.
_TASK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A Python object's repr with its memory address (``<_io.BytesIO object at 0x7f...>``), which would
# make ``skipped.txt`` differ between runs of the same input.
_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9A-Fa-f]+>")

# The paper's eight training tasks: task name -> (kind, default sampling weight). The weights are the
# official ``type_weight_list`` (normalised by the sampler), keyed by name rather than json order.
PAPER_TASKS: dict[str, tuple[str, float]] = {
    "nyuv2-depth": ("depth", 0.10),
    "ade20k-semseg": ("semseg", 0.20),
    "coco-instance": ("instance", 0.15),
    "coco-semseg": ("semseg", 0.25),
    "coco-keypoints": ("keypoints", 0.20),
    "sidd-denoise": ("denoise", 0.15),
    "derain": ("derain", 0.05),
    "lol-lowlight": ("lowlight", 0.05),
}


class SkipItem(Exception):
    """Raised by ``Source.load`` for an unreadable or corrupt input: the item is skipped and listed
    in ``skipped.txt`` with ``reason`` (fatal under ``--strict``)."""

    def __init__(self, path: str | Path, reason: str):
        # Object reprs with memory addresses (PIL names the BytesIO it read) become the file name,
        # so the same input always gives the same reason.
        reason = _OBJECT_REPR.sub(lambda _: repr(Path(path).name), str(reason))
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def check_task_name(task: Any, where: str = "--task") -> str:
    """``task`` if it is a usable task name (letters, digits, ``.``, ``_``, ``-``; it becomes part
    of file names), else a ``PainterError``."""
    from painter_cli.errors import PainterError

    if not isinstance(task, str) or not _TASK_NAME.fullmatch(task) or task in (".", ".."):
        raise PainterError(
            f"{where} {task!r}: not a valid task name",
            hint="use letters, digits, '.', '_' and '-' only, e.g. road-seg",
        )
    return task


@dataclass
class Sample:
    """One (image, target) pair.

    ``image``: (H, W, 3) uint8 RGB, or the source file's encoded bytes (JPEG/PNG) when it is stored
    as is (lossless with respect to the source). ``target``: (H, W, 3) uint8, painted by the task's
    codec. ``extras``: arrays that evaluation needs and the painted target cannot give back exactly
    (e.g. ``{"depth_m": float32 (H, W)}``). ``group``: the concept the sample shows (a class name,
    a video, any string), or None; tasks that pair by group prompt a query with another sample of
    its own group.
    """

    id: str
    image: np.ndarray | bytes
    target: np.ndarray | None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    group: str | None = None


class Source:
    """Base class of every source (one module a source in ``painter_cli.sources``)."""

    name: ClassVar[str]  # the CLI name: ``painter encode NAME``
    layout: ClassVar[str]  # the expected on-disk layout, shown by ``painter encode --list``
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    # Source options (``painter encode`` flags forwarded to the constructor): name -> one-line help,
    # shown by ``painter encode --list``.
    option_help: ClassVar[dict[str, str]] = {}

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        self.root = Path(root)
        self.split = split
        self.options = options

    @property
    def task(self) -> str:
        """The task name written into the shards (e.g. ``ade20k-semseg``)."""
        raise NotImplementedError

    @property
    def codec(self) -> str:
        """The codec name (``painter_cli.tasks.get_codec``)."""
        raise NotImplementedError

    def codec_params(self) -> dict[str, Any]:
        """Parameters that rebuild the codec: ``get_codec(self.codec, **self.codec_params())``."""
        return {}

    def checked_options(self, spec: dict[str, tuple[type, Any]]) -> dict:
        """The constructor options checked against ``spec`` (``parse_options``), after the split is
        checked against ``splits``; either wrong is a ``PainterError`` naming the source."""
        from painter_cli.errors import PainterError

        if self.split not in self.splits:
            raise PainterError(f"{self.name}: unknown split {self.split!r} (choose {self.splits})")
        return parse_options(self.name, self.options, spec)

    def target_codec(self) -> Any:
        """The codec that paints targets, ``get_codec(self.codec, **self.codec_params())``, built
        once per process (it is not pickled: each worker builds its own)."""
        if getattr(self, "_codec_obj", None) is None:
            from painter_cli.tasks import get_codec

            self._codec_obj = get_codec(self.codec, **self.codec_params())
        return self._codec_obj

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_codec_obj", None)
        return state

    def keys(self) -> list[str]:
        """The ordered work units (usually one per source image)."""
        raise NotImplementedError

    def load(self, key: str) -> list[Sample]:
        """The samples of one work unit; raises ``SkipItem`` for a corrupt or unreadable input."""
        raise NotImplementedError


# --- helpers shared by the sources ----------------------------------------------------------------


def read_image(path: str | Path, keep_jpeg: bool = True) -> np.ndarray | bytes:
    """Read and fully decode one image file (so corrupt files are caught here).

    Returns the file's bytes when ``keep_jpeg`` and it is an RGB JPEG without an EXIF rotation (the
    shard stores them as is), else an (H, W, 3) uint8 RGB array, EXIF-transposed and converted by
    ``pixels.to_rgb`` (as ``predict`` reads it). Raises ``SkipItem`` for a missing, truncated or
    non-image file.
    """
    return _read(path, keep_jpeg=keep_jpeg, what="image")


def read_target(path: str | Path, codec: Any = None) -> np.ndarray:
    """Read an already-painted target file as (H, W, 3) uint8, EXIF-transposed and converted by
    ``pixels.target_to_rgb`` (as ``predict`` reads a prompt target: with a depth codec, 16-bit gray
    is millimetres). Raises ``SkipItem`` for a missing (``target not found``) or unreadable file."""
    return _read(path, keep_jpeg=False, what="target", codec=codec)


def _read(path: str | Path, keep_jpeg: bool, what: str, codec: Any = None) -> np.ndarray | bytes:
    import io

    from PIL import Image, ImageOps

    from painter_cli.pixels import target_to_rgb

    path = Path(path)
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if keep_jpeg and im.format == "JPEG" and im.mode == "RGB" and orientation in (0, 1):
                return data
            return target_to_rgb(ImageOps.exif_transpose(im), codec)
    except FileNotFoundError:
        raise SkipItem(path, f"{what} not found") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL reports corrupt data as OSError
        raise SkipItem(path, f"unreadable {what} ({e})") from None


def read_label(path: str | Path) -> np.ndarray:
    """Read a single-channel label PNG (mode L, P or I) as an (H, W) integer array of its values.

    Raises ``SkipItem`` for an unreadable file and ``PainterError`` for a colour (RGB) image.
    """
    from PIL import Image

    from painter_cli.errors import PainterError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise PainterError(
                    f"{path}: expected a single-channel label image, got mode {im.mode}"
                )
            return np.array(im)
    except FileNotFoundError:
        raise SkipItem(path, "file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise SkipItem(path, f"unreadable label image ({e})") from None


def parse_options(source: str, options: dict[str, Any], spec: dict[str, tuple[type, Any]]) -> dict:
    """Check and convert constructor options; ``spec``: name -> (type, default). Values may arrive
    as CLI strings; an unknown name or a bad value is a ``PainterError`` naming the source."""
    from painter_cli.errors import PainterError

    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise PainterError(
            f"source {source}: unknown option(s) {', '.join(unknown)}",
            hint=f"options of {source}: {', '.join(sorted(spec)) or 'none'}",
        )
    out = {}
    for key, (kind, default) in spec.items():
        value = options.get(key, default)
        if value is not None and not isinstance(value, kind):
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise PainterError(
                    f"source {source}: option {key}={value!r} is not a {kind.__name__}"
                ) from None
        out[key] = value
    return out
