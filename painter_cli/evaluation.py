"""Evaluation: in-context prediction over a shard split and the task's official metric.

``evaluate`` paints every sample of one task of a ``ShardReader`` with the given prompts (batched
queries, one model) and feeds the decoded outputs to the task's meter from ``painter_cli.metrics``
(spec ``official-data-and-evaluation.md``, part (c) of each section):

- depth: per-image RMSE/AbsRel/delta... inside 1e-3..10 m and the Eigen crop, averaged over
  images; ground truth ``depth_m`` from the shard extras, else decoded from the target; the
  prediction is truncated to whole millimetres like the official 16-bit PNGs.
- semseg: one confusion matrix over the split; ground truth = ``codec.decode(target)`` with black
  (background) pixels ignored; mIoU and pixel accuracy.
- instance: class-agnostic COCO mask AP; ground-truth masks are the target's distinct colours.
- keypoints: COCO keypoint AP (OKS) in the crop frame, with the official flip test.
- restoration: PSNR/SSIM in the ``sidd``, ``derain`` or ``lol`` variant.
- few-shot segmentation (a one-class foreground task whose samples carry groups, e.g.
  FSS-1000): per-class foreground IoU summed over the class's queries, mIoU over classes and
  FB-IoU (``metrics.fewshot_scores``).
- panoptic: PQ/SQ/RQ (all/things/stuff, panopticapi rules). Every query is painted twice, with
  prompt 1 (a coco-semseg pair) and prompt 2 (a coco-instance pair); the ``coco-panoptic`` codec
  merges the two at the original size. The ground truth is the ``panoptic_ids``/``segments``
  extras that ``painter encode coco-panoptic`` writes.

Grouped prompting (``GroupPairing``): when a task's samples carry groups (a class, a video, a
concept), each query is prompted by ``shots`` other samples of its own group, drawn with a seed,
never by itself; a query whose group has too few other samples is skipped and counted. With
``decode="prompt"`` a segmentation painting is read by the colours of its own prompts' targets
(``tasks.prompt_colours``) instead of the codec's palette.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from painter_cli import metrics as M
from painter_cli.errors import PainterError
from painter_cli.inference import (
    ENSEMBLES,
    Predictor,
    Prompt,
    check_batch_size,
    check_out_folder,
    check_panoptic_prompts,
    check_prompt_size,
    check_size_option,
    checkpoint_or_default,
    decode_painted,
    default_size,
    file_target_resize,
    finish,
    load_checkpoint,
    load_prompts,
    make_prompt,
    model_image_size,
    paint_panoptic,
    prompt_resize,
    resolve_device,
    target_resample,
    write_json,
)
from painter_cli.tasks.prompt_colours import repaint_by_prompt

log = logging.getLogger(__name__)

RESTORATION_VARIANTS = M.VARIANTS


# --------------------------------------------------------------------------------------------
# Task and prompt resolution


def resolve_task(reader: Any, task: str) -> str:
    """A task name of the shards, or a codec kind (or codec name) naming exactly one of them."""
    if task in reader.tasks:
        return task
    from painter_cli.defaults import task_kind

    # A task's kind (denoise, derain...) as well as its codec's kind (restoration).
    matches = [
        t
        for t in reader.tasks
        if task
        in (reader.task_info(t)["codec"], getattr(reader.codec(t), "kind", None), task_kind(t))
    ]
    if len(matches) == 1:
        return matches[0]
    if task in ("panoptic", "coco-panoptic"):
        raise PainterError(
            f"task {task!r}: PQ needs panoptic ground truth, which {', '.join(map(str, reader.dirs))}"
            " do not carry",
            "encode the COCO val split with `painter encode coco-panoptic` and evaluate those shards",
        )
    where = ", ".join(map(str, reader.dirs))
    if matches:
        raise PainterError(
            f"task {task!r} is ambiguous in {where}: {', '.join(matches)}", "name the task"
        )
    raise PainterError(
        f"unknown task {task!r} in {where}", f"tasks there: {', '.join(reader.tasks)}"
    )


def restoration_variant(task: str, variant: str | None = None) -> str:
    """The PSNR/SSIM protocol: ``variant`` if given, else guessed from the task name (SIDD/denoise
    -> sidd, rain -> derain, LoL/low-light -> lol), else sidd."""
    if variant is not None:
        if variant not in RESTORATION_VARIANTS:
            raise PainterError(
                f"--metric-variant {variant}: expected one of {', '.join(RESTORATION_VARIANTS)}"
            )
        return variant
    name = task.lower()
    if "rain" in name:
        return "derain"
    if "lol" in name or "light" in name or "enhance" in name:
        return "lol"
    return "sidd"


def prompts_from_shards(
    reader: Any, task: str, size: int, count: int = 1, **prompt_kwargs: Any
) -> list[Prompt]:
    """The first ``count`` pairs of ``task`` in ``reader`` as prompts of side ``size``."""
    codec = reader.codec(task)
    idx = reader.indices(task)[:count]
    if len(idx) == 0:
        raise PainterError(f"task {task!r} has no samples in {', '.join(map(str, reader.dirs))}")
    prompts = []
    for i in idx:
        s = reader[int(i)]
        if s.get("target") is None:
            raise PainterError(f"sample {s['id']} of {task!r} has no target to prompt with")
        prompts.append(
            make_prompt(
                s["image"],
                s["target"],
                size,
                discrete=codec.discrete,
                name=f"{task}:{s['id']}",
                **prompt_kwargs,
            )
        )
    return prompts


# --------------------------------------------------------------------------------------------
# Scorers: one painted prediction (at the sample's size) + its sample -> the meter


def heatmap_keypoints(heatmaps: np.ndarray) -> np.ndarray:
    """(K, H, W) heatmaps -> (K, 3) ``x, y, score``: the argmax shifted 0.25 px towards the higher
    neighbour (mmpose ``keypoints_from_heatmaps``, as the keypoint codec decodes); an empty
    heatmap gives ``(-1, -1, 0)``."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    idx = flat.argmax(axis=1)
    score = flat[np.arange(k), idx]
    ys, xs = np.divmod(idx, w)
    out = np.zeros((k, 3), np.float32)
    for j in range(k):
        if score[j] <= 0:
            out[j] = (-1.0, -1.0, 0.0)
            continue
        px, py = int(xs[j]), int(ys[j])
        x, y = float(px), float(py)
        if 1 < px < w - 1 and 1 < py < h - 1:
            hm = heatmaps[j]
            x += 0.25 * float(np.sign(hm[py, px + 1] - hm[py, px - 1]))
            y += 0.25 * float(np.sign(hm[py + 1, px] - hm[py - 1, px]))
        out[j] = (x, y, score[j])
    return out


