"""Checkpoints: our directory format, official ``.pth`` files and MAE initialisation.

Our format is a directory::

    step_00001000/
      model.safetensors   weights (no pickle, so loading never runs code)
      config.json         {"format": "painter-checkpoint", "version": 1,
                           "model": <PainterConfig>, "run": <run config>, "meta": {step, time, ...}}
      optimizer.pt        optional: optimizer / scheduler / RNG state for resume, plain tensors,
                          dicts, lists and numbers only (read back with weights_only=True)

A run directory holds ``checkpoints/step_XXXXXXXX/``; the latest complete one is used.

Official files (``painter_vit_large.pth``, ``seggpt_vit_large.pth``, ``checkpoint-N.pth``) are
pickles holding ``{"model": state_dict, ...}``, possibly with an ``argparse.Namespace`` of the
training arguments. They are read with ``torch.load(weights_only=True)`` with only
``argparse.Namespace`` allow-listed: a pickle that would import anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from painter_cli.errors import PainterError
from painter_cli.model import PRESETS, Painter, PainterConfig, build_model

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINING_STATE_FILE = "optimizer.pt"
FORMAT = "painter-checkpoint"
FORMAT_VERSION = 1
STEP_DIR = re.compile(r"^step_(\d+)$")

# How prompt targets are resized to the canvas (a fact of the checkpoint, ``target_resize_rule``):
# ``codec`` nearest for discrete codecs and bicubic otherwise (``painter train``'s default);
# ``official-train`` nearest except depth and keypoints (``data.official_target_resize``);
# ``bicubic`` every target (the released Painter's eval scripts: PIL's default resample, how the
# paper's numbers were measured); ``nearest`` every target (SegGPT's inference).
TARGET_RESIZES = ("codec", "official-train", "bicubic", "nearest")

# The official model code hard-codes these; a state dict cannot tell them apart.
OFFICIAL_MERGE_INDEX = 2
OFFICIAL_FEATURE_BLOCKS = (5, 11, 17, 23)


def _unwrap(model: nn.Module) -> Painter:
    # DDP keeps the model in .module, torch.compile(model) in ._orig_mod
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    if not isinstance(model, Painter):
        raise PainterError(f"cannot save a {type(model).__name__}: expected a Painter model")
    return model


# --------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    *,
    run_config: dict | None = None,
    meta: dict | None = None,
    training_state: dict | None = None,
    tasks: dict | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``tasks``: the tasks the model learned, ``{name: {"codec", "params", "kind",
    "target_resize", "seg_type"}}`` (``task_table``), so predict and eval decode them without the
    shards.

    Everything is written into a temporary directory beside ``directory`` and renamed into place,
    so a reader never sees a half-written checkpoint; an existing checkpoint at the same path is
    replaced. ``training_state`` (optimizer/scheduler/RNG state) must contain only tensors,
    dicts, lists, tuples, strings and numbers.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    painter = _unwrap(model)
    if training_state is not None:
        _check_plain(training_state, "training_state")
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        from painter_cli.inference.images import umask_mode

        tmp.chmod(umask_mode(0o777))  # mkdtemp makes it owner-only
        weights = {k: v.detach().to("cpu").contiguous() for k, v in painter.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": painter.config.to_dict(),
            "run": run_config or {},
            "meta": {"saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})},
        }
        if tasks:
            doc["tasks"] = tasks
        (tmp / CONFIG_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE_FILE)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved checkpoint %s", directory)
    return directory


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(obj: Any, where: str) -> None:
    """Refuse at save time what ``torch.load(weights_only=True)`` would refuse at resume time."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise PainterError(
                    f"{where} has a {type(key).__name__} key {key!r}: use str/int keys"
                )
            _check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise PainterError(
        f"{where} is a {type(obj).__name__}: training state must hold only tensors, dicts, "
        "lists, tuples, strings and numbers",
        hint="convert e.g. numpy arrays with torch.from_numpy",
    )


# --------------------------------------------------------------------------------------------
# Finding


