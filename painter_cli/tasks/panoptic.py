"""COCO panoptic segmentation: the decoded semantic map and class-agnostic instances, merged.

Painter never paints panoptic targets: it paints a ``coco-semseg`` and a ``coco-instance`` output
for the same image, and evaluation merges them (official ``COCOPanoEvaluatorCustom``):

1. Each instance gets a thing class by a vote over the semantic output: with ``dist`` the L1
   distances of every pixel to the 80 thing colours, ``prob = 1 - dist / max(dist)`` (one max over
   the image and the 80 classes), and the class is ``argmax_k softmax_k(sum over the mask of
   prob_k)`` (the softmax does not move the argmax).
2. Instances by descending score, stopping at the first score < 0.55: skipped when more than 50%
   of the mask is already painted, else its unpainted part becomes a thing segment.
3. Every stuff class (contiguous index >= 80) of the semantic map: its still unpainted pixels become
   a stuff segment when they are at least 8192 px. Thing pixels of the semantic map that no
   instance covers stay void (0).

Run it at the ORIGINAL image resolution (the stuff area threshold is in original pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import Codec, as_painted, register, unique_colours
from painter_cli.tasks.instance import InstanceCodec
from painter_cli.tasks.semantic import SemanticCodec, coco_categories

NUM_THINGS = 80


@dataclass
class PanopticResult:
    """``ids``: (H, W) int32 segment ids (0 = void). ``segments``: one dict per segment, COCO
    panoptic style: ``id``, ``category_id`` (COCO category id), ``isthing``, ``area`` (pixels) and,
    for things, ``score``."""

    ids: np.ndarray
    segments: list[dict[str, Any]]


class PanopticCodec(Codec):
    """``coco-panoptic``: ``decode((semantic_painted, instance_painted))`` -> ``PanopticResult``.

    Both painted images are (H, W, 3) at the original resolution. ``merge`` takes already decoded
    instances instead. There is no ``encode``/``valid``: train the two parts with ``coco-semseg``
    and ``coco-instance``.
    """

    kind = "panoptic"
    discrete = True

    def __init__(
        self,
        score_thr: float = 0.55,
        overlap_thr: float = 0.5,
        stuff_area: int = 8192,
        dist_thr: float = 19.0,
    ):
        self.name = "coco-panoptic"
        self.score_thr = float(score_thr)
        self.overlap_thr = float(overlap_thr)
        self.stuff_area = int(stuff_area)
        self.dist_thr = float(dist_thr)

    def params(self) -> dict[str, Any]:
        return {
            "score_thr": self.score_thr,
            "overlap_thr": self.overlap_thr,
            "stuff_area": self.stuff_area,
            "dist_thr": self.dist_thr,
        }

    @cached_property
    def semantic(self) -> SemanticCodec:
        return SemanticCodec(133, base=7, name="coco-semseg")

    @cached_property
    def instance(self) -> InstanceCodec:
        return InstanceCodec(dist_thr=self.dist_thr)

    @cached_property
    def categories(self) -> list[dict[str, Any]]:
        return coco_categories()

    def encode(self, ground_truth: Any) -> np.ndarray:
        raise PainterError(
            "coco-panoptic has no painted target",
            hint="paint the parts with the coco-semseg and coco-instance codecs",
        )

    def valid(self, target: np.ndarray) -> np.ndarray:
        raise PainterError(
            "coco-panoptic is not trained directly",
            hint="train the coco-semseg and coco-instance tasks",
        )

    def decode(self, painted: Any) -> PanopticResult:
        if not (isinstance(painted, tuple | list) and len(painted) == 2):
            raise PainterError(
                "coco-panoptic: expected a pair (semantic_painted, instance_painted) of images"
            )
        sem, inst = painted
        return self.merge(sem, self.instance.decode(inst))

    def classify(
        self, semantic_painted: np.ndarray, instances: list[tuple[np.ndarray, float]]
    ) -> np.ndarray:
        """(N,) int64 contiguous thing class (0..79) of each instance mask, by the softmax vote."""
        cols, inverse, _ = unique_colours(semantic_painted)
        things = self.semantic.colours[:NUM_THINGS].astype(np.float32)
        dist = np.abs(cols[:, None, :] - things[None]).sum(axis=2)  # (U, 80)
        prob = 1.0 - dist / max(float(dist.max()), np.finfo(np.float32).tiny)
        out = np.zeros(len(instances), np.int64)
        for i, (mask, _) in enumerate(instances):
            per_colour = np.bincount(
                inverse[np.asarray(mask, bool).ravel()], minlength=cols.shape[0]
            )
            out[i] = int(np.argmax(per_colour.astype(np.float64) @ prob))
        return out

    def merge(
        self,
        semantic_painted: np.ndarray,
        instances: list[tuple[np.ndarray, float]],
        classes: np.ndarray | None = None,
    ) -> PanopticResult:
        """Merge a painted semantic output (H, W, 3) with decoded instances (bool (H, W) masks and
        scores); ``classes`` (N,) contiguous thing classes, voted from the semantic output if None.
        """
        p = as_painted(semantic_painted, "semantic painted image")
        h, w = p.shape[:2]
        for mask, _ in instances:
            if mask.shape != (h, w):
                raise PainterError(
                    f"coco-panoptic: instance mask shape {mask.shape} != semantic image {(h, w)}"
                )
        if classes is None:
            classes = self.classify(semantic_painted, instances)
        labels = self.semantic.decode(semantic_painted) - 1  # contiguous 0..132
        ids = np.zeros((h, w), np.int32)
        segments: list[dict[str, Any]] = []
        scores = np.array([s for _, s in instances], np.float64)
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < self.score_thr:
                break
            mask = instances[i][0].astype(bool)
            area = int(mask.sum())
            if area == 0:
                continue
            painted = mask & (ids > 0)
            if painted.sum() / area > self.overlap_thr:
                continue
            mask &= ids == 0
            seg_id = len(segments) + 1
            ids[mask] = seg_id
            cat = self.categories[int(classes[i])]
            segments.append(
                {
                    "id": seg_id,
                    "category_id": int(cat["id"]),
                    "isthing": True,
                    "area": int(mask.sum()),
                    "score": float(scores[i]),
                }
            )
        for label in np.unique(labels):
            if label < NUM_THINGS:
                continue
            mask = (labels == label) & (ids == 0)
            area = int(mask.sum())
            if area < self.stuff_area:
                continue
            seg_id = len(segments) + 1
            ids[mask] = seg_id
            cat = self.categories[int(label)]
            segments.append(
                {"id": seg_id, "category_id": int(cat["id"]), "isthing": False, "area": area}
            )
        return PanopticResult(ids=ids, segments=segments)


register("coco-panoptic", PanopticCodec)