def _as_u8(painted: np.ndarray) -> np.ndarray:
    return np.clip(painted, 0, 255).astype(np.uint8)


class _Scorer:
    def __init__(self, codec: Any):
        self.codec = codec
        self.count = 0

    def update(self, painted: np.ndarray, sample: dict, flipped: np.ndarray | None) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        raise NotImplementedError


class _DepthScorer(_Scorer):
    def __init__(self, codec: Any):
        super().__init__(codec)
        self.meter = M.DepthMeter()

    def update(self, painted, sample, flipped):
        gt = sample.get("depth_m")
        if gt is None:
            gt = self.codec.decode(sample["target"])
        # Whole millimetres, as the official prediction PNG (``decode_painted``).
        pred = decode_painted(painted, self.codec)
        if pred.shape != gt.shape:
            from painter_cli.inference import resize_float

            pred = resize_float(pred[..., None], *gt.shape, "bilinear")[..., 0]
        self.meter.update(pred, gt)

    def compute(self):
        return self.meter.compute()


class _SemsegScorer(_Scorer):
    def __init__(self, codec: Any):
        super().__init__(codec)
        # A codec with a background class (black, e.g. the synthetic suite) scores it as class 0;
        # otherwise black is unlabelled and ignored.
        self.background = bool(getattr(codec, "background", False))
        self.meter = M.SemsegMeter(codec.num_classes + self.background)
        # A one-class mask task (edges, a road) is also scored as foreground vs black, which a
        # model painting background everywhere cannot pass (without a background class, black is
        # ignored and its mIoU is 100 whatever it paints).
        self.foreground = M.ForegroundMeter() if codec.num_classes == 1 else None

    def update(self, painted, sample, flipped):
        target = sample["target"]
        if self.foreground is not None:
            from painter_cli.tasks.semantic import nearest_colour

            black_or_class = np.concatenate([np.zeros((1, 3), np.uint8), self.codec.colours])
            pred_fg = nearest_colour(_as_u8(painted), black_or_class) != 0
            self.foreground.update(pred_fg, target.max(axis=2) > 0)
        if self.background:
            gt = self.codec.decode(target).astype(np.int64)
            pred = self.codec.decode(_as_u8(painted)).astype(np.int64)
            self.meter.update(pred, gt)
            return
        gt = self.codec.decode(target).astype(np.int64) - 1
        gt[target.max(axis=2) == 0] = self.meter.ignore_index  # black = background, ignored
        pred = self.codec.decode(_as_u8(painted)).astype(np.int64) - 1
        self.meter.update(pred, gt)

    def compute(self):
        out = self.meter.compute()
        # The class each ``iou`` entry scores (0: the background class, when the codec has one).
        first = 0 if self.background else 1
        out["iou_classes"] = list(range(first, first + len(out["iou"])))
        if self.foreground is not None:
            out.update(self.foreground.compute())
        return out


class _FewShotScorer(_Scorer):
    """One-class foreground segmentation scored per group (class), as FSS-1000: the foreground is
    the codec's class 1, black its background class 0."""

    def __init__(self, codec: Any):
        super().__init__(codec)
        self.meter = M.FewShotMeter()

    def update(self, painted, sample, flipped):
        gt = self.codec.decode(sample["target"]) == 1
        pred = self.codec.decode(_as_u8(painted)) == 1
        self.meter.update(pred, gt, str(sample.get("group")))

    def compute(self):
        return self.meter.compute()


