"""The training loop: ``train(config, run_dir) -> RunResult``.

One optimizer step consumes ``optim.batch_size`` canvases: ``accum`` micro-batches of
``micro_batch`` canvases on each of ``world`` processes (torchrun; DDP with nccl on GPUs, gloo on
CPU). AdamW with the official parameter groups (no weight decay for 1-D parameters and
``pos_embed``; decay for the tokens and rel-pos tables) and layer-wise lr decay
(``layer_decay ** (depth + 1 - layer_id)``: patch/pos embedding 0, block i i+1, the rest depth+1),
per-step linear warm-up then half-cosine, gradient clipping, bf16 autocast on CUDA.

Resume is exact: the data of step s is a function of (seed, s) (``data.StepSampler``), the torch
RNG (drop path) is reseeded from (seed, step, rank) at every step, and a checkpoint stores the
weights, the optimizer state and the step; the lr is a function of the step.

Run directory: ``config.toml`` (the resolved config), ``metrics.jsonl`` (one JSON object per
logged step: ``step``, ``loss``, ``lr``, ...; validation adds ``val_loss`` {task: loss}),
``checkpoints/step_XXXXXXXX/`` (the last ``run.keep_checkpoints``), ``tb/`` (TensorBoard, when
installed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from painter_cli import distributed
from painter_cli.config import TrainConfig, load_run_config, to_dict, write_toml
from painter_cli.errors import PainterError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
# Test hook: SIGKILL this process right after the checkpoint of this step is written.
KILL_ENV = "PAINTER_TEST_KILL_AFTER_CHECKPOINT"


@dataclass
class RunResult:
    """What a run did. ``loss``: mean train loss of the last logged interval; ``samples_per_s``
    and ``data_wait_share`` (share of step time spent waiting for the loader) exclude the first
    step (worker start-up)."""

    run_dir: Path
    step: int
    total_steps: int
    loss: float
    checkpoint: Path | None
    samples_per_s: float
    data_wait_share: float
    val_loss: dict[str, float] = field(default_factory=dict)
    already_complete: bool = False  # resumed at its last step: nothing was trained


# --------------------------------------------------------------------------------------------
# Optimizer groups and schedule


def layer_id(name: str, num_layers: int) -> int:
    """Layer index of a parameter for layer-wise lr decay (``num_layers`` = depth + 1)."""
    if name in ("pos_embed", "cls_token") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: one per (layer, decay/no-decay), each with ``lr_scale`` =
    ``layer_decay ** (num_layers - layer_id)`` and ``names`` (for inspection)."""
    num_layers = len(model.blocks) + 1
    skip = set(model.no_weight_decay())
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim == 1 or name in skip
        lid = layer_id(name, num_layers)
        g = groups.setdefault(
            (lid, no_decay),
            {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": layer_decay ** (num_layers - lid),
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def lr_at(step: int, *, base: float, min_lr: float, warmup: int, total: int) -> float:
    """The lr of optimizer step ``step`` (0-based): linear warm-up from 0 over ``warmup`` steps,
    then half-cosine from ``base`` to ``min_lr`` at ``total``."""
    if step < warmup:
        return base * step / warmup
    if total <= warmup:
        return base
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Plan:
    """Batch and schedule arithmetic of a run."""

    micro: int
    accum: int
    world: int
    total_steps: int
    warmup_steps: int
    steps_per_epoch: int


def make_plan(cfg: TrainConfig, world: int, num_pairs: int) -> Plan:
    """Check the batch arithmetic and resolve the schedule (``PainterError`` when it does not fit)."""
    o, s = cfg.optim, cfg.schedule
    if o.batch_size < 1:
        raise PainterError(f"optim.batch_size must be >= 1, got {o.batch_size}")
    micro = o.micro_batch or max(1, o.batch_size // world)
    if micro < 1 or o.batch_size % (micro * world):
        raise PainterError(
            f"batch {o.batch_size} does not split into micro-batches of {micro} on {world} process(es)",
            hint="make optim.batch_size a multiple of optim.micro_batch x world size",
        )
    accum = o.batch_size // (micro * world)
    _check_optim(o)
    spe = max(1, num_pairs // o.batch_size)
    if s.steps < 0 or s.epochs < 0:
        raise PainterError(
            f"schedule.steps and schedule.epochs must be >= 0, got {s.steps} and {s.epochs}",
            hint="set schedule.steps (or --steps) >= 1, or schedule.epochs > 0",
        )
    if s.steps > 0:
        total, warmup = s.steps, s.warmup_steps
    elif s.epochs > 0:
        total = max(1, int(round(s.epochs * spe)))
        warmup = int(round(s.warmup_epochs * spe))
    else:
        raise PainterError(
            "no schedule length", hint="set schedule.steps (or --steps) or schedule.epochs"
        )
    if warmup < 0 or warmup > total:
        raise PainterError(f"warm-up of {warmup} steps does not fit a run of {total} steps")
    return Plan(micro, accum, world, total, warmup, spe)


def absolute_paths(cfg: TrainConfig) -> None:
    """Make ``data.paths``, ``data.val_paths`` and a ``run.init`` file path absolute, in place."""
    cfg.data.paths = [os.path.abspath(p) for p in cfg.data.paths]
    cfg.data.val_paths = [os.path.abspath(p) for p in cfg.data.val_paths]
    init = cfg.run.init
    prefix, _, path = init.rpartition(":") if init.startswith("mae:") else ("", "", init)
    if path and Path(path).exists():
        cfg.run.init = f"{prefix}:{os.path.abspath(path)}" if prefix else os.path.abspath(path)


def _check_optim(o: Any) -> None:
    """Optimizer values torch would refuse mid-setup (after the run directory is written)."""
    checks = (
        ("lr", o.lr >= 0, ">= 0"),
        ("min_lr", o.min_lr >= 0, ">= 0"),
        ("eps", o.eps > 0, "> 0"),
        ("weight_decay", o.weight_decay >= 0, ">= 0"),
        ("layer_decay", 0 < o.layer_decay <= 1, "in (0, 1]"),
        ("clip_grad", o.clip_grad >= 0, ">= 0 (0: off)"),
        ("betas", len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "two values in [0, 1)"),
    )
    for name, ok, want in checks:
        value = getattr(o, name)
        finite = all(math.isfinite(v) for v in (value if name == "betas" else [value]))
        if not (ok and finite):
            raise PainterError(f"optim.{name} must be {want}, got {value}")


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729 + 12345) % (2**63 - 1)


# --------------------------------------------------------------------------------------------
# Run directory helpers


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config of an existing run (``RUN_DIR/config.toml``)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise PainterError(f"{path}: missing; not a painter train run directory")
    return load_run_config(path)


def _prune_checkpoints(ckpt_root: Path, keep: int) -> None:
    if keep <= 0:
        return
    dirs = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in dirs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after ``last_step`` (written by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except ValueError:
            continue  # a torn last line of a killed run
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(f"{x}\n" for x in keep))
    os.replace(tmp, path)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is the optional extra `tb`
        return None
    return SummaryWriter(str(run_dir / "tb"))


# --------------------------------------------------------------------------------------------
# Model building


def build_train_model(cfg: TrainConfig, resume_from: Path | None) -> nn.Module:
    """The model to train: from the resumed checkpoint, or from ``run.init`` (scratch, ``mae:PATH``
    or a Painter checkpoint / run dir), with the config's drop path and switches."""
    from painter_cli.checkpoint import load_mae_encoder, load_model
    from painter_cli.model import build_model, get_config

    m = cfg.model
    switches: dict[str, Any] = {"grad_checkpointing": m.grad_checkpointing, "compile": m.compile}
    if m.drop_path_rate >= 0:
        switches["drop_path_rate"] = m.drop_path_rate
    init = cfg.run.init.strip()
    if resume_from is not None:
        model = load_model(resume_from, **switches)
    elif init and not init.startswith("mae:"):
        model = load_model(init, **switches)
        log.info("fine-tuning from %s", init)
        if m.img_size and tuple(m.img_size) != model.config.img_size:
            model = model.at_canvas(tuple(m.img_size))
            log.info("moved to a %dx%d canvas", *m.img_size)
        if m.depth and m.depth != model.config.depth:
            model = model.deepened(m.depth, seed=cfg.run.seed)
            log.info("deepened to %d blocks (taps %s)", m.depth, model.config.feature_blocks)
    else:
        canvas = {"img_size": tuple(m.img_size)} if m.img_size else {}
        if m.depth:
            raise PainterError(
                "model.depth deepens a run.init checkpoint; a new model takes its preset's depth",
                hint="start from a checkpoint (run.init) or pick a deeper preset",
            )
        model = build_model(get_config(m.preset, **switches, **canvas), seed=cfg.run.seed)
        if init.startswith("mae:"):
            load_mae_encoder(model, init[4:])
    # Loaded weights can sit at any alignment inside the file buffer; oneDNN/MKL kernels may round
    # differently for different alignments, so copy them into fresh (64-byte aligned) storage:
    # a resumed run then computes bit for bit what an uninterrupted one does.
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    return model.train()


# --------------------------------------------------------------------------------------------
# Validation


def seg_type_ids(model: nn.Module, dataset) -> torch.Tensor | None:
    """SegGPT models (type tokens): the (T,) int64 type id of each task of ``dataset`` (index it
    with a batch's ``task``); None for Painter models."""
    from painter_cli.model import SEG_TYPES

    if not model.config.num_type_tokens:
        return None
    return torch.tensor([SEG_TYPES[name] for name in dataset.seg_types], dtype=torch.long)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int, device, autocast) -> dict[str, float]:
    """Mean per-sample masked loss per task (bottom-half mask) over ``dataset`` (ValCanvases)."""
    from painter_cli.data import make_loader

    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    seg_ids = seg_type_ids(model, dataset)
    for batch in make_loader(dataset, batch_size=batch_size, num_workers=0):
        b = {k: v.to(device) for k, v in batch.items() if k != "task"}
        kw = {} if seg_ids is None else {"seg_type": seg_ids[batch["task"]].to(device)}
        with autocast():
            _, pred = model(b["imgs"], b["tgts"], b["mask"], b["valid"], compute_loss=False, **kw)
        for j, t in enumerate(batch["task"].tolist()):
            sl = slice(j, j + 1)
            loss = model.forward_loss(pred[sl], b["tgts"][sl], b["mask"][sl], b["valid"][sl])
            name = dataset.task_names[t]
            sums[name] = sums.get(name, 0.0) + float(loss)
            counts[name] = counts.get(name, 0) + 1
    model.train(was_training)
    return {t: sums[t] / counts[t] for t in sums}


# --------------------------------------------------------------------------------------------
# The loop


def prepare_data(cfg: TrainConfig, canvas: tuple[int, int], patch_size: int):
    """Open and check the train (and val) shards: ``(train_dataset, val_dataset or None)``.
    Errors (missing/empty directories, other encoder versions, tasks without weights, masks that
    do not fit the grid) are raised here, before any training."""
    from painter_cli.data import TrainCanvases, ValCanvases, check_task_options, task_weights
    from painter_cli.masking import MaskGenerator
    from painter_cli.shards import ShardReader

    if not cfg.data.paths:
        raise PainterError("no training data", hint="give --data DIR (a `painter encode` output)")
    reader = ShardReader(cfg.data.paths)
    if len(reader) == 0:
        raise PainterError(f"{', '.join(cfg.data.paths)}: no samples in the shard directories")
    weights = task_weights(reader, cfg.data)
    check_task_options(reader, cfg.data)
    grid = (canvas[0] // patch_size, canvas[1] // patch_size)
    mask_gen = MaskGenerator.from_config(grid, cfg.mask)
    train_ds = TrainCanvases(
        reader,
        weights,
        canvas=canvas,
        patch_size=patch_size,
        mask_gen=mask_gen,
        data_cfg=cfg.data,
        seed=cfg.run.seed,
    )
    val_ds = None
    if cfg.data.val_paths:
        val_reader = ShardReader(cfg.data.val_paths)
        if len(val_reader) == 0:
            raise PainterError(
                f"{', '.join(cfg.data.val_paths)}: no samples in the validation shards"
            )
        val_ds = ValCanvases(
            val_reader,
            canvas=canvas,
            patch_size=patch_size,
            data_cfg=cfg.data,
            per_task=cfg.run.val_samples,
            fg_weights=train_ds.fg_weights,
        )
    return train_ds, val_ds


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> RunResult:
    """Train per ``cfg`` into ``run_dir`` (``resume``: continue from its latest checkpoint).

    Under torchrun every process calls this; rank 0 writes the run directory.
    """
    info = distributed.init(cfg.run.device)
    threads = torch.get_num_threads()
    try:
        if info.device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg))
        return _train(cfg, Path(run_dir), resume, info)
    except KeyboardInterrupt as exc:
        if (Path(run_dir) / CONFIG_NAME).is_file():
            exc.hint = f"painter train --resume {run_dir} continues from its last checkpoint"
        raise
    finally:
        torch.set_num_threads(threads)
        distributed.cleanup()


def cpu_threads(cfg: TrainConfig) -> int:
    """Intra-op threads for CPU training (``run.threads``; 0: see ``RunSection.threads``)."""
    if cfg.run.threads > 0:
        return cfg.run.threads
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // local - cfg.data.num_workers)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, info) -> RunResult:
    from painter_cli.checkpoint import (
        latest_checkpoint,
        load_training_state,
        save_checkpoint,
        task_table,
    )
    from painter_cli.data import StepSampler, make_loader

    device, rank, world, main = info.device, info.rank, info.world_size, info.is_main
    if run_dir.exists() and not run_dir.is_dir():
        raise PainterError(f"{run_dir}: exists and is not a folder", hint="choose another --out")
    ckpt_root = run_dir / CHECKPOINTS
    resume_from = latest_checkpoint(ckpt_root) if resume else None
    if resume and resume_from is None:
        log.warning("%s has no checkpoint yet: starting from step 0", run_dir)
    if not resume and ckpt_root.is_dir() and any(ckpt_root.iterdir()):
        raise PainterError(
            f"{run_dir}: already holds checkpoints", hint="use --resume RUN_DIR, or another --out"
        )

    # Everything that can fail on bad input happens before the first step.
    model = build_train_model(cfg, resume_from)
    mcfg = model.config
    train_ds, val_ds = prepare_data(cfg, mcfg.img_size, mcfg.patch_size)
    # The tasks the checkpoints carry (codec, parameters, target resize), copied from the index
    # once, so predict/eval decode them without the shards.
    tasks = task_table(train_ds.tasks)
    plan = make_plan(cfg, world, len(train_ds))
    if cfg.run.precision not in ("auto", "bf16", "fp32"):
        raise PainterError(f"run.precision must be auto, fp32 or bf16, got {cfg.run.precision!r}")
    state = load_training_state(resume_from) if resume_from is not None else None
    start = int(state["step"]) if state else 0
    if start >= plan.total_steps:
        log.info("%s: already complete (%d/%d steps)", run_dir, start, plan.total_steps)
        return RunResult(
            run_dir, start, plan.total_steps, math.nan, resume_from, math.nan, 0.0, {}, True
        )
    # The saved config.toml names its data by absolute paths, so --resume works from any folder.
    absolute_paths(cfg)

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_toml(cfg, run_dir / CONFIG_NAME)
        _truncate_metrics(run_dir / METRICS_NAME, start)
    distributed.barrier()

    model.to(device)
    groups = param_groups(model, cfg.optim.weight_decay, cfg.optim.layer_decay)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    net: nn.Module = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    use_bf16 = cfg.run.precision == "bf16" or (
        cfg.run.precision == "auto" and device.type == "cuda"
    )

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    seg_ids = seg_type_ids(model, train_ds)
    sampler = StepSampler(
        start_step=start, micro=plan.micro, accum=plan.accum, rank=rank, world=world
    )
    loader = make_loader(
        train_ds,
        batch_size=plan.micro,
        num_workers=cfg.data.num_workers,
        sampler=sampler,
    )
    if main:
        log.info(
            "training a %dx%d model (canvas %dx%d) on %d pairs of %s: steps %d..%d (warm-up %d), "
            "batch %d = %d x %d x %d proc, %s",
            mcfg.depth,
            mcfg.embed_dim,
            *mcfg.img_size,
            len(train_ds),
            ", ".join(train_ds.task_names),
            start,
            plan.total_steps,
            plan.warmup_steps,
            cfg.optim.batch_size,
            plan.micro,
            plan.accum,
            world,
            "bf16" if use_bf16 else "fp32",
        )

    tb = _tensorboard(run_dir) if main else None
    metrics = (run_dir / METRICS_NAME).open("a") if main else None
    kill_after = int(os.environ.get(KILL_ENV, "-1"))
    last_ckpt: Path | None = resume_from
    step = start
    interval_losses: list[float] = []
    last_loss = float("nan")
    val_loss: dict[str, float] = {}
    wait_total = step_total = 0.0
    timed_samples = 0
    t_interval = time.perf_counter()
    n_interval = 0

    saved_step = start
    updating = False

    def save(step: int, loss: float) -> Path | None:
        nonlocal saved_step
        path = None
        saved_step = step
        if main:
            training_state = {
                "optimizer": optimizer.state_dict(),
                "step": step,
                "torch_rng": torch.get_rng_state(),
            }
            path = save_checkpoint(
                ckpt_root / f"step_{step:08d}",
                model,
                run_config=to_dict(cfg),
                meta={"step": step, "loss": loss, "epoch": step / plan.steps_per_epoch},
                training_state=training_state,
                tasks=tasks,
            )
            _prune_checkpoints(ckpt_root, cfg.run.keep_checkpoints)
        distributed.barrier()
        return path

    from painter_cli.console import make_progress

    it = iter(loader)
    try:
        with make_progress() as progress:
            bar = progress.add_task("train", total=plan.total_steps, completed=start, info="")
            while step < plan.total_steps:
                t0 = time.perf_counter()
                wait = 0.0
                torch.manual_seed(_step_seed(cfg.run.seed, step, rank))
                lr = lr_at(
                    step,
                    base=cfg.optim.lr,
                    min_lr=cfg.optim.min_lr,
                    warmup=plan.warmup_steps,
                    total=plan.total_steps,
                )
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                loss_sum = torch.zeros((), device=device)
                for a in range(plan.accum):
                    tw = time.perf_counter()
                    batch = next(it)
                    wait += time.perf_counter() - tw
                    b = {
                        k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "task"
                    }
                    kw = {}
                    if seg_ids is not None:  # SegGPT: each canvas gets its task's type token
                        kw["seg_type"] = seg_ids[batch["task"]].to(device)
                    sync = a == plan.accum - 1 or world == 1
                    ctx = contextlib.nullcontext() if sync else net.no_sync()
                    with ctx:
                        with autocast():
                            loss, _ = net(b["imgs"], b["tgts"], b["mask"], b["valid"], **kw)
                        (loss / plan.accum).backward()
                    loss_sum += loss.detach()
                step_loss = float(distributed.all_reduce_mean(loss_sum / plan.accum))
                if not math.isfinite(step_loss):
                    raise PainterError(
                        f"non-finite loss ({step_loss}) at step {step + 1}: training stopped; "
                        f"last good checkpoint: {last_ckpt or 'none'}",
                        hint="lower optim.lr or check the data, then --resume RUN_DIR",
                    )
                # An interrupt inside the update could leave half the parameters stepped.
                updating = True
                if cfg.optim.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                updating = False
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                dt = time.perf_counter() - t0
                if step > start + 1:  # the first step pays for worker start-up
                    wait_total += wait
                    step_total += dt
                    timed_samples += cfg.optim.batch_size
                interval_losses.append(step_loss)
                n_interval += cfg.optim.batch_size

                do_val = val_ds is not None and (
                    step == plan.total_steps
                    or (cfg.run.val_every > 0 and step % cfg.run.val_every == 0)
                )
                do_log = step == plan.total_steps or do_val or step % max(1, cfg.run.log_every) == 0
                if do_val:
                    if main:
                        val_loss = evaluate(
                            model, val_ds, batch_size=plan.micro, device=device, autocast=autocast
                        )
                    distributed.barrier()
                if do_log:
                    now = time.perf_counter()
                    last_loss = sum(interval_losses) / len(interval_losses)
                    sps = n_interval / max(now - t_interval, 1e-9)
                    row: dict[str, Any] = {
                        "step": step,
                        "loss": last_loss,
                        "lr": lr,
                        "epoch": round(step / plan.steps_per_epoch, 6),
                        "samples_per_s": round(sps, 3),
                        "data_wait": round(wait_total / step_total, 4) if step_total else 0.0,
                    }
                    if do_val and val_loss:
                        row["val_loss"] = val_loss
                    if main:
                        metrics.write(json.dumps(row) + "\n")
                        metrics.flush()
                        if tb is not None:
                            tb.add_scalar("train/loss", last_loss, step)
                            tb.add_scalar("train/lr", lr, step)
                            for t, v in (row.get("val_loss") or {}).items():
                                tb.add_scalar(f"val/{t}", v, step)
                        log.info(
                            "step %d/%d loss %.4f lr %.3g %.1f samples/s%s",
                            step,
                            plan.total_steps,
                            last_loss,
                            lr,
                            sps,
                            "".join(
                                f" val[{t}] {v:.4f}" for t, v in (row.get("val_loss") or {}).items()
                            ),
                        )
                    interval_losses = []
                    n_interval = 0
                    t_interval = now
                progress.update(
                    bar,
                    completed=step,
                    info=f"loss {step_loss:.4f} lr {lr:.2e} "
                    f"{cfg.optim.batch_size / max(dt, 1e-9):.1f} samples/s",
                )
                if step == plan.total_steps or (
                    cfg.run.checkpoint_every > 0 and step % cfg.run.checkpoint_every == 0
                ):
                    last_ckpt = save(step, step_loss) or last_ckpt
                    if step == kill_after:
                        os.kill(os.getpid(), signal.SIGKILL)
    except KeyboardInterrupt:
        # Ctrl-C keeps the steps done since the last checkpoint: the parameters are those of
        # ``step`` whole steps unless the interrupt hit the update itself. One process only, as
        # saving waits at a barrier that other ranks, interrupted elsewhere, may never reach.
        if step > saved_step and not updating and world == 1:
            log.warning("interrupted after step %d: saving a checkpoint", step)
            last_ckpt = save(step, interval_losses[-1] if interval_losses else last_loss)
        raise
    finally:
        del it
        if metrics is not None:
            metrics.close()
        if tb is not None:
            tb.close()

    if interval_losses:
        last_loss = sum(interval_losses) / len(interval_losses)
    return RunResult(
        run_dir=run_dir,
        step=step,
        total_steps=plan.total_steps,
        loss=last_loss,
        checkpoint=last_ckpt,
        samples_per_s=timed_samples / step_total if step_total else float("nan"),
        data_wait_share=wait_total / step_total if step_total else 0.0,
        val_loss=val_loss,
    )
