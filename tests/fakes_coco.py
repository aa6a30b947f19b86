"""A tiny fake COCO tree in the exact official layout, with the labels it encodes.

``write_coco(root, split)`` writes ``{split}2017/%012d.jpg``, ``annotations/panoptic_{split}2017.json``
+ ``annotations/panoptic_{split}2017/%012d.png`` (ids as R + 256*G + 256^2*B) and
``annotations/person_keypoints_{split}2017.json``, plus a detection-results JSON, and returns what
they contain: the semantic label map (0 = void, 1..133), the instance id map and the panoptic
ground truth (segment ids, listed segments) of every image, computed here from the rectangles
drawn, never by the code under test. ``PANOPTIC_IMAGES`` (``write_coco(root, "val",
PANOPTIC_IMAGES)``) are large enough for their stuff to pass the 8192 px panoptic merge threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image


def coco_category_list() -> list[dict]:
    text = resources.files("painter_cli").joinpath("data/panoptic_coco_categories.json").read_text()
    return json.loads(text)


@dataclass
class Seg:
    seg_id: int
    category_id: int
    rect: tuple[int, int, int, int]  # rows r0:r1, cols c0:c1
    iscrowd: int = 0
    area: int | None = None  # None: the true pixel area


@dataclass
class FakeImage:
    image_id: int
    height: int
    width: int
    segs: list[Seg]
    stray: tuple[int, tuple[int, int, int, int]] | None = None  # an id painted but not listed


# Category ids used: person 1 (index 0), car 3 (index 2, crowd), dog 18 (index 16), bottle 44
# (index 39), banner 92 (index 80, stuff), rug-merged 200 (index 132, stuff).
IMAGES = [
    FakeImage(
        139,
        64,
        80,
        [
            Seg(1 + 256 * 7 + 65536 * 3, 1, (4, 28, 4, 30)),  # person: instance 1
            Seg(5_000_001, 3, (4, 20, 50, 76), iscrowd=1),  # crowd car: semantic only
            Seg(92 * 7, 92, (44, 64, 0, 80)),  # banner (stuff)
            Seg(16_777_000, 18, (30, 42, 40, 70)),  # dog: instance 2
            Seg(4242, 44, (20, 26, 34, 44), area=0),  # bottle with area 0: semantic only
        ],
        stray=(777, (56, 60, 0, 10)),  # painted in the PNG, absent from segments_info -> void
    ),
    FakeImage(285, 48, 56, [Seg(300, 200, (0, 16, 0, 56)), Seg(301, 1, (20, 44, 10, 30))]),
    FakeImage(632, 40, 40, []),  # empty segments_info: no semantic target, no instance
    FakeImage(724, 24, 60, [Seg(11, 1, (2, 20, 5, 25))]),  # side < 32: dropped for train instances
    FakeImage(776, 40, 48, [Seg(12, 92, (0, 40, 0, 48))]),  # stuff only: no instance
]

# 112 x 112 = 12544 px: the stuff left around the things is over 8192 px. Later rectangles paint
# over earlier ones. Image 1000: banner stuff, a person, a dog and a crowd car (ignored by PQ);
# image 1001: two persons on rug-merged stuff.
PANOPTIC_IMAGES = [
    FakeImage(
        1000,
        112,
        112,
        [
            Seg(92 * 7, 92, (0, 112, 0, 112)),
            Seg(1 + 256 * 7, 1, (10, 50, 10, 40)),
            Seg(3_000_003, 18, (60, 100, 60, 100)),
            Seg(5_000_001, 3, (70, 100, 10, 40), iscrowd=1),
        ],
    ),
    FakeImage(
        1001,
        112,
        112,
        [
            Seg(300, 200, (0, 112, 0, 112)),
            Seg(301, 1, (5, 45, 5, 45)),
            Seg(302, 1, (60, 100, 50, 100)),
        ],
    ),
]


@dataclass
class CocoTruth:
    root: Path
    split: str
    semantic: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (H, W) 0..133
    instances: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (H, W) 0..n
    images: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (H, W, 3) as written
    # Panoptic ground truth: key -> (H, W) segment ids (unlisted stray ids -> 0 = void) and
    # key -> (S, 4) int64 (id, category_id, iscrowd, isthing) in segments_info order.
    panoptic: dict[str, np.ndarray] = field(default_factory=dict)
    segments: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: Path | None = None


def gradient_image(h: int, w: int) -> np.ndarray:
    """R = 3x, G = 3y, B = 128: smooth (JPEG keeps it within a few levels) and position-coded."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([3 * xs, 3 * ys, np.full_like(xs, 128)], -1).clip(0, 255).astype(np.uint8)


def _ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)


