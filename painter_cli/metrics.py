"""The paper's evaluation metrics as pure functions and streaming meters (numpy + pycocotools).

Every definition follows the official protocol recorded in the spec
(``shared/spec/official-data-and-evaluation.md``, part (c) of each section):

- depth (NYUv2, BTS ``eval_with_pngs.py``): per-image RMSE, AbsRel, SqRel, RMSElog, log10, SILog,
  delta1..3 inside ``1e-3 < gt < 10`` m and the Eigen crop, averaged over images (``DepthMeter``).
- semseg (detectron2 ``SemSegEvaluator``): one confusion matrix over the split, ignore 255;
  mIoU over classes with ground truth (``SemsegMeter``).
- few-shot segmentation (FSS-1000, HSNet's protocol, spec section 9): foreground IoU per class
  from intersections and unions summed over the class's queries, mIoU = their mean, FB-IoU =
  mean of the foreground and background IoU pooled over classes (``FewShotMeter``); how much a
  painting follows the prompt's concept on a query holding two shapes (``selectivity``).
- panoptic (panopticapi ``pq_compute``): PQ/SQ/RQ for all/things/stuff (``PanopticMeter``).
- instance (class-agnostic COCO mask AP through pycocotools, ``useCats=0``): ``InstanceMeter``.
- keypoints (COCO keypoint AP with OKS through pycocotools): ``keypoint_ap``, plus the mmpose
  test-time pieces ``flip_back``/``flip_test_heatmaps``, ``rescore_keypoints`` and ``oks_nms``.
- restoration: ``psnr``/``ssim`` in the three official variants "sidd" (MATLAB psnr/ssim on RGB
  in [0,1], SSIM as a 3-D volume), "derain" (MATLAB Y channel, Wang et al. 11x11 Gaussian SSIM) and
  "lol" (skimage on RGB, 7x7 uniform-window SSIM, data_range 2 as the official skimage inferred).

Percentages: mIoU, pixel accuracy, PQ/SQ/RQ and the APs are reported x100 like the official
evaluators; depth and restoration numbers are in their natural units.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from painter_cli.errors import PainterError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Registry: the headline metric per codec kind


class Headline(NamedTuple):
    """The metric that ranks predictions of a codec kind (e.g. prompt selection) and its sense."""

    name: str
    higher_is_better: bool


METRICS: dict[str, Headline] = {
    "depth": Headline("rmse", False),
    "semseg": Headline("miou", True),
    "instance": Headline("ap", True),
    "panoptic": Headline("pq", True),
    "keypoints": Headline("ap", True),
    "restoration": Headline("psnr", True),
    # The paper's restoration tasks by kind (sources.base.PAPER_TASKS); all rank by PSNR.
    "denoise": Headline("psnr", True),
    "derain": Headline("psnr", True),
    "lowlight": Headline("psnr", True),
}

# Which official PSNR/SSIM protocol each restoration kind uses.
RESTORATION_VARIANTS: dict[str, str] = {"denoise": "sidd", "derain": "derain", "lowlight": "lol"}


def metric_for_kind(kind: str) -> Headline:
    """``(name, higher_is_better)`` of the headline metric of a codec kind, e.g. ``("rmse", False)``."""
    try:
        return METRICS[kind]
    except KeyError:
        raise PainterError(
            f"no metric for codec kind {kind!r}", f"known kinds: {', '.join(sorted(METRICS))}"
        ) from None


def metric_for_codec(codec: Any) -> Headline:
    """The headline of a task by its codec: its kind's (``metric_for_kind``), except a one-class
    ``semseg`` codec without a background class, ranked by foreground IoU (``ForegroundMeter``):
    black is unlabelled there, so its mIoU is 100 whatever the model paints."""
    one_class = getattr(codec, "kind", None) == "semseg" and getattr(codec, "num_classes", 0) == 1
    if one_class and not getattr(codec, "background", False):
        return Headline("fg_iou", True)
    return metric_for_kind(codec.kind)


# ----------------------------------------------------------------------------------------------
# Depth (NYUv2)

EIGEN_CROP_480x640 = (45, 471, 41, 601)  # rows [45, 471), columns [41, 601) on 480x640


def eigen_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The Eigen crop ``(top, bottom, left, right)`` for an image of ``height`` x ``width``.

    Exact at the official 480x640; other sizes get the same fractions of the frame, rounded, so a
    prediction evaluated at another resolution sees the same region of the scene.
    """
    top, bottom, left, right = EIGEN_CROP_480x640
    if (height, width) == (480, 640):
        return top, bottom, left, right
    # Half-up rounding (not Python's half-to-even) so the box is monotone in the image size.
    return (
        math.floor(top * height / 480 + 0.5),
        math.floor(bottom * height / 480 + 0.5),
        math.floor(left * width / 640 + 0.5),
        math.floor(right * width / 640 + 0.5),
    )