def fewshot_task(codec: Any, grouped: bool) -> bool:
    """Whether a task is scored as few-shot segmentation: its samples carry groups and its codec
    paints one foreground class on a black background class (FSS-1000, synthetic-segment)."""
    return (
        grouped
        and codec.kind == "semseg"
        and getattr(codec, "num_classes", 0) == 1
        and bool(getattr(codec, "background", False))
    )


def target_instance_masks(target: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks of the distinct non-black colours of an instance target."""
    key = (target[..., 0].astype(np.int64) << 16) | (target[..., 1].astype(np.int64) << 8)
    key |= target[..., 2]
    colours = np.unique(key)
    colours = colours[colours != 0]
    return key[None] == colours[:, None, None]


class _InstanceScorer(_Scorer):
    def __init__(self, codec: Any):
        super().__init__(codec)
        self.meter = M.InstanceMeter()

    def update(self, painted, sample, flipped):
        h, w = painted.shape[:2]
        decoded = self.codec.decode(_as_u8(painted))
        masks = np.array([m for m, _ in decoded], dtype=bool).reshape(-1, h, w)
        scores = np.array([s for _, s in decoded], dtype=np.float64)
        self.meter.update(masks, scores, target_instance_masks(sample["target"]))

    def compute(self):
        return self.meter.compute()


class _KeypointScorer(_Scorer):
    """COCO keypoint AP in the crop frame: one image and one person per sample. The ground truth is
    ``extras["keypoints"]`` (K, 3) (else decoded from the target) and its OKS area the unpadded
    crop box ``(W/1.25) * (H/1.25)`` unless ``extras["area"]`` gives it."""

    def __init__(self, codec: Any):
        super().__init__(codec)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: list[dict] = []

    def update(self, painted, sample, flipped):
        h, w = painted.shape[:2]
        heat = self.codec.decode(_as_u8(painted)).heatmaps
        if flipped is not None:
            heat_f = self.codec.decode(_as_u8(flipped)).heatmaps
            heat = M.flip_test_heatmaps(heat, heat_f)
        pred = heatmap_keypoints(heat)
        gt = sample.get("keypoints")
        if gt is None:
            dec = self.codec.decode(sample["target"]).keypoints
            gt = np.concatenate([dec[:, :2], 2.0 * (dec[:, 2:] > 0)], axis=1)
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 3)
        gt[gt[:, 2] <= 0] = 0.0
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": h, "width": w})
        area = float(np.asarray(sample.get("area", (w / 1.25) * (h / 1.25))))
        visible = int((gt[:, 2] > 0).sum())
        self.annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "keypoints": gt.ravel().tolist(),
                "num_keypoints": visible,
                "area": area,
                "bbox": [0.0, 0.0, float(w), float(h)],
                "iscrowd": 0,
            }
        )
        box_score = float(np.asarray(sample.get("score", 1.0)))
        self.results.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "keypoints": pred.astype(np.float64).ravel().tolist(),
                "score": M.rescore_keypoints(pred, box_score),
            }
        )

    def compute(self):
        cats = [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]
        gt = {"images": self.images, "annotations": self.annotations, "categories": cats}
        out = M.keypoint_ap(gt, self.results)
        out["images"] = len(self.images)
        return out


class _RestorationScorer(_Scorer):
    def __init__(self, codec: Any, variant: str):
        super().__init__(codec)
        self.meter = M.RestorationMeter(variant)
        self.variant = variant

    def update(self, painted, sample, flipped):
        if self.variant == "derain":  # the official derain script scores saved uint8 PNGs
            pred = self.codec.decode(painted)
        else:  # SIDD (.mat) and LoL score the float [0, 1] prediction
            pred = np.clip(painted.astype(np.float64) / 255.0, 0.0, 1.0)
        self.meter.update(pred, sample["target"])

    def compute(self):
        out = self.meter.compute()
        out["variant"] = self.variant
        return out


class _PanopticScorer(_Scorer):
    """PQ of the merged (semantic, instance) pair against the ``panoptic_ids`` (H, W) and
    ``segments`` (S, 4) ``(id, category_id, iscrowd, isthing)`` extras of each sample."""

    def __init__(self, codec: Any, task: str = "coco-panoptic"):
        super().__init__(codec)
        self.task = task
        self.meter = M.PanopticMeter(codec.categories)

    def check(self, sample: dict) -> None:
        if sample.get("panoptic_ids") is None or sample.get("segments") is None:
            raise PainterError(
                f"sample {sample.get('id')!r} of task {self.task!r} has no panoptic ground truth "
                "(panoptic_ids/segments extras)",
                "encode the COCO val split with `painter encode coco-panoptic`",
            )

    def update(self, painted, sample, flipped):
        self.check(sample)
        gt_ids, segments = sample["panoptic_ids"], sample["segments"]
        pred = decode_painted(painted, self.codec)
        rows = np.asarray(segments, dtype=np.int64).reshape(-1, 4)
        gt_segments = [
            {"id": int(i), "category_id": int(c), "iscrowd": int(crowd)} for i, c, crowd, _ in rows
        ]
        self.meter.update(pred.ids, pred.segments, gt_ids, gt_segments)
        self.count += 1

    def compute(self):
        return self.meter.compute()


def _scorer(codec: Any, task: str, metric_variant: str | None, grouped: bool = False) -> _Scorer:
    kind = codec.kind
    if metric_variant is not None and kind != "restoration":
        raise PainterError(
            f"--metric-variant {metric_variant}: applies to restoration tasks only; "
            f"{task!r} is a {kind} task",
            "omit --metric-variant",
        )
    if kind == "depth":
        return _DepthScorer(codec)
    if fewshot_task(codec, grouped):
        return _FewShotScorer(codec)
    if kind == "semseg":
        return _SemsegScorer(codec)
    if kind == "instance":
        return _InstanceScorer(codec)
    if kind == "keypoints":
        return _KeypointScorer(codec)
    if kind == "restoration":
        return _RestorationScorer(codec, restoration_variant(task, metric_variant))
    if kind == "panoptic":
        return _PanopticScorer(codec, task)
    raise PainterError(f"task {task!r}: no evaluation for codec kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Grouped prompting


DECODES = ("codec", "prompt")


def group_prompt_indices(
    members: np.ndarray, exclude: int | None, shots: int, seed: int, key: int
) -> list[int] | None:
    """``shots`` distinct sample indices drawn from ``members`` (the query's group in the prompt
    source) without ``exclude`` (the query itself, when it is one of them), or None when fewer
    remain. The draw is a pure function of ``(seed, key)``, ``key`` being the query's index, so a
    query gets the same prompts whatever else is evaluated with it."""
    candidates = members if exclude is None else members[members != exclude]
    if len(candidates) < shots:
        return None
    rng = np.random.default_rng([seed, key])
    return [int(i) for i in rng.choice(candidates, size=shots, replace=False)]


def _same_data(a: Any, b: Any) -> bool:
    """Whether two readers read the same shard folders (so their sample indices agree)."""
    return [Path(d).resolve() for d in a.dirs] == [Path(d).resolve() for d in b.dirs]


@dataclass
class GroupPairing:
    """Prompt each query with ``shots`` samples of its own group, drawn with ``seed``.

    ``source``: the reader the prompts come from (the evaluated shards themselves for the one-shot
    protocol, or train shards holding the same groups) and ``task`` its task. A query is never its
    own prompt. ``target_resize`` (nearest/bicubic; None: by the codec) as ``make_prompt``.

    ``fixed``: ``{group: source indices}``, the same prompts for every query of the group (e.g.
    the pair ``prompt-select`` picked for that class) instead of a seeded draw (``shots`` and
    ``seed`` then unused); a query of a group without an entry is skipped, and so is a query that
    is one of its group's prompts."""

    source: Any
    task: str
    shots: int = 1
    seed: int = 0
    target_resize: str | None = None
    fixed: dict[str, list[int]] | None = None

    def __post_init__(self):
        if self.shots < 1:
            raise PainterError(f"--shots {self.shots}: must be >= 1")
        if not self.source.has_groups(self.task):
            raise PainterError(
                f"task {self.task!r} in {', '.join(map(str, self.source.dirs))} has no sample "
                "groups to pair prompts by",
                "encode with groups (e.g. fss1000, pairs --groups folders) or drop --pair-by-group",
            )

    def indices(self, reader: Any, i: int, same: bool) -> list[int] | None:
        """The prompt indices (in ``source``) of query ``i`` of ``reader``, or None to skip it;
        ``same``: ``reader`` reads the source's shards (``i`` is then excluded)."""
        group = reader.group_of(i)
        if self.fixed is not None:
            picks = [int(k) for k in self.fixed.get(group, [])] if group is not None else []
            return None if not picks or (same and i in picks) else picks
        members = self.source.groups(self.task).get(group) if group is not None else None
        if members is None:
            return None
        return group_prompt_indices(members, i if same else None, self.shots, self.seed, i)

    def prompt(self, i: int, size: int) -> Prompt:
        """Source sample ``i`` as a prompt of side ``size``."""
        s = self.source[int(i)]
        if s.get("target") is None:
            raise PainterError(f"sample {s['id']} of {self.task!r} has no target to prompt with")
        discrete = self.source.codec(self.task).discrete
        return make_prompt(
            s["image"],
            s["target"],
            size,
            discrete=discrete,
            target_resize=self.target_resize,
            name=f"{self.task}:{s['id']}",
        )


# --------------------------------------------------------------------------------------------
# The core


@torch.no_grad()
def evaluate(
    model: torch.nn.Module | Predictor,
    reader: Any,
    task: str,
    prompts: Sequence[Prompt],
    limit: int | None = None,
    *,
    batch_size: int = 8,
    ensemble: str = "features",
    metric_variant: str | None = None,
    flip_test: bool = True,
    precision: str = "fp32",
    seg_type: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: dict | None = None,
    pairing: GroupPairing | None = None,
    decode: str = "codec",
    recolor_seed: int | None = None,
    save_to: str | Path | None = None,
) -> dict[str, Any]:
    """Paint the first ``limit`` samples (all when None) of ``task`` in ``reader`` with ``prompts``
    and compute the task's metrics.

    ``save_to``: a folder that receives every scored painting as ``painter predict`` writes it
    (``<k>_<id>_painted.png``, a preview with its prompts, the decoded outputs, and
    ``predictions.json`` listing them with each sample's id); an earlier run's files there go.

    ``prompts``: ``Prompt`` tensors (3, S, S), all of the same side S (the canvas is 2S x S); for
    a panoptic task exactly two: a coco-semseg pair, then a coco-instance pair (``ensemble`` unused).
    ``model``: a ``Painter`` (a ``Predictor`` is built around it, putting it in eval mode) or a
    ready ``Predictor``. ``cache``: a dict reused across calls with the same reader and task
    (e.g. scoring many prompts) to keep decoded samples and query tensors.

    ``pairing``: prompt each query with samples of its own group instead (``prompts`` is then
    unused and may be empty); queries it cannot pair are skipped and counted in the result's
    ``pairing``. ``decode="prompt"``: read segmentation paintings by their prompts' colours
    (``tasks.prompt_colours.repaint_by_prompt``) rather than the codec's palette. A grouped
    one-class foreground task is scored as few-shot segmentation (``fewshot_task``).

    Returns the metric values (``painter_cli.metrics`` names, e.g. ``rmse``/``miou``/``ap``/
    ``psnr``) plus ``metric`` (the headline name), ``higher_is_better``, ``task``, ``kind`` and
    ``images``.
    """
    if pairing is not None:
        sizes = {model.size} if isinstance(model, Predictor) else {model_image_size(model)}
    elif not prompts:
        raise PainterError("evaluate: no prompt given")
    else:
        sizes = {p.size for p in prompts}
    if len(sizes) != 1:
        raise PainterError(f"prompts have different sizes {sorted(sizes)}; use one size")
    size = sizes.pop()
    if decode not in DECODES:
        raise PainterError(f"--decode {decode}: expected one of {', '.join(DECODES)}")
    if isinstance(model, Predictor):
        predictor = model
        if predictor.size != size:
            raise PainterError(
                f"prompts are {size}x{size} but the predictor paints {predictor.size}"
            )
    else:
        predictor = Predictor(
            model, size=size, device=device, precision=precision, seg_type=seg_type
        )
    if ensemble not in ENSEMBLES:
        raise PainterError(f"--ensemble {ensemble}: expected one of {', '.join(ENSEMBLES)}")
    check_batch_size(batch_size)
    task = resolve_task(reader, task)
    codec = reader.codec(task)
    panoptic = codec.kind == "panoptic"
    if panoptic and pairing is not None:
        raise PainterError(f"task {task!r}: a panoptic query is not prompted by its group")
    if panoptic:
        check_panoptic_prompts(len(prompts), task)
    if decode == "prompt":
        _check_prompt_decode(codec, task, [] if pairing is not None else prompts)
    if recolor_seed is not None and decode != "prompt":
        raise PainterError(
            "--recolor repaints the prompts' colours: the painting must be read by them",
            "add --decode prompt",
        )
    grouped = bool(getattr(reader, "has_groups", lambda t: False)(task))
    scorer = _scorer(codec, task, metric_variant, grouped)
    # The flip test swaps COCO's left/right pairs: only for the 17 COCO keypoints.
    flip = flip_test and flip_applies(codec)
    indices = [int(i) for i in reader.indices(task)]
    if limit is not None:
        if limit < 1:
            raise PainterError(f"--limit {limit}: must be >= 1")
        indices = indices[:limit]
    if not indices:
        raise PainterError(f"task {task!r} has no samples in {', '.join(map(str, reader.dirs))}")
    cache = {} if cache is None else cache
    if panoptic:  # no ground truth: say so before any painting
        cache.setdefault(("sample", indices[0]), reader[indices[0]])
        scorer.check(cache[("sample", indices[0])])
    chosen: dict[int, list[int]] = {}
    if pairing is not None:
        same = _same_data(reader, pairing.source)
        for i in indices:
            picks = pairing.indices(reader, i, same)
            if picks is not None:
                chosen[i] = picks
        skipped = [i for i in indices if i not in chosen]
        indices = [i for i in indices if i in chosen]
        if not indices:
            raise PainterError(
                f"no query of task {task!r} has {pairing.shots} other sample(s) of its group "
                f"in {', '.join(map(str, pairing.source.dirs))}",
                "lower --shots, or prompt from shards holding these groups (--prompt-data)",
            )
    saver = _PredictionSaver(Path(save_to), codec) if save_to is not None else None
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), max(1, batch_size))]
    if progress:
        from painter_cli.console import track

        batches = track(batches, f"evaluating {task}", total=len(batches))
    for batch in batches:
        samples, queries = [], []
        for i in batch:
            if ("sample", i) not in cache:
                cache[("sample", i)] = reader[i]
                if grouped:
                    cache[("sample", i)]["group"] = reader.group_of(i)
            sample = cache[("sample", i)]
            if ("query", i, size) not in cache:
                cache[("query", i, size)] = predictor.query(sample["image"])
            samples.append(sample)
            queries.append(cache[("query", i, size)])
        q = torch.stack(queries)
        if panoptic:
            sizes = [s["image"].shape[:2] for s in samples]
            for pair, sample in zip(
                paint_panoptic(predictor, q, prompts, sizes), samples, strict=True
            ):
                if saver is not None:
                    saver.save(pair, sample, prompts)
                scorer.update(pair, sample, None)
            continue
        if pairing is not None:
            own = [[_group_prompt(pairing, cache, k, size) for k in chosen[i]] for i in batch]
        else:
            own = [list(prompts)] * len(batch)
        mappings: list[Any] = [None] * len(batch)
        if recolor_seed is not None:
            done = [_recolour(ps, i, recolor_seed, size) for ps, i in zip(own, batch, strict=True)]
            own, mappings = [d[0] for d in done], [d[1] for d in done]
        if pairing is not None or recolor_seed is not None:
            painted = predictor.paint_each(q, own, ensemble)
            painted_flip = predictor.paint_each(q.flip(-1), own, ensemble) if flip else None
        else:
            painted = predictor.paint(q, prompts, ensemble)
            painted_flip = predictor.paint(q.flip(-1), prompts, ensemble) if flip else None
        for j, sample in enumerate(samples):
            h, w = sample["image"].shape[:2]
            arr = finish(painted[j], h, w, codec.kind)
            arr_f = None if painted_flip is None else finish(painted_flip[j], h, w, codec.kind)
            if decode == "prompt":
                arr = repaint_by_prompt(arr, [p.target_rgb for p in own[j]], codec, mappings[j])
            if saver is not None:
                saver.save(arr, sample, own[j])
            scorer.update(arr, sample, arr_f)
    if saver is not None:
        saver.finish()
    result = scorer.compute()
    headline = M.metric_for_codec(codec)
    result.update(
        metric=headline.name,
        higher_is_better=headline.higher_is_better,
        task=task,
        kind=codec.kind,
    )
    result.setdefault("images", len(indices))
    if pairing is not None:
        result["pairing"] = {
            "by": "group",
            "shots": pairing.shots,
            "seed": pairing.seed,
            "skipped_queries": len(skipped),
            "skipped_groups": len({reader.group_of(i) for i in skipped}),
        }
        if pairing.fixed is not None:
            result["pairing"]["fixed"] = {g: list(map(int, v)) for g, v in pairing.fixed.items()}
    return result


