"""inference.py: image loading, prompts, canvas assembly, painting, resizing back, output files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from painter_cli.errors import PainterError
from painter_cli.inference import (
    Predictor,
    PredictSettings,
    fit_square,
    load_image,
    load_prompt_tensors,
    load_target,
    make_prompt,
    output_stems,
    prompt_sources,
    resolve_queries,
    run_predict,
    unfit_square,
    write_outputs,
)
from painter_cli.model import build_model
from painter_cli.tasks import get_codec

S = 32  # painter-tiny: canvas 64 x 32, patch 8


@pytest.fixture(scope="module")
def model():
    return build_model("painter-tiny", seed=0)


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor(model, device="cpu")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- loading ------------------------------------------------------------------------------------


def test_load_image_modes(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "l.png")
    np.testing.assert_array_equal(load_image(tmp_path / "l.png"), np.stack([gray] * 3, axis=2))

    rgba = np.dstack([_photo(3, 4), np.full((3, 4), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])

    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.save(tmp_path / "p.png")
    expected = np.array([[[10, 20, 30], [200, 100, 50]], [[200, 100, 50], [10, 20, 30]]])
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), expected)

    deep = np.array([[0, 65535, 32896]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "16.png")
    np.testing.assert_array_equal(load_image(tmp_path / "16.png")[..., 0], [[0, 255, 128]])


def test_load_image_applies_exif_orientation(tmp_path):
    arr = _photo(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.png", exif=exif)
    loaded = load_image(tmp_path / "r.png")
    np.testing.assert_array_equal(loaded, np.rot90(arr, k=-1))


def test_load_target_depth_16bit_uses_the_official_mm_conversion(tmp_path):
    mm = np.array([[0, 1000, 3922, 20000]], np.uint16)
    Image.fromarray(mm).save(tmp_path / "d.png")
    painted = load_target(tmp_path / "d.png", get_codec("nyuv2-depth"))
    # floor(mm * 255 / 10000), clipped: 0, 25.5 -> 25, 100.01 -> 100, 510 -> 255
    np.testing.assert_array_equal(painted[0, :, 0], [0, 25, 100, 255])


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_bad_image_names_the_file(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(PainterError, match="bad.png"):
        load_image(bad)


# --- squares and prompts --------------------------------------------------------------------------


def test_keep_aspect_pad_and_crop_round_trip():
    img = _photo(30, 50)
    sq = fit_square(img, 50, keep_aspect=True)  # no resampling at the padded side
    assert sq.shape == (50, 50, 3)
    assert (sq[30:] == 0).all()
    back = unfit_square(sq.astype(np.float32), 30, 50, "bicubic", keep_aspect=True)
    np.testing.assert_array_equal(back, img.astype(np.float32))
    small = fit_square(img, S, keep_aspect=True)
    assert unfit_square(small.astype(np.float32), 30, 50, "nearest", True).shape == (30, 50, 3)
    assert unfit_square(small.astype(np.float32), 30, 50, "bilinear").shape == (30, 50, 3)


def test_discrete_targets_resize_with_nearest():
    codec = get_codec("ade20k-semseg")
    labels = _rng(1).integers(1, 151, (37, 41))
    target = codec.encode(labels)
    image = _photo(37, 41)
    palette = {tuple(c) for c in codec.colours.tolist()}

    def colours(prompt):
        t = prompt.target.permute(1, 2, 0).double().numpy()
        rgb = np.round((t * [0.229, 0.224, 0.225] + [0.485, 0.456, 0.406]) * 255)
        return {tuple(int(v) for v in c) for c in rgb.reshape(-1, 3)}

    assert colours(make_prompt(image, target, S, discrete=True)) <= palette
    assert (
        not colours(make_prompt(image, target, S, discrete=True, target_resize="bicubic"))
        <= palette
    )
    with pytest.raises(PainterError, match="differ in size"):
        make_prompt(image, target[:-1], S)


def test_prompt_sources(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(_photo(8, 8)).save(one / "image.jpg")
    Image.fromarray(_photo(8, 8)).save(one / "target.png")
    assert prompt_sources(str(one)) == [(str(one / "image.jpg"), str(one / "target.png"))]

    many = tmp_path / "many"
    many.mkdir()
    for name in ("a", "b"):
        Image.fromarray(_photo(8, 8)).save(many / f"{name}.png")
        Image.fromarray(_photo(8, 8)).save(many / f"{name}_target.png")
    assert [p[0] for p in prompt_sources(str(many))] == [str(many / "a.png"), str(many / "b.png")]

    pair = f"{one / 'image.jpg'}:{one / 'target.png'}"
    assert prompt_sources(pair) == [(str(one / "image.jpg"), str(one / "target.png"))]

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.fromarray(_photo(8, 8)).save(lonely / "x.png")
    with pytest.raises(PainterError, match="without a target"):
        prompt_sources(str(lonely))


def test_prompt_safetensors(tmp_path):
    from safetensors.torch import save_file

    image, target = torch.randn(3, S, S), torch.randn(3, S, S)
    folder = tmp_path / "tuned"
    folder.mkdir()
    save_file({"image": image, "target": target}, str(folder / "prompt.safetensors"))
    (src,) = prompt_sources(str(folder))
    prompt = load_prompt_tensors(src)
    assert torch.equal(prompt.image, image) and torch.equal(prompt.target, target)
    save_file({"image": image}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(PainterError, match="bad.safetensors"):
        load_prompt_tensors(tmp_path / "bad.safetensors")


# --- canvas and painting ---------------------------------------------------------------------------


def test_canvas_layout_and_exact_normalisation(predictor):
    white = np.full((S, S, 3), 255, np.uint8)
    black = np.zeros((S, S, 3), np.uint8)
    prompt = predictor.prompt(white, black)
    queries = torch.stack([predictor.query(np.full((20, 30, 3), 51, np.uint8))] * 2)
    imgs, tgts, mask = predictor.canvas(prompt, queries)
    assert imgs.shape == tgts.shape == (2, 3, 2 * S, S)
    ones = [2.2489082969432315, 2.428571428571429, 2.64]  # (1 - mean) / std
    zeros = [-2.1179039301310043, -2.0357142857142856, -1.8044444444444445]  # -mean / std
    fifth = [-1.2445414847161573, -1.1428571428571428, -0.9155555555555556]  # (0.2 - mean) / std
    for c in range(3):
        assert torch.all(imgs[:, c, :S] == torch.tensor(ones[c], dtype=torch.float32))
        assert torch.all(imgs[:, c, S:] == torch.tensor(fifth[c], dtype=torch.float32))
        assert torch.all(tgts[:, c] == torch.tensor(zeros[c], dtype=torch.float32))
    # 8 x 4 patch grid: the bottom 4 rows (16 tokens) are masked.
    assert mask.shape == (2, 32)
    assert mask[:, :16].sum() == 0 and mask[:, 16:].min() == 1


def test_batched_equals_single(predictor):
    prompt = predictor.prompt(_photo(40, 30, 1), _photo(40, 30, 2))
    q = torch.stack([predictor.query(_photo(20 + i, 25, 10 + i)) for i in range(3)])
    batched = predictor.paint(q, [prompt])
    assert batched.shape == (3, 3, S, S)
    for i in range(3):
        torch.testing.assert_close(batched[i], predictor.paint(q[i : i + 1], [prompt])[0])


def test_ensembles(predictor):
    p1 = predictor.prompt(_photo(40, 30, 1), _photo(40, 30, 2))
    p2 = predictor.prompt(_photo(40, 30, 3), _photo(40, 30, 4))
    q = torch.stack([predictor.query(_photo(20, 25, 10 + i)) for i in range(2)])
    single1, single2 = predictor.paint(q, [p1]), predictor.paint(q, [p2])
    outputs = predictor.paint(q, [p1, p2], ensemble="outputs")
    features = predictor.paint(q, [p1, p2], ensemble="features")
    assert outputs.shape == features.shape == (2, 3, S, S)
    torch.testing.assert_close(outputs, (single1 + single2) / 2)
    # Averaging identical prompts' features changes nothing; different prompts do mix.
    torch.testing.assert_close(predictor.paint(q, [p1, p1], ensemble="features"), single1)
    assert not torch.allclose(features, outputs, atol=1e-4)


def test_paint_each_equals_paint_with_each_querys_own_prompts(predictor):
    p1 = predictor.prompt(_photo(40, 30, 1), _photo(40, 30, 2))
    p2 = predictor.prompt(_photo(40, 30, 3), _photo(40, 30, 4))
    p3 = predictor.prompt(_photo(40, 30, 5), _photo(40, 30, 6))
    q = torch.stack([predictor.query(_photo(20, 25, 10 + i)) for i in range(2)])
    one = predictor.paint_each(q, [[p1], [p2]])
    torch.testing.assert_close(one[0], predictor.paint(q[:1], [p1])[0])
    torch.testing.assert_close(one[1], predictor.paint(q[1:], [p2])[0])
    for ensemble in ("features", "outputs"):
        two = predictor.paint_each(q, [[p1, p3], [p2, p3]], ensemble)
        torch.testing.assert_close(two[0], predictor.paint(q[:1], [p1, p3], ensemble)[0])
        torch.testing.assert_close(two[1], predictor.paint(q[1:], [p2, p3], ensemble)[0])
    with pytest.raises(PainterError, match="same number of prompts"):
        predictor.paint_each(q, [[p1], [p2, p3]])
    with pytest.raises(PainterError, match="2 queries but 1 prompt lists"):
        predictor.paint_each(q, [[p1]])


def test_bf16_weights_paint_close_to_fp32(predictor):
    prompt = predictor.prompt(_photo(40, 30, 1), _photo(40, 30, 2))
    q = torch.stack([predictor.query(_photo(20, 25, 10))])
    half = Predictor(build_model("painter-tiny", seed=0).to(torch.bfloat16), precision="bf16")
    out = half.paint(q, [prompt])
    assert out.dtype == torch.float64  # de-normalised in float64, as the official scripts
    torch.testing.assert_close(out, predictor.paint(q, [prompt]), atol=0.02, rtol=0)


def test_size_must_match_patch_and_prompt(model):
    with pytest.raises(PainterError, match="multiple of the patch size"):
        Predictor(model, size=30)
    big = Predictor(model, size=48)  # the model resamples its positions
    small_prompt = make_prompt(_photo(8, 8), _photo(8, 8), S)
    with pytest.raises(PainterError, match="--size 32"):
        big.paint(torch.zeros(1, 3, 48, 48), [small_prompt])


# --- output files ---------------------------------------------------------------------------------


def test_semseg_outputs_decode_known_painting(tmp_path):
    codec = get_codec("ade20k-semseg")
    labels = _rng(3).integers(1, 151, (12, 17))
    painted = codec.encode(labels).astype(np.float32)
    rec = write_outputs(tmp_path, "q", painted, _photo(12, 17), None, codec)
    assert rec["outputs"] == {"labels": "q_labels.png", "overlay": "q_overlay.png"}
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "q_labels.png")), labels)
    assert Image.open(tmp_path / "q_painted.png").size == (17, 12)


def test_depth_outputs_are_millimetres(tmp_path):
    codec = get_codec("nyuv2-depth")
    # finish() paints depth in 0..10000 (the official x 10000); channels (2000, 2001, 2002.9)
    # average to 2001.3 and truncate to 2001 mm.
    painted = np.zeros((4, 5, 3), np.float64)
    painted[:2] = [2000.0, 2001.0, 2002.9]
    painted[2:] = 10000.0  # 10 m
    rec = write_outputs(tmp_path, "d", painted, _photo(4, 5), None, codec)
    png = Image.open(tmp_path / rec["outputs"]["depth"])
    assert png.mode == "I;16"
    mm = np.asarray(png)
    assert (mm[:2] == 2001).all() and (mm[2:] == 10000).all()
    # The painted image in colour levels: 2000 * 255 / 10000 = 51.0, 2002.9 -> 51.07 -> 51.
    assert (np.asarray(Image.open(tmp_path / rec["painted"]))[0, 0] == [51, 51, 51]).all()
    np.testing.assert_allclose(np.load(tmp_path / rec["outputs"]["depth_npy"])[0, 0], 2.001, 1e-6)
    assert Image.open(tmp_path / rec["outputs"]["depth_color"]).size == (5, 4)


def test_instance_outputs_are_coco_rle(tmp_path):
    from pycocotools import mask as mask_utils

    codec = get_codec("coco-instance")
    ids = np.zeros((60, 80), np.int64)
    ids[5:20, 5:25] = 1
    ids[35:55, 50:75] = 2
    painted = codec.encode(ids).astype(np.float32)
    rec = write_outputs(tmp_path, "000000000042", painted, _photo(60, 80), None, codec, 42)
    results = json.loads((tmp_path / rec["outputs"]["instances"]).read_text())
    assert {r["image_id"] for r in results} == {42}
    masks = [
        mask_utils.decode({**r["segmentation"], "counts": r["segmentation"]["counts"]})
        for r in results
    ]
    for k in (1, 2):
        assert any(np.array_equal(m.astype(bool), ids == k) for m in masks)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_keypoint_and_restoration_outputs(tmp_path):
    codec = get_codec("coco-keypoints")
    kps = np.zeros((17, 3), np.float32)
    kps[0] = (50, 60, 2)
    kps[9] = (120, 200, 2)
    painted = codec.encode(kps).astype(np.float32)
    rec = write_outputs(tmp_path, "p", painted, _photo(256, 192), None, codec, 7)
    (res,) = json.loads((tmp_path / rec["outputs"]["keypoints"]).read_text())
    got = np.array(res["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(got[[0, 9], :2], [[50, 60], [120, 200]], atol=0.5)
    assert got[1, 2] == 0 and res["image_id"] == 7

    rest = get_codec("restoration")
    painted = np.full((3, 4, 3), 100.7, np.float32)
    rec = write_outputs(tmp_path, "r", painted, _photo(3, 4), None, rest)
    assert (np.asarray(Image.open(tmp_path / rec["outputs"]["restored"])) == 100).all()


def test_output_stems_are_unique(tmp_path):
    from pathlib import Path

    assert output_stems([Path("a/x.png"), Path("b/x.jpg"), Path("y.png")]) == ["x", "x-1", "y"]
    (tmp_path / "q").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "q" / name).write_bytes(b"x")
    assert [p.name for p in resolve_queries([str(tmp_path / "q")])] == ["a.jpg", "b.png"]
    with pytest.raises(PainterError, match="matches no file"):
        resolve_queries([str(tmp_path / "*.none")])


def test_run_predict_writes_files_and_schema(tmp_path, model):
    from painter_cli.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt", model)
    prompt = tmp_path / "prompt"
    prompt.mkdir()
    codec = get_codec("ade20k-semseg")
    Image.fromarray(_photo(40, 40, 5)).save(prompt / "image.png")
    Image.fromarray(codec.encode(_rng(6).integers(1, 151, (40, 40)))).save(prompt / "target.png")
    queries = tmp_path / "queries"
    queries.mkdir()
    for i, (h, w) in enumerate([(21, 34), (40, 18), (25, 25)]):
        Image.fromarray(_photo(h, w, 20 + i)).save(queries / f"q{i}.png")
    out = tmp_path / "out"
    settings = PredictSettings(
        queries=[str(queries)],
        prompts=[str(prompt)],
        checkpoint=str(ckpt),
        task="ade20k-semseg",
        out=str(out),
        batch_size=2,
    )
    records = run_predict(settings)
    saved = json.loads((out / "predictions.json").read_text())
    assert saved == records and len(saved) == 3
    for rec, (h, w) in zip(saved, [(21, 34), (40, 18), (25, 25)], strict=True):
        assert set(rec) == {"query", "painted", "preview", "outputs"}
        assert Image.open(out / rec["painted"]).size == (w, h)
        assert np.asarray(Image.open(out / rec["outputs"]["labels"])).shape == (h, w)
        assert (out / rec["preview"]).is_file()
    config = json.loads((out / "predict_config.json").read_text())
    assert config["checkpoint"] == str(ckpt) and config["size"] == S
    assert config["prompts"] == [f"{prompt / 'image.png'}:{prompt / 'target.png'}"]
    assert not list(out.glob(".*.tmp"))


def test_run_predict_decodes_by_the_prompt_colours(tmp_path, model):
    from painter_cli.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt", model)
    prompt = tmp_path / "prompt"
    prompt.mkdir()
    target = np.zeros((40, 40, 3), np.uint8)  # any colours: black, orange, blue
    target[5:20, 5:35] = (250, 140, 20)
    target[24:36, 10:30] = (30, 60, 220)
    Image.fromarray(_photo(40, 40, 5)).save(prompt / "image.png")
    Image.fromarray(target).save(prompt / "target.png")
    Image.fromarray(_photo(21, 34, 20)).save(tmp_path / "q.png")
    out = tmp_path / "out"
    settings = PredictSettings(
        queries=[str(tmp_path / "q.png")],
        prompts=[str(prompt)],
        checkpoint=str(ckpt),
        out=str(out),
        decode="prompt",
    )
    (rec,) = run_predict(settings)
    colours = np.array([[0, 0, 0], [30, 60, 220], [250, 140, 20]])
    assert rec["colours"] == colours.tolist()
    labels = np.asarray(Image.open(out / rec["outputs"]["labels"])).astype(np.int64)
    assert labels.shape == (21, 34) and labels.max() <= 2
    # every pixel's label is its nearest prompt colour (L1; the PNG is truncated, 1 level/channel)
    painted = np.asarray(Image.open(out / rec["painted"])).astype(np.int64)
    dist = np.abs(painted[:, :, None, :] - colours[None, None]).sum(axis=-1)
    chosen = np.take_along_axis(dist, labels[..., None], axis=-1)[..., 0]
    assert (chosen <= dist.min(axis=-1) + 3).all()
    overlay = np.asarray(Image.open(out / rec["outputs"]["overlay"])).astype(np.int64)
    want = (0.5 * _photo(21, 34, 20) + 0.5 * colours[labels]).astype(np.int64)
    assert np.abs(overlay - want).max() <= 1
    with pytest.raises(PainterError, match="applies to segmentation"):
        run_predict(PredictSettings(**{**settings.to_dict(), "task": "nyuv2-depth"}))
    tensors = tmp_path / "tensors"
    tensors.mkdir()
    from safetensors.torch import save_file

    save_file(
        {"image": torch.zeros(3, S, S), "target": torch.zeros(3, S, S)},
        str(tensors / "prompt.safetensors"),
    )
    with pytest.raises(PainterError, match="no target image to read colours from"):
        run_predict(PredictSettings(**{**settings.to_dict(), "prompts": [str(tensors)]}))


def test_predict_again_into_the_same_out_clears_the_earlier_run_and_shows_every_prompt(
    tmp_path, model
):
    from painter_cli.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt", model)
    codec = get_codec("ade20k-semseg")
    prompts = []
    for k in range(3):
        folder = tmp_path / f"prompt{k}"
        folder.mkdir()
        Image.fromarray(_photo(40, 40, 5 + k)).save(folder / "image.png")
        target = codec.encode(_rng(6 + k).integers(1, 151, (40, 40)))
        Image.fromarray(target).save(folder / "target.png")
        prompts.append(str(folder))
    queries = tmp_path / "queries"
    queries.mkdir()
    Image.fromarray(_photo(21, 34, 20)).save(queries / "q0.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def predict(task, prompt_list):
        settings = PredictSettings(
            queries=[str(queries)], prompts=prompt_list, checkpoint=str(ckpt), task=task,
            out=str(out),
        )  # fmt: skip
        return run_predict(settings)

    predict("ade20k-semseg", prompts)
    assert (out / "q0_labels.png").is_file() and (out / "q0_overlay.png").is_file()
    # The preview shows all 3 prompt pairs of the ensemble, then the query and its painting:
    # 6 panels of 40 x 40 at height 256 (256 wide), 2 of 21 x 34 (round(34 * 256 / 21) = 414
    # wide) and 7 gaps of 4.
    assert Image.open(out / "q0_preview.png").size == (6 * 256 + 2 * 414 + 7 * 4, 256)
    predict(None, prompts[:1])  # no task: painted and preview only
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt",
        "predict_config.json",
        "predictions.json",
        "q0_painted.png",
        "q0_preview.png",
    ]
    assert Image.open(out / "q0_preview.png").size == (2 * 256 + 2 * 414 + 3 * 4, 256)


def test_predictor_takes_gray_arrays_as_the_cli_takes_gray_files(predictor):
    # A 2-D array raised a raw RuntimeError from torch's permute; it is gray, as an L file.
    gray = _rng(3).integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    assert torch.equal(predictor.query(gray), predictor.query(rgb))
    prompt = predictor.prompt(gray, gray)
    assert torch.equal(prompt.image, predictor.prompt(rgb, rgb).image)
    with pytest.raises(PainterError, match=r"query: expected .* got uint8 \(20, 30, 2\)"):
        predictor.query(np.zeros((20, 30, 2), np.uint8))


def test_resolve_device_checks_cuda_availability(monkeypatch):
    from painter_cli.inference import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(PainterError, match=f"--device {spec}: CUDA is not available") as e:
            resolve_device(spec)
        assert e.value.hint == "use --device cpu or auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PainterError, match="--device cuda:3: this machine has 1 CUDA device"):
        resolve_device("cuda:3")
    with pytest.raises(PainterError, match="--device cuda:x"):
        resolve_device("cuda:x")
    assert resolve_device("cpu") == torch.device("cpu")


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    from painter_cli.inference import open_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(PainterError, match="huge.png: image is too large"):
        open_image(path)


def test_atomic_writes_get_the_umask_permissions(tmp_path):
    import os
    import stat

    from painter_cli.inference import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's owner-only 0o600


def test_missing_inputs_and_prompts_carry_a_hint(tmp_path):
    from painter_cli.inference import prompt_sources
    from painter_cli.inference.images import resolve_queries

    (tmp_path / "a.png").write_bytes(b"x")
    cases = [
        (lambda: prompt_sources(str(tmp_path / "nodir")), "prompt folder"),
        (lambda: prompt_sources(f"{tmp_path / 'a.png'}:{tmp_path / 'b.png'}"), "must exist"),
        (lambda: resolve_queries([str(tmp_path / "missing.png")]), "glob pattern"),
    ]
    for call, hint in cases:
        with pytest.raises(PainterError) as exc:
            call()
        assert hint in (exc.value.hint or "")


def test_palette_target_files_stay_nearest_under_the_bicubic_protocol(tmp_path):
    # The official eval scripts resize the target file as read: PIL's default resample is bicubic
    # for RGB but NEAREST for palette ("P") and bilevel ("1") images.
    from painter_cli.inference import file_target_resize, load_prompts

    assert file_target_resize("bicubic", "RGB") == "bicubic"
    assert file_target_resize("bicubic", "P") == "nearest"
    assert file_target_resize("bicubic", "1") == "nearest"
    assert file_target_resize("nearest", "RGB") == "nearest"
    assert file_target_resize("bicubic", None) == "bicubic"
    Image.fromarray(_photo(8, 8)).save(tmp_path / "image.png")
    Image.fromarray(_photo(8, 8)).convert("P").save(tmp_path / "target.png")
    ((name, image, target, mode),) = load_prompts([str(tmp_path)], None)
    assert mode == "P" and target.shape == (8, 8, 3)
