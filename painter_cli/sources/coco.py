"""COCO sources: panoptic annotations -> 133-class semantic and class-agnostic instance targets
(and the panoptic ground truth for PQ), and person keypoints -> top-down 192x256 crops.

All three read the standard COCO tree (``{train,val}2017/``, ``annotations/``) under ``root``.
Targets are painted by the task codecs (``painter_cli.tasks``); the geometry (instance filtering,
the offline instance augmentation, the keypoint crop affine) follows the official data generation
described in ``official-data-and-evaluation.md`` sections 2-4.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.shards import image_size
from painter_cli.sources.base import Sample, SkipItem, Source, read_image

log = logging.getLogger(__name__)

KEYPOINT_CROP = (192, 256)  # (W, H) of a top-down keypoint crop
KEYPOINT_PADDING = 1.25
_PIXEL_STD = 200.0  # mmpose's unit for ``scale``: box size in pixels / 200


# --------------------------------------------------------------------------------------- helpers
def _as_rgb(image: bytes | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of what ``read_image`` returned."""
    if isinstance(image, np.ndarray):
        return image
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        return np.asarray(im.convert("RGB"))


def _read_panoptic_ids(path: Path) -> np.ndarray:
    """Segment id map (H, W) int64 of a panoptic PNG: id = R + 256*G + 256^2*B (0 = void)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    except (OSError, SyntaxError, ValueError) as exc:
        raise SkipItem(path, f"unreadable panoptic PNG ({exc})") from None
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _rng(seed: int, key: str, *more: int) -> np.random.Generator:
    """A generator that depends only on (seed, key, ...), not on the order workers run in."""
    return np.random.default_rng([seed, zlib.crc32(key.encode()), *more])


def _require(path: Path, what: str, hint: str) -> None:
    """``PainterError`` naming ``path`` when it is missing; ``hint`` is one line (the full layout
    is in ``painter encode --list``)."""
    if not path.exists():
        raise PainterError(f"{path}: {what} not found", hint=hint)


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise PainterError(f"{path}: cannot read JSON ({exc})") from None


# ----------------------------------------------------------------------------- panoptic (shared)
@dataclass(frozen=True)
class _PanopticEntry:
    image: str  # image file name under {split}2017/
    png: str  # panoptic PNG file name under annotations/panoptic_{split}2017/
    height: int
    width: int
    seg_ids: np.ndarray  # (S,) int64 segment ids, segments_info order
    label: np.ndarray  # (S,) uint8 semantic label 1..133 (panopticapi category order + 1)
    thing: np.ndarray  # (S,) bool: a thing category
    iscrowd: np.ndarray  # (S,) bool
    valid: np.ndarray  # (S,) bool: area > 0 and bbox w, h >= 1 (mmdet's instance filter)


_PANOPTIC_LAYOUT = """\
ROOT/
  {split}2017/%012d.jpg                        images (split = train | val)
  annotations/panoptic_{split}2017.json        panoptic JSON (images, annotations, categories)
  annotations/panoptic_{split}2017/%012d.png   RGB segment ids: id = R + 256*G + 256^2*B, 0 = void"""


class _CocoPanopticBase(Source):
    splits = ("train", "val")
    layout = _PANOPTIC_LAYOUT
    _option_spec: dict[str, tuple[type, Any]] = {}

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        self.opts = self.checked_options(self._option_spec)
        self.image_dir = self.root / f"{split}2017"
        self.json_path = self.root / "annotations" / f"panoptic_{split}2017.json"
        self.png_dir = self.root / "annotations" / f"panoptic_{split}2017"
        hint = (
            f"expected ROOT/{split}2017/*.jpg, ROOT/annotations/panoptic_{split}2017.json and "
            f"ROOT/annotations/panoptic_{split}2017/*.png"
        )
        _require(self.root, "dataset root", hint)
        _require(self.image_dir, "image folder", hint)
        _require(self.json_path, "panoptic JSON", hint)
        _require(self.png_dir, "panoptic PNG folder", hint)
        self._entries: dict[str, tuple[str, str, int, int, int, int]] | None = None
        self._segs: dict[str, np.ndarray] = {}

    def _index(self) -> dict[str, tuple[str, str, int, int, int, int]]:
        """key -> (image file, PNG file, H, W, first segment, end segment), sorted by key; the
        segments of all images live in flat arrays (``self._segs``), which parse and pickle fast."""
        if self._entries is not None:
            return self._entries
        from painter_cli.tasks.semantic import coco_categories

        data = _load_json(self.json_path)
        # Category id -> (1-based semantic index, isthing), in the bundled panopticapi order.
        table = {int(c["id"]): (i + 1, bool(c["isthing"])) for i, c in enumerate(coco_categories())}
        cols: dict[str, list] = {"ids": [], "label": [], "thing": [], "crowd": [], "valid": []}
        entries = {}
        try:
            images = {int(im["id"]): im for im in data["images"]}
            for ann in data["annotations"]:
                im = images[int(ann["image_id"])]
                start = len(cols["ids"])
                for seg in ann["segments_info"]:
                    cat = table.get(int(seg["category_id"]))
                    if cat is None:
                        raise PainterError(
                            f"{self.json_path}: image {ann['image_id']} has category id "
                            f"{seg['category_id']}, not one of the 133 COCO panoptic categories"
                        )
                    x, y, w, h = seg["bbox"]
                    cols["ids"].append(int(seg["id"]))
                    cols["label"].append(cat[0])
                    cols["thing"].append(cat[1])
                    cols["crowd"].append(bool(seg.get("iscrowd", 0)))
                    cols["valid"].append(seg.get("area", 1) > 0 and w >= 1 and h >= 1)
                key = Path(ann["file_name"]).stem
                entries[key] = (
                    str(im["file_name"]),
                    str(ann["file_name"]),
                    int(im["height"]),
                    int(im["width"]),
                    start,
                    len(cols["ids"]),
                )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise PainterError(
                f"{self.json_path}: not a COCO panoptic JSON (bad or missing {exc})"
            ) from None
        self._segs = {
            "ids": np.array(cols["ids"], dtype=np.int64),
            "label": np.array(cols["label"], dtype=np.uint8),
            "thing": np.array(cols["thing"], dtype=bool),
            "crowd": np.array(cols["crowd"], dtype=bool),
            "valid": np.array(cols["valid"], dtype=bool),
        }
        self._entries = dict(sorted(entries.items()))
        return self._entries

    def _entry(self, key: str) -> _PanopticEntry:
        try:
            image, png, height, width, a, b = self._index()[key]
        except KeyError:
            raise PainterError(f"{self.name}: unknown key {key!r}") from None
        seg = {name: values[a:b] for name, values in self._segs.items()}
        return _PanopticEntry(
            image=image,
            png=png,
            height=height,
            width=width,
            seg_ids=seg["ids"],
            label=seg["label"],
            thing=seg["thing"],
            iscrowd=seg["crowd"],
            valid=seg["valid"],
        )

    def _read_pair(self, entry: _PanopticEntry) -> tuple[bytes | np.ndarray, np.ndarray]:
        """(image, segment id map) of one entry, sizes checked against each other."""
        image = read_image(self.image_dir / entry.image)
        size = image_size(image)
        png = self.png_dir / entry.png
        ids = _read_panoptic_ids(png)
        if ids.shape != size:
            raise PainterError(
                f"{png}: size {ids.shape[1]}x{ids.shape[0]} does not match image "
                f"{self.image_dir / entry.image} ({size[1]}x{size[0]})"
            )
        return image, ids


def _paint_ids(ids: np.ndarray, seg_ids: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    """Maps a segment id map to ``values`` (segment ids absent from ``seg_ids`` -> 0)."""
    out = np.zeros(ids.shape, dtype=dtype)
    if len(seg_ids) == 0:
        return out
    order = np.argsort(seg_ids)
    sorted_ids = seg_ids[order]
    pos = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    hit = sorted_ids[pos] == ids
    out[hit] = values[order][pos[hit]]
    return out


# --------------------------------------------------------------------------------------- semseg
class CocoSemsegSource(_CocoPanopticBase):
    """COCO panoptic -> 133-class semantic segmentation targets (task ``coco-semseg``).

    One sample per panoptic annotation with at least one segment, at the original size. Every
    segment, crowd included, is painted with its category's index in the panopticapi category list
    (label 1..133; void = 0 = black), as the official ``gen_color_coco_panoptic_segm.py`` does.
    The image is stored as the original file's bytes. No options.
    """

    name = "coco-semseg"
    task = "coco-semseg"
    codec = "coco-semseg"

    def keys(self) -> list[str]:
        # The official generator skips images with an empty segments_info (no target file).
        return [k for k, e in self._index().items() if e[5] > e[4]]

    def load(self, key: str) -> list[Sample]:
        entry = self._entry(key)
        image, ids = self._read_pair(entry)
        label = _paint_ids(ids, entry.seg_ids, entry.label, np.uint8)
        return [Sample(id=key, image=image, target=self.target_codec().encode(label))]


# ------------------------------------------------------------------------------------- panoptic
class CocoPanopticSource(_CocoPanopticBase):
    """COCO panoptic ground truth for PQ evaluation (task ``coco-panoptic``, mostly ``val``).

    One sample per panoptic annotation (images with an empty segments_info included: panopticapi
    scores them too), at the original size. ``target`` is the ``coco-semseg`` painted target (as
    ``coco-semseg`` paints it), so the shard stays a normal (image, target) shard; ``extras`` hold
    the ground truth exactly: ``panoptic_ids`` (H, W) int32 segment ids of the PNG (0 = void; an id
    painted but absent from segments_info is void too, as in the semantic target) and ``segments``
    (S, 4) int64 rows ``(id, category_id, iscrowd, isthing)`` in segments_info order. The codec
    ``coco-panoptic`` merges the painted semantic and instance outputs at evaluation. No options.
    """

    name = "coco-panoptic"
    task = "coco-panoptic"
    codec = "coco-panoptic"

    def keys(self) -> list[str]:
        return list(self._index())

    def load(self, key: str) -> list[Sample]:
        from painter_cli.tasks.semantic import coco_categories

        entry = self._entry(key)
        image, ids = self._read_pair(entry)
        label = _paint_ids(ids, entry.seg_ids, entry.label, np.uint8)
        target = self.target_codec().semantic.encode(label)
        cat_ids = np.array([int(c["id"]) for c in coco_categories()], np.int64)
        segments = np.stack(
            [
                entry.seg_ids,
                cat_ids[entry.label.astype(np.int64) - 1],
                entry.iscrowd.astype(np.int64),
                entry.thing.astype(np.int64),
            ],
            axis=1,
        ).reshape(-1, 4)
        panoptic_ids = np.where(np.isin(ids, entry.seg_ids), ids, 0).astype(np.int32)
        extras = {"panoptic_ids": panoptic_ids, "segments": segments}
        return [Sample(id=key, image=image, target=target, extras=extras)]


# ------------------------------------------------------------------------------------- instance
class CocoInstanceSource(_CocoPanopticBase):
    """COCO panoptic -> class-agnostic instance targets (task ``coco-instance``).

    Instances are the non-crowd *thing* segments with area > 0 and a bbox of at least 1x1 (mmdet's
    panoptic filter); stuff and crowd stay background. The codec colours each instance by the mass
    centre of its mask on the painted canvas. In ``train``, images with a side under 32 px are
    dropped (mmdet ``filter_empty_gt``); an image or copy left without any instance gives no sample.

    Per image: the original (image file bytes, target at the original size; the official ``org``
    copy is the same picture resized to 1024x1024, which the training resize makes equivalent)
    plus ``copies`` augmented copies, the official offline augmentation (``train_aug{k}``):
    horizontal flip with p=0.5, aspect-distorting resize to a square of ``int(size*r)`` px with
    r ~ U(0.7, 2.0) (image bilinear, ids nearest), a random ``size`` x ``size`` crop, and zero
    padding (bottom/right) to ``size`` x ``size``. The official set used 30 such copies plus an
    unaugmented and a flipped one (``copies=31`` is the nearest equivalent).

    Options: ``copies`` (int, default 0), ``seed`` (int, default 0; copy k of an image depends
    only on (seed, image, k)), ``size`` (int, default 1024: the augmented canvas side).
    Sample ids: ``<image id>`` and ``<image id>_aug<k>``.
    """

    name = "coco-instance"
    task = "coco-instance"
    codec = "coco-instance"
    _option_spec = {"copies": (int, 0), "seed": (int, 0), "size": (int, 1024)}
    option_help = {
        "copies": "augmented copies per image, besides the original (official: 30 + a flip)",
        "seed": "seed of the augmentation (copy k depends only on seed, image, k)",
        "size": "side of the augmented square canvas in px (official 1024)",
    }

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        if self.opts["copies"] < 0 or self.opts["size"] < 32:
            raise PainterError(f"{self.name}: copies must be >= 0 and size >= 32")

    def _kept(self, entry: _PanopticEntry) -> np.ndarray:
        return entry.thing & ~entry.iscrowd & entry.valid

    def keys(self) -> list[str]:
        index = self._index()
        seg = self._segs
        kept = seg["thing"] & ~seg["crowd"] & seg["valid"]
        # Kept instances before each segment position: an image has some iff the count grows.
        before = np.concatenate([[0], np.cumsum(kept)])
        out = []
        for key, (_, _, height, width, a, b) in index.items():
            if before[b] == before[a]:
                continue
            if self.split == "train" and min(height, width) < 32:
                continue
            out.append(key)
        return out

    def instance_map(self, key: str) -> tuple[bytes | np.ndarray, np.ndarray]:
        """(image, instance id map (H, W) int32): kept instances numbered 1.. in segments_info
        order, 0 = background."""
        entry = self._entry(key)
        image, ids = self._read_pair(entry)
        kept = self._kept(entry)
        numbers = np.zeros(len(entry.seg_ids), dtype=np.int32)
        numbers[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
        return image, _paint_ids(ids, entry.seg_ids, numbers, np.int32)

    def load(self, key: str) -> list[Sample]:
        image, inst = self.instance_map(key)
        codec = self.target_codec()
        samples = []
        if inst.any():
            samples.append(Sample(id=key, image=image, target=codec.encode(inst)))
        if self.opts["copies"]:
            rgb = _as_rgb(image)
            for k in range(self.opts["copies"]):
                rng = _rng(self.opts["seed"], key, k)
                aug_img, aug_inst = augment_instance(rgb, inst, rng, self.opts["size"])
                if aug_inst.any():
                    samples.append(
                        Sample(id=f"{key}_aug{k}", image=aug_img, target=codec.encode(aug_inst))
                    )
        return samples


def _nearest_resize(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (pixel-centre sampling)."""
    h, w = a.shape[:2]
    rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64), w - 1)
    return a[rows[:, None], cols[None, :]]