DEPTH_KEYS = ("rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    eigen_crop: bool = True,
) -> dict[str, float]:
    """Depth errors of one image, as BTS ``eval_with_pngs.py --eigen_crop`` computes them.

    ``pred``, ``gt``: (H, W) depth in metres (same shape; gt 0 = missing). The prediction is
    clipped to ``[min_depth, max_depth]`` (NaN becomes ``max_depth``); valid pixels are
    ``min_depth < gt < max_depth`` inside the Eigen crop (see ``eigen_crop_box``). Returns the keys
    of ``DEPTH_KEYS`` (metres for rmse, fractions for d1..d3, SILog x100) plus ``valid_pixels``;
    the metric values are NaN when no pixel is valid.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise PainterError(f"depth prediction {pred.shape} and ground truth {gt.shape} differ")
    # BTS clips (so inf -> max_depth); NaN, which BTS would propagate, is treated as inf.
    pred = np.clip(np.where(np.isnan(pred), max_depth, pred), min_depth, max_depth)
    gt = np.where(np.isfinite(gt), gt, 0.0)
    valid = (gt > min_depth) & (gt < max_depth)
    if eigen_crop:
        top, bottom, left, right = eigen_crop_box(*gt.shape)
        crop = np.zeros_like(valid)
        crop[top:bottom, left:right] = True
        valid &= crop
    n = int(valid.sum())
    if n == 0:
        return {**dict.fromkeys(DEPTH_KEYS, math.nan), "valid_pixels": 0}
    p, g = pred[valid], gt[valid]
    ratio = np.maximum(g / p, p / g)
    log_err = np.log(p) - np.log(g)
    return {
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))),
        "abs_rel": float(np.mean(np.abs(g - p) / g)),
        "sq_rel": float(np.mean((g - p) ** 2 / g)),
        "rmse_log": float(np.sqrt(np.mean(log_err**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "silog": float(np.sqrt(max(np.mean(log_err**2) - np.mean(log_err) ** 2, 0.0)) * 100),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
        "valid_pixels": n,
    }


class DepthMeter:
    """Mean of per-image depth metrics (the official final number is NOT a pooled RMSE).

    Images without a valid pixel are skipped and counted in ``skipped``.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0, eigen_crop: bool = True):
        self.min_depth, self.max_depth, self.eigen_crop = min_depth, max_depth, eigen_crop
        self.sums = dict.fromkeys(DEPTH_KEYS, 0.0)
        self.count = 0
        self.skipped = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Add one image ((H, W) metres each); returns its own metrics."""
        m = depth_metrics(pred, gt, self.min_depth, self.max_depth, self.eigen_crop)
        if m["valid_pixels"] == 0:
            self.skipped += 1
            return m
        for k in DEPTH_KEYS:
            self.sums[k] += m[k]
        self.count += 1
        return m

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {
            k: (v / self.count if self.count else math.nan) for k, v in self.sums.items()
        }
        out["images"] = self.count
        out["skipped"] = self.skipped
        return out


# ----------------------------------------------------------------------------------------------
# Semantic segmentation


def ade20k_gt_to_eval(label: np.ndarray) -> np.ndarray:
    """ADE20K annotation (0 = other, 1..150) -> evaluation labels (255 = ignore, 0..149), as the
    official ``uint8(label - 1)``."""
    return (np.asarray(label).astype(np.int64) - 1).astype(np.uint8)


class SemsegMeter:
    """detectron2 ``SemSegEvaluator``: one confusion matrix over all images, ``ignore_index`` excluded.

    ``update(pred, gt)``: integer arrays of the same shape; pred in ``[0, num_classes)``, gt in
    ``[0, num_classes)`` or ``ignore_index``. ``compute()`` gives (x100) ``miou`` (mean IoU over
    classes with ground-truth pixels and a non-empty union), ``macc``, ``pacc`` (pixel accuracy),
    ``fwiou`` and ``iou`` (per class, NaN where the class never appears in the ground truth).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # rows = prediction, columns = ground truth; the last column collects ignored gt pixels.
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred = np.asarray(pred).astype(np.int64).ravel()
        gt = np.asarray(gt).astype(np.int64).ravel()
        if pred.shape != gt.shape:
            raise PainterError(
                f"semseg prediction ({pred.size} px) and ground truth ({gt.size} px) differ"
            )
        k = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            raise PainterError(f"semseg prediction has labels outside 0..{k - 1}")
        gt = np.where(gt == self.ignore_index, k, gt)
        if gt.size and (gt.min() < 0 or gt.max() > k):
            raise PainterError(
                f"semseg ground truth has labels outside 0..{k - 1} and {self.ignore_index}"
            )
        self.confusion += np.bincount((k + 1) * pred + gt, minlength=(k + 1) ** 2).reshape(
            k + 1, k + 1
        )

    def compute(self) -> dict[str, Any]:
        conf = self.confusion[:-1, :-1].astype(np.float64)
        tp = np.diag(conf)
        pos_gt = conf.sum(axis=0)
        pos_pred = conf.sum(axis=1)
        union = pos_gt + pos_pred - tp
        has_gt = pos_gt > 0
        iou_valid = has_gt & (union > 0)
        acc = np.full(self.num_classes, np.nan)
        iou = np.full(self.num_classes, np.nan)
        acc[has_gt] = tp[has_gt] / pos_gt[has_gt]
        iou[iou_valid] = tp[iou_valid] / union[iou_valid]
        total = pos_gt.sum()
        weights = pos_gt / total if total else pos_gt
        nan = math.nan
        return {
            "miou": float(100 * iou[iou_valid].mean()) if iou_valid.any() else nan,
            "macc": float(100 * acc[has_gt].mean()) if has_gt.any() else nan,
            "pacc": float(100 * tp.sum() / total) if total else nan,
            "fwiou": float(100 * (iou[iou_valid] * weights[iou_valid]).sum()) if total else nan,
            "iou": [float(100 * v) for v in iou],
        }


