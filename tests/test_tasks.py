"""Task codecs: palettes against the official values, round trips, valid maps, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from painter_cli.errors import PainterError
from painter_cli.tasks import Codec, get_codec, list_codecs
from painter_cli.tasks.instance import location_colour, matrix_nms
from painter_cli.tasks.semantic import coco_categories

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

ALL = [
    "nyuv2-depth",
    "ade20k-semseg",
    "coco-semseg",
    "semseg",
    "coco-instance",
    "coco-keypoints",
    "keypoints",
    "coco-panoptic",
    "restoration",
]
PARAMS = {"semseg": {"num_classes": 10}, "keypoints": {"num_keypoints": 5}}


def noisy(img: np.ndarray, seed: int = 0, amp: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float32) + rng.uniform(-amp, amp, img.shape), 0, 255)


# --- registry -------------------------------------------------------------------------------------


def test_registry_names_kinds_and_params_rebuild():
    assert sorted(ALL) == list_codecs()
    kinds = {}
    for name in ALL:
        c = get_codec(name, **PARAMS.get(name, {}))
        assert isinstance(c, Codec) and c.name == name
        params = json.loads(json.dumps(c.params()))
        assert get_codec(c.name, **params) == c
        kinds[name] = (c.kind, c.discrete)
    assert kinds["nyuv2-depth"] == ("depth", False)
    assert kinds["ade20k-semseg"] == ("semseg", True)
    assert kinds["coco-instance"] == ("instance", True)
    assert kinds["coco-keypoints"] == ("keypoints", False)
    assert kinds["coco-panoptic"] == ("panoptic", True)
    assert kinds["restoration"] == ("restoration", False)
    assert get_codec("semseg", num_classes=10) != get_codec("semseg", num_classes=11)


def test_registry_errors():
    with pytest.raises(PainterError, match="unknown codec 'nope'"):
        get_codec("nope")
    with pytest.raises(PainterError, match="unknown parameter"):
        get_codec("ade20k-semseg", num_classes=3)
    with pytest.raises(PainterError, match="cannot hold"):
        get_codec("semseg", num_classes=200, base=5)


def test_parameter_errors_name_the_codecs_parameters():
    # They used to show Python internals: "_semseg() missing 1 required positional argument".
    with pytest.raises(PainterError) as err:
        get_codec("semseg")
    assert err.value.message == "codec 'semseg': missing parameter(s) num_classes"
    assert (
        err.value.hint
        == "codec semseg takes --codec-param num_classes (required), base, background"
    )
    with pytest.raises(PainterError) as err:
        get_codec("restoration", num_classes=3)
    assert err.value.message == "codec 'restoration': unknown parameter(s) num_classes"
    assert err.value.hint == "codec restoration takes no parameters"


# --- semantic -------------------------------------------------------------------------------------


def test_ade20k_palette_matches_official():
    c = get_codec("ade20k-semseg")
    got = c.encode(np.array([[0, 1, 2, 7, 37, 150]], np.uint8))[0]
    expected = [(0, 0, 0), (255, 255, 255), (255, 255, 213), (255, 213, 255), (213, 255, 255)]
    assert got.tolist() == [list(e) for e in expected] + [[87, 255, 45]]
    assert c.base == 6 and c.margin == 42
    assert (c.colours > 0).all()  # black stays unambiguous


def test_coco_palette_and_categories():
    c = get_codec("coco-semseg")
    got = c.encode(np.array([[1, 2, 8, 50, 133]]))[0]
    assert got.tolist() == [
        [255, 255, 255],
        [255, 255, 219],
        [255, 219, 255],
        [219, 255, 255],
        [183, 111, 39],
    ]
    cats = coco_categories()
    assert len(cats) == 133 and cats[0]["name"] == "person"
    assert (cats[80]["id"], cats[132]["id"]) == (92, 200)
    assert sum(c["isthing"] for c in cats) == 80
    official = SHARED / "spec" / "panoptic_coco_categories.json"
    if official.is_file():
        assert cats == json.loads(official.read_text())


def test_generic_semseg_uses_ceil_base():
    # ceil(8 ** (1/3)) = 2 -> margin 128 (the official int()+1 rule would give 3).
    c = get_codec("semseg", num_classes=8)
    assert (c.base, c.margin) == (2, 128)
    assert c.encode(np.array([[8]]))[0, 0].tolist() == [127, 127, 127]
    assert get_codec("semseg", num_classes=150).colours.tolist() == (
        get_codec("ade20k-semseg").colours.tolist()
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [("ade20k-semseg", {}), ("coco-semseg", {}), ("semseg", {"num_classes": 10})],
)
def test_semseg_round_trip_clean_and_noisy(name, params):
    c = get_codec(name, **params)
    labels = np.random.default_rng(1).integers(1, c.num_classes + 1, (24, 20))
    painted = c.encode(labels)
    assert painted.dtype == np.uint8 and painted.shape == (24, 20, 3)
    np.testing.assert_array_equal(c.decode(painted), labels)
    np.testing.assert_array_equal(c.decode(noisy(painted)), labels)


def test_semseg_decode_never_predicts_background_and_valid_ignores_black():
    c = get_codec("ade20k-semseg")
    painted = c.encode(np.array([[0, 5]]))
    # Black is not a candidate: it decodes to the darkest class colour (129, 45, 45), class 144.
    assert c.colours[143].tolist() == [129, 45, 45]
    assert c.decode(painted).tolist() == [[144, 5]]
    v = c.valid(painted)
    assert v.dtype == np.float32 and v.tolist() == [[[0, 0, 0], [1, 1, 1]]]


def test_semseg_with_background_class():
    c = get_codec("semseg", num_classes=1, background=True)
    assert get_codec(c.name, **c.params()) == c and c.params()["background"] is True
    labels = np.array([[0, 1], [1, 0]])
    painted = c.encode(labels)
    assert painted[0, 1].tolist() == [255, 255, 255] and painted[0, 0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(c.decode(noisy(painted)), labels)
    assert (c.valid(painted) == 1).all()


def test_semseg_bad_input():
    c = get_codec("ade20k-semseg")
    with pytest.raises(PainterError, match=r"0\.\.150.*151"):
        c.encode(np.array([[1, 151]]))
    with pytest.raises(PainterError, match="integer"):
        c.encode(np.zeros((2, 2), np.float32))
    with pytest.raises(PainterError, match="shape"):
        c.encode(np.zeros((2, 2, 2), np.int64))
    with pytest.raises(PainterError, match=r"\(H, W, 3\)"):
        c.decode(np.zeros((4, 4), np.uint8))
    with pytest.raises(PainterError, match="dtype"):
        c.decode(np.zeros((4, 4, 3), np.int16))


# --- depth ----------------------------------------------------------------------------------------


def test_depth_encoding_matches_official():
    c = get_codec("nyuv2-depth")
    d = np.array([[0.0, 1.0, 10.0, 12.0, 0.04]], np.float32)
    assert c.encode(d)[0, :, 0].tolist() == [0, 25, 255, 255, 1]
    mm = np.array([[0, 1000, 10000, 9996]], np.uint16)
    assert c.encode(mm)[0].tolist() == [[0] * 3, [25] * 3, [255] * 3, [254] * 3]
    np.testing.assert_allclose(c.decode(np.full((1, 1, 3), 255, np.uint8)), 10.0, rtol=1e-6)
    depth = np.random.default_rng(2).uniform(0.5, 9.9, (16, 16)).astype(np.float32)
    assert np.abs(c.decode(c.encode(depth)) - depth).max() <= 10 / 255
    v = c.valid(c.encode(d))
    assert v[0, :, 0].tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(PainterError, match="dtype int32"):
        c.encode(np.zeros((2, 2), np.int32))
    with pytest.raises(PainterError, match=">= 0"):
        c.encode(np.full((2, 2), -1.0))


# --- instance -------------------------------------------------------------------------------------


def test_instance_location_colours():
    assert location_colour(0, 0).tolist() == [255, 255, 255]
    assert location_colour(79, 79).tolist() == [30, 8, 8]
    c = get_codec("coco-instance")
    ids = np.zeros((1024, 1024), np.int32)
    ids[250:263, 506:519] = 3  # mass centre x = 512 (column), y = 256 (row)
    painted = c.encode(ids)
    assert painted[256, 512].tolist() == [240, 8, 8]
    assert painted[0, 0].tolist() == [0, 0, 0]


def _instance_map() -> np.ndarray:
    ids = np.zeros((96, 96), np.int64)
    ids[5:30, 5:40] = 1
    ids[45:90, 10:40] = 2
    ids[20:70, 55:90] = 7
    return ids


@pytest.mark.parametrize("noise", [0.0, 10.0])
def test_instance_round_trip(noise):
    c = get_codec("coco-instance")
    ids = _instance_map()
    painted = c.encode(ids)
    if noise:
        painted = noisy(painted, amp=noise)
    results = c.decode(painted)
    assert 0 < len(results) <= 100
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0 and max(scores) <= 1
    for i in (1, 2, 7):
        gt = ids == i
        ious = [(m & gt).sum() / (m | gt).sum() for m, _ in results]
        best = int(np.argmax(ious))
        assert ious[best] > 0.9
        assert results[best][1] > 0.7
    # The three instances are the three best-scoring masks.
    top = {int(np.bincount(ids[m]).argmax()) for m, _ in results[:3]}
    assert top == {1, 2, 7}


def test_matrix_nms_gaussian_decay():
    scores = np.array([0.8, 0.9, 0.7])
    areas = np.array([10.0, 10.0, 5.0])
    inter = np.array([[10.0, 10.0, 0.0], [10.0, 10.0, 0.0], [0.0, 0.0, 5.0]])
    order, decayed = matrix_nms(scores, inter, areas, sigma=2.0, max_num=100)
    assert order.tolist() == [1, 2, 0]
    np.testing.assert_allclose(decayed, [0.9, 0.7, 0.8 * np.exp(-2.0)])
    order, _ = matrix_nms(scores, inter, areas, max_num=2)
    assert order.tolist() == [1, 2]


def test_instance_valid_and_bad_input():
    c = get_codec("coco-instance")
    small = np.zeros((32, 32), np.int64)
    small[:10, :9] = 1  # 90 px * 3 channels = 270 < 300 foreground elements
    assert not c.valid(c.encode(small)).any()
    small[:10, :10] = 1  # 300 elements
    assert (c.valid(c.encode(small)) == 1).all()
    with pytest.raises(PainterError, match="integer"):
        c.encode(np.zeros((4, 4), np.float64))
    with pytest.raises(PainterError, match=">= 0"):
        c.encode(np.full((4, 4), -1))


# --- keypoints ------------------------------------------------------------------------------------


def test_keypoint_colour_table_and_heat_profile():
    c = get_codec("coco-keypoints")
    assert c.colours[[0, 1, 4, 5, 16]].tolist() == [
        [255, 255],
        [255, 204],
        [255, 51],
        [204, 255],
        [102, 204],
    ]
    kps = np.zeros((17, 3))
    kps[16] = (100.2, 120.4, 2)
    img = c.encode(kps)
    assert img.shape == (256, 192, 3)
    row = img[120, :, 0]
    assert (row[100], row[101], row[109], row[110]) == (255, 241, 2, 0)
    # The class square covers [mu-5, mu+4] in x and y.
    cols = np.nonzero(img[120, :, 1])[0]
    rows = np.nonzero(img[:, 100, 2])[0]
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (95, 104, 115, 124)
    assert img[120, 100, 1:].tolist() == [102, 204]


def test_keypoint_collision_goes_to_strongest_kernel_and_border_shift():
    c = get_codec("keypoints", num_keypoints=2, width=40, height=40)
    kps = np.array([[10.0, 20.0, 2], [14.0, 20.0, 1]])
    img = c.encode(kps)
    colours = c.colours.tolist()
    assert img[20, 11, 1:].tolist() == colours[0]  # nearer to keypoint 0
    assert img[20, 13, 1:].tolist() == colours[1]
    assert img[20, 12, 1:].tolist() == colours[0]  # tie -> lower index
    # int() truncation: a keypoint at x=2 peaks at x=3 in the sigma-1.5 map, not in sigma 3.
    edge = np.array([[2.0, 20.0, 2], [0.0, 0.0, 0]])
    assert c.heatmaps(edge, 1.5)[0, 20].argmax() == 3
    assert c.heatmaps(edge, 3.0)[0, 20].argmax() == 2


def test_keypoint_round_trip_within_one_pixel():
    c = get_codec("coco-keypoints")
    rng = np.random.default_rng(3)
    kps = np.stack([rng.uniform(5, 186, 17), rng.uniform(5, 250, 17), np.full(17, 2.0)], 1)
    kps[:, 1] = np.linspace(8, 248, 17)  # 15 px apart: no class-square collisions
    kps[4, 2] = 0  # not labelled -> not drawn
    res = c.decode(c.encode(kps))
    assert res.heatmaps.shape == (17, 256, 192)
    drawn = kps[:, 2] > 0
    assert np.abs(res.keypoints[drawn, :2] - kps[drawn, :2]).max() <= 1.0
    assert (res.keypoints[drawn, 2] == 1.0).all()
    assert res.keypoints[4].tolist() == [-1.0, -1.0, 0.0]
    # Still within 1 px with +-10 noise.
    res = c.decode(noisy(c.encode(kps), seed=4))
    assert np.abs(res.keypoints[drawn, :2] - kps[drawn, :2]).max() <= 1.0


def test_keypoint_valid_and_bad_input():
    c = get_codec("coco-keypoints")
    kps = np.zeros((17, 3))
    kps[0] = (50, 50, 2)
    target = c.encode(kps)
    v = c.valid(target)
    assert v[50, 50].tolist() == [10, 10, 10] and v[0, 0].tolist() == [1, 1, 1]
    assert v[50, 59].tolist() == [10, 1, 1]  # heat only, outside the class square
    assert not c.valid(np.zeros((8, 8, 3), np.uint8)).any()
    with pytest.raises(PainterError, match=r"\(17, 3\)"):
        c.encode(np.zeros((16, 3)))


# --- panoptic -------------------------------------------------------------------------------------


def test_panoptic_merge_hand_built():
    sem = get_codec("coco-semseg")
    pan = get_codec("coco-panoptic")
    labels = np.full((128, 128), 81, np.int64)  # stuff index 80 = banner (id 92), 16384 px
    labels[:, 64:] = 1  # person (thing)
    labels[100:, 100:] = 101  # small stuff region: 28*28 = 784 px < 8192 -> void
    sem_painted = sem.encode(labels)
    person = np.zeros((128, 128), bool)
    person[10:60, 70:120] = True
    dup = np.zeros_like(person)
    dup[10:60, 75:125] = True  # 90% already painted -> skipped
    late = np.zeros_like(person)
    late[70:90, 70:90] = True  # score below 0.55 -> dropped
    instances = [(dup, 0.8), (person, 0.9), (late, 0.5)]
    assert pan.classify(sem_painted, instances).tolist() == [0, 0, 0]
    res = pan.merge(sem_painted, instances)
    assert res.segments == [
        {"id": 1, "category_id": 1, "isthing": True, "area": 2500, "score": 0.9},
        {"id": 2, "category_id": 92, "isthing": False, "area": 8192},
    ]
    assert (res.ids[person] == 1).all() and (res.ids[:, :64] == 2).all()
    assert res.ids[80, 80] == 0 and res.ids[110, 110] == 0
    # decode() runs the instance decoder on a painted instance image.
    inst = get_codec("coco-instance").encode(person.astype(np.int64))
    res2 = pan.decode((sem_painted, inst))
    assert res2.segments[0]["category_id"] == 1 and res2.segments[0]["area"] == 2500
    with pytest.raises(PainterError, match="no painted target"):
        pan.encode(labels)


# --- restoration ----------------------------------------------------------------------------------


def test_restoration_identity_with_clipping():
    c = get_codec("restoration")
    rgb = np.random.default_rng(5).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(c.encode(rgb), rgb)
    np.testing.assert_array_equal(c.decode(rgb.astype(np.float32)), rgb)
    out = c.decode(np.array([[[-5.0, 254.9, 300.0]]]))
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 254, 255]]]
    assert (c.valid(rgb) == 1).all()
    with pytest.raises(PainterError, match=r"\(H, W, 3\)"):
        c.encode(np.zeros((4, 4), np.uint8))
