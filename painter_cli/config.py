"""Typed training-run configuration: dataclass sections, presets, TOML load/write, ``--set`` overrides.

A run config is resolved in this order, each layer overriding the previous one: the dataclass
defaults, a preset from ``PRESETS`` (literal data), a TOML file, ``--set section.key=value``
overrides (values parsed as TOML literals, bare words as strings), then the explicit CLI flags.
Unknown sections or keys are errors (``PainterError`` naming the key and the file). The resolved
config is written to ``RUN_DIR/config.toml`` by ``to_toml`` and read back on ``--resume``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import tomllib

from painter_cli.errors import PainterError


@dataclass
class ModelSection:
    """The network. ``preset`` names a ``painter_cli.model.PRESETS`` entry (canvas, patch, width,
    depth); the other keys override it. ``drop_path_rate`` < 0 keeps the preset's value."""

    preset: str = "painter-tiny"
    drop_path_rate: float = -1.0
    # Canvas (H, W) in pixels, H = 2W (empty: the preset's, or the ``run.init`` checkpoint's). A
    # checkpoint given as ``run.init`` is moved to this canvas (``Painter.at_canvas``).
    img_size: list[int] = field(default_factory=list)
    # Blocks (0: the preset's, or the ``run.init`` checkpoint's). A ``run.init`` checkpoint with
    # fewer is deepened to this many (``Painter.deepened``: identity blocks, same outputs).
    depth: int = 0
    # Recompute block activations in the backward pass (memory for compute; large models).
    grad_checkpointing: bool = False
    # torch.compile the model (CUDA runs; slow to start, so off by default).
    compile: bool = False


@dataclass
class TaskOptions:
    """Per-task training options, ``[data.task_options."TASK"]`` (the defaults are the official
    behaviour; docs/train.md has the recipes)."""

    # Prompt and query of a canvas are two different samples of one group (a class, a video: the
    # group each shard sample stores), so the prompt shows the concept the query must segment.
    pair_by_group: bool = False
    # Repaint both targets of a canvas through one random colour mapping (SegGPT); segmentation
    # (semseg-kind) codecs only.
    recolor: bool = False
    # Loss weight of the target's foreground (non-black) pixels; "auto": sqrt((1 - f) / f)
    # clipped to [1, 10], f = the task's measured foreground fraction. 1: the official loss.
    fg_weight: float | str = 1.0
    # Share of the prompt's (top) target patches masked as well (and so predicted) in training.
    prompt_mask: float = 0.0
    # SegGPT's type token for this task ("semantic" / "instance"; "": by its codec's kind,
    # ``model.seg_type_for_kind``). Saved with the checkpoint; inference on the task uses it.
    seg_type: str = ""

    def check(self, what: str) -> None:
        """``PainterError`` naming ``what`` (the task's options) when a value is out of range."""
        w = self.fg_weight
        if isinstance(w, str) and w != "auto":
            raise PainterError(f'{what}.fg_weight: expected a number > 0 or "auto", got {w!r}')
        if not isinstance(w, str) and not (math.isfinite(w) and w > 0):
            raise PainterError(f"{what}.fg_weight: must be > 0, got {w}")
        if not 0.0 <= self.prompt_mask <= 1.0:
            raise PainterError(f"{what}.prompt_mask: must be in [0, 1], got {self.prompt_mask}")
        if self.seg_type not in ("", "semantic", "instance"):
            raise PainterError(
                f'{what}.seg_type: expected "semantic", "instance" or "" (by the codec), '
                f"got {self.seg_type!r}"
            )


@dataclass
class DataSection:
    """Shards, task weights and the joint augmentations (units: pixels, probabilities)."""

    paths: list[str] = field(default_factory=list)  # train shard directories (--data)
    val_paths: list[str] = field(default_factory=list)  # validation shard directories (--val-data)
    tasks: list[str] = field(default_factory=list)  # train on these tasks only (empty: all)
    # Sampling weight per task name; the paper's eight tasks default to PAPER_TASKS weights, any
    # other task must be given one here. Normalised over the tasks present.
    weights: dict[str, float] = field(default_factory=dict)
    # Per-task options (concept pairing, random colouring, foreground weight, prompt masking).
    task_options: dict[str, TaskOptions] = field(default_factory=dict)
    num_workers: int = 2
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    color_jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2, 0.1])
    jitter_prob: float = 0.8
    flip_prob: float = 0.5
    second_crop: bool = True  # the canvas-level second random resized crop
    second_crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    second_crop_ratio: list[float] = field(default_factory=lambda: [0.3, 0.7])
    # True: the official rule (nearest for every target except depth and keypoints, so restoration
    # targets too); False: nearest for discrete codecs, bicubic for continuous ones.
    official_target_resize: bool = False


