"""sources/fss1000.py: a fake FSS-1000 tree in the real layout, encoded and read back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from painter_cli.encode import encode_dataset
from painter_cli.errors import PainterError
from painter_cli.shards import ShardReader
from painter_cli.sources.fss1000 import split_classes


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("PAINTER_NO_PROGRESS", "1")


def _mask(h: int, w: int, k: int) -> np.ndarray:
    """A gray mask: 200 (foreground) on a k-pixel-wide left band, 100 (background, < 128) elsewhere."""
    m = np.full((h, w), 100, np.uint8)
    m[:, :k] = 200
    return m


def write_fss(root, classes: dict[str, int], size=(12, 10), missing_mask=None):
    """``root/<class>/{1..n}.jpg + .png`` for each ``class: n``; ``missing_mask``: (class, k) whose
    mask is left out. Returns {sample id: (decoded image, 0/1 mask)}."""
    h, w = size
    rng = np.random.default_rng(0)
    truth = {}
    for cls, n in classes.items():
        (root / cls).mkdir(parents=True)
        for k in range(1, n + 1):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / cls / f"{k}.jpg"
            )
            mask = _mask(h, w, k)
            if (cls, k) != missing_mask:
                Image.fromarray(mask).save(root / cls / f"{k}.png")
            image = np.asarray(Image.open(root / cls / f"{k}.jpg").convert("RGB"))
            truth[f"{cls}/{k}"] = (image, (mask >= 128).astype(np.int32))
    return truth


def test_standard_split_lists():
    train, val, test = (split_classes(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (520, 240, 240)
    assert len(set(train) | set(val) | set(test)) == 1000  # disjoint
    assert test[:3] == ["bus", "hotel_slipper", "burj_al"] and "fountain" in train


def test_encode_test_split_groups_masks_and_skips(tmp_path):
    # bus and fox are test classes, taxi a train class, my_thing on no list.
    root = tmp_path / "FSS-1000"
    truth = write_fss(root, {"bus": 3, "fox": 2, "taxi": 2, "my_thing": 2}, missing_mask=("fox", 2))
    # The folder above FSS-1000 is accepted too.
    summary = encode_dataset("fss1000", tmp_path, tmp_path / "out", split="test")
    assert [(p.split("FSS-1000/")[1], r) for p, r in summary.skipped] == [
        ("fox/2.png", "mask not found")
    ]
    r = ShardReader(tmp_path / "out")
    assert r.tasks == ["fss1000"]
    # test-list order (bus before fox), images by number; taxi and my_thing left out
    assert [r.sample_id(i) for i in range(len(r))] == ["bus/1", "bus/2", "bus/3", "fox/1"]
    assert r.task_info("fss1000")["groups"] == {"bus": 3, "fox": 1}
    assert [r.group_of(i) for i in range(len(r))] == ["bus", "bus", "bus", "fox"]
    codec = r.codec("fss1000")
    assert codec.params() == {"num_classes": 1, "base": 2, "background": True}
    for i in range(len(r)):
        s = r[i]
        image, mask = truth[s["id"]]
        np.testing.assert_array_equal(s["image"], image)
        np.testing.assert_array_equal(codec.decode(s["target"]), mask)
        # white foreground on black
        assert set(map(tuple, s["target"].reshape(-1, 3).tolist())) == {(255, 255, 255), (0, 0, 0)}


def test_train_split_and_a_class_list_file(tmp_path):
    write_fss(tmp_path, {"bus": 2, "taxi": 2, "my_thing": 3})
    encode_dataset("fss1000", tmp_path, tmp_path / "train", split="train")
    assert ShardReader(tmp_path / "train").task_info("fss1000")["groups"] == {"taxi": 2}
    (tmp_path / "mine.txt").write_text("my_thing\n\nbus\n")
    encode_dataset(
        "fss1000", tmp_path, tmp_path / "mine", split="test", options={"classes": "mine.txt"}
    )
    r = ShardReader(tmp_path / "mine")
    assert r.task_info("fss1000")["groups"] == {"bus": 2, "my_thing": 3}
    assert r.sample_id(0) == "my_thing/1"  # the file's order


def test_mask_of_another_size_is_resized_to_its_image(tmp_path):
    write_fss(tmp_path, {"bus": 1}, size=(12, 10))
    Image.fromarray(_mask(6, 5, 2)).save(tmp_path / "bus" / "1.png")  # half size, band 2 px
    encode_dataset("fss1000", tmp_path, tmp_path / "out", split="test")
    r = ShardReader(tmp_path / "out")
    labels = r.codec("fss1000").decode(r[0]["target"])
    assert labels.shape == (12, 10) and labels[:, :4].all() and not labels[:, 4:].any()


def test_no_class_of_the_split_names_the_root(tmp_path):
    write_fss(tmp_path, {"taxi": 1})
    with pytest.raises(PainterError, match="none of the 240 test classes"):
        encode_dataset("fss1000", tmp_path, tmp_path / "out", split="test")