def flip_applies(codec: Any) -> bool:
    """Whether the keypoint flip test applies: it swaps COCO's left/right pairs, so only the 17
    COCO keypoints."""
    return codec.kind == "keypoints" and getattr(codec, "num_keypoints", 17) == 17


class _PredictionSaver:
    """``evaluate(save_to=...)``: each scored painting written as ``painter predict`` writes a
    query's (painted image, preview, decoded outputs), named ``<k>_<sample id>``."""

    def __init__(self, folder: Path, codec: Any):
        from painter_cli.inference.outputs import clear_previous

        check_out_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clear_previous(folder)
        self.folder, self.codec = folder, codec
        self.records: list[dict[str, Any]] = []

    def save(self, painted: Any, sample: dict, prompts: Sequence[Prompt]) -> None:
        from painter_cli.inference.outputs import prompt_panels, write_outputs

        k = len(self.records)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample["id"]))
        pairs = [prompt_panels(p) for p in prompts]
        rec = write_outputs(self.folder, f"{k:05d}_{safe}", painted, sample["image"], pairs,
                            self.codec, k)  # fmt: skip
        self.records.append({"id": str(sample["id"]), **rec})

    def finish(self) -> None:
        write_json(self.folder / "predictions.json", self.records)


def _recolour(prompts: Sequence[Prompt], i: int, seed: int, size: int) -> tuple[list, Any]:
    """Query ``i``'s prompts with their targets repainted through one random colour mapping
    (``recolor.recolor_pair``, drawn from ``(seed, i)``) and that mapping ``(colours, new)``.
    The repainted targets are resized nearest: their colours are exact labels."""
    from painter_cli.tasks.recolor import recolor_pair

    rng = np.random.default_rng([seed, i, 1])  # 1: not the pairing's draw of the same query
    targets, colours, new = recolor_pair([p.target_rgb for p in prompts], rng)
    repainted = [
        make_prompt(p.image_rgb, t, size, target_resize="nearest", name=p.name)
        for p, t in zip(prompts, targets, strict=True)
    ]
    return repainted, (colours, new)