@dataclass
class MaskSection:
    """Block-wise masks on the target canvas. ``patches`` > 0 is an exact count and wins over
    ``ratio``; block sizes are in patches (``max_block`` 0: a quarter of the grid)."""

    ratio: float = 0.75
    patches: int = 0
    min_block: int = 16
    max_block: int = 0
    min_aspect: float = 0.3
    half_prob: float = 0.1  # probability of the bottom-half mask instead


@dataclass
class OptimSection:
    """AdamW with layer-wise lr decay. ``batch_size`` is the global batch per optimizer step;
    ``micro_batch`` the per-process forward batch (0: batch_size / world size, no accumulation)."""

    lr: float = 1e-3
    min_lr: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.05
    layer_decay: float = 0.8
    clip_grad: float = 3.0  # max global grad norm; 0 disables clipping
    batch_size: int = 4
    micro_batch: int = 0


@dataclass
class ScheduleSection:
    """Linear warm-up then half-cosine to ``optim.min_lr``, per optimizer step. Give ``steps``
    (iterations) or ``epochs`` (one epoch = number of train pairs / batch_size steps)."""

    steps: int = 0
    warmup_steps: int = 0
    epochs: float = 0.0
    warmup_epochs: float = 0.0


@dataclass
class RunSection:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    # torch intra-op threads on the CPU; 0: OMP_NUM_THREADS if set, else the cores left to this
    # process after the data workers (oversubscribed threads slow small models down many times)
    threads: int = 0
    # Initial weights: "" (scratch), "mae:PATH" (MAE ViT encoder), or a Painter checkpoint/RUN_DIR.
    init: str = ""
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    val_every: int = 0  # 0: validate only at the end (when val_paths are given)
    val_samples: int = 16  # validation queries per task


@dataclass
class TrainConfig:
    """A whole training run (see the module docstring for how it is resolved)."""

    preset: str = "tiny"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    mask: MaskSection = field(default_factory=MaskSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=RunSection)


SECTIONS = ("model", "data", "mask", "optim", "schedule", "run")

# Presets: literal overrides of the defaults above, section -> key -> value.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # A CPU-sized run on the painter-tiny model (canvas 64x32, patch 8: an 8x4 grid of 32 patches).
    "tiny": {
        "model": {"preset": "painter-tiny", "drop_path_rate": 0.1},
        "data": {"num_workers": 2},
        "mask": {"ratio": 0.5, "min_block": 2, "max_block": 8},
        "optim": {"lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.8, "batch_size": 4},
        "schedule": {"steps": 200, "warmup_steps": 20},
        "run": {"checkpoint_every": 100, "log_every": 10, "val_samples": 8},
    },
    # The paper's recipe as published. The paper does not state layer decay, gradient clipping
    # or the per-GPU batch; those take the released code's values.
    "painter-vit-large": {
        "model": {"preset": "painter-vit-large", "drop_path_rate": 0.1},
        "data": {"num_workers": 10},
        "mask": {"ratio": 0.75, "patches": 0, "min_block": 16, "max_block": 392},
        "optim": {
            "lr": 1e-3,
            "betas": [0.9, 0.999],
            "weight_decay": 0.05,
            "layer_decay": 0.8,
            "clip_grad": 3.0,
            "batch_size": 2048,
            "micro_batch": 2,
        },
        "schedule": {"steps": 54000, "warmup_steps": 5400},
        "run": {"checkpoint_every": 1000, "log_every": 20, "init": ""},
    },
    # What train_painter_vit_large.sh ran instead (spec 4.1-4.6).
    "painter-vit-large-code": {
        "model": {"preset": "painter-vit-large", "drop_path_rate": 0.1},
        "data": {"num_workers": 10},
        "mask": {"ratio": 0.5, "patches": 784, "min_block": 16, "max_block": 392},
        "optim": {
            "lr": 1e-3,
            "betas": [0.9, 0.999],
            "weight_decay": 0.1,
            "layer_decay": 0.8,
            "clip_grad": 3.0,
            "batch_size": 2048,
            "micro_batch": 2,
        },
        "schedule": {"steps": 0, "warmup_steps": 0, "epochs": 15.0, "warmup_epochs": 1.0},
        "run": {"checkpoint_every": 1000, "log_every": 20},
    },
}