def mask_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(2, 2) int64 ``[[bg_intersection, bg_union], [fg_intersection, fg_union]]`` (pixels) of
    one boolean foreground prediction against its boolean ground truth of the same shape."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise PainterError(f"mask prediction {pred.shape} and ground truth {gt.shape} differ")
    return np.array(
        [
            [np.count_nonzero(~pred & ~gt), np.count_nonzero(~pred | ~gt)],
            [np.count_nonzero(pred & gt), np.count_nonzero(pred | gt)],
        ],
        dtype=np.int64,
    )


class ForegroundMeter:
    """Binary foreground scores of a one-class mask task (edges, a road, a lesion), over one
    split: ``update(pred, gt)`` adds the pixel counts of one boolean prediction and ground truth.

    ``compute()`` (x100): ``fg_iou`` = TP / (TP + FP + FN) and ``fg_f1`` = 2TP / (2TP + FP + FN)
    pooled over all pixels (NaN without foreground in either), ``fg_precision`` (0 when nothing
    is predicted foreground), ``fg_recall``, ``fg_share`` (the ground truth's foreground share of
    the pixels), ``fg_pacc`` (binary pixel accuracy) and ``all_bg_pacc``: the pixel accuracy of
    painting background everywhere, the baseline a collapsed model reaches (its ``fg_iou`` and
    ``fg_f1`` are 0). With sparse targets (edges: ~20 % foreground) ``fg_pacc`` near
    ``all_bg_pacc`` and ``fg_iou`` near 0 mean the model paints background only.
    """

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred = np.asarray(pred, dtype=bool)
        gt = np.asarray(gt, dtype=bool)
        if pred.shape != gt.shape:
            raise PainterError(f"mask prediction {pred.shape} and ground truth {gt.shape} differ")
        self.tp += int(np.count_nonzero(pred & gt))
        self.fp += int(np.count_nonzero(pred & ~gt))
        self.fn += int(np.count_nonzero(~pred & gt))
        self.tn += int(np.count_nonzero(~pred & ~gt))

    def compute(self) -> dict[str, float]:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        total = tp + fp + fn + tn

        def ratio(num: float, den: float, empty: float = math.nan) -> float:
            return float(100 * num / den) if den else empty

        return {
            "fg_iou": ratio(tp, tp + fp + fn),
            "fg_f1": ratio(2 * tp, 2 * tp + fp + fn),
            "fg_precision": ratio(tp, tp + fp, 0.0),
            "fg_recall": ratio(tp, tp + fn),
            "fg_share": ratio(tp + fn, total),
            "fg_pacc": ratio(tp + tn, total),
            "all_bg_pacc": ratio(fp + tn, total),
        }