def _is_checkpoint_dir(path: Path) -> bool:
    return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def latest_checkpoint(checkpoints_dir: str | os.PathLike) -> Path | None:
    """The highest-numbered complete ``step_XXXXXXXX`` directory in ``checkpoints_dir``, or None."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return None
    steps = []
    for child in root.iterdir():
        match = STEP_DIR.match(child.name)
        if match and _is_checkpoint_dir(child):
            steps.append((int(match.group(1)), child))
    return max(steps)[1] if steps else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory, weights file (``.pth``/``.pt``/``.safetensors``), run directory
    (containing ``checkpoints/``; its latest complete checkpoint), or ``bundled`` or the name of a
    model the package ships (``defaults.BUNDLED_MODEL``, or an earlier version kept beside it, e.g.
    ``bundled-tiny``; unless a path of that name exists) -> the path to load."""
    from painter_cli.defaults import ASSETS, BUNDLED_MODEL, bundled_model

    path = Path(path)
    if not path.exists() and str(path) in ("bundled", BUNDLED_MODEL):
        # The bundled model by name, wherever the package is installed (a wheel included);
        # ``bundled`` names whichever version this package ships, so commands written with it
        # keep working when that changes.
        return bundled_model()
    shipped = ASSETS / "models" / str(path)
    if not path.exists() and path.name == str(path) and (shipped / WEIGHTS_FILE).is_file():
        return shipped
    if not path.exists():
        raise PainterError(
            f"{path}: no such checkpoint file or directory",
            hint=f"a checkpoint or run folder, a weights file, a preset, or bundled "
            f"({BUNDLED_MODEL})",
        )
    if path.is_file():
        if path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
            return path.parent
        if path.suffix in (".pth", ".pt", ".safetensors", ".bin"):
            return path
        raise PainterError(
            f"{path}: not a checkpoint file", hint="expected a .pth or .safetensors file"
        )
    if _is_checkpoint_dir(path):
        return path
    for candidate in (path / "checkpoints", path):
        found = latest_checkpoint(candidate)
        if found is not None:
            return found
    raise PainterError(
        f"{path}: no checkpoint found",
        hint=f"expected {WEIGHTS_FILE} + {CONFIG_FILE}, or a run directory with checkpoints/step_*/",
    )


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` document ({"model", "run", "meta", ...}) of a checkpoint or run dir."""
    ckpt = resolve_checkpoint(path)
    if ckpt.is_file():
        raise PainterError(f"{ckpt}: a bare weights file has no config.json")
    try:
        doc = json.loads((ckpt / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise PainterError(f"{ckpt / CONFIG_FILE}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "model" not in doc:
        raise PainterError(f"{ckpt / CONFIG_FILE}: not a painter checkpoint config")
    return doc


# --------------------------------------------------------------------------------------------
# What a checkpoint knows about its tasks


def task_table(tasks: Any) -> dict[str, dict[str, Any]]:
    """The task copy a run saves with its checkpoints, made once from the shard index when the run
    starts: ``tasks`` are the training set's tasks (``name``, ``codec``, ``target_resample`` a PIL
    filter, ``seg_type`` its type token) -> ``{name: {"codec", "params", "kind",
    "target_resize": "nearest"|"bicubic", "seg_type": "semantic"|"instance"}}`` (``seg_type``:
    the SegGPT type token the task trained with; Painter models have none and ignore it)."""
    from PIL import Image

    return {
        t.name: {
            "codec": t.codec.name,
            "params": t.codec.params(),
            "kind": t.codec.kind,
            "target_resize": "bicubic" if t.target_resample == Image.BICUBIC else "nearest",
            "seg_type": t.seg_type,
        }
        for t in tasks
    }


def _config_doc(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The config.json of a checkpoint or run folder; None for presets and bare weight files."""
    name = str(checkpoint)
    if name in PRESETS and not Path(name).exists():
        return None
    if not Path(name).exists():
        return None  # a released-weights name (painter-vit-large): resolved to its .pth elsewhere
    ckpt = resolve_checkpoint(checkpoint)
    return None if ckpt.is_file() else read_checkpoint_config(ckpt)


def trained_tasks(checkpoint: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The tasks a checkpoint of ours learned (``task_table``); empty for checkpoints saved before
    they carried it, presets and the released weights."""
    return _tasks_of(_config_doc(checkpoint))


def _tasks_of(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    tasks = (doc or {}).get("tasks") or {}
    return tasks if isinstance(tasks, dict) else {}


def resolve_seg_type(
    checkpoint: str | os.PathLike,
    model: nn.Module,
    option: str | None,
    kind: str | None,
    task: str | None = None,
) -> str | None:
    """The SegGPT type token to paint with: ``option`` when given; else None for a model without
    type tokens (Painter), ``instance`` for the released SegGPT file (its official inference
    default), and for a SegGPT checkpoint of ours the token ``painter train`` gave ``task`` (its
    task table's ``seg_type``, a recipe's ``task_options.<task>.seg_type``), or for a task it did
    not train the token of codec ``kind`` (``model.seg_type_for_kind``)."""
    from painter_cli.model import seg_type_for_kind

    if option is not None or not getattr(model.config, "num_type_tokens", 0):
        return option
    doc = _config_doc(checkpoint)
    if doc is None:  # the released layout
        return "instance"
    trained = _tasks_of(doc).get(task or "", {}).get("seg_type")
    return trained or seg_type_for_kind(kind or "")


def target_resize_rule(checkpoint: str | os.PathLike, model: nn.Module) -> str:
    """How this checkpoint's prompt targets are resized (one of ``TARGET_RESIZES``): a released
    file (official ``.pth`` layout) as its official inference (Painter ``bicubic``, SegGPT
    ``nearest``); a checkpoint of ours as ``painter train`` resized its targets; a preset
    ``codec``."""
    name = str(checkpoint)
    if name in PRESETS and not Path(name).exists():
        return "codec"
    doc = _config_doc(checkpoint)
    if doc is None:  # the released layout
        return "nearest" if getattr(model.config, "num_type_tokens", 0) else "bicubic"
    data = (doc.get("run") or {}).get("data") or {}
    return "official-train" if data.get("official_target_resize") else "codec"


# --------------------------------------------------------------------------------------------
# Reading weights without running code


_SAFE_MODULES = ("torch", "collections", "argparse", "_codecs", "numpy")


def _pickle_globals(path: Path) -> list[str] | None:
    """The globals (``module.name``) the pickle of ``path`` imports, or None when ``path`` holds no
    parseable pickle (random bytes, a truncated file). A torch zip archive: its ``data.pkl``."""
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    return None
                data = zf.read(names[0])
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return found
    except Exception:
        return None


def _safe_torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        refs = [match.group(1)] if match else None
        if refs is None and ("weights_only" in text or "Unsupported" in text):
            found = _pickle_globals(path)
            refs = [g for g in found or [] if g.split(".")[0] not in _SAFE_MODULES] or None
        if refs:
            raise PainterError(
                f"{path}: refused to load: the pickle would run code or import objects "
                f"(it references {', '.join(dict.fromkeys(refs))})",
                hint="only tensors, plain containers and argparse.Namespace are accepted",
            ) from None
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith("Unsupported operand")), None)
        if detail is None:
            detail = lines[0].split(". ")[0] if lines else type(exc).__name__
        if "weights_only" in text and not detail.startswith("Unsupported"):
            detail = "not a torch checkpoint or a truncated one"
        raise PainterError(
            f"{path}: not a readable checkpoint ({detail})",
            "the file is corrupt or not a checkpoint; download or copy it again",
        ) from None


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise PainterError(f"{path}: no state dict found (expected a dict with a 'model' entry)")
    sd = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise PainterError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        sd[str(key)] = value
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` or ``.pth`` file (official ``{"model": ...}`` or flat)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise PainterError(f"{path}: not a readable safetensors file ({exc})") from None
    return _extract_state_dict(_safe_torch_load(path), path)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def infer_config(
    sd: Mapping[str, torch.Tensor], path: str | os.PathLike = "state dict"
) -> PainterConfig:
    """The PainterConfig of an official-layout state dict (Painter or SegGPT by type tokens)."""
    needed = ("pos_embed", "patch_embed.proj.weight", "blocks.0.attn.rel_pos_h",
              "blocks.0.attn.rel_pos_w", "blocks.0.mlp.fc1.weight", "decoder_embed.weight",
              "decoder_pred.0.weight")  # fmt: skip
    for key in needed:
        if key not in sd:
            present = next(iter(sd), None)
            extra = f"; first key is {present} {_shape(sd[present])}" if present else ""
            raise PainterError(
                f"{path}: not a Painter/SegGPT checkpoint: missing {key}{extra}",
                hint="expected the official painter_vit_large.pth / seggpt_vit_large.pth layout",
            )
    embed = sd["pos_embed"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(sd["pos_embed"].shape[1] - 1)
    head_dim = sd["blocks.0.attn.rel_pos_h"].shape[1]
    hp = (sd["blocks.0.attn.rel_pos_h"].shape[0] + 1) // 2
    wp = (sd["blocks.0.attn.rel_pos_w"].shape[0] + 1) // 2
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    taps = sd["decoder_embed.weight"].shape[1] // embed
    seggpt = "type_token_cls" in sd
    if depth == 24 and taps == 4:
        merge, feature_blocks = OFFICIAL_MERGE_INDEX, OFFICIAL_FEATURE_BLOCKS
    else:
        raise PainterError(
            f"{path}: {depth} blocks with {taps} taps: not the official 24-block layout",
            hint="official files are ViT-L with taps after blocks 5/11/17/23",
        )
    fields = {
        "img_size": (hp * patch, wp * patch),
        "patch_size": patch,
        "embed_dim": embed,
        "depth": depth,
        "num_heads": embed // head_dim,
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / embed,
        "decoder_embed_dim": sd["decoder_pred.0.weight"].shape[0],
        "pretrain_img_size": grid * patch,
        "merge_index": merge,
        "feature_blocks": feature_blocks,
        "num_type_tokens": 2 if seggpt else 0,
        "loss_variant": "seggpt" if seggpt else "painter",
    }
    return PainterConfig.from_dict(fields)


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], path: Any) -> None:
    """Raise one PainterError line naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in sd:
            raise PainterError(f"{path}: missing weight {key} {_shape(ref)}")
        if tuple(sd[key].shape) != tuple(ref.shape):
            raise PainterError(
                f"{path}: {key} has shape {_shape(sd[key])}, the model expects {_shape(ref)}"
            )
    for key, value in sd.items():
        if key not in expected:
            raise PainterError(f"{path}: unexpected weight {key} {_shape(value)}")


def _materialise(
    cfg: PainterConfig, sd: Mapping[str, torch.Tensor], path: Any, device: Any
) -> Painter:
    # Built on the meta device: no time spent on a random init the weights overwrite.
    with torch.device("meta"):
        model = Painter(cfg)
    check_state_dict(model, sd, path)
    model.load_state_dict(dict(sd), strict=True, assign=True)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------
# Public loading API


def load_model(path_or_preset: str | os.PathLike, device: Any = "cpu", **overrides: Any) -> Painter:
    """A model in eval mode from a checkpoint dir, run dir, ``.pth``/``.safetensors`` file or a
    preset name (random init, seed 0). ``overrides`` replace config fields (e.g. ``attn_impl``,
    ``grad_checkpointing``); architectural changes fail with a shape error."""
    name = str(path_or_preset)
    if name in PRESETS and not Path(name).exists():
        return build_model(name, **overrides).to(device).eval()
    ckpt = resolve_checkpoint(path_or_preset)
    if ckpt.is_dir():
        doc = read_checkpoint_config(ckpt)
        cfg = PainterConfig.from_dict(doc["model"])
        sd = read_state_dict(ckpt / WEIGHTS_FILE)
        where = ckpt / WEIGHTS_FILE
    else:
        sd = read_state_dict(ckpt)
        cfg = infer_config(sd, ckpt)
        where = ckpt
    if overrides:
        cfg = cfg.replace(**overrides)
    model = _materialise(cfg, sd, where, device)
    log.info("loaded %s (%s)", ckpt, "SegGPT" if cfg.num_type_tokens else "Painter")
    return model


def load_training_state(checkpoint_dir: str | os.PathLike) -> dict | None:
    """The ``training_state`` saved with a checkpoint (or run dir), or None if there is none."""
    ckpt = resolve_checkpoint(checkpoint_dir)
    path = ckpt / TRAINING_STATE_FILE if ckpt.is_dir() else None
    if path is None or not path.is_file():
        return None
    return _safe_torch_load(path)


def load_mae_encoder(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise the encoder from MAE ViT weights (``mae_pretrain_vit_large.pth``), as in the
    official training recipe: matching keys load; ``cls_token`` and MAE decoder keys are
    ignored; ``decoder_embed.*`` and ``mask_token`` are dropped when their shapes differ; every
    missing key (rel-pos, tokens, decoder) keeps its own init. Any other shape mismatch is an
    error. Returns {"loaded": [...], "missing": [...], "ignored": [...]}.
    """
    painter = _unwrap(model)
    path = Path(path)
    if not path.is_file():
        raise PainterError(f"{path}: no such MAE checkpoint file")
    sd = read_state_dict(path)
    own = painter.state_dict()
    loaded, ignored = {}, []
    for key, value in sd.items():
        if key not in own:
            ignored.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            if key in ("decoder_embed.weight", "decoder_embed.bias", "mask_token"):
                ignored.append(key)
            else:
                raise PainterError(
                    f"{path}: {key} has shape {_shape(value)}, the model expects {_shape(own[key])}",
                    hint="the MAE encoder must have the model's width and patch size",
                )
        else:
            loaded[key] = value
    if not any(k.startswith("blocks.") for k in loaded):
        raise PainterError(f"{path}: no encoder weights matched the model (not an MAE ViT file?)")
    painter.load_state_dict(loaded, strict=False)
    missing = [k for k in own if k not in loaded]
    log.info(
        "MAE init from %s: %d loaded, %d kept, %d ignored",
        path,
        len(loaded),
        len(missing),
        len(ignored),
    )
    return {"loaded": sorted(loaded), "missing": missing, "ignored": ignored}
