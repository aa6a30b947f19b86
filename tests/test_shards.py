"""ShardWriter / ShardReader: payload formats, round trips, task indices, codecs, versions,
several directories and per-process handles."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import pickle
import sys

import h5py
import numpy as np
import pytest
from fakes_shards import write_shards
from PIL import Image

from painter_cli.errors import PainterError
from painter_cli.shards import (
    INDEX,
    ShardReader,
    ShardWriter,
    export_pairs,
    group_summary,
    inspect_dirs,
    pack_array,
    pack_image,
    shard_name,
    size_range,
    size_text,
    sizes_line,
    summarize,
    unpack,
)
from painter_cli.sources.base import Sample
from painter_cli.tasks import get_codec

TASKS = {
    "ade20k-semseg": {"codec": "ade20k-semseg", "params": {}},
    "my-seg": {"codec": "semseg", "params": {"num_classes": 5, "base": 2}},
}


def _jpeg_bytes(array: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _image(seed: int, h: int = 12, w: int = 17) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_zdelta_round_trip_is_exact_for_any_uint8_array():
    rng = np.random.default_rng(0)
    for shape in [(5, 7, 3), (9, 1, 3), (4, 6), (1, 1, 3)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        fmt, payload, out_shape = pack_array(a)
        assert fmt == "zdelta" and out_shape == shape
        back = unpack(fmt, payload.tobytes(), out_shape)
        np.testing.assert_array_equal(back, a)
        assert back.flags.writeable


def test_flat_label_maps_use_rle_exactly_and_far_below_raw():
    labels = np.zeros((64, 64, 3), np.uint8)
    labels[10:40, 5:50] = (255, 213, 171)
    labels[50:, :7] = (87, 255, 45)
    for a in (labels, labels[..., 1]):  # painted (H, W, 3) and single-channel (H, W)
        fmt, payload, shape = pack_array(a)
        assert fmt == "rle" and shape == a.shape
        assert payload.size < a.size // 50
        np.testing.assert_array_equal(unpack(fmt, payload.tobytes(), shape), a)


def test_rgb_jpeg_bytes_are_kept_and_decode_like_pil():
    data = _jpeg_bytes(_image(1))
    fmt, payload, shape = pack_image(data)
    assert fmt == "jpeg" and payload.tobytes() == data and shape == (12, 17, 3)
    expected = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(unpack(fmt, payload, shape), expected)


def test_png_bytes_and_rotated_or_gray_jpegs_are_decoded_to_zdelta():
    img = _image(2)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    fmt, payload, shape = pack_image(buf.getvalue())
    assert fmt == "zdelta"
    np.testing.assert_array_equal(unpack(fmt, payload, shape), img)

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the stored pixels must be the upright ones
    rotated = _jpeg_bytes(img, exif=exif)
    fmt, payload, shape = pack_image(rotated)
    assert fmt == "zdelta" and shape == (17, 12, 3)

    gray = io.BytesIO()
    Image.fromarray(img[..., 0]).save(gray, "JPEG")
    fmt, payload, shape = pack_image(gray.getvalue())
    out = unpack(fmt, payload, shape)
    assert fmt == "zdelta" and out.shape == (12, 17, 3)
    assert (out[..., 0] == out[..., 1]).all()


def _write(out, n=5, shard_size=2, extras=True):
    """n samples alternating between two tasks; returns the ground truth per id."""
    truth = {}
    with ShardWriter(out, TASKS, split="val", shard_size=shard_size) as w:
        for i in range(n):
            task = "ade20k-semseg" if i % 2 == 0 else "my-seg"
            labels = np.random.default_rng(i).integers(0, 6, (12, 17))
            target = get_codec(TASKS[task]["codec"], **TASKS[task]["params"]).encode(labels)
            img = _image(i)
            image = _jpeg_bytes(img) if i % 2 else img
            x = {"depth_m": np.full((12, 17), i + 0.25, np.float32)} if extras else {}
            w.add(Sample(id=f"s{i}", image=image, target=target, extras=x), task)
            truth[f"s{i}"] = (image, target, task)
    return truth


def test_writer_reader_round_trip_with_tasks_extras_and_indices(tmp_path):
    truth = _write(tmp_path / "d")
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == [INDEX, shard_name(0), shard_name(1), shard_name(2)]
    r = ShardReader(tmp_path / "d")
    assert len(r) == 5
    assert r.tasks == ["ade20k-semseg", "my-seg"]
    np.testing.assert_array_equal(r.indices("ade20k-semseg"), [0, 2, 4])
    np.testing.assert_array_equal(r.indices("my-seg"), [1, 3])
    assert r.index["tasks"]["my-seg"]["count"] == 2 and r.index["split"] == "val"
    assert r.codec("my-seg") == get_codec("semseg", num_classes=5, base=2)
    for i in range(5):
        s = r[i]
        image, target, task = truth[f"s{i}"]
        assert (
            s["id"] == f"s{i}" and s["task"] == task == r.task_of(i) and r.sample_id(i) == f"s{i}"
        )
        expected = (
            image if isinstance(image, np.ndarray) else np.array(Image.open(io.BytesIO(image)))
        )
        np.testing.assert_array_equal(s["image"], expected)
        np.testing.assert_array_equal(s["target"], target)
        assert s["depth_m"].dtype == np.float32 and s["depth_m"][3, 4] == pytest.approx(i + 0.25)
    assert r[-1]["id"] == "s4"
    with pytest.raises(IndexError):
        r[5]
    assert [s["id"] for s in r] == [f"s{i}" for i in range(5)]


def test_groups_round_trip_through_index_reader_and_summary(tmp_path):

    d = write_shards(tmp_path / "g", ("ade20k-semseg", "nyuv2-depth"), n=7, groups=3)
    plain = write_shards(tmp_path / "p", ("restoration-x",), n=3)
    r = ShardReader([d, plain])
    # 7 samples per task, sample k in group g{k % 3}: g0 = {0, 3, 6}, g1 = {1, 4}, g2 = {2, 5}.
    assert r.index["tasks"]["ade20k-semseg"]["groups"] == {"g0": 3, "g1": 2, "g2": 2}
    assert r.task_info("nyuv2-depth")["groups"] == {"g0": 3, "g1": 2, "g2": 2}
    assert r.has_groups("ade20k-semseg") and not r.has_groups("restoration-x")
    groups = r.groups("nyuv2-depth")
    assert list(groups) == ["g0", "g1", "g2"]
    np.testing.assert_array_equal(groups["g0"], [7, 10, 13])
    np.testing.assert_array_equal(groups["g2"], [9, 12])
    assert r.group_of(9) == "g2" and r.group_of(14) is None
    assert r.groups("restoration-x") == {}
    rows = {row["task"]: row for row in summarize(r)["rows"]}
    assert rows["ade20k-semseg"]["groups"] == {"g0": 3, "g1": 2, "g2": 2}
    assert rows["restoration-x"]["groups"] == {}
    assert group_summary(rows["nyuv2-depth"]["groups"], show=2) == "3: g0 (3), g1 (2), ..."
    assert group_summary({}) == "-"


def test_a_group_must_be_a_non_empty_string(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    with (
        pytest.raises(PainterError, match="group must be a non-empty string"),
        ShardWriter(tmp_path / "d", {"t": {"codec": "restoration", "params": {}}}) as w,
    ):
        w.add(Sample(id="a", image=img, target=img, group=""))
    assert not (tmp_path / "d" / INDEX).exists()


def test_writer_rejects_size_mismatch_and_leaves_no_partial_shard(tmp_path):
    out = tmp_path / "d"
    with (
        pytest.raises(PainterError, match="'bad'.*differ|'bad'.*target"),
        ShardWriter(out, TASKS) as w,
    ):
        w.add(Sample("ok", _image(0), _image(1)), "my-seg")
        w.add(Sample("bad", _image(0), _image(1, 5, 5)), "my-seg")
    assert sorted(p.name for p in out.iterdir()) == []  # no shard, no temp file, no index


def test_reader_errors_missing_index_and_other_versions(tmp_path):
    with pytest.raises(PainterError, match="index.json: missing"):
        ShardReader(tmp_path)
    _write(tmp_path / "d", extras=False)
    index = json.loads((tmp_path / "d" / INDEX).read_text())
    index["version"] = 99
    (tmp_path / "d" / INDEX).write_text(json.dumps(index))
    with pytest.raises(PainterError, match="version 99"):
        ShardReader(tmp_path / "d")

    _write(tmp_path / "e", extras=False)
    with h5py.File(tmp_path / "e" / shard_name(1), "r+") as f:
        f.attrs["painter_shard_version"] = 7
    r = ShardReader(tmp_path / "e")
    r[0]
    with pytest.raises(PainterError, match="version 7"):
        r[2]


def test_several_directories_concatenate_and_conflicting_codecs_fail(tmp_path):
    _write(tmp_path / "a", n=3, extras=False)
    _write(tmp_path / "b", n=2, extras=False)
    r = ShardReader([tmp_path / "a", tmp_path / "b"])
    assert len(r) == 5 and r[3]["id"] == "s0" and r.index["tasks"]["my-seg"]["count"] == 2
    np.testing.assert_array_equal(r.indices("ade20k-semseg"), [0, 2, 3])
    assert len(ShardReader([r, tmp_path / "a"])) == 8
    with pytest.raises(PainterError, match="not in"):
        r.indices("nope")

    with ShardWriter(
        tmp_path / "c", {"my-seg": {"codec": "semseg", "params": {"num_classes": 3}}}
    ) as w:
        w.add(Sample("x", _image(0), _image(1)))
    with pytest.raises(PainterError, match="my-seg"):
        ShardReader([tmp_path / "a", tmp_path / "c"])


def _child_read(reader: ShardReader) -> list[str]:
    return [reader[i]["id"] for i in range(len(reader))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux-only here")
def test_reader_is_safe_across_fork_and_pickle(tmp_path):
    _write(tmp_path / "d", extras=False)
    r = ShardReader(tmp_path / "d")
    r[0], r[4]  # open handles in the parent before forking
    with mp.get_context("fork").Pool(1) as pool:
        assert pool.apply(_child_read, (r,)) == [f"s{i}" for i in range(5)]
    r2 = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(r2[3]["target"], r[3]["target"])
    r.close()
    assert r[1]["id"] == "s1"  # reopens after close


def test_summarize_and_export(tmp_path):
    _write(tmp_path / "d", extras=False)
    r = ShardReader(tmp_path / "d")
    s = summarize(r)
    rows = {row["task"]: row for row in s["rows"]}
    assert rows["ade20k-semseg"]["count"] == 3 and rows["my-seg"]["split"] == "val"
    assert s["count"] == 5 and s["shards"] == 3
    # Sizes from the manifests (painter info showed none): every sample is 12 x 17 (H x W).
    one = {"height": [12, 12], "width": [17, 17], "distinct": 1}
    assert rows["my-seg"]["image_size"] == rows["my-seg"]["target_size"] == one
    assert size_text(one) == "17x12"
    several = size_range([(12, 17), (40, 17), (12, 20)])
    assert several == {"height": [12, 40], "width": [17, 20], "distinct": 3}
    assert size_text(several) == "17-20 x 12-40 (3 sizes)"
    assert size_range([]) is None and size_text(None) == "-"
    rows = [
        {"task": "a", "split": "val", "image_size": one, "target_size": one},
        {"task": "b", "split": "val", "image_size": several, "target_size": None},
    ]
    assert sizes_line(rows[:1]) == "17x12"
    assert sizes_line(rows) == "a (val) 17x12, b (val) 17-20 x 12-40 (3 sizes)"
    assert (
        sizes_line([{**rows[0], "target_size": several}])
        == "17x12 (targets 17-20 x 12-40 (3 sizes))"
    )
    paths = export_pairs(r, 2, tmp_path / "look")
    assert [p.name for p in paths] == ["0000_ade20k-semseg_s0.png", "0001_ade20k-semseg_s4.png"]
    with Image.open(paths[1]) as im:
        assert im.size == (17, 24)  # image above target


def test_reader_on_a_folder_of_splits_names_them_and_the_one_to_pass(tmp_path):
    for split in ("val", "ood", "train"):
        _write(tmp_path / "syn" / split, n=2, extras=False)
    (tmp_path / "syn" / "notes").mkdir()  # not a shard folder: not listed
    with pytest.raises(PainterError) as err:
        ShardReader(tmp_path / "syn")
    assert (
        err.value.message
        == f"{tmp_path / 'syn'}: a folder of splits (train, val, ood), not a shard folder"
    )
    assert err.value.hint == f"pass {tmp_path / 'syn' / 'train'}"
    # A split folder whose encode did not finish (shards, no index.json) counts too ...
    (tmp_path / "syn" / "train" / INDEX).unlink()
    with pytest.raises(PainterError, match=r"a folder of splits \(train, val, ood\)"):
        ShardReader(tmp_path / "syn")
    # ... while an unfinished encode itself keeps its message.
    with pytest.raises(PainterError, match="index.json: missing"):
        ShardReader(tmp_path / "syn" / "train")


def test_export_replaces_an_earlier_export_and_keeps_other_files(tmp_path):
    _write(tmp_path / "d", extras=False)
    r = ShardReader(tmp_path / "d")
    look = tmp_path / "look"
    first = export_pairs(r, 5, look)
    (look / "notes.png").write_bytes(b"mine")
    (look / "12_x.png").write_bytes(b"mine too")
    second = export_pairs(r, 2, look)
    assert len(first) == 5 and len(second) == 2
    assert sorted(p.name for p in look.iterdir()) == sorted(
        ["12_x.png", "notes.png", *(p.name for p in second)]
    )


def test_export_names_are_file_safe_for_any_task_name(tmp_path):
    tasks = {"bad/name": {"codec": "restoration", "params": {}}}
    with ShardWriter(tmp_path / "d", tasks) as w:
        w.add(Sample("a/b", _image(0), _image(1)), "bad/name")
    [path] = export_pairs(ShardReader(tmp_path / "d"), 1, tmp_path / "look")
    assert path.parent == tmp_path / "look" and path.name == "0000_bad_name_a_b.png"


def test_a_file_given_as_shard_directory_is_named_a_file(tmp_path):
    # It said "no such shard directory" for an existing file.
    _write(tmp_path / "d", n=1, extras=False)
    with pytest.raises(PainterError, match=r"index.json: a file, not a shard directory") as err:
        inspect_dirs([tmp_path / "d" / INDEX])
    assert "index.json" in err.value.hint
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(PainterError, match=r"x.png: a file, not a shard directory"):
        ShardReader(tmp_path / "x.png")


def test_inspect_dirs_checks_export_options(tmp_path):
    _write(tmp_path / "d", extras=False)
    with pytest.raises(PainterError, match="--export -1: must be >= 0"):
        inspect_dirs([tmp_path / "d"], export=-1)
    with pytest.raises(PainterError, match="--export-dir needs --export N"):
        inspect_dirs([tmp_path / "d"], export_dir=tmp_path / "look")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PainterError) as err:
        inspect_dirs([tmp_path / "d"], export=1, export_dir=tmp_path / "afile")
    assert err.value.message == f"{tmp_path / 'afile'}: exists and is not a folder"
    summary, target = inspect_dirs([tmp_path / "d"], export=2)
    assert target == tmp_path / "d" / "export" and len(summary["exported"]) == 2
    assert inspect_dirs([tmp_path / "d"])[1] is None


def test_writer_into_a_file_path_is_one_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    writer = ShardWriter(tmp_path / "afile" / "train", TASKS)
    with pytest.raises(PainterError) as err, writer as w:
        w.add(Sample("s", _image(0), _image(1)), "my-seg")
    assert err.value.message == f"{tmp_path / 'afile'}: exists and is not a folder"
