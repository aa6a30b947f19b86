"""Painter model: config, shapes, gradients, official state-dict layout and numeric parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SHARED

from painter_cli.errors import PainterError
from painter_cli.model import (
    IMAGENET_MEAN,
    PRESETS,
    Painter,
    PainterConfig,
    build_model,
    denormalize,
    get_config,
    normalize,
)

# The fixture model of spec section 3 (depth 24, taps 5/11/17/23, grid 8x4).
FIXTURE_CONFIG = {
    "img_size": (64, 32),
    "patch_size": 8,
    "embed_dim": 64,
    "depth": 24,
    "num_heads": 4,
    "mlp_ratio": 4.0,
    "pretrain_img_size": 32,
    "decoder_embed_dim": 16,
    "merge_index": 2,
    "feature_blocks": (5, 11, 17, 23),
    "drop_path_rate": 0.1,
}
ATOL = 1e-4


def fixture_model(npz, attn_impl="fused", seggpt=False) -> Painter:
    extra = {"num_type_tokens": 2, "loss_variant": "seggpt"} if seggpt else {}
    model = Painter(PainterConfig(**FIXTURE_CONFIG, attn_impl=attn_impl, **extra))
    sd = {k[2:]: torch.from_numpy(npz[k]) for k in npz.files if k.startswith("w/")}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def t(npz, key):
    return torch.from_numpy(npz[key])


def tiny_batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(n, 3, 64, 32, generator=g)
    tgts = torch.randn(n, 3, 64, 32, generator=g)
    mask = torch.zeros(n, 32)
    mask[:, 16:] = 1
    return imgs, tgts, mask


# ---- config ----------------------------------------------------------------------------------


def test_config_unknown_key_is_an_error():
    with pytest.raises(PainterError, match="unknown model config key.*bogus"):
        PainterConfig.from_dict({**PRESETS["painter-tiny"], "bogus": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"img_size": (64, 64)},
        {"img_size": (60, 30)},
        {"embed_dim": 66},
        {"feature_blocks": (0, 3, 4, 5)},
        {"feature_blocks": (1, 3, 4, 6)},
        {"num_type_tokens": 1},
        {"attn_impl": "flash"},
    ],
)
def test_config_rejects_inconsistent_values(change):
    with pytest.raises(PainterError, match="invalid model config"):
        get_config("painter-tiny", **change)


def test_config_round_trips_through_json():
    cfg = get_config("seggpt-vit-large", attn_impl="reference")
    back = PainterConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert back.grid == (56, 28) and back.num_patches == 1568


def test_presets_build_on_meta_device():
    for name in PRESETS:
        cfg = get_config(name)
        with torch.device("meta"):
            model = Painter(cfg)
        assert model.decoder_embed.in_features == cfg.embed_dim * len(cfg.feature_blocks)
        assert len(model.blocks) == cfg.depth


@pytest.mark.parametrize(
    "preset,tsv,count",
    [
        ("painter-vit-large", "painter_vit_large_state_dict.tsv", 370_721_155),
        ("seggpt-vit-large", "seggpt_vit_large_state_dict.tsv", 370_723_203),
    ],
)
def test_large_state_dict_matches_official_keys(preset, tsv, count):
    path = SHARED / "spec" / tsv
    if not path.is_file():
        pytest.skip(f"{path} not found")
    expected = [tuple(line.split("\t")) for line in path.read_text().splitlines() if line]
    with torch.device("meta"):
        model = Painter(get_config(preset))
    got = [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()]
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == count


# ---- canvas helpers ----------------------------------------------------------------------------


def test_normalize_known_values_and_round_trip():
    x = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(normalize(x), torch.zeros(1, 3, 2, 2), atol=1e-7)
    assert torch.allclose(
        normalize(torch.ones(1, 3, 1, 1))[0, :, 0, 0],
        torch.tensor([2.2489, 2.4286, 2.64]),
        atol=1e-4,
    )
    y = torch.rand(2, 3, 8, 4)
    assert torch.allclose(denormalize(normalize(y)), y, atol=1e-6)


def test_patchify_layout_and_round_trip():
    model = build_model("painter-tiny")
    x = torch.zeros(1, 3, 64, 32)
    x[0, 2, 9, 3] = 1.0  # token row 1, col 0; pixel (1, 3) inside the patch; channel 2
    tokens = model.patchify(x)
    assert tokens.shape == (1, 32, 192)
    (tok, pos) = tokens[0].nonzero()[0].tolist()
    assert tok == 1 * 4 + 0 and pos == (1 * 8 + 3) * 3 + 2
    y = torch.randn(2, 3, 64, 32)
    assert torch.equal(model.unpatchify(model.patchify(y)), y)
    with pytest.raises(PainterError, match="2:1"):
        model.patchify(torch.zeros(1, 3, 32, 32))


# ---- behaviour on the tiny preset -------------------------------------------------------------


def test_tiny_forward_shapes_and_finite():
    model = build_model("painter-tiny").eval()
    imgs, tgts, mask = tiny_batch()
    loss, pred = model(imgs, tgts, mask)
    assert pred.shape == (2, 3, 64, 32) and loss.shape == ()
    assert torch.isfinite(pred).all() and torch.isfinite(loss)
    feats = model.forward_features(imgs, tgts, mask.view(2, 8, 4))
    assert [f.shape for f in feats] == [(2, 8, 4, 64)] * 4


def test_gradients_reach_every_parameter():
    model = build_model("painter-tiny").train()
    imgs, tgts, mask = tiny_batch()
    loss, _ = model(imgs, tgts, mask)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_batched_equals_single():
    model = build_model("painter-tiny").eval()
    imgs, tgts, mask = tiny_batch(3)
    with torch.no_grad():
        _, pred = model(imgs, tgts, mask)
        singles = torch.cat(
            [model(imgs[i : i + 1], tgts[i : i + 1], mask[i : i + 1])[1] for i in range(3)]
        )
    assert torch.allclose(pred, singles, atol=1e-5)


def test_masked_target_content_never_reaches_the_model():
    model = build_model("painter-tiny").eval()
    imgs, tgts, mask = tiny_batch(1)
    other = tgts.clone()
    other[:, :, 32:] = torch.randn(1, 3, 32, 32)  # the masked bottom half
    with torch.no_grad():
        assert torch.equal(model(imgs, tgts, mask)[1], model(imgs, other, mask)[1])


def test_loss_counts_masked_pixels_only_and_keeps_valid_untouched():
    model = build_model("painter-tiny")
    _, tgts, mask = tiny_batch()
    pred = tgts.clone()
    pred[:, :, 32:] += 0.5  # masked half off by 0.5 -> smooth-L1 = 0.5 - beta/2
    pred[:, :, :32] += 3.0  # visible half ignored
    valid = torch.ones_like(tgts)
    loss = model.forward_loss(pred, tgts, mask, valid)
    denom = 2 * 3 * 32 * 32
    assert loss.item() == pytest.approx((0.5 - 0.005) * denom / (denom + 1e-2), rel=1e-5)
    assert torch.equal(valid, torch.ones_like(tgts))
    assert model.forward_loss(pred, tgts, mask, None).item() == pytest.approx(loss.item())


def test_dark_visible_target_is_ignored_for_painter_only():
    painter = build_model("painter-tiny")
    seggpt = build_model("painter-tiny", num_type_tokens=2, loss_variant="seggpt")
    _, tgts, mask = tiny_batch()
    tgts[1] = normalize(torch.zeros(1, 3, 64, 32))[0]  # sample 1: black target
    pred = tgts + 1.0
    valid = torch.ones_like(tgts)
    # Painter: sample 1 is dropped from numerator and denominator.
    assert painter.forward_loss(pred, tgts, mask, valid).item() == pytest.approx(
        painter.forward_loss(pred[:1], tgts[:1], mask[:1], valid[:1]).item(), rel=1e-6
    )
    # SegGPT: kept, no +1e-2: every masked pixel is off by 1 -> 1 - beta/2 exactly.
    assert seggpt.forward_loss(pred, tgts, mask, valid).item() == pytest.approx(0.995, rel=1e-6)
    assert torch.equal(valid, torch.ones_like(tgts))


def test_dark_target_threshold_scales_with_the_canvas():
    from painter_cli.model import dark_target_threshold

    assert dark_target_threshold(896, 448) == 300.0  # the official canvas: the official rule
    assert dark_target_threshold(64, 32) == pytest.approx(300 * 2048 / 401408)  # ~1.53
    painter = build_model("painter-tiny")

    def loss_with_visible_sum(total: float, h: int, w: int) -> float:
        # visible top half: one pixel of brightness total/3 per channel, the rest black
        tgts = torch.zeros(1, 3, h, w)
        tgts[0, :, 0, 0] = total / 3
        mask = torch.zeros(1, h // 8, w // 8)
        mask[:, h // 16 :] = 1
        tgts = normalize(tgts)
        return painter.forward_loss(tgts + 1.0, tgts, mask).item()

    assert loss_with_visible_sum(1.0, 64, 32) == 0.0  # under 1.53: dropped
    assert loss_with_visible_sum(2.0, 64, 32) > 0.9  # a dim prompt target counts on a small canvas
    assert loss_with_visible_sum(299.0, 896, 448) == 0.0
    assert loss_with_visible_sum(301.0, 896, 448) > 0.9


def test_grad_checkpointing_gives_the_same_gradients():
    imgs, tgts, mask = tiny_batch()
    grads = []
    for ckpt in (False, True):
        model = build_model("painter-tiny", grad_checkpointing=ckpt).train()
        model(imgs, tgts, mask)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bf16_autocast_runs_close_to_fp32():
    model = build_model("painter-tiny").eval()
    imgs, tgts, mask = tiny_batch()
    with torch.no_grad():
        ref = model(imgs, tgts, mask)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, pred = model(imgs, tgts, mask)
    assert loss.dtype == torch.float32 and torch.isfinite(pred).all()
    assert (pred.float() - ref).abs().max() < 0.15


@pytest.mark.parametrize("impl", ["bias", "reference"])
def test_fused_attention_matches_other_implementations_with_gradients(impl):
    # 80x40 canvas: grid 10x5, augmented head dim 16+10+5=31 padded to 32
    g = torch.Generator().manual_seed(1)
    imgs, tgts = torch.randn(2, 3, 80, 40, generator=g), torch.randn(2, 3, 80, 40, generator=g)
    mask = torch.zeros(2, 50)
    mask[:, 25:] = 1
    grads, preds = [], []
    for name in ("fused", impl):
        model = build_model("painter-tiny", attn_impl=name, drop_path_rate=0.0).train()
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for blk in model.blocks:  # non-zero rel-pos so the terms matter
                blk.attn.rel_pos_h.normal_(0, 0.1, generator=gen)
                blk.attn.rel_pos_w.normal_(0, 0.1, generator=gen)
        loss, pred = model(imgs, tgts, mask)
        loss.backward()
        preds.append(pred.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert torch.allclose(preds[0], preds[1], atol=1e-5)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


# ---- parity with the official code -------------------------------------------------------------


@pytest.mark.parametrize("impl", ["fused", "bias", "reference"])
def test_painter_parity(parity_dir, impl):
    npz = np.load(parity_dir / "painter_tiny.npz")
    model = fixture_model(npz, impl)
    valid = t(npz, "in/valid")
    valid_before = valid.clone()
    with torch.no_grad():
        args = (t(npz, "in/imgs"), t(npz, "in/tgts"), t(npz, "in/mask"))
        loss, pred = model(*args, valid)
        feats = model.forward_features(*args)
        loss2, pred2 = model(t(npz, "in2/imgs"), t(npz, "in2/tgts"), t(npz, "in2/mask"))
    assert torch.equal(valid, valid_before)  # the ignore rule fired but valid is untouched
    assert loss.item() == pytest.approx(1.1028843, abs=ATOL)
    assert torch.allclose(pred, t(npz, "out/pred_image"), atol=ATOL)
    assert torch.allclose(model.patchify(pred), t(npz, "out/pred_patches"), atol=ATOL)
    for i, f in enumerate(feats):
        assert torch.allclose(f, t(npz, f"out/enc_feat{i}"), atol=ATOL)
    assert loss2.item() == pytest.approx(1.1416345, abs=ATOL)
    assert torch.allclose(model.patchify(pred2), t(npz, "out2/pred_patches"), atol=ATOL)


@pytest.mark.parametrize("seg_type,code", [("instance", 1), ("semantic", 0)])
def test_seggpt_parity_single_and_feature_ensemble(parity_dir, seg_type, code):
    npz = np.load(parity_dir / "seggpt_tiny.npz")
    losses = json.loads((parity_dir / "seggpt_tiny.json").read_text())["losses(ensemble,single)"]
    model = fixture_model(npz, seggpt=True)
    imgs, tgts, mask = t(npz, "in/imgs"), t(npz, "in/tgts"), t(npz, "in/mask")
    with torch.no_grad():
        loss_e, pred_e = model(imgs, tgts, mask, seg_type=seg_type, feature_ensemble=True)
        loss_s, pred_s = model(imgs[:1], tgts[:1], mask[:1], seg_type=torch.tensor([[code]]))
    assert torch.allclose(
        model.patchify(pred_e), t(npz, f"out/{seg_type}/pred_patches_ensemble"), atol=ATOL
    )
    assert torch.allclose(
        model.patchify(pred_s), t(npz, f"out/{seg_type}/pred_patches_single"), atol=ATOL
    )
    assert loss_e.item() == pytest.approx(losses[seg_type][0], abs=ATOL)
    assert loss_s.item() == pytest.approx(losses[seg_type][1], abs=ATOL)
    # The ensemble really mixes prompts: element 0 differs from its single-prompt prediction.
    assert (pred_e[:1] - pred_s).abs().max() > 1e-3


def test_at_canvas_keeps_outputs_at_that_canvas():
    model = build_model("painter-tiny", seed=3).eval()
    moved = model.at_canvas((96, 48)).eval()
    assert moved.config.img_size == (96, 48)
    assert moved.blocks[0].attn.rel_pos_h.shape == (2 * 12 - 1, 16)
    x = torch.randn(2, 3, 96, 48)
    mask = torch.zeros(2, 72)
    mask[:, 36:] = 1
    with torch.no_grad():
        _, a = model(x, x, mask)
        _, b = moved(x, x, mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_deepened_computes_the_same_and_trains_its_new_blocks():
    model = build_model("seggpt-mini", seed=3).eval()
    deep = model.deepened(10).eval()
    # One identity block after each of blocks 2..5; taps (1, 3, 4, 5) follow to (1, 5, 7, 9).
    assert deep.config.depth == 10 and deep.config.feature_blocks == (1, 5, 7, 9)
    assert torch.equal(deep.blocks[4].attn.qkv.weight, model.blocks[3].attn.qkv.weight)
    assert not deep.blocks[3].attn.proj.weight.any() and not deep.blocks[9].mlp.fc2.weight.any()
    x, y = torch.randn(2, 3, 128, 64), torch.randn(2, 3, 128, 64)
    mask = torch.zeros(2, 128)
    mask[:, 64:] = 1
    with torch.no_grad():
        _, a = model(x, y, mask, seg_type=0)
        _, b = deep(x, y, mask, seg_type=0)
    assert torch.allclose(a, b, atol=1e-5)
    loss, _ = deep.train()(x, y, mask, seg_type=0)
    loss.backward()
    for j in (3, 5, 7, 9):  # the new blocks' outputs get a gradient from the first step
        assert deep.blocks[j].attn.proj.weight.grad.abs().sum() > 0
        assert deep.blocks[j].mlp.fc2.weight.grad.abs().sum() > 0
    assert model.deepened(8).config.feature_blocks == (1, 3, 5, 7)  # later blocks first
    with pytest.raises(PainterError, match="cannot deepen a 6-block model to 6"):
        model.deepened(6)


def test_seggpt_mini_is_the_cpu_segmentation_model():
    # The measured model: canvas 128 x 64, patch 8, width 128, depth 6, 1.76 M parameters,
    # with SegGPT's two type tokens (2 x 128 of them) and loss.
    cfg = get_config("seggpt-mini")
    assert cfg.grid == (16, 8) and cfg.num_type_tokens == 2 and cfg.loss_variant == "seggpt"
    model = Painter(cfg)
    assert sum(p.numel() for p in model.parameters()) == 1_760_099
    assert model.type_token_cls.shape == (1, 1, 1, 128)