def fewshot_scores(counts: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The few-shot segmentation metrics (FSS-1000 as HSNet ``common/logger.py``) from per-class
    pixel counts ``class -> (2, 2)`` of ``mask_counts`` summed over the class's queries.

    x100: ``miou`` = mean over classes of the foreground IoU (intersection / union of the class's
    summed counts; a class with an empty union scores 0, as HSNet's ``max(union, 1)``),
    ``fg_iou``/``bg_iou`` = foreground/background IoU pooled over all classes, ``fb_iou`` = their
    mean; ``classes`` = number of classes, ``class_iou`` = ``{class: foreground IoU}``.
    """
    if not counts:
        nan = math.nan
        return {"miou": nan, "fb_iou": nan, "fg_iou": nan, "bg_iou": nan, "classes": 0}
    names = sorted(counts)
    c = np.stack([np.asarray(counts[n], dtype=np.float64) for n in names])  # (C, 2, 2)
    per_class = c[:, 1, 0] / np.maximum(c[:, 1, 1], 1.0)
    pooled = c.sum(axis=0)
    bg, fg = (float(pooled[k, 0] / max(pooled[k, 1], 1.0)) for k in (0, 1))
    return {
        "miou": float(100 * per_class.mean()),
        "fb_iou": 100 * (fg + bg) / 2,
        "fg_iou": 100 * fg,
        "bg_iou": 100 * bg,
        "classes": len(names),
        "class_iou": {n: float(100 * v) for n, v in zip(names, per_class, strict=True)},
    }


class FewShotMeter:
    """Streaming ``fewshot_scores``: ``update(pred, gt, group)`` adds one query's boolean
    foreground masks to its class (group); ``compute()`` gives the scores."""

    def __init__(self) -> None:
        self.counts: dict[str, np.ndarray] = {}

    def update(self, pred: np.ndarray, gt: np.ndarray, group: str) -> None:
        counts = mask_counts(pred, gt)
        if group in self.counts:
            self.counts[group] += counts
        else:
            self.counts[group] = counts

    def compute(self) -> dict[str, Any]:
        return fewshot_scores(self.counts)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground IoU x100 of two boolean masks of one shape (0 when both are empty)."""
    (_, _), (inter, union) = mask_counts(pred, gt)
    return float(100 * inter / union) if union else 0.0


def selectivity(
    pred_a: np.ndarray, pred_b: np.ndarray, gt_a: np.ndarray, gt_b: np.ndarray
) -> dict[str, float]:
    """How much a painting follows its prompt's concept, on one query holding two shapes A and B
    (boolean masks ``gt_a``, ``gt_b``): ``pred_a`` is the foreground painted when prompted with A,
    ``pred_b`` with B. x100: ``prompted`` = mean IoU with the prompted shape, ``other`` = mean IoU
    with the other shape, ``selectivity`` = ``prompted - other``. A model that ignores the prompt's
    content (the same painting both times) scores 0; one that paints exactly the prompted shape
    scores the mean IoU of the right shape, 100 when the shapes do not overlap."""
    prompted = (mask_iou(pred_a, gt_a) + mask_iou(pred_b, gt_b)) / 2
    other = (mask_iou(pred_a, gt_b) + mask_iou(pred_b, gt_a)) / 2
    return {"selectivity": prompted - other, "prompted": prompted, "other": other}


class SelectivityMeter:
    """Streaming ``selectivity``, averaged over queries: ``update(pred_a, pred_b, gt_a, gt_b)``;
    ``compute()`` -> ``{"selectivity", "prompted", "other", "queries", "sem"}`` (NaN without
    queries; ``sem``: the standard error of the mean selectivity, NaN below two queries)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def update(self, pred_a, pred_b, gt_a, gt_b) -> None:
        self.rows.append(selectivity(pred_a, pred_b, gt_a, gt_b))

    def compute(self) -> dict[str, float]:
        keys = ("selectivity", "prompted", "other")
        out = {
            k: float(np.mean([r[k] for r in self.rows])) if self.rows else math.nan for k in keys
        }
        n = len(self.rows)
        sel = [r["selectivity"] for r in self.rows]
        sem = float(np.std(sel, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        return {**out, "queries": n, "sem": sem}


# ----------------------------------------------------------------------------------------------
# Panoptic quality (panopticapi rules)

_OFFSET = 256 * 256 * 256
_VOID = 0


def rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG (H, W, 3) uint8 -> segment ids ``R + 256 G + 256^2 B`` (H, W) int64."""
    c = np.asarray(color).astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


class PanopticMeter:
    """panopticapi ``pq_compute`` on in-memory id maps, accumulated over images.

    ``categories``: ``{category_id: isthing}`` or a COCO ``categories`` list (``id``, ``isthing``).
    ``update(pred_ids, pred_segments, gt_ids, gt_segments)``: (H, W) segment-id maps (or COCO RGB
    PNG arrays, converted with ``rgb2id``; id 0 = void) and their ``segments_info`` lists of
    ``{"id", "category_id", "iscrowd"?}``. Areas come from the maps (COCO's json areas equal them).
    Matching: same category and ``IoU > 0.5`` with ``IoU = |P∩G| / (|P| + |G| - |P∩G| - |P∩void|)``;
    crowd gt is never matched or counted as FN; an unmatched prediction is not an FP when more than
    half of it lies on void plus the crowd region of its category.
    """

    def __init__(self, categories: Mapping[int, bool] | Sequence[Mapping[str, Any]]):
        if isinstance(categories, Mapping):
            self.isthing = {int(k): bool(v) for k, v in categories.items()}
        else:
            self.isthing = {int(c["id"]): bool(c.get("isthing", 0)) for c in categories}
        self.tp = dict.fromkeys(self.isthing, 0)
        self.fp = dict.fromkeys(self.isthing, 0)
        self.fn = dict.fromkeys(self.isthing, 0)
        self.iou = dict.fromkeys(self.isthing, 0.0)

    @staticmethod
    def _ids(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return rgb2id(x) if x.ndim == 3 else x.astype(np.int64)

    def _segments(self, ids: np.ndarray, segments: Iterable[Mapping[str, Any]], what: str):
        segs = {int(s["id"]): {**s, "area": 0} for s in segments}
        labels, counts = np.unique(ids, return_counts=True)
        present = set()
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            if label == _VOID and label not in segs:
                continue
            if label not in segs:
                raise PainterError(
                    f"panoptic {what}: segment {label} is in the map but not in segments_info"
                )
            segs[label]["area"] = count
            present.add(label)
        missing = set(segs) - present
        # panopticapi rejects predicted segments absent from the map; a listed gt segment is
        # counted as it is listed (an FN when not crowd), so absent gt segments just have area 0.
        if missing and what == "prediction":
            raise PainterError(
                f"panoptic {what}: segments {sorted(missing)} are listed but not in the map"
            )
        for s in segs.values():
            if int(s["category_id"]) not in self.isthing:
                raise PainterError(f"panoptic {what}: unknown category {s['category_id']}")
        return segs

    def update(
        self,
        pred_ids: np.ndarray,
        pred_segments: Iterable[Mapping[str, Any]],
        gt_ids: np.ndarray,
        gt_segments: Iterable[Mapping[str, Any]],
    ) -> None:
        pred_ids, gt_ids = self._ids(pred_ids), self._ids(gt_ids)
        if pred_ids.shape != gt_ids.shape:
            raise PainterError(
                f"panoptic prediction {pred_ids.shape} and ground truth {gt_ids.shape} differ"
            )
        for ids, what in ((pred_ids, "prediction"), (gt_ids, "ground truth")):
            if ids.size and (ids.min() < 0 or ids.max() >= _OFFSET):
                raise PainterError(f"panoptic {what}: segment ids must lie in 0..{_OFFSET - 1}")
        pred = self._segments(pred_ids, pred_segments, "prediction")
        gt = self._segments(gt_ids, gt_segments, "ground truth")
        pairs, counts = np.unique(gt_ids * _OFFSET + pred_ids, return_counts=True)
        inter = {
            (int(p // _OFFSET), int(p % _OFFSET)): int(c)
            for p, c in zip(pairs.tolist(), counts.tolist(), strict=True)
        }
        gt_matched, pred_matched = set(), set()
        for (g, p), n in inter.items():
            if g not in gt or p not in pred or gt[g].get("iscrowd", 0) == 1:
                continue
            cat = int(gt[g]["category_id"])
            if cat != int(pred[p]["category_id"]):
                continue
            union = pred[p]["area"] + gt[g]["area"] - n - inter.get((_VOID, p), 0)
            iou = n / union
            if iou > 0.5:
                self.tp[cat] += 1
                self.iou[cat] += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd_of_cat = {}
        for g, info in gt.items():
            if g in gt_matched:
                continue
            if info.get("iscrowd", 0) == 1:
                # As panopticapi: one crowd region per category (the last listed one counts).
                crowd_of_cat[int(info["category_id"])] = g
                continue
            self.fn[int(info["category_id"])] += 1
        for p, info in pred.items():
            if p in pred_matched:
                continue
            cat = int(info["category_id"])
            ignored = inter.get((_VOID, p), 0)
            if cat in crowd_of_cat:
                ignored += inter.get((crowd_of_cat[cat], p), 0)
            if ignored / info["area"] > 0.5:
                continue
            self.fp[cat] += 1

    def _average(self, isthing: bool | None) -> dict[str, float]:
        pq = sq = rq = 0.0
        n = 0
        for cat, thing in self.isthing.items():
            if isthing is not None and thing != isthing:
                continue
            tp, fp, fn = self.tp[cat], self.fp[cat], self.fn[cat]
            if tp + fp + fn == 0:
                continue
            n += 1
            denom = tp + 0.5 * fp + 0.5 * fn
            pq += self.iou[cat] / denom
            sq += self.iou[cat] / tp if tp else 0.0
            rq += tp / denom
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
        return {"pq": 100 * pq / n, "sq": 100 * sq / n, "rq": 100 * rq / n, "n": n}

    def compute(self) -> dict[str, Any]:
        """(x100) ``pq, sq, rq`` (all), ``pq_th ...`` (things), ``pq_st ...`` (stuff), the category
        counts ``n, n_th, n_st`` and ``per_class`` ``{cat: {pq, sq, rq, tp, fp, fn}}``; a category
        counts only when it has TP + FP + FN > 0."""
        out: dict[str, Any] = {}
        for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
            for k, v in self._average(isthing).items():
                out[k + suffix] = v
        per_class = {}
        for cat in self.isthing:
            tp, fp, fn, iou = self.tp[cat], self.fp[cat], self.fn[cat], self.iou[cat]
            denom = tp + 0.5 * fp + 0.5 * fn
            per_class[cat] = {
                "pq": 100 * iou / denom if denom else 0.0,
                "sq": 100 * iou / tp if tp else 0.0,
                "rq": 100 * tp / denom if denom else 0.0,
                "tp": tp,
                "fp": fp,
                "fn": fn,
            }
        out["per_class"] = per_class
        return out


# ----------------------------------------------------------------------------------------------
# COCO AP through pycocotools (keypoints and class-agnostic instance masks)

COCO_KEYPOINT_SIGMAS = np.array(
    [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089]
)  # fmt: skip
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
_AP_KEYS_KEYPOINTS = ("ap", "ap50", "ap75", "ap_m", "ap_l", "ar", "ar50", "ar75", "ar_m", "ar_l")
_AP_KEYS_SEGM = (
    "ap",
    "ap50",
    "ap75",
    "ap_s",
    "ap_m",
    "ap_l",
    "ar1",
    "ar10",
    "ar100",
    "ar_s",
    "ar_m",
    "ar_l",
)


def _coco_eval(
    gt: Mapping[str, Any], results: list[dict], iou_type: str, keys, use_cats: bool = True
):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return dict.fromkeys(keys, 0.0)
    # pycocotools prints progress to stdout; keep the CLI's stdout for results only.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        # pycocotools writes "ignore" flags into the annotation dicts: give it copies.
        dataset = {"info": {}, "licenses": [], **gt}
        dataset["annotations"] = [dict(a) for a in gt["annotations"]]
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if iou_type == "keypoints":
            # COCO's 17 sigmas; another skeleton (the synthetic suite's 7 keypoints) gets their
            # mean for every keypoint.
            sigmas = np.asarray(COCO_KEYPOINT_SIGMAS, dtype=np.float64)
            anns = gt["annotations"]
            k = len(anns[0]["keypoints"]) // 3 if anns else len(sigmas)
            ev.params.kpt_oks_sigmas = sigmas if k == len(sigmas) else np.full(k, sigmas.mean())
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # pycocotools gives -1 where a bucket has no ground truth; keep that sentinel.
    return {k: (float(v) * 100 if v >= 0 else -1.0) for k, v in zip(keys, ev.stats, strict=True)}


def keypoint_ap(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """COCO keypoint AP/AR (x100) with OKS over thresholds 0.50:0.05:0.95, maxDets 20.

    ``gt``: a COCO person-keypoints dataset dict (``images``, ``annotations`` with ``keypoints``,
    ``area``, ``bbox``, ``iscrowd``, ``num_keypoints``; ``categories``), in memory. ``results``:
    ``[{"image_id", "category_id": 1, "keypoints": [x, y, score] * 17, "score"}]``. OKS uses the
    spec's 17 sigmas (``COCO_KEYPOINT_SIGMAS``). No results give all zeros.
    """
    return _coco_eval(gt, list(results), "keypoints", _AP_KEYS_KEYPOINTS)


def flip_back(
    heatmaps: np.ndarray, flip_pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS
) -> np.ndarray:
    """Heatmaps of a horizontally flipped crop -> the original frame: swap the left/right channels of
    ``flip_pairs`` and mirror the width axis. ``heatmaps``: (..., K, H, W)."""
    heatmaps = np.asarray(heatmaps)
    out = heatmaps.copy()
    for left, right in flip_pairs:
        out[..., left, :, :] = heatmaps[..., right, :, :]
        out[..., right, :, :] = heatmaps[..., left, :, :]
    return out[..., ::-1].copy()


def flip_test_heatmaps(
    heatmaps: np.ndarray,
    flipped_heatmaps: np.ndarray,
    flip_pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS,
    shift: bool = True,
) -> np.ndarray:
    """mmpose flip test: ``(heatmaps + shift(flip_back(flipped_heatmaps))) / 2``.

    ``heatmaps``: (..., K, H, W) of the crop; ``flipped_heatmaps``: of the horizontally flipped crop.
    ``shift`` moves the flipped-back maps one pixel right (column 0 keeps its value), compensating the
    ``x -> W - 1 - x`` flip of the crop, as the official ``shift_heatmap=True``.
    """
    back = flip_back(flipped_heatmaps, flip_pairs)
    if shift:
        back[..., 1:] = back[..., :-1].copy()
    return (np.asarray(heatmaps, dtype=np.float64) + back) * 0.5


def rescore_keypoints(keypoints: np.ndarray, box_score: float, vis_thr: float = 0.2) -> float:
    """mmpose instance score: mean of the keypoint scores above ``vis_thr`` (0 when none), times the
    detection box score. ``keypoints``: (K, 3) ``x, y, score``."""
    s = np.asarray(keypoints, dtype=np.float64)[:, 2]
    kept = s[s > vis_thr]
    return float((kept.mean() if kept.size else 0.0) * box_score)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.9,
    sigmas: np.ndarray = COCO_KEYPOINT_SIGMAS,
) -> list[int]:
    """mmpose ``oks_nms``: greedy by score, dropping poses whose OKS with a kept one is > ``thr``.

    ``keypoints``: (N, K, 3) ``x, y, score``; ``scores``: (N,); ``areas``: (N,) box areas in px².
    Returns the kept indices, best first.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2 * np.asarray(sigmas)) ** 2
    order = list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        d2 = ((kpts[rest, :, :2] - kpts[i, None, :, :2]) ** 2).sum(-1)
        e = d2 / variances / ((areas[i] + areas[rest])[:, None] / 2 + np.spacing(1)) / 2
        oks = np.exp(-e).mean(axis=1)
        order = [j for j, o in zip(order, oks, strict=True) if o <= thr]
    return keep


class InstanceMeter:
    """Class-agnostic COCO mask AP (x100): pycocotools ``segm`` evaluation with ``useCats=0``, the
    class-agnostic number the official instance evaluator prints.

    ``update(pred_masks, scores, gt_masks, gt_crowd=None)``: (M, H, W) and (N, H, W) boolean masks
    of one image, (M,) confidence scores; crowd gt masks are ignored regions (COCO ``iscrowd``).
    Masks are kept as RLE, so memory stays small over a split. Headline: ``ap`` (0.50:0.95).
    """

    def __init__(self):
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: list[dict] = []

    @staticmethod
    def _rle(masks: np.ndarray) -> list[dict]:
        from pycocotools import mask as mask_utils

        masks = np.asarray(masks, dtype=bool)
        if masks.shape[0] == 0:
            return []
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        return list(rles)

    def update(
        self,
        pred_masks: np.ndarray,
        scores: np.ndarray,
        gt_masks: np.ndarray,
        gt_crowd: np.ndarray | None = None,
    ) -> None:
        from pycocotools import mask as mask_utils

        gt_masks = np.asarray(gt_masks, dtype=bool)
        pred_masks = np.asarray(pred_masks, dtype=bool)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(pred_masks):
            raise PainterError(
                f"instance prediction has {len(pred_masks)} masks but {len(scores)} scores"
            )
        height, width = (
            gt_masks.shape[1:] if gt_masks.ndim == 3 and gt_masks.shape[0] else pred_masks.shape[1:]
        )
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": int(height), "width": int(width)})
        crowd = np.zeros(len(gt_masks), bool) if gt_crowd is None else np.asarray(gt_crowd, bool)
        for rle, is_crowd in zip(self._rle(gt_masks), crowd, strict=True):
            area = float(mask_utils.area(rle))
            if area == 0:
                continue
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": area,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": int(is_crowd),
                }
            )
        for rle, score in zip(self._rle(pred_masks), scores, strict=True):
            self.results.append(
                {"image_id": image_id, "category_id": 1, "segmentation": rle, "score": float(score)}
            )

    def compute(self) -> dict[str, float]:
        gt = {
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": 1, "name": "object"}],
        }
        return _coco_eval(gt, self.results, "segm", _AP_KEYS_SEGM, use_cats=False)


# ----------------------------------------------------------------------------------------------
# Restoration: PSNR / SSIM, three official variants

VARIANTS = ("sidd", "derain", "lol")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise PainterError(
            f"unknown restoration metric variant {variant!r}", f"use one of {', '.join(VARIANTS)}"
        )


def _as_unit_float(img: np.ndarray) -> np.ndarray:
    """uint8 [0,255] -> float64 [0,1]; floats are taken as already in [0,1]."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64)


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """float [0,1] -> uint8 as the official derain script saves predictions: clip, x255, truncate
    (k/255 round-trips exactly)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return (np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def matlab_y_channel(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of a uint8 RGB image: ``round(16 + (65.481 R + 128.553 G + 24.966 B)
    / 255)`` in [16, 235]; (H, W, 3) uint8 -> (H, W) float64 holding those integers."""
    c = _as_uint8(rgb).astype(np.float64)
    y = 16.0 + (65.481 * c[..., 0] + 128.553 * c[..., 1] + 24.966 * c[..., 2]) / 255.0
    return np.clip(np.floor(y + 0.5), 0, 255)  # MATLAB rounds half away from zero; y > 0 here


def _prepare(pred: np.ndarray, gt: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    _check_variant(variant)
    if np.shape(pred) != np.shape(gt):
        raise PainterError(
            f"restored image {np.shape(pred)} and ground truth {np.shape(gt)} differ"
        )
    if variant == "derain":
        return matlab_y_channel(pred), matlab_y_channel(gt)
    return _as_unit_float(pred), _as_unit_float(gt)


def psnr(pred: np.ndarray, gt: np.ndarray, variant: str = "sidd") -> float:
    """PSNR in dB of one (H, W, 3) RGB image (uint8, or float in [0,1]) against its ground truth.

    "sidd" and "lol": ``10 log10(1 / MSE)`` over all RGB values in [0,1] (MATLAB ``psnr`` on single;
    skimage ``peak_signal_noise_ratio`` with the inferred range 1). "derain": ``20 log10(255 / RMSE)``
    on the MATLAB Y channel. Identical images give ``inf``.
    """
    p, g = _prepare(pred, gt, variant)
    mse = float(np.mean((p - g) ** 2))
    peak = 255.0 if variant == "derain" else 1.0
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def _correlate1d(x: np.ndarray, w: np.ndarray, axis: int, pad: str | None) -> np.ndarray:
    """Correlate ``x`` with the 1-D kernel ``w`` along ``axis``: ``pad=None`` is 'valid', 'edge' keeps
    the size with replicate padding."""
    n, size, r = x.shape[axis], len(w), len(w) // 2
    if pad is not None and n <= 2 * size:
        # A short axis (the 3 channels of the SIDD volume): replicate padding folded into an
        # (n, n) matrix, instead of padding 3 values to 13.
        cols = np.clip(np.arange(n)[:, None] + np.arange(size)[None, :] - r, 0, n - 1)
        band = np.zeros((n, n))
        np.add.at(band, (np.repeat(np.arange(n), size), cols.ravel()), np.tile(w, n))
        return np.moveaxis(np.moveaxis(x, axis, -1) @ band.T, -1, axis)
    if pad is not None:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (r, r)
        x = np.pad(x, widths, mode=pad)
    n_out = x.shape[axis] - size + 1
    index = [slice(None)] * x.ndim
    out = None
    for k, wk in enumerate(w):
        index[axis] = slice(k, k + n_out)
        term = wk * x[tuple(index)]
        out = term if out is None else out + term
    return out


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _ssim_map(x, y, filt, c1, c2, cov_norm: float = 1.0) -> np.ndarray:
    mx, my = filt(x), filt(y)
    sxx = cov_norm * (filt(x * x) - mx * mx)
    syy = cov_norm * (filt(y * y) - my * my)
    sxy = cov_norm * (filt(x * y) - mx * my)
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(pred: np.ndarray, gt: np.ndarray, variant: str = "sidd") -> float:
    """SSIM of one (H, W, 3) RGB image (uint8, or float in [0,1]) against its ground truth.

    - "sidd": MATLAB ``ssim`` on an HxWx3 single array = one 3-D volume: separable 11-tap Gaussian
      (sigma 1.5) along H, W and the channel axis, replicate padding, L = 1, mean of the full map.
    - "derain": Wang et al. ``SSIM_index`` on the MATLAB Y channel: 11x11 Gaussian (sigma 1.5),
      K = (0.01, 0.03), L = 255, 'valid' filtering, mean of the map.
    - "lol": skimage ``structural_similarity`` per channel, averaged: 7x7 uniform window, sample
      covariance (x49/48), default K, and ``data_range = 2`` as the official (older) skimage inferred
      for float images; the mean over the map without its 3-px border (= 'valid').
    """
    p, g = _prepare(pred, gt, variant)
    if variant == "derain":
        w = _gaussian(11, 1.5)

        def filt(a):
            return _correlate1d(_correlate1d(a, w, 0, None), w, 1, None)

        return float(_ssim_map(p, g, filt, (0.01 * 255) ** 2, (0.03 * 255) ** 2).mean())
    if variant == "sidd":
        w = _gaussian(11, 1.5)
        axes = range(p.ndim)

        def filt(a):
            for ax in axes:
                a = _correlate1d(a, w, ax, "edge")
            return a

        return float(_ssim_map(p, g, filt, 0.01**2, 0.03**2).mean())
    w = np.full(7, 1 / 7)
    data_range = 2.0

    def filt(a):
        return _correlate1d(_correlate1d(a, w, 0, None), w, 1, None)

    return float(
        _ssim_map(
            p, g, filt, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, cov_norm=49 / 48
        ).mean()
    )


class RestorationMeter:
    """Mean PSNR and SSIM over images (the official per-dataset numbers) for one ``variant``."""

    def __init__(self, variant: str):
        _check_variant(variant)
        self.variant = variant
        self.psnr_sum = self.ssim_sum = 0.0
        self.count = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        m = {"psnr": psnr(pred, gt, self.variant), "ssim": ssim(pred, gt, self.variant)}
        self.psnr_sum += m["psnr"]
        self.ssim_sum += m["ssim"]
        self.count += 1
        return m

    def compute(self) -> dict[str, float]:
        n = self.count
        return {
            "psnr": self.psnr_sum / n if n else math.nan,
            "ssim": self.ssim_sum / n if n else math.nan,
            "images": n,
        }
