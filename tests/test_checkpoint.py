"""Checkpoints: our directory format, run dirs, official .pth files (safely), MAE init, errors."""

from __future__ import annotations

import argparse
import ast
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from painter_cli.checkpoint import (
    load_mae_encoder,
    load_model,
    load_training_state,
    read_checkpoint_config,
    resolve_checkpoint,
    save_checkpoint,
)
from painter_cli.errors import PainterError
from painter_cli.model import build_model

# The bundled model's weights: its config.json gained a task table, its weights must not change
# (a model bundled since records the hash in its metrics.json).
BUNDLED_SHA256 = {
    "bundled-tiny": "771562ba77e395acf36dcfa2e1985354eff6ab1a3e88b4bb26291bd883941846"
}


def batch():
    g = torch.Generator().manual_seed(0)
    imgs, tgts = torch.randn(2, 3, 64, 32, generator=g), torch.randn(2, 3, 64, 32, generator=g)
    mask = torch.zeros(2, 32)
    mask[:, 16:] = 1
    return imgs, tgts, mask


def predict(model):
    with torch.no_grad():
        return model.eval()(*batch())[1]


def fixture_state_dict(npz):
    return {k[2:]: torch.from_numpy(npz[k]).clone() for k in npz.files if k.startswith("w/")}


