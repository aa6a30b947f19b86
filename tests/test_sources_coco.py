"""The COCO sources over a tiny fake COCO tree (tests/fakes_coco.py): semantic labels pixel-exact,
instance masks by IoU, keypoints within 1 px, directly and through ``encode_dataset``."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes_coco import DETECTIONS, write_coco  # noqa: E402

from painter_cli.errors import PainterError  # noqa: E402
from painter_cli.sources import get_source  # noqa: E402
from painter_cli.sources.base import SkipItem  # noqa: E402
from painter_cli.sources.coco import (  # noqa: E402
    augment_instance,
    box_center_scale,
    crop_affine,
    warp_affine,
)
from painter_cli.tasks import get_codec  # noqa: E402


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"), "train")


def _encode(name, root, tmp_path, split="train", **options):
    from painter_cli.encode import encode_dataset
    from painter_cli.shards import ShardReader

    out = tmp_path / f"shards-{name}"
    encode_dataset(name, root, out, split=split, options=options)
    reader = ShardReader(out)
    return reader, reader.codec(reader.tasks[0])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ----------------------------------------------------------------------------------------- semseg
def _check_semantic(target: np.ndarray, truth: np.ndarray) -> None:
    codec = get_codec("coco-semseg")
    assert target.shape == (*truth.shape, 3) and target.dtype == np.uint8
    assert (target[truth == 0] == 0).all()  # void stays black
    decoded = codec.decode(target)
    np.testing.assert_array_equal(decoded[truth > 0], truth[truth > 0])


def test_semseg_keys_and_labels(coco):
    src = get_source("coco-semseg", coco.root, "train")
    assert (src.task, src.codec) == ("coco-semseg", "coco-semseg")
    # 000000000632 has an empty segments_info: no target, no key.
    keys = src.keys()
    assert keys == ["000000000139", "000000000285", "000000000724", "000000000776"]
    for key in keys:
        [sample] = src.load(key)
        assert sample.id == key
        # The JPEG is stored as is.
        assert sample.image == (coco.root / "train2017" / f"{key}.jpg").read_bytes()
        _check_semantic(sample.target, coco.semantic[key])
    # Crowd car (category 3 -> label 3), area-0 bottle (44 -> 40), banner (92 -> 81) are painted.
    labels = set(np.unique(coco.semantic["000000000139"]).tolist())
    assert labels == {0, 1, 3, 17, 40, 81}
    # Known palette colours (spec section 2): person (255,255,255), rug-merged (183,111,39).
    [s285] = src.load("000000000285")
    assert s285.target[30, 20].tolist() == [255, 255, 255]
    assert s285.target[5, 5].tolist() == [183, 111, 39]


def test_semseg_through_shards(coco, tmp_path):
    reader, codec = _encode("coco-semseg", coco.root, tmp_path)
    assert reader.tasks == ["coco-semseg"] and codec == get_codec("coco-semseg")
    assert len(reader) == 4
    for i in range(len(reader)):
        item = reader[i]
        truth = coco.semantic[item["id"]]
        _check_semantic(item["target"], truth)
        assert item["image"].shape == (*truth.shape, 3)


def test_semseg_bad_inputs(tmp_path):
    root = tmp_path / "coco"
    truth = write_coco(root, "val")
    with pytest.raises(PainterError, match="coco/train2017: image folder not found"):
        get_source("coco-semseg", root, "train")
    (root / "train2017").mkdir()
    with pytest.raises(PainterError, match="panoptic_train2017.json: panoptic JSON not found"):
        get_source("coco-semseg", root, "train")
    (root / "val2017" / "000000000285.jpg").write_bytes(b"not a jpeg")
    src = get_source("coco-semseg", root, "val")
    with pytest.raises(SkipItem) as err:
        src.load("000000000285")
    assert err.value.path.endswith("000000000285.jpg")
    # A panoptic PNG whose size differs from its image.
    from PIL import Image

    png = root / "annotations" / "panoptic_val2017" / "000000000776.png"
    Image.new("RGB", (10, 10)).save(png)
    with pytest.raises(PainterError, match="000000000776.png: size 10x10 does not match"):
        src.load("000000000776")
    # A category id outside the 133.
    path = root / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 999
    path.write_text(json.dumps(data))
    with pytest.raises(PainterError, match="panoptic_val2017.json: image 139 has category id 999"):
        get_source("coco-semseg", root, "val").keys()
    with pytest.raises(PainterError, match="unknown option"):
        get_source("coco-semseg", root, "val", copies=2)
    assert truth.semantic


# --------------------------------------------------------------------------------------- panoptic
def test_panoptic_through_shards_keeps_the_ground_truth_exactly(coco, tmp_path):
    reader, codec = _encode("coco-panoptic", coco.root, tmp_path)
    assert reader.tasks == ["coco-panoptic"] and codec.name == "coco-panoptic"
    # Every annotated image, the empty 000000000632 included (panopticapi scores it too).
    assert [reader[i]["id"] for i in range(len(reader))] == sorted(coco.panoptic)
    semseg = get_source("coco-semseg", coco.root, "train")
    semseg_keys = semseg.keys()
    for i in range(len(reader)):
        item = reader[i]
        key = item["id"]
        ids, segments = item["panoptic_ids"], item["segments"]
        assert ids.dtype == np.int32 and segments.dtype == np.int64
        np.testing.assert_array_equal(ids, coco.panoptic[key])  # the stray id 777 is void
        np.testing.assert_array_equal(segments, coco.segments[key])
        if key in semseg_keys:  # the target is the coco-semseg target, pixel for pixel
            np.testing.assert_array_equal(item["target"], semseg.load(key)[0].target)
        else:
            assert not item["target"].any()
    s139 = reader[0]
    assert s139["id"] == "000000000139"
    # (id, category_id, iscrowd, isthing): person, crowd car, banner (stuff), dog, area-0 bottle.
    assert s139["segments"][:, 1:].tolist() == [
        [1, 0, 1],
        [3, 1, 1],
        [92, 0, 0],
        [18, 0, 1],
        [44, 0, 1],
    ]
    assert s139["segments"][0, 0] == 1 + 256 * 7 + 65536 * 3
    assert reader[2]["segments"].shape == (0, 4)
    assert not reader[2]["panoptic_ids"].any()


# --------------------------------------------------------------------------------------- instance
def _check_instances(target: np.ndarray, truth: np.ndarray) -> None:
    codec = get_codec("coco-instance")
    masks = [m for m, score in codec.decode(target) if score > 0.5]
    ids = [i for i in np.unique(truth).tolist() if i]
    assert len(masks) == len(ids)
    for i in ids:
        assert max(_iou(truth == i, m) for m in masks) > 0.99
    assert (target[truth == 0] == 0).all()


def test_instance_keys_and_masks(coco):
    src = get_source("coco-instance", coco.root, "train")
    # 632: no segment; 724: side 24 < 32 (train filter); 776: stuff only.
    keys = src.keys()
    assert keys == ["000000000139", "000000000285"]
    for key in keys:
        [sample] = src.load(key)
        assert sample.id == key
        _, inst = src.instance_map(key)
        np.testing.assert_array_equal(inst, coco.instances[key])
        _check_instances(sample.target, coco.instances[key])
    # Image 139: person and dog only (crowd car, area-0 bottle and banner are not instances).
    assert np.unique(coco.instances["000000000139"]).tolist() == [0, 1, 2]
    # The person's mass centre (16.5, 15.5) on 80x64 is cell (16, 19): colour (255, 8, 47).
    [s139] = src.load("000000000139")
    assert s139.target[10, 10].tolist() == [255, 8, 47]
    # The val split keeps small images.
    val = write_coco(coco.root.parent / "cocoval", "val")
    keys = get_source("coco-instance", val.root, "val").keys()
    assert keys == ["000000000139", "000000000285", "000000000724"]


def test_instance_copies_deterministic(coco):
    src = get_source("coco-instance", coco.root, "train", copies="3", seed="7", size=64)
    first = src.load("000000000139")
    assert [s.id for s in first] == [
        "000000000139",
        "000000000139_aug0",
        "000000000139_aug1",
        "000000000139_aug2",
    ]
    for s in first[1:]:
        assert s.image.shape == (64, 64, 3) and s.target.shape == (64, 64, 3)
    again = pickle.loads(pickle.dumps(src)).load("000000000139")
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.target, b.target)
        assert a.image == b.image if isinstance(a.image, bytes) else (a.image == b.image).all()
    other = get_source("coco-instance", coco.root, "train", copies=3, seed=8, size=64)
    differs = [
        not np.array_equal(a.image, b.image)
        for a, b in zip(first[1:], other.load("000000000139")[1:], strict=True)
    ]
    assert any(differs)


def test_augment_instance_keeps_image_and_ids_aligned():
    # Each instance is painted in the image with its own colour: after augmentation, every pixel
    # away from an instance border must still carry its instance's colour, and the padding is black.
    h, w = 60, 90
    inst = np.zeros((h, w), np.int32)
    inst[5:30, 5:40] = 1
    inst[35:55, 50:85] = 2
    colours = np.array([[0, 0, 0], [200, 40, 40], [40, 200, 40]], np.uint8)
    image = colours[inst]
    seen_flip = seen_pad = False
    for k in range(12):
        img, ids = augment_instance(image, inst, np.random.default_rng(k), size=80)
        assert img.shape == (80, 80, 3) and ids.shape == (80, 80)
        core = ids.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                core[np.roll(np.roll(ids, dy, 0), dx, 1) != ids] = -1
        for i in (1, 2):
            if (core == i).any():
                assert (np.abs(img[core == i].astype(int) - colours[i]) <= 1).all()
        seen_pad |= bool((ids[-1] == 0).all() and (img[-1] == 0).all())
        if (ids == 1).any() and (ids == 2).any():
            seen_flip |= np.argwhere(ids == 1)[:, 1].mean() > np.argwhere(ids == 2)[:, 1].mean()
    assert seen_flip and seen_pad


def test_instance_through_shards(coco, tmp_path):
    reader, codec = _encode("coco-instance", coco.root, tmp_path, copies=1, size=64)
    assert codec == get_codec("coco-instance")
    ids = [reader.sample_id(i) for i in range(len(reader))]
    assert ids[0] == "000000000139" and "000000000139_aug0" in ids
    for i in range(len(reader)):
        item = reader[i]
        if item["id"] in coco.instances:
            _check_instances(item["target"], coco.instances[item["id"]])


def test_instance_options_checked(coco):
    with pytest.raises(PainterError, match="option copies='x' is not a int"):
        get_source("coco-instance", coco.root, "train", copies="x")
    with pytest.raises(PainterError, match="copies must be >= 0"):
        get_source("coco-instance", coco.root, "train", copies=-1)


# -------------------------------------------------------------------------------------- keypoints
def test_box_center_scale_and_affine_literals():
    # mmpose: centre of the box, enlarged to aspect 0.75, /200, *1.25.
    center, scale = box_center_scale((40, 30, 15, 17))
    np.testing.assert_allclose(center, [47.5, 38.5])
    np.testing.assert_allclose(scale, [0.09375, 0.125])
    a = crop_affine(center, scale)
    # 192 / (0.09375 * 200) = 10.24 px per image px; the centre goes to (96, 128).
    np.testing.assert_allclose(a, [[10.24, 0, 96 - 10.24 * 47.5], [0, 10.24, 128 - 10.24 * 38.5]])


def test_warp_affine_bilinear_matches_linear_image():
    ys, xs = np.mgrid[0:40, 0:50]
    image = np.stack([2 * xs, 3 * ys, xs + ys], -1).astype(np.uint8)
    m = np.array([[2.0, 0.0, -5.0], [0.0, 2.0, -3.0]])  # dst = 2 * src - (5, 3)
    out = warp_affine(image, m, 60, 50)
    # dst pixel (u, v) samples src ((u+5)/2, (v+3)/2): bilinear is exact on a linear image.
    u, v = 21, 17
    sx, sy = (u + 5) / 2, (v + 3) / 2
    np.testing.assert_allclose(out[v, u], [2 * sx, 3 * sy, sx + sy], atol=0.5)
    # Outside the source: zero border.
    assert (warp_affine(image, np.array([[1.0, 0, 100], [0, 1.0, 0]]), 20, 20) == 0).all()


def test_keypoints_training_crops(coco):
    src = get_source("coco-keypoints", coco.root, "train")
    assert src.keys() == ["000000000139", "000000000285"]
    samples = src.load("000000000139")
    # Crowd and num_keypoints == 0 people are dropped; bbox_id restarts per image.
    assert [s.id for s in samples] == ["000000000139_box0", "000000000139_box1"]
    s0 = samples[0]
    assert s0.image.shape == (256, 192, 3) and s0.target.shape == (256, 192, 3)
    # GT box [10, 20, 30, 40] sanitised to [10, 20, 29, 39]: centre (24.5, 39.5), w widened to
    # 0.75 * 39 = 29.25 -> scale (29.25, 39) / 200 * 1.25.
    np.testing.assert_allclose(s0.extras["center"], [24.5, 39.5])
    np.testing.assert_allclose(s0.extras["scale"], [0.1828125, 0.24375], rtol=1e-6)
    s = 192 / 36.5625
    expected = {0: (96 + 0.5 * s, 128 + 0.5 * s), 1: (96 - 14.5 * s, 128 - 19.5 * s)}
    expected[5] = (96 + 6.5 * s, 128 + 10.5 * s)
    kps = s0.extras["keypoints"]
    for k, (x, y) in expected.items():
        np.testing.assert_allclose(kps[k, :2], [x, y], atol=1e-4)
    assert kps[:, 2].tolist().count(0) == 14
    # OKS area: the annotation's 30 * 40 px^2 in crop pixels.
    assert float(s0.extras["area"]) == pytest.approx(1200 * s**2, rel=1e-6)
    decoded = get_codec("coco-keypoints").decode(s0.target).keypoints
    for k, (x, y) in expected.items():
        assert abs(decoded[k, 0] - x) <= 1 and abs(decoded[k, 1] - y) <= 1
    # The crop shows the image where the affine says: the gradient image has R = 3x, G = 3y.
    inv = np.linalg.inv(np.vstack([s0.extras["affine"], [0, 0, 1]]))
    for u, v in [(96, 128), (60, 100), (150, 200)]:
        x, y = inv[0, 0] * u + inv[0, 2], inv[1, 1] * v + inv[1, 2]
        np.testing.assert_allclose(s0.image[v, u, :2], [3 * x, 3 * y], atol=4)
    # Clipped box of image 285: [40, 30, 30, 30] inside 56x48 -> [40, 30, 15, 17].
    [s285] = src.load("000000000285")
    np.testing.assert_allclose(s285.extras["center"], [47.5, 38.5])
    np.testing.assert_allclose(s285.extras["scale"], [0.09375, 0.125])
    np.testing.assert_allclose(s285.extras["keypoints"][0], [90.88, 122.88, 2], atol=1e-4)


def test_keypoints_from_detections(coco):
    src = get_source("coco-keypoints", coco.root, "train", boxes=str(coco.boxes))
    assert src.keys() == ["000000000139", "000000000285"]
    samples = src.load("000000000139") + src.load("000000000285")
    # bbox_id runs over the person detections of the file, in file order.
    assert [s.id for s in samples] == [
        "000000000139_box1",
        "000000000139_box2",
        "000000000285_box0",
    ]
    assert all(s.target is None and s.image.shape == (256, 192, 3) for s in samples)
    assert all("keypoints" not in s.extras and "area" not in s.extras for s in samples)
    np.testing.assert_allclose(samples[0].extras["center"], [25.0, 40.0])
    np.testing.assert_allclose(samples[0].extras["scale"], [0.1875, 0.25])
    assert float(samples[0].extras["score"]) == pytest.approx(DETECTIONS[2]["score"])
    assert int(samples[2].extras["image_id"]) == 285


def test_keypoints_through_shards(coco, tmp_path):
    reader, codec = _encode("coco-keypoints", coco.root, tmp_path)
    assert codec == get_codec("coco-keypoints")
    assert [reader.sample_id(i) for i in range(len(reader))] == [
        "000000000139_box0",
        "000000000139_box1",
        "000000000285_box0",
    ]
    for i in range(len(reader)):
        item = reader[i]
        truth = item["keypoints"]
        decoded = codec.decode(item["target"]).keypoints
        drawn = truth[:, 2] > 0
        assert drawn.sum() >= 1
        np.testing.assert_allclose(decoded[drawn, :2], truth[drawn, :2], atol=1.0)
        assert item["affine"].shape == (2, 3)


def test_keypoints_bad_layout(tmp_path):
    with pytest.raises(PainterError, match="person_keypoints_train2017.json"):
        (tmp_path / "train2017").mkdir()
        get_source("coco-keypoints", tmp_path, "train")
    write_coco(tmp_path, "train")
    with pytest.raises(PainterError, match="nope.json"):
        get_source("coco-keypoints", tmp_path, "train", boxes=str(tmp_path / "nope.json"))


def test_keypoint_detection_crops_through_shards(coco, tmp_path):
    # Image-only test crops (no target) are stored and read back with target None.
    reader, _ = _encode("coco-keypoints", coco.root, tmp_path, boxes=str(coco.boxes))
    assert len(reader) == 3
    item = reader[0]
    assert item["target"] is None
    assert item["image"].shape == (256, 192, 3)
    np.testing.assert_allclose(item["center"], [25.0, 40.0])


def test_keypoints_refuse_resize(coco, tmp_path):
    from painter_cli.encode import EncodeSettings, encode_dataset

    with pytest.raises(PainterError, match="--size cannot be used with coco-keypoints"):
        encode_dataset(
            "coco-keypoints", coco.root, tmp_path / "o", settings=EncodeSettings(size=64)
        )
    assert not (tmp_path / "o" / "index.json").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ({"x": 1}, r"boxes\.json: expected a JSON list of detections, got an object"),
        ([{"image_id": 139}], r"boxes\.json: entry 0: missing 'bbox'"),
        (
            [DETECTIONS[0], {"image_id": 139, "category_id": 1, "bbox": [1, 2], "score": 0.5}],
            r"boxes\.json: entry 1: bbox \[1, 2\] is not \[x, y, w, h\]",
        ),
        ([{"image_id": 139, "bbox": [1, 2, 3, 4], "score": "x"}], r"entry 0: score 'x' is not"),
        ([{"image_id": "a", "bbox": [1, 2, 3, 4]}], r"entry 0: image_id 'a' is not an integer"),
        ([{"image_id": 139, "bbox": [1, 2, 0, 4]}], r"entry 0: bbox \[1, 2, 0, 4\] has no area"),
        (["box"], r"entry 0: expected an object, got a string"),
        ([{"image_id": 99999, "bbox": [1, 2, 3, 4]}], r"entry 0: image id 99999 is not in"),
    ],
)
def test_keypoints_malformed_detections_name_the_file_and_entry(coco, tmp_path, content, message):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(content))
    src = get_source("coco-keypoints", coco.root, "train", boxes=str(boxes))
    with pytest.raises(PainterError, match=message) as err:
        src.keys()
    assert err.value.hint and "\n" not in err.value.hint


def test_layout_hints_are_one_line(tmp_path):
    (tmp_path / "train2017").mkdir()
    for name in ("coco-semseg", "coco-instance", "coco-panoptic", "coco-keypoints"):
        with pytest.raises(PainterError) as err:
            get_source(name, tmp_path, "train")
        assert err.value.hint.startswith("expected ROOT/train2017/*.jpg"), err.value.hint
        assert "\n" not in err.value.hint
    write_coco(tmp_path, "train")
    with pytest.raises(PainterError, match="nope.json: detection-results JSON") as err:
        get_source("coco-keypoints", tmp_path, "train", boxes=str(tmp_path / "nope.json"))
    assert "\n" not in err.value.hint


def test_keypoints_refuse_resize_names_the_crop_geometry(coco, tmp_path):
    from painter_cli.encode import EncodeSettings, encode_dataset

    with pytest.raises(PainterError, match=r"fixed 192x256 \(WxH\) geometry") as err:
        encode_dataset(
            "coco-keypoints", coco.root, tmp_path / "o", settings=EncodeSettings(size=32)
        )
    assert "None" not in err.value.message
