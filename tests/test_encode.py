"""The encoder: determinism, resume after an interruption, workers, skipped and bad inputs,
resizing, and the ``painter encode`` / ``painter info`` commands."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import corrupt_jpeg, make_ade20k, make_lol, make_pairs
from PIL import Image

from painter_cli.cli import app
from painter_cli.encode import (
    KILL_ENV,
    MAX_SIDE,
    RESUME_HINT,
    EncodeSettings,
    encode_dataset,
    parse_key_values,
    parse_size,
    source_options,
)
from painter_cli.errors import PainterError
from painter_cli.shards import INDEX, SKIPPED, ShardReader, shard_name
from painter_cli.tasks import get_codec


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("PAINTER_NO_PROGRESS", "1")


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def _same_bytes(a: Path, b: Path) -> None:
    assert _files(a) == _files(b)
    for name in _files(a):
        assert filecmp.cmp(a / name, b / name, shallow=False), name


def test_rerun_after_interruption_resumes_to_identical_bytes(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=4)
    settings = EncodeSettings(shard_size=1)
    full = encode_dataset("ade20k", tmp_path / "ade", tmp_path / "full", settings=settings)
    assert (full.samples, full.shards, full.reused) == (4, 4, 0)

    part = tmp_path / "part"
    encode_dataset("ade20k", tmp_path / "ade", part, settings=settings)
    # What a kill leaves: the last shard never renamed into place, a temp file, no index.json.
    (part / shard_name(3)).unlink()
    (part / INDEX).unlink()
    (part / f".{shard_name(3)}.tmp-12345").write_bytes(b"half a shard")
    resumed = encode_dataset("ade20k", tmp_path / "ade", part, settings=settings)
    assert (resumed.samples, resumed.reused) == (4, 3)
    _same_bytes(tmp_path / "full", part)

    # A shard damaged after the fact is encoded again.
    (part / shard_name(1)).write_bytes(b"not hdf5")
    again = encode_dataset("ade20k", tmp_path / "ade", part, settings=settings)
    assert again.reused == 3
    _same_bytes(tmp_path / "full", part)


def test_sigkill_mid_encode_then_rerun_gives_identical_bytes(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=4)
    full = tmp_path / "full"
    encode_dataset("ade20k", tmp_path / "ade", full, settings=EncodeSettings(shard_size=1))
    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "painter_cli", "encode", "ade20k", str(tmp_path / "ade")]
    cmd += ["--out", str(part), "--shard-size", "1", "--workers", "1"]
    env = {**os.environ, "PAINTER_NO_PROGRESS": "1", KILL_ENV: "1"}
    killed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert killed.returncode == -9  # SIGKILL right after shard 1 was renamed into place
    assert sorted(p.name for p in part.glob("*.h5")) == [shard_name(0), shard_name(1)]
    assert not (part / INDEX).exists()
    env.pop(KILL_ENV)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    _same_bytes(full, part)


def test_two_workers_write_the_same_shards_as_one(tmp_path):
    make_lol(tmp_path / "lol", n_train=5)
    settings = EncodeSettings(shard_size=2)
    encode_dataset("lol", tmp_path / "lol", tmp_path / "one", workers=1, settings=settings)
    encode_dataset("lol", tmp_path / "lol", tmp_path / "two", workers=2, settings=settings)
    _same_bytes(tmp_path / "one", tmp_path / "two")
    assert [ShardReader(tmp_path / "two").sample_id(i) for i in range(5)] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]


def test_corrupt_jpeg_is_skipped_and_listed_or_fatal_with_strict(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=3)
    bad = tmp_path / "ade/images/training/ADE_train_00000002.jpg"
    corrupt_jpeg(bad)
    s = encode_dataset("ade20k", tmp_path / "ade", tmp_path / "out")
    assert s.samples == 2 and [p for p, _ in s.skipped] == [str(bad)]
    lines = (tmp_path / "out" / SKIPPED).read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}\t")
    r = ShardReader(tmp_path / "out")
    assert [r.sample_id(i) for i in range(2)] == ["ADE_train_00000001", "ADE_train_00000003"]
    assert r.index["skipped"] == 1

    with pytest.raises(PainterError, match="ADE_train_00000002.jpg"):
        encode_dataset(
            "ade20k", tmp_path / "ade", tmp_path / "strict", settings=EncodeSettings(strict=True)
        )
    assert not (tmp_path / "strict").exists()  # created by the failed run, left empty: removed


def test_label_out_of_range_names_the_file_and_writes_nothing_for_that_shard(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=3)
    label = tmp_path / "ade/annotations/training/ADE_train_00000003.png"
    Image.fromarray(np.full((26, 30), 151, np.uint8)).save(label)
    with pytest.raises(PainterError, match="ADE_train_00000003.png: label 151 out of range 0..150"):
        encode_dataset(
            "ade20k", tmp_path / "ade", tmp_path / "out", settings=EncodeSettings(shard_size=2)
        )
    assert _files(tmp_path / "out") == [shard_name(0)]  # shard 1 failed: no file, no temp, no index


def test_out_dir_of_another_encode_is_refused(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=2)
    encode_dataset("ade20k", tmp_path / "ade", tmp_path / "out")
    with pytest.raises(PainterError, match="different encode"):
        encode_dataset(
            "ade20k", tmp_path / "ade", tmp_path / "out", settings=EncodeSettings(size=8)
        )


def test_size_resizes_images_bicubic_and_discrete_targets_nearest(tmp_path):
    truth = make_ade20k(tmp_path / "ade", n_train=1, size=(24, 32))
    encode_dataset("ade20k", tmp_path / "ade", tmp_path / "out", settings=EncodeSettings(size=12))
    s = ShardReader(tmp_path / "out")[0]
    image, labels = truth["train"]["ADE_train_00000001"]
    assert s["image"].shape == (12, 16, 3)  # shorter side 24 -> 12, aspect kept
    expected = np.asarray(Image.fromarray(image).resize((16, 12), Image.BICUBIC))
    np.testing.assert_array_equal(s["image"], expected)
    small = np.asarray(Image.fromarray(labels).resize((16, 12), Image.NEAREST))
    np.testing.assert_array_equal(s["target"], get_codec("ade20k-semseg").encode(small))


def test_option_parsing():
    assert (
        parse_size(None) is None
        and parse_size("448") == 448
        and parse_size("896x448") == (896, 448)
    )
    with pytest.raises(PainterError, match="--size"):
        parse_size("0")
    assert parse_key_values(["a=1", "b-c=x", "d=[1, 2]"], "--option") == {
        "a": 1,
        "b_c": "x",
        "d": [1, 2],
    }
    with pytest.raises(PainterError, match="KEY=VALUE"):
        parse_key_values(["novalue"], "--option")
    opts = source_options({"task": "t", "copies": None}, ["seed=3"], ["num_classes=5"])
    assert opts == {"task": "t", "seed": 3, "codec_params": {"num_classes": 5}}


def test_cli_empty_folder_fails_with_one_line(tmp_path, cli_runner):
    (tmp_path / "empty").mkdir()
    result = cli_runner.invoke(
        app, ["encode", "ade20k", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "images/training" in lines[0]


def test_cli_list_shows_every_source(cli_runner):
    result = cli_runner.invoke(app, ["encode", "--list"])
    assert result.exit_code == 0
    for name in ("ade20k", "derain", "lol", "pairs", "coco-semseg", "nyuv2", "sidd", "synthetic"):
        assert f"\n{name}:" in "\n" + result.output
    assert "ROOT/our485/{low,high}" in result.output


def test_subprocess_encode_and_info_json(tmp_path):
    make_lol(tmp_path / "lol", n_val=2)
    env = {**os.environ, "PAINTER_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "painter_cli"]
    out = tmp_path / "shards"
    run = subprocess.run(
        [
            *cmd,
            "encode",
            "lol",
            str(tmp_path / "lol"),
            "--out",
            str(out),
            "--split",
            "val",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "2 lol-lowlight samples (val)" in run.stdout
    info = subprocess.run(
        [*cmd, "info", str(out), "--json", "--export", "1", "--export-dir", str(tmp_path / "look")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["count"] == 2
    assert summary["rows"] == [
        {
            "dir": str(out),
            "task": "lol-lowlight",
            "split": "val",
            "count": 2,
            "groups": {},
            "codec": "restoration",
            "params": {},
            "skipped": 0,
            "sources": ["lol"],
            "image_size": {"height": [20, 21], "width": [30, 32], "distinct": 2},
            "target_size": {"height": [20, 21], "width": [30, 32], "distinct": 2},
        }
    ]
    assert len(summary["exported"]) == 1 and Path(summary["exported"][0]).is_file()


def test_cli_info_table(tmp_path, cli_runner):
    make_lol(tmp_path / "lol", n_train=2)
    encode_dataset("lol", tmp_path / "lol", tmp_path / "out")
    result = cli_runner.invoke(app, ["info", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "lol-lowlight" in result.output and "2 samples in 1 shards" in result.output
    # W x H of the two LoL fakes, 30 x 20 and 32 x 21
    assert "sizes (W x H): 30-32 x 20-21 (2 sizes)\n" in result.output


def test_cli_info_table_shows_groups(tmp_path, cli_runner):
    from fakes_shards import write_shards

    write_shards(tmp_path / "g", ("ade20k-semseg",), n=4, groups=2)
    result = cli_runner.invoke(app, ["info", str(tmp_path / "g")], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "2: g0 (2), g1 (2)" in result.output


def test_cli_info_table_keeps_names_whole_on_an_80_column_terminal(tmp_path, cli_runner):
    from painter_cli.defaults import encode_suite

    dirs = encode_suite(tmp_path / "s", size=16, count=1)
    result = cli_runner.invoke(app, ["info", str(dirs["val"])], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    for name in ("synthetic-keypoints", "synthetic-instance", "coco-instance", "nyuv2-depth"):
        assert name in result.output


def test_failed_first_encode_removes_the_folders_it_created_but_keeps_existing_ones(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=2)
    corrupt_jpeg(tmp_path / "ade/images/training/ADE_train_00000001.jpg")
    strict = EncodeSettings(strict=True)
    with pytest.raises(PainterError, match="ADE_train_00000001.jpg"):
        encode_dataset("ade20k", tmp_path / "ade", tmp_path / "new/deeper/out", settings=strict)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(PainterError, match="ADE_train_00000001.jpg"):
        encode_dataset("ade20k", tmp_path / "ade", tmp_path / "mine", settings=strict)
    assert (tmp_path / "mine").is_dir()  # not created by this run: kept


def test_skipped_reasons_are_identical_between_runs(tmp_path):
    make_ade20k(tmp_path / "ade", n_train=3)
    bad = tmp_path / "ade/images/training/ADE_train_00000002.jpg"
    bad.write_bytes(b"not an image at all")  # PIL: cannot identify image file <_io.BytesIO ...>
    encode_dataset("ade20k", tmp_path / "ade", tmp_path / "a")
    encode_dataset("ade20k", tmp_path / "ade", tmp_path / "b", workers=2)
    text = (tmp_path / "a" / SKIPPED).read_text()
    assert text == (tmp_path / "b" / SKIPPED).read_text()
    assert " at 0x" not in text and "ADE_train_00000002.jpg'" in text
    _same_bytes(tmp_path / "a", tmp_path / "b")


def test_size_above_the_maximum_is_refused(tmp_path):
    assert parse_size(str(MAX_SIDE)) == MAX_SIDE
    for text in (str(MAX_SIDE + 1), "100000", f"16x{MAX_SIDE + 1}"):
        with pytest.raises(PainterError, match=f"maximum side of {MAX_SIDE}"):
            parse_size(text)
    make_lol(tmp_path / "lol", n_train=1)
    with pytest.raises(PainterError, match=f"maximum side of {MAX_SIDE}"):
        encode_dataset("lol", tmp_path / "lol", tmp_path / "o", settings=EncodeSettings(size=10**5))
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_one_clear_error(tmp_path, cli_runner):
    make_lol(tmp_path / "lol", n_train=1)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(PainterError) as err:
            encode_dataset("lol", tmp_path / "lol", out)
        assert err.value.message == f"{tmp_path / 'afile'}: exists and is not a folder"
    for args in (
        ["encode", "lol", str(tmp_path / "lol"), "--out", str(tmp_path / "afile")],
        ["encode", "synthetic", "--out", str(tmp_path / "afile"), "--count", "1", "--size", "16"],
    ):
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 1
        assert result.output.startswith(f"error: {tmp_path / 'afile'}: exists and is not a folder")
        assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("task", ["bad/name", "../up", "a b", ".."])
def test_path_unsafe_task_names_are_refused_at_encode(tmp_path, task):
    make_pairs(tmp_path / "p", n=1)
    with pytest.raises(PainterError, match="not a valid task name"):
        encode_dataset(
            "pairs", tmp_path / "p", tmp_path / "o", options={"task": task, "codec": "restoration"}
        )
    assert not (tmp_path / "o").exists()


def test_interrupted_encode_says_how_to_resume(tmp_path, cli_runner, monkeypatch):
    import painter_cli.encode as encode_mod

    def interrupt(k):
        raise KeyboardInterrupt

    make_lol(tmp_path / "lol", n_train=1)
    monkeypatch.setattr(encode_mod, "_encode_shard", interrupt)
    out = tmp_path / "o"
    result = cli_runner.invoke(
        app, ["encode", "lol", str(tmp_path / "lol"), "--out", str(out), "-j", "1"]
    )
    assert result.exit_code == 130
    assert result.output.strip() == f"error: interrupted (hint: {RESUME_HINT})"
    assert not out.exists()


def test_synthetic_split_without_task_is_refused_and_listing_matches(tmp_path, cli_runner):
    out = tmp_path / "syn"
    result = cli_runner.invoke(app, ["encode", "synthetic", "--out", str(out), "--split", "test"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --split test: synthetic without --task writes")
    assert not out.exists()
    one = ["encode", "synthetic", "--out", str(out), "--task", "synthetic-depth", "--split", "val"]
    result = cli_runner.invoke(app, [*one, "--count", "2", "--size", "16", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert ShardReader(out).index["split"] == "val" and ShardReader(out).tasks == [
        "synthetic-depth"
    ]
    listing = cli_runner.invoke(app, ["encode", "--list"]).output
    task_line = next(
        line for line in listing.splitlines() if "option task: one of synthetic" in line
    )
    assert "default: synthetic-semseg" not in task_line and "whole suite" in task_line


def test_cli_info_on_a_suite_root_and_export_options(tmp_path, cli_runner):
    from painter_cli.defaults import encode_suite

    encode_suite(tmp_path / "syn", size=16, count=1)
    result = cli_runner.invoke(app, ["info", str(tmp_path / "syn")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {tmp_path / 'syn'}: a folder of splits (train, val, ood), not a shard folder "
        f"(hint: pass {tmp_path / 'syn' / 'train'})"
    )
    train = str(tmp_path / "syn" / "train")
    for args, message in (
        (["--export", "-1"], "error: --export -1: must be >= 0"),
        (["--export-dir", str(tmp_path / "look")], "error: --export-dir needs --export N"),
    ):
        result = cli_runner.invoke(app, ["info", train, *args])
        assert result.exit_code == 1 and result.output.startswith(message), result.output
    look = tmp_path / "look"
    for n in (5, 2):
        args = ["info", train, "--json", "--export", str(n), "--export-dir", str(look)]
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    exported = json.loads(result.output)["exported"]
    assert sorted(str(p) for p in look.iterdir()) == sorted(exported) and len(exported) == 2
