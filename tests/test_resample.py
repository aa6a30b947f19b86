"""Post-processing in the official order and precision: the FMA-chain bilinear, ``finish`` and
the files written from the official scripts' painted canvases (../shared official-inference)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from painter_cli.inference import decode_painted, finish, write_outputs
from painter_cli.inference.predictor import _denormalize64
from painter_cli.inference.resample import bilinear, fma, resize_back
from painter_cli.tasks import get_codec

FIXTURE_CODECS = {
    "depth": "nyuv2-depth",
    "semseg": "ade20k-semseg",
    "derain": "restoration",
    "lol": "restoration",
}


def test_fma_rounds_once():
    # 1 + 2**-30 squared is 1 + 2**-29 + 2**-60: a separate product drops the 2**-60 before the
    # add, a fused one keeps it.
    a = np.array([1.0 + 2.0**-30])
    c = np.array([-1.0 - 2.0**-29])
    assert (a * a + c)[0] == 0.0
    assert fma(a, a, c)[0] == 2.0**-60


def test_bilinear_between_equal_neighbours_follows_the_official_kernel():
    # Output row 169 / column 639 of a 448 -> 427 x 640 resize sits between two rows whose last
    # column is the clipped 255: the official float64 kernel's FMA chain gives 254.99999999999997
    # (the official ADE20K script then writes 254), a plain weighted sum gives 255.0.
    src = np.zeros((448, 448, 1))
    src[177:179, 447] = 255.0
    out = bilinear(src, 427, 640)
    assert out[169, 639, 0] == 254.99999999999997
    assert int(out[169, 639, 0]) == 254
    # Away from integers it is torch's bilinear to the last few ulps.
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (20, 30, 3))
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None], size=(13, 41), mode="bilinear"
    )[0].permute(1, 2, 0)
    np.testing.assert_allclose(bilinear(img, 13, 41), ref.numpy(), rtol=0, atol=1e-10)


def test_resize_back_keep_aspect_crops_the_padded_square():
    sq = np.arange(16, dtype=np.float64).reshape(4, 4, 1)
    assert resize_back(sq, 2, 4, "nearest", keep_aspect=True).shape == (2, 4, 1)
    np.testing.assert_array_equal(resize_back(sq, 4, 4, "nearest", keep_aspect=True), sq)


def test_finish_restoration_resizes_before_clipping():
    # Official low-level order: resize in [0, 1] units, clip to [0, 1], x 255.
    painted = np.full((3, 4, 4), 1.2)
    painted[:, :2] = -0.1
    out = finish(painted, 4, 4, "restoration")
    assert out.dtype == np.float64
    assert out.max() == 255.0 and out.min() == 0.0


def test_finish_depth_is_in_millimetre_units():
    painted = np.full((3, 4, 4), 0.2)  # 0.2 of the 10 m range
    out = finish(painted, 2, 2, "depth")
    assert out[0, 0, 0] == 2000.0
    codec = get_codec("nyuv2-depth")
    np.testing.assert_array_equal(decode_painted(out, codec), np.full((2, 2), 2.0))


def _painted(folder):
    z = np.load(folder / "official_painted.npz")
    return _denormalize64(torch.from_numpy(z["query_half"])[None])[0], str(z["resize_mode"])


@pytest.mark.parametrize("task", sorted(FIXTURE_CODECS))
def test_official_canvas_gives_the_official_file(official_inference_dir, task, tmp_path):
    folder = official_inference_dir / task
    manifest = json.loads((official_inference_dir / "manifest.json").read_text())[task]
    codec = get_codec(FIXTURE_CODECS[task])
    painted, mode = _painted(folder)
    official = np.asarray(Image.open(folder / "official_output.png"))
    h, w = manifest["query_size_hw"]
    assert official.shape[:2] == (h, w)
    from painter_cli.inference.predictor import back_resize_mode

    assert back_resize_mode(codec.kind) == mode  # the interpolation the script used
    query = np.zeros((h, w, 3), np.uint8)
    rec = write_outputs(tmp_path, "q", finish(painted, h, w, codec.kind), query, None, codec)
    name = {"depth": "depth", "semseg": None}.get(task, "restored")
    ours = np.asarray(Image.open(tmp_path / (rec["outputs"][name] if name else rec["painted"])))
    assert ours.dtype == official.dtype
    np.testing.assert_array_equal(ours, official)
    if task == "semseg":  # the evaluator's palette decoding: our labels are 1-based
        labels = np.asarray(Image.open(tmp_path / rec["outputs"]["labels"])).astype(np.int64)
        official_labels = np.asarray(Image.open(folder / "official_labels.png"))
        np.testing.assert_array_equal(labels - 1, official_labels)
