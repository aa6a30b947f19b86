"""Image modes -> RGB (painter_cli/pixels.py): one converter, and ``encode pairs`` and ``predict``
read every mode to the same known pixels (a 16-bit PNG used to encode as pure white)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_cli.encode import encode_dataset
from painter_cli.inference import load_image, load_target
from painter_cli.pixels import target_to_rgb, to_rgb
from painter_cli.shards import ShardReader
from painter_cli.tasks import get_codec


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("PAINTER_NO_PROGRESS", "1")


def _png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _gray(values) -> np.ndarray:
    return np.repeat(np.array([values], np.uint8)[..., None], 3, axis=2)


def _palette() -> Image.Image:
    im = Image.new("P", (4, 1))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.putdata([0, 1, 1, 0])
    return im


# name -> (write the 1 x 4 file, its expected (1, 4, 3) RGB pixels), by hand.
MODES = {
    # 5000 / 65535 * 255 = 19.45 -> 19; 32896 / 257 = 128.
    "I;16": (
        lambda p: Image.fromarray(np.array([[0, 5000, 65535, 32896]], np.uint16)).save(p),
        _gray([0, 19, 255, 128]),
        "png",
    ),
    # PIL opens a 48-bit PNG as 8-bit RGB (the high byte of each channel).
    "RGB;16": (
        lambda p: _png_rgb16(
            p, np.array([[[65535, 32768, 256], [0, 0, 0], [1000, 2000, 3000], [0, 0, 0]]])
        ),
        np.array([[[255, 128, 1], [0, 0, 0], [3, 7, 11], [0, 0, 0]]], np.uint8),
        "png",
    ),
    # 32-bit integers past 255 are 16-bit gray: 300 / 257 = 1.17 -> 1, 1000 / 257 = 3.9 -> 4.
    "I": (
        lambda p: Image.fromarray(np.array([[0, 300, 65535, 1000]], np.int32)).save(p),
        _gray([0, 1, 255, 4]),
        "tif",
    ),
    "I-8bit": (
        lambda p: Image.fromarray(np.array([[0, 10, 200, 255]], np.int32)).save(p),
        _gray([0, 10, 200, 255]),
        "tif",
    ),
    # Floats in 0..1: 0.5 * 255 = 127.5 -> 128 (round half to even), 0.25 * 255 = 63.75 -> 64.
    "F": (
        lambda p: Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.25]], np.float32)).save(p),
        _gray([0, 128, 255, 64]),
        "tif",
    ),
    # Palette indices [0, 1, 1, 0].
    "P": (
        lambda p: _palette().save(p),
        np.array([[[10, 20, 30], [200, 100, 50], [200, 100, 50], [10, 20, 30]]], np.uint8),
        "png",
    ),
    # PIL's CMYK -> RGB: 255 - (C + K), per channel.
    "CMYK": (
        lambda p: Image.frombytes(
            "CMYK", (4, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 0, 128, 255, 0])
        ).save(p),
        np.array([[[255, 255, 255], [0, 255, 255], [0, 0, 0], [255, 127, 0]]], np.uint8),
        "tif",
    ),
    # Alpha is dropped, transparent pixels keep their colour.
    "LA": (
        lambda p: Image.fromarray(
            np.array([[[0, 255], [100, 0], [200, 128], [255, 255]]], np.uint8), mode="LA"
        ).save(p),
        _gray([0, 100, 200, 255]),
        "png",
    ),
    "L": (
        lambda p: Image.fromarray(np.array([[0, 100, 200, 255]], np.uint8)).save(p),
        _gray([0, 100, 200, 255]),
        "png",
    ),
    "RGBA": (
        lambda p: Image.fromarray(
            np.array(
                [[[1, 2, 3, 0], [4, 5, 6, 255], [7, 8, 9, 10], [250, 251, 252, 255]]], np.uint8
            )
        ).save(p),
        np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9], [250, 251, 252]]], np.uint8),
        "png",
    ),
}


def _write_modes(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (write, _, ext) in MODES.items():
        path = folder / f"{name.replace(';', '_')}.{ext}"
        write(path)
        paths[name] = path
    return paths


@pytest.mark.parametrize("mode", sorted(MODES))
def test_predict_reads_every_mode(tmp_path, mode):
    path = _write_modes(tmp_path)[mode]
    np.testing.assert_array_equal(load_image(path), MODES[mode][1])
    np.testing.assert_array_equal(load_target(path), MODES[mode][1])


def test_encode_pairs_reads_every_mode_as_predict_does(tmp_path):
    # Images and targets of every mode, through encode pairs: the shards hold what predict reads.
    paths = _write_modes(tmp_path / "p/images")
    for path in paths.values():
        target = tmp_path / "p/targets" / path.name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(path.read_bytes())
    s = encode_dataset(
        "pairs", tmp_path / "p", tmp_path / "out", options={"task": "t", "codec": "restoration"}
    )
    assert s.samples == len(MODES) and not s.skipped
    samples = {x["id"]: x for x in ShardReader(tmp_path / "out")}
    for name, path in paths.items():
        np.testing.assert_array_equal(samples[path.stem]["image"], MODES[name][1], err_msg=name)
        np.testing.assert_array_equal(samples[path.stem]["target"], MODES[name][1], err_msg=name)
        np.testing.assert_array_equal(samples[path.stem]["image"], load_image(path))


def test_depth_targets_in_millimetres_encode_as_predict_reads_them(tmp_path):
    # 16-bit depth targets are millimetres for a depth codec (mm / 10000 * 255, truncated):
    # 1000 mm -> 25, 3922 mm -> 100, 20000 mm -> 255 (clipped at 10 m).
    mm = np.array([[0, 1000, 3922, 20000]], np.uint16)
    (tmp_path / "p/images").mkdir(parents=True)
    (tmp_path / "p/targets").mkdir()
    Image.fromarray(np.zeros((1, 4, 3), np.uint8)).save(tmp_path / "p/images/a.png")
    Image.fromarray(mm).save(tmp_path / "p/targets/a.png")
    encode_dataset(
        "pairs", tmp_path / "p", tmp_path / "out", options={"task": "d", "codec": "nyuv2-depth"}
    )
    (sample,) = list(ShardReader(tmp_path / "out"))
    np.testing.assert_array_equal(sample["target"], _gray([0, 25, 100, 255]))
    codec = get_codec("nyuv2-depth")
    np.testing.assert_array_equal(
        load_target(tmp_path / "p/targets/a.png", codec), sample["target"]
    )


def test_to_rgb_float_above_one_and_nan():
    img = Image.fromarray(np.array([[np.nan, 2.4, 300.0, -5.0]], np.float32))
    np.testing.assert_array_equal(to_rgb(img), _gray([0, 2, 255, 0]))
    np.testing.assert_array_equal(target_to_rgb(img), to_rgb(img))


def test_arrays_of_the_python_api_convert_by_the_same_rules():
    from painter_cli.errors import PainterError
    from painter_cli.pixels import array_to_rgb

    np.testing.assert_array_equal(array_to_rgb(np.array([[0, 100]], np.uint8)), _gray([0, 100]))
    np.testing.assert_array_equal(
        array_to_rgb(np.array([[0, 5000, 65535]], np.uint16)), _gray([0, 19, 255])
    )
    np.testing.assert_array_equal(array_to_rgb(np.array([[0.5, 0.25]])), _gray([128, 64]))
    np.testing.assert_array_equal(array_to_rgb(np.array([[True, False]])), _gray([255, 0]))
    rgba = np.array([[[1, 2, 3, 0], [4, 5, 6, 9]]], np.uint8)
    np.testing.assert_array_equal(array_to_rgb(rgba), rgba[..., :3])
    np.testing.assert_array_equal(array_to_rgb(rgba[..., :1]), _gray([1, 4]))
    with pytest.raises(PainterError, match=r"^query: expected an \(H, W\).* got <U1 \(1, 2\)$"):
        array_to_rgb(np.array([["a", "b"]]), "query")
    with pytest.raises(PainterError, match=r"got uint8 \(2, 2, 2\)"):
        array_to_rgb(np.zeros((2, 2, 2), np.uint8))
