"""The codec interface and the codec registry.

A codec defines one output space of Painter: ``encode`` paints a task's ground truth as an
(H, W, 3) uint8 image, ``decode`` turns a painted image (what the model outputs, un-normalised to
0..255) back into the task's output, and ``valid`` gives the per-element training loss weight of a
painted target. Codecs are small, immutable and rebuilt from ``(name, params())`` (the shard
``index.json`` stores both), so two codecs compare equal when their names and params are equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from painter_cli.errors import PainterError

KINDS = ("depth", "semseg", "instance", "keypoints", "panoptic", "restoration")

# The official `valid` thresholds are applied to targets scaled to [0, 1]; in pixel units (0..255)
# they are these values (a uint8 target is "foreground" exactly when the element is non-zero).
FG_THRESHOLD = 1e-5 * 255.0
DEPTH_THRESHOLD = 1e-4 * 255.0
# Instance and keypoint samples with fewer foreground elements than this are ignored entirely.
MIN_FG_ELEMENTS = 300


class Codec:
    """Base class of every codec.

    Attributes: ``name`` (registry name), ``kind`` (one of ``KINDS``), ``discrete`` (True: targets
    must be resized with nearest; False: bicubic).
    """

    name: str = ""
    kind: ClassVar[str] = ""
    discrete: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters: ``get_codec(c.name, **c.params()) == c``."""
        return {}

    def encode(self, ground_truth: Any) -> np.ndarray:
        """Paint ``ground_truth`` as an (H, W, 3) uint8 image."""
        raise NotImplementedError

    def decode(self, painted: np.ndarray) -> Any:
        """Decode a painted (H, W, 3) image (uint8, or float in 0..255) into the task output."""
        raise NotImplementedError

    def valid(self, target: np.ndarray) -> np.ndarray:
        """Per-element loss weights (H, W, 3) float32 of a painted target (uint8 or float 0..255).

        Calling it on a stacked (2H, W, 3) canvas of two targets gives the official rule exactly
        (the official foreground counts run over both stacked targets).
        """
        t = as_painted(target, f"{self.name} target")
        return np.ones(t.shape, np.float32)

    def check_target(self, target: np.ndarray) -> str | None:
        """Why an already-painted (H, W, 3) uint8 target cannot come from this codec (one line), or
        None when it can. Codecs whose every image is a valid painting accept all."""
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Codec) and self.name == other.name and self.params() == other.params()
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


_REGISTRY: dict[str, Callable[..., Codec]] = {}


def register(name: str, factory: Callable[..., Codec]) -> None:
    """Register ``factory(**params) -> Codec`` under ``name`` (one name, one factory)."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"codec {name!r} is registered twice")
    _REGISTRY[name] = factory


def get_codec(name: str, **params: Any) -> Codec:
    """The codec ``name`` built with ``params``; unknown names or parameters raise ``PainterError``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise PainterError(
            f"unknown codec {name!r}", hint=f"known codecs: {', '.join(list_codecs())}"
        ) from None
    accepted = codec_parameters(name)
    required = [k for k, has_default in accepted.items() if not has_default]
    unknown = sorted(set(params) - set(accepted))
    missing = [k for k in required if k not in params]
    if unknown or missing:
        problem = (
            f"unknown parameter(s) {', '.join(unknown)}"
            if unknown
            else f"missing parameter(s) {', '.join(missing)}"
        )
        raise PainterError(f"codec {name!r}: {problem}", hint=describe_parameters(name))
    try:
        return factory(**params)
    except TypeError as e:
        raise PainterError(f"codec {name!r}: bad parameters {params!r} ({e})") from None


def codec_parameters(name: str) -> dict[str, bool]:
    """The parameters codec ``name`` takes: parameter -> whether it has a default."""
    import inspect

    signature = inspect.signature(_REGISTRY[name])
    return {
        k: p.default is not inspect.Parameter.empty
        for k, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def describe_parameters(name: str) -> str:
    """One line naming codec ``name``'s parameters, e.g. ``semseg takes --codec-param
    num_classes (required), base, background``."""
    accepted = codec_parameters(name)
    if not accepted:
        return f"codec {name} takes no parameters"
    listed = [k if has_default else f"{k} (required)" for k, has_default in accepted.items()]
    return f"codec {name} takes --codec-param " + ", ".join(listed)


def list_codecs() -> list[str]:
    """The registered codec names, sorted."""
    return sorted(_REGISTRY)


# --- input checks shared by the codecs -------------------------------------------------------------


def as_painted(painted: Any, what: str = "painted image") -> np.ndarray:
    """Check an (H, W, 3) uint8 or real image in 0..255 and return it as float32 (H, W, 3)."""
    if not isinstance(painted, np.ndarray):
        raise PainterError(f"{what}: expected a numpy array, got {type(painted).__name__}")
    if painted.ndim != 3 or painted.shape[2] != 3 or painted.shape[0] == 0 or painted.shape[1] == 0:
        raise PainterError(f"{what}: expected shape (H, W, 3), got {painted.shape}")
    if painted.dtype == np.uint8:
        return painted.astype(np.float32)
    if not np.issubdtype(painted.dtype, np.floating):
        raise PainterError(f"{what}: expected uint8 or float (0..255), got dtype {painted.dtype}")
    if not np.isfinite(painted).all():
        raise PainterError(f"{what}: contains NaN or infinite values")
    return painted.astype(np.float32, copy=False)


def as_label_map(labels: Any, what: str, max_label: int | None = None) -> np.ndarray:
    """Check an integer (H, W) map (an (H, W, 1) map is squeezed) with values in 0..max_label."""
    if not isinstance(labels, np.ndarray):
        raise PainterError(f"{what}: expected a numpy array, got {type(labels).__name__}")
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[:, :, 0]
    if labels.ndim != 2 or labels.shape[0] == 0 or labels.shape[1] == 0:
        raise PainterError(f"{what}: expected an (H, W) label map, got shape {labels.shape}")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise PainterError(f"{what}: expected an integer label map, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or (max_label is not None and hi > max_label):
        bound = f"0..{max_label}" if max_label is not None else ">= 0"
        raise PainterError(f"{what}: labels must be in {bound}, found values in {lo}..{hi}")
    return labels.astype(np.int64, copy=False)


def unique_colours(painted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct colours of an (H, W, 3) image: ``(colours (U, 3) float32, inverse (H*W,) int64,
    counts (U,) int64)`` with ``colours[inverse]`` the flattened image. Decoders work per colour."""
    p = as_painted(painted)
    if painted.dtype == np.uint8:
        key = (painted[..., 0].astype(np.int32) << 16) | (painted[..., 1].astype(np.int32) << 8)
        key |= painted[..., 2]
        uniq, inverse, counts = np.unique(key.ravel(), return_inverse=True, return_counts=True)
        cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1)
        return cols.astype(np.float32), inverse.ravel(), counts
    cols, inverse, counts = np.unique(
        p.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True
    )
    return cols, inverse.ravel(), counts
