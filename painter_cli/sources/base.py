"""The source interface: a dataset in its original layout -> painted (image, target) samples.

A source is constructed from ``(root, split, **options)``, checks the layout up front (a
``PainterError`` naming the expected path when it is wrong), lists its work units as an ordered list
of keys, and turns one key into zero or more ``Sample``s. The encoder (``painter encode``) shards
the keys, runs ``load`` in worker processes and writes shards in key order, so a source must be
deterministic given its options (seed included) and picklable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

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
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Sample:
    """One (image, target) pair.

    ``image``: (H, W, 3) uint8 RGB, or the source file's encoded bytes (JPEG/PNG) when it is stored
    as is (lossless with respect to the source). ``target``: (H, W, 3) uint8, painted by the task's
    codec. ``extras``: arrays that evaluation needs and the painted target cannot give back exactly
    (e.g. ``{"depth_m": float32 (H, W)}``).
    """

    id: str
    image: np.ndarray | bytes
    target: np.ndarray | None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class Source:
    """Base class of every source (one module a source in ``painter_cli.sources``)."""

    name: ClassVar[str]  # the CLI name: ``painter encode NAME``
    layout: ClassVar[str]  # the expected on-disk layout, shown by ``painter encode --list``
    splits: ClassVar[tuple[str, ...]] = ("train", "val")

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

    def keys(self) -> list[str]:
        """The ordered work units (usually one per source image)."""
        raise NotImplementedError

    def load(self, key: str) -> list[Sample]:
        """The samples of one work unit; raises ``SkipItem`` for a corrupt or unreadable input."""
        raise NotImplementedError