def augment_instance(
    image: np.ndarray, inst: np.ndarray, rng: np.random.Generator, size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """One offline-augmented instance copy (the official ``train_aug`` pipeline).

    ``image``: (H, W, 3) uint8; ``inst``: (H, W) int instance ids. Returns ``(image, inst)`` of
    shape (size, size[, 3]): flip p=0.5, square resize to int(size*r) with r ~ U(0.7, 2.0), random
    size x size crop, zero padding at the bottom/right.
    """
    from PIL import Image

    if rng.random() < 0.5:
        image, inst = image[:, ::-1], inst[:, ::-1]
    side = int(size * rng.uniform(0.7, 2.0))
    img = np.ascontiguousarray(image)
    img = np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR))
    ids = _nearest_resize(inst, side, side)
    top = int(rng.integers(0, max(side - size, 0) + 1))
    left = int(rng.integers(0, max(side - size, 0) + 1))
    img = img[top : top + size, left : left + size]
    ids = ids[top : top + size, left : left + size]
    out_img = np.zeros((size, size, 3), dtype=np.uint8)
    out_ids = np.zeros((size, size), dtype=inst.dtype)
    out_img[: img.shape[0], : img.shape[1]] = img
    out_ids[: ids.shape[0], : ids.shape[1]] = ids
    return out_img, out_ids


