"""The simple sources (ade20k, derain, lol, pairs) and the registry: encode a fake dataset, read it
back with ShardReader, decode with the task's codec and compare with the ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import make_ade20k, make_derain, make_lol, make_pairs, save_png

from painter_cli import sources
from painter_cli.encode import EncodeSettings, encode_dataset
from painter_cli.errors import PainterError
from painter_cli.shards import ShardReader
from painter_cli.sources import get_source, list_sources


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("PAINTER_NO_PROGRESS", "1")


def _read_all(out):
    r = ShardReader(out)
    return r, {s["id"]: s for s in r}


@pytest.mark.parametrize("split", ["train", "val"])
def test_ade20k_targets_decode_to_the_labels(tmp_path, split):
    truth = make_ade20k(tmp_path / "ADEChallengeData2016")[split]
    # The folder above ADEChallengeData2016 is accepted too.
    encode_dataset("ade20k", tmp_path, tmp_path / "out", split=split)
    r, samples = _read_all(tmp_path / "out")
    assert r.tasks == ["ade20k-semseg"] and list(samples) == sorted(truth)
    codec = r.codec("ade20k-semseg")
    assert codec.name == "ade20k-semseg" and codec.discrete
    for sid, (image, labels) in truth.items():
        s = samples[sid]
        np.testing.assert_array_equal(s["image"], image)  # the JPEG bytes, decoded by PIL
        fg = labels > 0
        np.testing.assert_array_equal(codec.decode(s["target"])[fg], labels[fg])
        assert (s["target"][~fg] == 0).all()  # "other" is black
    # class 150 -> (87, 255, 45) (spec section 1b); every fake map has label 150 at (0, 0)
    assert samples[sorted(truth)[0]]["target"][0, 0].tolist() == [87, 255, 45]


def test_derain_splits_and_exact_pixels(tmp_path):
    truth = make_derain(tmp_path / "derain")
    for split, n in (("train", 3), ("val", 2), ("test", 4)):
        out = tmp_path / f"out-{split}"
        encode_dataset("derain", tmp_path / "derain", out, split=split)
        r, samples = _read_all(out)
        assert r.tasks == ["derain"] and r.codec("derain").name == "restoration" and len(r) == n
        for sid, (rainy, clean) in truth[split].items():
            np.testing.assert_array_equal(samples[sid]["image"], rainy)
            np.testing.assert_array_equal(samples[sid]["target"], clean)
    # test sets in the official order, Rain100L before Rain100H
    ids = [ShardReader(tmp_path / "out-test").sample_id(i) for i in range(4)]
    assert ids == ["Rain100L/1", "Rain100L/2", "Rain100H/1", "Rain100H/2"]


def test_lol_low_to_high(tmp_path):
    truth = make_lol(tmp_path / "lol")
    for split in ("train", "val"):
        encode_dataset("lol", tmp_path / "lol", tmp_path / split, split=split)
        r, samples = _read_all(tmp_path / split)
        assert r.tasks == ["lol-lowlight"] and sorted(samples) == sorted(truth[split])
        for sid, (low, high) in truth[split].items():
            np.testing.assert_array_equal(samples[sid]["image"], low)
            np.testing.assert_array_equal(
                r.codec("lol-lowlight").decode(samples[sid]["target"]), high
            )


def test_pairs_custom_task_from_folders_and_from_json(tmp_path):
    truth = make_pairs(tmp_path / "p")
    opts = {"task": "my-seg", "codec": "semseg", "codec_params": {"num_classes": 5}}
    encode_dataset("pairs", tmp_path / "p", tmp_path / "out", options=opts)
    r, samples = _read_all(tmp_path / "out")
    assert r.tasks == ["my-seg"] and r.index["tasks"]["my-seg"]["params"] == {
        "num_classes": 5,
        "base": 2,
    }
    codec = r.codec("my-seg")
    for stem, (image, target, labels) in truth.items():
        np.testing.assert_array_equal(samples[stem]["image"], image)
        np.testing.assert_array_equal(samples[stem]["target"], target)
        fg = labels > 0
        np.testing.assert_array_equal(codec.decode(samples[stem]["target"])[fg], labels[fg])

    pairs = [
        {"image_path": f"images/{p.name}", "target_path": f"targets/{p.stem}.png"}
        for p in sorted((tmp_path / "p/images").iterdir())
    ]
    (tmp_path / "p/list.json").write_text(json.dumps(pairs[:2]))
    encode_dataset("pairs", tmp_path / "p/list.json", tmp_path / "out-json", options=opts)
    r2, samples2 = _read_all(tmp_path / "out-json")
    assert sorted(samples2) == ["images/img0", "images/img1"]
    np.testing.assert_array_equal(samples2["images/img1"]["target"], truth["img1"][1])


def test_pairs_groups_from_sub_folders(tmp_path):
    root = tmp_path / "p"
    cats = make_pairs(root / "cats", n=2, seed=1)
    dogs = make_pairs(root / "dogs", n=2, seed=2)
    # the layout --groups folders reads: images/<group>/ and targets/<group>/
    for group in ("cats", "dogs"):
        for kind in ("images", "targets"):
            (root / kind).mkdir(exist_ok=True)
            (root / group / kind).rename(root / kind / group)
    save_png(root / "images" / "loose.png", np.zeros((16, 20, 3), np.uint8))  # in no group
    (root / "targets" / "dogs" / "img1.png").unlink()  # a counted skip
    opts = {"task": "seg", "codec": "semseg", "codec_params": {"num_classes": 5}}
    s = encode_dataset("pairs", root, tmp_path / "out", options={**opts, "groups": "folders"})
    assert s.samples == 3 and s.skipped[0][0].endswith("targets/dogs/img1.png")
    r, samples = _read_all(tmp_path / "out")
    assert [r.sample_id(i) for i in range(len(r))] == ["cats/img0", "cats/img1", "dogs/img0"]
    assert [r.group_of(i) for i in range(len(r))] == ["cats", "cats", "dogs"]
    assert r.task_info("seg")["groups"] == {"cats": 2, "dogs": 1}
    np.testing.assert_array_equal(samples["dogs/img0"]["target"], dogs["img0"][1])
    np.testing.assert_array_equal(samples["cats/img1"]["image"], cats["img1"][0])
    # without --groups the same tree has no images directly under images/ but loose.png
    assert encode_dataset("pairs", root, tmp_path / "flat", options=opts).skipped
    assert not ShardReader(tmp_path / "flat").has_groups("seg")

    # JSON: an entry's own group, else (with --groups folders) its image's folder
    pairs = [
        {"image_path": "images/cats/img0.jpg", "target_path": "targets/cats/img0.png"},
        {
            "image_path": "images/dogs/img0.jpg",
            "target_path": "targets/dogs/img0.png",
            "group": "pets",
        },
    ]
    (root / "list.json").write_text(json.dumps(pairs))
    both = {**opts, "json": "list.json"}
    encode_dataset("pairs", root, tmp_path / "j1", options=both)
    assert [ShardReader(tmp_path / "j1").group_of(i) for i in range(2)] == [None, "pets"]
    encode_dataset("pairs", root, tmp_path / "j2", options={**both, "groups": "folders"})
    assert [ShardReader(tmp_path / "j2").group_of(i) for i in range(2)] == ["cats", "pets"]
    with pytest.raises(PainterError, match="--groups 'classes': expected 'folders'"):
        get_source("pairs", root, **opts, groups="classes")


def test_pairs_bad_inputs(tmp_path):
    make_pairs(tmp_path / "p", n=2)
    with pytest.raises(PainterError, match="--task"):
        get_source("pairs", tmp_path / "p", codec="semseg")
    with pytest.raises(PainterError, match="unknown codec"):
        get_source("pairs", tmp_path / "p", task="t", codec="nope")
    with pytest.raises(PainterError, match="unknown option"):
        get_source("pairs", tmp_path / "p", task="t", codec="restoration", copies=3)
    save_png(tmp_path / "p/targets/img1.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(PainterError, match=r"targets/img1.png: size 4x4 differs from its image"):
        encode_dataset(
            "pairs", tmp_path / "p", tmp_path / "o", options={"task": "t", "codec": "restoration"}
        )
    (tmp_path / "p/targets/img1.png").unlink()
    s = encode_dataset(
        "pairs", tmp_path / "p", tmp_path / "o2", options={"task": "t", "codec": "restoration"}
    )
    assert s.samples == 1 and s.skipped[0][0].endswith("img1.png")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ade20k", "images/training"),
        ("lol", "our485/low"),
        ("derain", "train/input"),
        ("pairs", "images"),
    ],
)
def test_missing_layout_names_the_expected_path(tmp_path, name, expected):
    opts = {"task": "t", "codec": "restoration"} if name == "pairs" else {}
    with pytest.raises(PainterError) as err:
        get_source(name, tmp_path, "train", **opts)
    assert expected in err.value.message and "\n" not in str(err.value)


def test_registry_lists_everything_even_with_a_missing_module(monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "ghost", "no_such_module:Ghost")
    listed = {s["name"]: s for s in list_sources()}
    assert {
        "ade20k",
        "derain",
        "lol",
        "pairs",
        "coco-semseg",
        "coco-instance",
        "coco-keypoints",
        "nyuv2",
        "sidd",
        "synthetic",
        "ghost",
    } <= set(listed)
    assert "not available" in listed["ghost"]["error"]
    assert "our485" in listed["lol"]["layout"] and "task" in listed["pairs"]["options"]
    with pytest.raises(PainterError, match="unknown source"):
        get_source("nope", ".")
    with pytest.raises(PainterError, match="unknown split"):
        get_source("ade20k", ".", "test")


@pytest.mark.parametrize("task", ["bad/name", "a\\b", "has space", "..", ""])
def test_pairs_refuses_path_unsafe_task_names(tmp_path, task):
    make_pairs(tmp_path / "p", n=1)
    with pytest.raises(PainterError, match="task") as err:
        get_source("pairs", tmp_path / "p", task=task, codec="restoration")
    assert "\n" not in str(err.value)
    assert get_source("pairs", tmp_path / "p", task="My_task-2.v1", codec="restoration").task


def test_skip_reasons_hold_no_memory_addresses(tmp_path):
    from painter_cli.sources.base import SkipItem, read_image

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(SkipItem) as err:
        read_image(bad)
    assert " at 0x" not in err.value.reason and "'bad.png'" in err.value.reason


def test_pairs_skips_targets_their_label_codec_cannot_paint(tmp_path):
    # A 1-class mask task given a colour photo as one target: that pair is skipped with the reason
    # (2 of its 4 pixels are neither black nor the class colour white), the clean one is kept.
    for stem, target in {
        "ok": [[[0, 0, 0], [255, 255, 255]], [[255, 255, 255], [0, 0, 0]]],
        "photo": [[[0, 0, 0], [255, 255, 255]], [[12, 200, 7], [250, 250, 250]]],
    }.items():
        save_png(tmp_path / f"p/images/{stem}.png", np.zeros((2, 2, 3), np.uint8))
        save_png(tmp_path / f"p/targets/{stem}.png", np.array(target, np.uint8))
    opts = {"task": "edges", "codec": "semseg", "codec_params": {"num_classes": 1}}
    s = encode_dataset("pairs", tmp_path / "p", tmp_path / "out", options=opts)
    assert s.samples == 1
    ((path, reason),) = s.skipped
    assert path.endswith("targets/photo.png")
    assert reason.startswith("2 of 4 pixels are not colours of codec semseg (e.g. (12, 200, 7))")
    assert "targets/photo.png\t2 of 4 pixels" in (tmp_path / "out/skipped.txt").read_text()
    with pytest.raises(PainterError, match=r"photo.png: 2 of 4 pixels are not colours"):
        encode_dataset(
            "pairs",
            tmp_path / "p",
            tmp_path / "o2",
            options=opts,
            settings=EncodeSettings(strict=True),
        )


def test_pairs_names_a_missing_target(tmp_path):
    make_pairs(tmp_path / "p", n=2)
    (tmp_path / "p/targets/img1.png").unlink()
    s = encode_dataset(
        "pairs", tmp_path / "p", tmp_path / "o", options={"task": "t", "codec": "restoration"}
    )
    assert s.skipped == [
        (str(tmp_path / "p/targets/img1.png"), "target not found (for image img1.png)")
    ]