def _group_prompt(pairing: GroupPairing, cache: dict, i: int, size: int) -> Prompt:
    key = ("group-prompt", i, size)
    if key not in cache:
        cache[key] = pairing.prompt(i, size)
    return cache[key]


def _check_prompt_decode(codec: Any, task: str, prompts: Sequence[Prompt]) -> None:
    """``--decode prompt`` needs a segmentation task and prompts whose target colours are known."""
    if codec.kind != "semseg":
        raise PainterError(
            f"--decode prompt: decoding by the prompt's colours applies to segmentation; "
            f"{task!r} is a {codec.kind} task",
            "drop --decode prompt",
        )
    for p in prompts:
        if p.target_rgb is None:
            raise PainterError(
                f"--decode prompt: prompt {p.name or '(tensors)'} has no target image to read "
                "colours from",
                "prompt with an image pair (IMAGE:TARGET or a folder), not prompt tensors",
            )


# --------------------------------------------------------------------------------------------
# The eval run


@dataclass
class EvalSettings:
    """Resolved settings of ``painter eval`` (written into ``metrics.json``)."""

    task: str
    data: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    prompts: list[str] | None = None
    prompt_data: list[str] | None = None
    limit: int | None = None
    out: str | None = None
    batch_size: int = 8
    device: str = "auto"
    precision: str = "fp32"
    size: int | None = None
    ensemble: str = "features"
    metric_variant: str | None = None
    flip_test: bool = True
    # auto: as the checkpoint (``checkpoint.target_resize_rule``), else one of TARGET_RESIZES
    target_resize: str = "auto"
    seg_type: str | None = None
    pair_by_group: bool | None = None
    shots: int = 1
    seed: int = 0
    decode: str = "codec"
    recolor: bool = False
    save_predictions: str | None = None