# ------------------------------------------------------------------------------------ keypoints
_KEYPOINTS_LAYOUT = """\
ROOT/
  {split}2017/%012d.jpg                           images (split = train | val)
  annotations/person_keypoints_{split}2017.json   COCO keypoint annotations (17 keypoints)
  boxes=PATH (option, testing)                    detections: [{image_id, category_id: 1, bbox, score}]"""


_DETECTIONS_HINT = (
    '--boxes takes a detection-results JSON: [{"image_id": 139, "category_id": 1, '
    '"bbox": [x, y, w, h], "score": 0.9}, ...]'
)


def _json_type(value: Any) -> str:
    """``an object``, ``a list``, ... : what a parsed JSON value is, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
    )


def _check_detection(det: Any, where: str) -> tuple[int, int, tuple[float, ...], float]:
    """``(image_id, category_id, (x, y, w, h), score)`` of one detection-results entry, or a
    ``PainterError`` naming the entry (``where``) and what is wrong with it."""

    def bad(what: str) -> PainterError:
        return PainterError(f"{where}: {what}", hint=_DETECTIONS_HINT)

    if not isinstance(det, dict):
        raise bad(f"expected an object, got {_json_type(det)}")
    for key in ("image_id", "bbox"):
        if key not in det:
            raise bad(f"missing {key!r}")
    img_id, category = det["image_id"], det.get("category_id", 1)
    for key, value in (("image_id", img_id), ("category_id", category)):
        if not _number(value) or int(value) != value:
            raise bad(f"{key} {value!r} is not an integer")
    box = det["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_number(v) for v in box):
        raise bad(f"bbox {box!r} is not [x, y, w, h] (4 numbers)")
    if box[2] <= 0 or box[3] <= 0:
        raise bad(f"bbox {box!r} has no area (w and h must be > 0)")
    score = det.get("score", 1.0)
    if not _number(score):
        raise bad(f"score {score!r} is not a number")
    return int(img_id), int(category), tuple(float(v) for v in box), float(score)


def box_center_scale(box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """mmpose ``bbox_xywh2cs`` with aspect 192/256 and padding 1.25.

    Returns ``(center (2,), scale (2,))`` float32; ``scale`` is the padded box (w, h) / 200.
    """
    x, y, w, h = (float(v) for v in box)
    aspect = KEYPOINT_CROP[0] / KEYPOINT_CROP[1]
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    scale = np.array([w, h], dtype=np.float32) / _PIXEL_STD * KEYPOINT_PADDING
    return center, scale.astype(np.float32)


def crop_affine(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(2, 3) float64 image -> crop affine of mmpose's ``get_affine_transform`` (rotation 0).

    The box centre maps to the crop centre (96, 128) and the box width to 192 px; the inverse maps
    crop coordinates back to the image.
    """
    s = KEYPOINT_CROP[0] / (float(scale[0]) * _PIXEL_STD)
    cx, cy = float(center[0]), float(center[1])
    return np.array(
        [[s, 0.0, KEYPOINT_CROP[0] * 0.5 - s * cx], [0.0, s, KEYPOINT_CROP[1] * 0.5 - s * cy]]
    )