def resolve(
    path: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainConfig:
    """Build a ``TrainConfig``: defaults, then the preset (``preset`` argument, else the TOML's
    top-level ``preset`` key, else ``tiny``), then the TOML file, then ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        raw = read_toml(path)
    name = preset or raw.get("preset") or "tiny"
    if not isinstance(name, str) or name not in PRESETS:
        raise PainterError(
            f"{where}: unknown preset {name!r}", hint=f"known presets: {', '.join(PRESETS)}"
        )
    cfg = TrainConfig(preset=name)
    apply_dict(cfg, PRESETS[name], f"preset {name}")
    apply_dict(cfg, {k: v for k, v in raw.items() if k != "preset"}, where)
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PainterError(f"{path}: config file not found")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise PainterError(f"{path}: not valid TOML ({e})") from None


def apply_dict(cfg: TrainConfig, raw: dict[str, Any], where: str) -> None:
    """Apply ``{section: {key: value}}`` (plus top-level ``preset``) to ``cfg`` with type checks."""
    for sec_name, values in raw.items():
        if sec_name == "preset":
            if not isinstance(values, str):
                raise PainterError(f"{where}: 'preset' must be a string")
            cfg.preset = values
            continue
        if sec_name not in SECTIONS:
            raise PainterError(
                f"{where}: unknown config section {sec_name!r}",
                hint=f"sections: {', '.join(SECTIONS)}",
            )
        if not isinstance(values, dict):
            raise PainterError(f"{where}: {sec_name!r} must be a table of keys")
        section = getattr(cfg, sec_name)
        for key, value in values.items():
            set_value(section, sec_name, key, value, where)


def set_value(section: Any, sec_name: str, key: str, value: Any, where: str) -> None:
    hints = get_type_hints(type(section))
    if key not in hints:
        known = ", ".join(f.name for f in fields(section))
        raise PainterError(
            f"{where}: unknown config key {sec_name}.{key}", hint=f"{sec_name} keys: {known}"
        )
    setattr(section, key, _coerce(value, hints[key], f"{where}: {sec_name}.{key}"))


def apply_override(cfg: TrainConfig, item: str) -> None:
    """Apply one ``section.key=value`` (or ``data.weights.TASK=value``,
    ``data.task_options.TASK.KEY=value``) override."""
    where = f"--set {item}"
    if "=" not in item:
        raise PainterError(f"{where}: expected section.key=value")
    dotted, text = item.split("=", 1)
    value = parse_literal(text.strip())
    parts = dotted.strip().split(".")
    if len(parts) == 3 and parts[0] == "data" and parts[1] == "weights":
        cfg.data.weights = {**cfg.data.weights, parts[2]: _coerce(value, float, where)}
        return
    if len(parts) == 4 and parts[0] == "data" and parts[1] == "task_options":
        task, key = parts[2], parts[3]
        old = cfg.data.task_options.get(task, TaskOptions())
        merged = {**dataclasses.asdict(old), key: value}
        opts = _coerce(merged, TaskOptions, f"{where}: data.task_options.{task}")
        cfg.data.task_options = {**cfg.data.task_options, task: opts}
        return
    if len(parts) != 2:
        raise PainterError(f"{where}: expected section.key=value (e.g. optim.lr=1e-4)")
    if parts[0] not in SECTIONS:
        raise PainterError(
            f"{where}: unknown config section {parts[0]!r}", hint=f"sections: {', '.join(SECTIONS)}"
        )
    set_value(getattr(cfg, parts[0]), parts[0], parts[1], value, "--set")


def apply_flags(
    cfg: TrainConfig,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    data: list | None = None,
    val_data: list | None = None,
    init: str | None = None,
) -> TrainConfig:
    """Apply the explicit ``painter train`` flags (the last layer); ``None``/empty leaves a key.
    ``--steps`` switches to an iteration schedule and keeps the warm-up's share of the run."""
    if steps is not None:
        if steps < 1:
            raise PainterError(f"--steps must be >= 1, got {steps}")
        s = cfg.schedule
        if s.steps > 0:
            share = s.warmup_steps / s.steps
        else:
            share = s.warmup_epochs / s.epochs if s.epochs > 0 else 0.0
        apply_override(cfg, f"schedule.steps={steps}")
        s.warmup_steps = min(steps, int(round(share * steps)))
        s.epochs = s.warmup_epochs = 0.0
    if batch_size is not None:
        apply_override(cfg, f"optim.batch_size={batch_size}")
    if seed is not None:
        apply_override(cfg, f"run.seed={seed}")
    if data:
        cfg.data.paths = [str(p) for p in data]
    if val_data:
        cfg.data.val_paths = [str(p) for p in val_data]
    if init is not None:
        cfg.run.init = init
    return cfg


def parse_literal(text: str) -> Any:
    """A TOML literal (``1e-4``, ``true``, ``[1, 2]``, ``"x"``); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _coerce(value: Any, typ: Any, what: str) -> Any:
    origin = get_origin(typ)
    if origin is types.UnionType:
        for arm in get_args(typ):
            try:
                return _coerce(value, arm, what)
            except PainterError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in get_args(typ))
        raise PainterError(f"{what}: expected {names}, got {value!r}")
    if dataclasses.is_dataclass(typ):
        return _coerce_table(value, typ, what)
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        (item,) = get_args(typ)
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item, what) for v in value]
    elif origin is dict:
        _, item = get_args(typ)
        if isinstance(value, dict):
            return {str(k): _coerce(v, item, f"{what}.{k}") for k, v in value.items()}
    name = getattr(typ, "__name__", str(typ))
    raise PainterError(f"{what}: expected {name}, got {value!r}")


def _coerce_table(value: Any, typ: Any, what: str) -> Any:
    """A dataclass (``TaskOptions``) from a TOML table: its keys over the defaults, checked."""
    if isinstance(value, typ):
        return value
    if not isinstance(value, dict):
        raise PainterError(f"{what}: expected a table of keys, got {value!r}")
    hints = get_type_hints(typ)
    obj = typ()
    for k, v in value.items():
        if k not in hints:
            known = ", ".join(f.name for f in fields(typ))
            raise PainterError(f"{what}: unknown key {k!r}", hint=f"keys: {known}")
        setattr(obj, k, _coerce(v, hints[k], f"{what}.{k}"))
    obj.check(what)
    return obj


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    """A ``TrainConfig`` from a full dict (as written by ``to_toml``); no preset is applied."""
    cfg = TrainConfig()
    apply_dict(cfg, raw, where)
    return cfg


def _toml_value(v: Any) -> str:
    if dataclasses.is_dataclass(v):
        v = dataclasses.asdict(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
        )
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table(v: Any) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)


def to_toml(cfg: TrainConfig) -> str:
    """The resolved config as TOML text (``resolve``/``load_run_config`` read it back equal)."""
    lines = [f"preset = {_toml_value(cfg.preset)}"]
    for sec_name in SECTIONS:
        lines += ["", f"[{sec_name}]"]
        tables = []
        for f in fields(getattr(cfg, sec_name)):
            value = getattr(getattr(cfg, sec_name), f.name)
            if value and isinstance(value, dict) and _is_table(next(iter(value.values()))):
                tables.append((f.name, value))  # [section.key."name"] tables, as written by hand
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        for key, value in tables:
            for name, item in value.items():
                lines += ["", f"[{sec_name}.{key}.{json.dumps(str(name))}]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in dataclasses.asdict(item).items()]
    return "\n".join(lines) + "\n"


def write_toml(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``to_toml(cfg)`` atomically (temp file in the same directory + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(to_toml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_run_config(path: str | Path) -> TrainConfig:
    """Read a resolved ``config.toml`` (from a run directory) back into a ``TrainConfig``."""
    path = Path(path)
    return from_dict(read_toml(path), str(path))