# Keypoint annotations: image id -> list of (bbox, keypoints {k: (x, y, v)}, iscrowd, num_keypoints).
PEOPLE = {
    139: [
        ([10, 20, 30, 40], {0: (25, 40, 2), 1: (10, 20, 2), 5: (31, 50, 1)}, 0, 3),
        ([0, 0, 20, 20], {0: (5, 5, 2)}, 1, 1),  # crowd: dropped
        ([30, 30, 10, 10], {}, 0, 0),  # no keypoints: dropped
        ([50, 5, 20, 20], {0: (60, 15, 2), 16: (55, 20, 2)}, 0, 2),
    ],
    285: [([40, 30, 30, 30], {0: (47, 38, 2)}, 0, 1)],  # box clipped to the image
}

DETECTIONS = [
    {"image_id": 285, "category_id": 1, "bbox": [40.0, 30.0, 10.0, 10.0], "score": 0.9},
    {"image_id": 139, "category_id": 2, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.8},  # not a person
    {"image_id": 139, "category_id": 1, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.7},
    {"image_id": 139, "category_id": 1, "bbox": [50.0, 5.0, 20.0, 20.0], "score": 0.6},
]


def write_coco(
    root: Path, split: str = "train", fake_images: list[FakeImage] | None = None
) -> CocoTruth:
    cats = coco_category_list()
    index = {c["id"]: i for i, c in enumerate(cats)}
    things = {c["id"] for c in cats if c["isthing"]}
    truth = CocoTruth(root=root, split=split)
    img_dir = root / f"{split}2017"
    png_dir = root / "annotations" / f"panoptic_{split}2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    fake_images = IMAGES if fake_images is None else fake_images
    for im in fake_images:
        key = f"{im.image_id:012d}"
        ids = np.zeros((im.height, im.width), np.int64)
        sem = np.zeros((im.height, im.width), np.uint8)
        inst = np.zeros((im.height, im.width), np.int32)
        infos = []
        rows = []
        n_inst = 0
        for s in im.segs:
            r0, r1, c0, c1 = s.rect
            ids[r0:r1, c0:c1] = s.seg_id
            sem[r0:r1, c0:c1] = index[s.category_id] + 1
            area = (r1 - r0) * (c1 - c0) if s.area is None else s.area
            if s.category_id in things and not s.iscrowd and area > 0:
                n_inst += 1
                inst[r0:r1, c0:c1] = n_inst
            rows.append((s.seg_id, s.category_id, s.iscrowd, int(s.category_id in things)))
            infos.append(
                {
                    "id": s.seg_id,
                    "category_id": s.category_id,
                    "iscrowd": s.iscrowd,
                    "bbox": [c0, r0, c1 - c0, r1 - r0],
                    "area": area,
                }
            )
        truth.panoptic[key] = ids.astype(np.int32)
        truth.segments[key] = np.array(rows, np.int64).reshape(-1, 4)
        if im.stray:
            r0, r1, c0, c1 = im.stray[1]
            ids[r0:r1, c0:c1] = im.stray[0]
            sem[r0:r1, c0:c1] = 0
            inst[r0:r1, c0:c1] = 0
            truth.panoptic[key][r0:r1, c0:c1] = 0  # an unlisted id is void
        rgb = gradient_image(im.height, im.width)
        Image.fromarray(rgb).save(img_dir / f"{key}.jpg", quality=95)
        Image.fromarray(_ids_to_rgb(ids)).save(png_dir / f"{key}.png")
        images.append(
            {"id": im.image_id, "file_name": f"{key}.jpg", "height": im.height, "width": im.width}
        )
        annotations.append(
            {"image_id": im.image_id, "file_name": f"{key}.png", "segments_info": infos}
        )
        truth.semantic[key] = sem
        truth.instances[key] = inst
        truth.images[key] = rgb
    (root / "annotations" / f"panoptic_{split}2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    kp_anns = []
    present = {im.image_id for im in fake_images}
    for image_id, people in PEOPLE.items():
        if image_id not in present:
            continue
        for bbox, points, iscrowd, num in people:
            flat = [0.0] * 51
            for k, (x, y, v) in points.items():
                flat[3 * k : 3 * k + 3] = [x, y, v]
            kp_anns.append(
                {
                    "id": len(kp_anns) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": iscrowd,
                    "num_keypoints": num,
                    "keypoints": flat,
                }
            )
    person_cat = [{"id": 1, "name": "person", "supercategory": "person"}]
    (root / "annotations" / f"person_keypoints_{split}2017.json").write_text(
        json.dumps({"images": images, "annotations": kp_anns, "categories": person_cat})
    )
    truth.boxes = root / "person_detection_results.json"
    truth.boxes.write_text(json.dumps(DETECTIONS))
    return truth