# ---- our format ---------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = build_model("painter-tiny", seed=3)
    state = {"optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-4}]},
             "step": 7, "rng": torch.get_rng_state()}  # fmt: skip
    out = save_checkpoint(
        tmp_path / "ckpt", model, run_config={"lr": 1e-4}, meta={"step": 7}, training_state=state
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.pt",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dirs left behind
    doc = json.loads((out / "config.json").read_text())
    assert doc["model"]["img_size"] == [64, 32] and doc["run"] == {"lr": 1e-4}
    assert doc["meta"]["step"] == 7
    loaded = load_model(out)
    assert not loaded.training and loaded.config == model.config
    assert torch.equal(predict(loaded), predict(model))
    assert all(p.requires_grad for p in loaded.parameters())
    back = load_training_state(out)
    assert back["step"] == 7 and torch.equal(
        back["optimizer"]["state"][0]["exp_avg"], torch.ones(3)
    )
    assert read_checkpoint_config(out)["meta"]["step"] == 7


def test_save_replaces_existing_checkpoint_and_overrides_apply(tmp_path):
    save_checkpoint(tmp_path / "c", build_model("painter-tiny", seed=1), training_state={"a": 1})
    model = build_model("painter-tiny", seed=2)
    save_checkpoint(tmp_path / "c", model)
    assert load_training_state(tmp_path / "c") is None
    loaded = load_model(tmp_path / "c", attn_impl="reference")
    assert loaded.config.attn_impl == "reference"
    assert torch.allclose(predict(loaded), predict(model), atol=1e-5)


def test_training_state_with_unloadable_objects_is_refused_at_save(tmp_path):
    state = {"rng": {"numpy": ("MT19937", np.zeros(3, dtype=np.uint32))}}
    with pytest.raises(PainterError, match=r"training_state\['rng'\]\['numpy'\]\[1\] is a ndarray"):
        save_checkpoint(tmp_path / "c", build_model("painter-tiny"), training_state=state)
    assert list(tmp_path.iterdir()) == []


def test_run_dir_resolves_to_latest_complete_step(tmp_path):
    run = tmp_path / "run"
    for step, seed in ((10, 1), (200, 2), (30, 3)):
        save_checkpoint(
            run / "checkpoints" / f"step_{step:08d}", build_model("painter-tiny", seed=seed)
        )
    broken = run / "checkpoints" / "step_00000900"  # an interrupted save: no weights
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    assert resolve_checkpoint(run) == run / "checkpoints" / "step_00000200"
    assert torch.equal(predict(load_model(run)), predict(build_model("painter-tiny", seed=2)))
    with pytest.raises(PainterError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(PainterError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "missing")


def test_preset_name_gives_a_seeded_model():
    a, b = load_model("painter-tiny"), load_model("painter-tiny")
    assert torch.equal(predict(a), predict(b))
    with pytest.raises(PainterError, match="no such checkpoint"):
        load_model("painter-huge")


def test_the_bundled_model_has_a_name(tmp_path, monkeypatch):
    # --checkpoint / --init bundled (or the model's own name, e.g. bundled-mini): the package's
    # own model, wherever it is installed.
    from painter_cli.defaults import BUNDLED_MODEL, bundled_model

    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("bundled") == resolve_checkpoint(BUNDLED_MODEL) == bundled_model()
    model = load_model("bundled")
    assert torch.equal(model.state_dict()["mask_token"], load_model(bundled_model()).mask_token)
    (tmp_path / "bundled").mkdir()  # a folder of that name is what the user means
    with pytest.raises(PainterError, match="bundled: no checkpoint found"):
        resolve_checkpoint("bundled")
    with pytest.raises(PainterError) as err:
        resolve_checkpoint("bundeld")
    assert f"bundled ({BUNDLED_MODEL})" in err.value.hint
    # An earlier version kept in the package answers to its own name too.
    tiny = bundled_model().parent / "bundled-tiny"
    assert resolve_checkpoint("bundled-tiny") == tiny
    assert load_model("bundled-tiny").config.img_size == (64, 32)
    (tmp_path / "bundled-tiny").mkdir()  # again, a folder of that name wins
    with pytest.raises(PainterError, match="bundled-tiny: no checkpoint found"):
        resolve_checkpoint("bundled-tiny")


def official_file(path, sd):
    args = argparse.Namespace(model="painter_vit_large_patch16_input896x448_win_dec64_8glb_sl1",
                              input_size=[896, 448], lr=1e-3)  # fmt: skip
    torch.save({"model": sd, "epoch": 14, "args": args}, path)
    return path


def test_official_painter_pth_loads_with_inferred_config(tmp_path, parity_dir):
    npz = np.load(parity_dir / "painter_tiny.npz")
    path = official_file(tmp_path / "painter_tiny.pth", fixture_state_dict(npz))
    model = load_model(path)
    cfg = model.config
    assert (cfg.img_size, cfg.patch_size, cfg.num_heads, cfg.depth) == ((64, 32), 8, 4, 24)
    assert (cfg.pretrain_img_size, cfg.decoder_embed_dim, cfg.num_type_tokens) == (32, 16, 0)
    assert cfg.feature_blocks == (5, 11, 17, 23) and cfg.loss_variant == "painter"
    with torch.no_grad():
        loss, pred = model(
            *(torch.from_numpy(npz[k]) for k in ("in/imgs", "in/tgts", "in/mask", "in/valid"))
        )
    assert loss.item() == pytest.approx(1.1028843, abs=1e-4)
    assert torch.allclose(pred, torch.from_numpy(npz["out/pred_image"]), atol=1e-4)


def test_official_seggpt_pth_is_recognised(tmp_path, parity_dir):
    npz = np.load(parity_dir / "seggpt_tiny.npz")
    model = load_model(official_file(tmp_path / "seggpt.pth", fixture_state_dict(npz)))
    assert model.config.num_type_tokens == 2 and model.config.loss_variant == "seggpt"
    with torch.no_grad():
        _, pred = model(
            *(torch.from_numpy(npz[k][:1]) for k in ("in/imgs", "in/tgts", "in/mask")),
            seg_type="instance",
        )
    ref = torch.from_numpy(npz["out/instance/pred_patches_single"])
    assert torch.allclose(model.patchify(pred), ref, atol=1e-4)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker.txt"
    sd = build_model("painter-tiny").state_dict()
    path = tmp_path / "evil.pth"
    torch.save({"model": sd, "extra": Payload(marker)}, path)
    with pytest.raises(PainterError, match=r"evil\.pth: refused to load.*exec"):
        load_model(path)
    assert not marker.exists()


def test_truncated_file_fails_with_one_line(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": build_model("painter-tiny").state_dict()}, good)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(PainterError, match=r"bad\.pth: not a readable checkpoint") as err:
        load_model(bad)
    assert "\n" not in str(err.value)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(PainterError, match="not a readable safetensors file"):
        load_model(bad_st)


def test_classifier_checkpoint_is_rejected_naming_the_key(tmp_path):
    sd = {"cls_token": torch.zeros(1, 1, 64), "pos_embed": torch.zeros(1, 17, 64),
          "patch_embed.proj.weight": torch.zeros(64, 3, 8, 8), "head.weight": torch.zeros(1000, 64)}  # fmt: skip
    path = tmp_path / "vit.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(
        PainterError,
        match=r"vit\.pth: not a Painter/SegGPT checkpoint: missing blocks\.0\.attn\.rel_pos_h",
    ):
        load_model(path)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    ckpt = save_checkpoint(tmp_path / "c", build_model("painter-tiny"))
    weights = load_file(str(ckpt / "model.safetensors"))
    weights["blocks.2.attn.rel_pos_h"] = torch.zeros(27, 16)
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(
        PainterError,
        match=r"blocks\.2\.attn\.rel_pos_h has shape \(27, 16\), the model expects \(15, 16\)",
    ):
        load_model(ckpt)
    del weights["blocks.2.attn.rel_pos_h"]
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(PainterError, match=r"missing weight blocks\.2\.attn\.rel_pos_h \(15, 16\)"):
        load_model(ckpt)


def test_unknown_config_key_in_checkpoint_is_an_error(tmp_path):
    ckpt = save_checkpoint(tmp_path / "c", build_model("painter-tiny"))
    doc = json.loads((ckpt / "config.json").read_text())
    doc["model"]["window_size"] = 14
    (ckpt / "config.json").write_text(json.dumps(doc))
    with pytest.raises(PainterError, match="unknown model config key.*window_size"):
        load_model(ckpt)


# ---- MAE initialisation ---------------------------------------------------------------------------


def test_mae_encoder_initialisation(tmp_path):
    donor = build_model("painter-tiny", seed=5).state_dict()
    mae = {
        k: v
        for k, v in donor.items()
        if k.startswith(("blocks.", "patch_embed.", "pos_embed", "norm."))
    }
    for k in [k for k in mae if "rel_pos" in k]:
        del mae[k]  # MAE has no rel-pos
    mae["cls_token"] = torch.zeros(1, 1, 64)
    mae["mask_token"] = torch.zeros(1, 1, 512)  # MAE decoder width: dropped
    mae["decoder_embed.weight"] = torch.zeros(512, 64)  # shape differs: dropped
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": mae, "args": argparse.Namespace(model="mae_vit_large_patch16")}, path)

    model = build_model("painter-tiny", seed=9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_mae_encoder(model, path)
    after = model.state_dict()
    assert torch.equal(after["blocks.3.attn.qkv.weight"], donor["blocks.3.attn.qkv.weight"])
    assert torch.equal(after["pos_embed"], donor["pos_embed"])
    for key in ("mask_token", "decoder_embed.weight", "blocks.0.attn.rel_pos_h", "segment_token_x"):
        assert torch.equal(after[key], before[key]), key
    assert set(report["ignored"]) == {"cls_token", "mask_token", "decoder_embed.weight"}
    assert "decoder_pred.0.weight" in report["missing"]

    mae["blocks.0.attn.qkv.weight"] = torch.zeros(96, 32)
    torch.save({"model": mae}, path)
    with pytest.raises(PainterError, match=r"blocks\.0\.attn\.qkv\.weight has shape \(96, 32\)"):
        load_mae_encoder(model, path)


@pytest.mark.parametrize(
    "tsv,preset",
    [
        ("painter_vit_large_state_dict.tsv", "painter-vit-large"),
        ("seggpt_vit_large_state_dict.tsv", "seggpt-vit-large"),
    ],
)
def test_official_large_layout_infers_the_released_config(tsv, preset):
    from conftest import SHARED

    from painter_cli.checkpoint import check_state_dict, infer_config
    from painter_cli.model import Painter, get_config

    path = SHARED / "spec" / tsv
    if not path.is_file():
        pytest.skip(f"{path} not found")
    shapes = [line.split("\t") for line in path.read_text().splitlines() if line]
    sd = {k: torch.empty(ast.literal_eval(shape), device="meta") for k, shape in shapes}
    cfg = infer_config(sd, path)
    assert cfg == get_config(preset)
    assert cfg.img_size == (896, 448) and cfg.num_heads == 16
    with torch.device("meta"):
        check_state_dict(Painter(cfg), sd, path)  # no error: every key and shape matches


def test_corrupt_file_is_not_reported_as_code(tmp_path):
    rand = tmp_path / "x.pth"
    rand.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(PainterError, match=r"x\.pth: not a readable checkpoint \(") as info:
        load_model(rand)
    assert "refused" not in str(info.value)


# torch warns about the deliberately old pickle protocol before the loader refuses the file.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_plain_pickle_that_runs_code_names_what_it_references(tmp_path):
    import pickle

    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:  # a plain (non-zip) pickle, protocol 4
        pickle.dump({"model": Payload(marker)}, f, protocol=4)
    with pytest.raises(PainterError, match=r"refused to load.*\(it references builtins\.exec\)"):
        load_model(path)
    assert not marker.exists()


def test_target_resize_rule_is_a_fact_of_the_checkpoint(tmp_path):
    from types import SimpleNamespace

    from painter_cli.checkpoint import target_resize_rule, trained_tasks

    painter = SimpleNamespace(config=SimpleNamespace(num_type_tokens=0))
    seggpt = SimpleNamespace(config=SimpleNamespace(num_type_tokens=2))
    released = tmp_path / "painter_vit_large.pth"
    released.write_bytes(b"")  # only its name and layout matter here
    # Released files: as their official inference (Painter's eval scripts: PIL's default bicubic;
    # SegGPT: nearest).
    assert target_resize_rule(released, painter) == "bicubic"
    assert target_resize_rule(released, seggpt) == "nearest"
    assert target_resize_rule("painter-tiny", painter) == "codec"
    # Ours: as `painter train` resized the targets.
    model = build_model("painter-tiny", seed=0)
    ours = save_checkpoint(tmp_path / "ours", model, run_config={"data": {}})
    assert target_resize_rule(ours, model) == "codec"
    official = save_checkpoint(
        tmp_path / "off", model, run_config={"data": {"official_target_resize": True}}
    )
    assert target_resize_rule(official, model) == "official-train"
    assert trained_tasks(ours) == {} and trained_tasks(released) == {}
    table = {"edges": {"codec": "semseg", "params": {"num_classes": 1}, "kind": "semseg"}}
    assert trained_tasks(save_checkpoint(tmp_path / "t", model, tasks=table)) == table


def test_bundled_model_knows_its_synthetic_tasks_and_weights_are_unchanged():
    import hashlib
    from importlib import resources

    from painter_cli.checkpoint import trained_tasks
    from painter_cli.defaults import BUNDLED_MODEL

    folder = resources.files("painter_cli") / "assets" / "models" / BUNDLED_MODEL
    tasks = trained_tasks(str(folder))
    # The tasks its last stage trained: the recipe's data.tasks, else every weighted task.
    data = json.loads((folder / "config.json").read_text())["run"]["data"]
    trained = data["tasks"] or [t for t, w in data["weights"].items() if w > 0]
    assert sorted(tasks) == sorted(trained)
    assert "synthetic-fgseg" not in tasks  # held out
    assert tasks["synthetic-semseg"]["params"] == {"num_classes": 6, "base": 2, "background": True}
    assert tasks["synthetic-semseg"]["target_resize"] == "nearest"
    weights = (folder / "model.safetensors").read_bytes()
    metrics = json.loads((folder / "metrics.json").read_text())
    expected = metrics.get("weights_sha256") or BUNDLED_SHA256[BUNDLED_MODEL]
    assert hashlib.sha256(weights).hexdigest() == expected


def test_seg_type_follows_the_checkpoint_and_the_task_kind(tmp_path):
    from types import SimpleNamespace

    from painter_cli.checkpoint import resolve_seg_type

    painter = SimpleNamespace(config=SimpleNamespace(num_type_tokens=0))
    released = tmp_path / "seggpt_vit_large.pth"
    released.write_bytes(b"")  # only its layout (no config.json) matters here
    seggpt = build_model("seggpt-mini", seed=0)
    ours = save_checkpoint(tmp_path / "ours", seggpt, run_config={"data": {}})
    # Painter has no type tokens; the released SegGPT paints with its official default
    # (instance); ours as `painter train` fed the task's kind; an explicit option always wins.
    assert resolve_seg_type(released, painter, None, "semseg") is None
    assert resolve_seg_type(released, seggpt, None, "semseg") == "instance"
    assert resolve_seg_type(ours, seggpt, None, "semseg") == "semantic"
    assert resolve_seg_type(ours, seggpt, None, "instance") == "instance"
    assert resolve_seg_type(ours, seggpt, "instance", "semseg") == "instance"
    # A task trained with a token of its own (task_options.<task>.seg_type) paints with it; a task
    # the checkpoint did not learn falls back to its kind's token.
    table = {"s": {"codec": "semseg", "kind": "semseg", "seg_type": "instance"}}
    split = save_checkpoint(tmp_path / "split", seggpt, run_config={"data": {}}, tasks=table)
    assert resolve_seg_type(split, seggpt, None, "semseg", "s") == "instance"
    assert resolve_seg_type(split, seggpt, None, "semseg", "other") == "semantic"
    assert resolve_seg_type(split, seggpt, None, "semseg") == "semantic"
    assert resolve_seg_type(split, seggpt, "semantic", "semseg", "s") == "semantic"