def warp_affine(image: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Bilinear warp with a zero border, cv2 ``warpAffine`` semantics (pixel centres at integers).

    ``image``: (H, W, C) uint8; ``matrix``: (2, 3) source -> destination. Returns (out_h, out_w, C).
    """
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    out = np.zeros((out_h, out_w, image.shape[2]), dtype=np.float32)
    for dy, dx, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = src[yy.clip(0, h - 1), xx.clip(0, w - 1)] * ok[..., None]
        out += vals * weight
    return np.rint(out).clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Person:
    bbox_id: int
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    score: float
    keypoints: tuple[float, ...] | None  # 51 values x, y, v (ground truth) or None (detections)
    area: float = 0.0  # ground-truth segment area in image px^2 (OKS scale)


class CocoKeypointsSource(Source):
    """COCO person keypoints -> top-down 192x256 crops (task ``coco-keypoints``).

    Training (no ``boxes``): one crop per non-crowd person with ``num_keypoints > 0``, around its
    ground-truth box clipped to the image (mmpose's filter), enlarged to aspect 192/256 and padded
    by 1.25; ``bbox_id`` restarts at 0 in every image. A crop in which no keypoint is drawn gives no
    sample. Testing (``boxes=PATH``, a detection-results JSON such as
    ``COCO_val2017_detections_AP_H_56_person.json``): one image-only crop (target None) per
    ``category_id == 1`` detection; ``bbox_id`` is the running index over the file.

    The crop is a bilinear affine warp (cv2 semantics, zero border). ``extras``: ``center`` (2,)
    and ``scale`` (2,) float32 (mmpose units: padded box size / 200), ``affine`` (2, 3) float64
    image -> crop (invert it to map predictions back), ``image_id`` and ``bbox_id`` int64,
    ``score`` float32 (1 for ground truth) and, with ground truth, ``keypoints`` (17, 3) float32
    crop coordinates x, y and the visibility flag, and ``area`` float32, the annotation's area
    scaled to crop pixels (the OKS scale).

    Options: ``boxes`` (path). Sample ids: ``<%012d image id>_box<bbox_id>``.
    """

    name = "coco-keypoints"
    layout = _KEYPOINTS_LAYOUT
    option_help = {"boxes": "detection-results JSON: image-only test crops around its person boxes"}
    splits = ("train", "val")
    task = "coco-keypoints"
    codec = "coco-keypoints"

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        self.opts = self.checked_options({"boxes": (str, None)})
        self.image_dir = self.root / f"{split}2017"
        self.json_path = self.root / "annotations" / f"person_keypoints_{split}2017.json"
        hint = (
            f"expected ROOT/{split}2017/*.jpg and "
            f"ROOT/annotations/person_keypoints_{split}2017.json"
        )
        _require(self.root, "dataset root", hint)
        _require(self.image_dir, "image folder", hint)
        _require(self.json_path, "keypoint annotation JSON", hint)
        self.boxes = Path(self.opts["boxes"]) if self.opts["boxes"] else None
        if self.boxes is not None:
            _require(self.boxes, "detection-results JSON (--boxes)", _DETECTIONS_HINT)
        self._people: dict[str, tuple[int, str, list[_Person]]] | None = None

    def _index(self) -> dict[str, tuple[int, str, list[_Person]]]:
        """key -> (image id, image file name, people) for every image with at least one crop."""
        if self._people is not None:
            return self._people
        data = _load_json(self.json_path)
        try:
            images = {int(im["id"]): im for im in data["images"]}
            people: dict[int, list[_Person]] = {}
            if self.boxes is None:
                for ann in data["annotations"]:
                    person = self._gt_person(ann, images[int(ann["image_id"])], people)
                    if person is not None:
                        people.setdefault(int(ann["image_id"]), []).append(person)
            else:
                people = self._detections(images)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise PainterError(
                f"{self.json_path}: not a COCO keypoint JSON (bad or missing {exc})"
            ) from None
        self._people = {
            f"{img_id:012d}": (img_id, images[img_id]["file_name"], ps)
            for img_id, ps in sorted(people.items())
        }
        return self._people

    @staticmethod
    def _gt_person(ann: dict, image: dict, people: dict[int, list[_Person]]) -> _Person | None:
        if ann.get("iscrowd", 0) or "keypoints" not in ann:
            return None
        if max(ann["keypoints"]) <= 0 or ann.get("num_keypoints", 1) == 0:
            return None
        # mmpose/xtcocotools box sanitising: clip to the image, keep positive areas only.
        x, y, w, h = (float(v) for v in ann["bbox"])
        x1, y1 = max(0.0, x), max(0.0, y)
        x2 = min(float(image["width"]) - 1, x1 + max(0.0, w - 1))
        y2 = min(float(image["height"]) - 1, y1 + max(0.0, h - 1))
        if not (ann.get("area", 1) > 0 and x2 > x1 and y2 > y1):
            return None
        if len(ann["keypoints"]) != 51:
            raise PainterError(f"annotation {ann.get('id')}: expected 17 keypoints (51 values)")
        bbox_id = len(people.get(int(ann["image_id"]), []))
        box = (x1, y1, x2 - x1, y2 - y1)
        area = float(ann.get("area", box[2] * box[3]))
        return _Person(bbox_id, box, 1.0, tuple(ann["keypoints"]), area)

    def _detections(self, images: dict[int, dict]) -> dict[int, list[_Person]]:
        dets = _load_json(self.boxes)
        if not isinstance(dets, list):
            raise PainterError(
                f"{self.boxes}: expected a JSON list of detections, got {_json_type(dets)}",
                hint=_DETECTIONS_HINT,
            )
        people: dict[int, list[_Person]] = {}
        bbox_id = 0
        for i, det in enumerate(dets):
            img_id, category, box, score = _check_detection(det, f"{self.boxes}: entry {i}")
            if category != 1:
                continue
            if img_id not in images:
                raise PainterError(
                    f"{self.boxes}: entry {i}: image id {img_id} is not in {self.json_path}",
                    hint="use the detections of the same split",
                )
            people.setdefault(img_id, []).append(_Person(bbox_id, box, score, None))
            bbox_id += 1
        return people

    def keys(self) -> list[str]:
        return list(self._index())

    def load(self, key: str) -> list[Sample]:
        try:
            img_id, file_name, people = self._index()[key]
        except KeyError:
            raise PainterError(f"{self.name}: unknown key {key!r}") from None
        rgb = read_image(self.image_dir / file_name, keep_jpeg=False)
        samples = []
        for person in people:
            center, scale = box_center_scale(person.box)
            affine = crop_affine(center, scale)
            crop = warp_affine(rgb, affine, *KEYPOINT_CROP)
            extras = {
                "center": center,
                "scale": scale,
                "affine": affine,
                "image_id": np.array(img_id, dtype=np.int64),
                "bbox_id": np.array(person.bbox_id, dtype=np.int64),
                "score": np.array(person.score, dtype=np.float32),
            }
            target = None
            if person.keypoints is not None:
                kp = np.asarray(person.keypoints, dtype=np.float64).reshape(17, 3)
                xy = kp[:, :2] @ affine[:, :2].T + affine[:, 2]
                joints = np.concatenate([xy, kp[:, 2:]], axis=1).astype(np.float32)
                target = self.target_codec().encode(joints)
                if not target.any():  # no keypoint drawn inside the crop: not a training pair
                    continue
                extras["keypoints"] = joints
                extras["area"] = np.array(person.area * affine[0, 0] ** 2, dtype=np.float32)
            samples.append(
                Sample(id=f"{key}_box{person.bbox_id}", image=crop, target=target, extras=extras)
            )
        return samples