def run_eval(settings: EvalSettings) -> dict[str, Any]:
    """Run ``painter eval``: returns ``{"metrics": ..., "settings": ...}``, also written to
    ``OUT/metrics.json`` (default ``eval-<task>``).

    Grouped prompting (``pair_by_group``) is on by default when the task's samples carry groups
    and no ``--prompt`` is given: each query is then prompted by ``shots`` other samples of its
    group from ``--prompt-data`` when given, else from the evaluated shards themselves."""
    from painter_cli.shards import ShardReader

    check_batch_size(settings.batch_size)
    check_size_option(settings.size)
    if settings.prompts and settings.prompt_data:
        raise PainterError(
            "--prompt and --prompt-data both given: the prompt comes from one of them",
            "pass either --prompt PAIR or --prompt-data TRAIN_SHARDS",
        )
    if settings.decode not in DECODES:
        raise PainterError(f"--decode {settings.decode}: expected one of {', '.join(DECODES)}")
    if settings.shots < 1:
        raise PainterError(f"--shots {settings.shots}: must be >= 1")
    if settings.pair_by_group and settings.prompts:
        raise PainterError(
            "--pair-by-group and --prompt both given: a grouped query is prompted by its group",
            "drop --prompt (or prompt from other shards with --prompt-data)",
        )
    if settings.prompts and settings.shots > 1:
        raise PainterError(
            f"--shots {settings.shots} draws prompts from shards; with --prompt, repeat --prompt",
            "drop --shots, or use --prompt-data",
        )
    suite = not settings.data
    if suite:  # the synthetic suite's val split, prompted by the bundled pair
        from painter_cli.defaults import suite_data

        data, task = suite_data(settings.task, "val")
        settings = replace(settings, data=data, task=task)
    ckpt = checkpoint_or_default(settings.checkpoint)
    reader = ShardReader(settings.data)
    task = resolve_task(reader, settings.task)
    codec = reader.codec(task)
    grouped = settings.pair_by_group
    if grouped is None:
        grouped = reader.has_groups(task) and not settings.prompts
    bundled_prompt = False
    if suite and not grouped and not settings.prompts and not settings.prompt_data:
        from painter_cli.defaults import default_prompt

        settings = replace(settings, prompts=list(default_prompt(task)))
        bundled_prompt = True
    settings = replace(settings, pair_by_group=grouped)
    # fail early on bad variants
    scorer_check = _scorer(codec, task, settings.metric_variant, reader.has_groups(task))
    out = Path(settings.out or f"eval-{task}")
    check_out_folder(out)
    panoptic = codec.kind == "panoptic"
    loaded: list[Any] = []
    train = None
    # A panoptic task is prompted by a semantic pair then an instance pair (two train tasks).
    prompt_tasks = [task]
    pairing = None
    if grouped:
        source = reader if not settings.prompt_data else ShardReader(settings.prompt_data)
        pairing = GroupPairing(
            source,
            resolve_task(source, task),
            shots=settings.shots,
            seed=settings.seed,
        )
        if panoptic:
            raise PainterError(f"task {task!r}: a panoptic query is not prompted by its group")
    elif settings.prompts:
        loaded = load_prompts(settings.prompts, codec)
        if panoptic:
            check_panoptic_prompts(len(loaded), task)
    elif settings.prompt_data:
        train = ShardReader(settings.prompt_data)
        parts = ("coco-semseg", "coco-instance") if panoptic else (task,)
        prompt_tasks = [resolve_task(train, t) for t in parts]
    else:
        raise PainterError(
            "no --prompt given",
            "pass --prompt PAIR, or --prompt-data TRAIN_SHARDS to use its first pair",
        )
    for p in loaded:  # a tensor prompt fixes the side: --size must agree (before any model work)
        if isinstance(p, Prompt):
            check_prompt_size(p, settings.size, 1)
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device, settings.precision)
    patch = int(model.config.patch_size)
    for p in loaded:  # the side must suit the model's patch size
        if isinstance(p, Prompt):
            check_prompt_size(p, None, patch)
    tensor_sizes = {p.size for p in loaded if isinstance(p, Prompt)}
    size = settings.size
    if size is None:
        size = min(tensor_sizes) if tensor_sizes else default_size(model, codec.kind)
    rule, target_mode = prompt_resize(ckpt, model, settings.target_resize, codec, task)
    if pairing is not None:
        pairing.target_resize = target_mode
        prompts = []
    elif train is not None:
        prompts = [
            p
            for t in prompt_tasks
            for p in prompts_from_shards(
                train,
                t,
                size,
                settings.shots,
                target_resize=target_resample(rule, train.codec(t)),
            )
        ]
    else:
        prompts = [
            p
            if isinstance(p, Prompt)
            else make_prompt(
                p[1],
                p[2],
                size,
                discrete=codec.discrete,
                target_resize=file_target_resize(target_mode, p[3] if len(p) > 3 else None),
                name=p[0],
            )
            for p in loaded
        ]
    queries = reader
    if bundled_prompt:  # never score the bundled prompt's own sample (fgseg: ood sample 0)
        from painter_cli.defaults import suite_queries
        from painter_cli.shards import TaskView

        queries = TaskView(reader, task, suite_queries(reader, task))
    from painter_cli.checkpoint import resolve_seg_type

    seg_type = resolve_seg_type(ckpt, model, settings.seg_type, codec.kind, task)
    predictor = Predictor(
        model, size=size, device=device, precision=settings.precision, seg_type=seg_type
    )
    result = evaluate(
        predictor,
        queries,
        task,
        prompts,
        settings.limit,
        batch_size=settings.batch_size,
        ensemble=settings.ensemble,
        metric_variant=getattr(scorer_check, "variant", settings.metric_variant),
        flip_test=settings.flip_test,
        pairing=pairing,
        decode=settings.decode,
        recolor_seed=settings.seed if settings.recolor else None,
        save_to=settings.save_predictions,
    )
    resolved = asdict(settings)
    resolved.update(
        task=task,
        checkpoint=ckpt,
        size=size,
        prompts=[p.name for p in prompts] if pairing is None else None,
        prompt_data=None if pairing is None else [str(d) for d in pairing.source.dirs],
        codec={"name": codec.name, "params": codec.params()},
        device=str(device),
        out=str(out),
        target_resize=rule,
        prompt_target_resize=target_mode,
        seg_type=seg_type,
    )
    # What was used rather than what was asked: the variant inferred from the task name, and the
    # flip test only for the tasks it applies to (COCO keypoints).
    resolved["metric_variant"] = getattr(scorer_check, "variant", None)
    resolved["flip_test"] = bool(settings.flip_test and flip_applies(codec))
    doc = {"metrics": _json_safe(result), "settings": resolved}
    write_json(out / "metrics.json", doc)
    return doc


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python numbers, so ``metrics.json`` is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# Per-class rows in ``scalar_metrics`` up to this many classes (ADE20K's 150 stay in the JSON).
TABLE_CLASSES = 20


def scalar_metrics(result: dict[str, Any]) -> list[tuple[str, float]]:
    """The numeric metrics of an ``evaluate`` result, for a table (labels left out), then the
    per-class IoU (``iou class C``) of up to ``TABLE_CLASSES`` classes."""
    skip = {"higher_is_better", "images", "skipped", "valid_pixels", "n", "n_th", "n_st", "classes"}
    rows = [
        (k, float(v))
        for k, v in result.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in skip
    ]
    per_class = result.get("class_iou")
    if not isinstance(per_class, dict):
        ious = result.get("iou")
        classes = result.get("iou_classes") or range(len(ious or []))
        per_class = dict(zip(classes, ious, strict=True)) if isinstance(ious, list) else {}
    if 0 < len(per_class) <= TABLE_CLASSES:
        rows += [
            (f"iou class {c}", math.nan if v is None else float(v)) for c, v in per_class.items()
        ]
    return rows
