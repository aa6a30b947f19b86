"""Prompt tuning, the paper's "learned" prompt (spec section 8): the top half of both canvases (the
prompt image and the prompt target, normalised (3, S, S)) become learnable tensors in front of a
frozen model, trained with Adam on training queries of the task (bottom half masked, objective
from ``objectives``); periodic validation on a probe set keeps the best prompt. Outputs are
``image.png``/``target.png`` and the exact tensors in ``prompt.safetensors``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError
from painter_cli.inference import Prompt, atomic_write, write_json
from painter_cli.model import IMAGENET_MEAN, IMAGENET_STD
from painter_cli.prompts.files import REPORT_FILE, save_prompt
from painter_cli.prompts.halving import json_float
from painter_cli.prompts.objectives import (
    OBJECTIVES,
    codec_palette,
    heatmap_loss,
    palette_loss,
    psnr_loss,
)
from painter_cli.prompts.scoring import QueryStore, stack_canvases

log = logging.getLogger(__name__)

TUNE_STATE = "tune_state.pt"


def _pixel_bounds(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def check_ema(ema: float) -> None:
    """A one-line error unless ``ema`` is 0 (off) or a decay in (0, 1)."""
    if not 0 <= ema < 1:
        raise PainterError(f"--ema {ema}: expected 0 (off) or a decay in (0, 1)")


class PromptPair(torch.nn.Module):
    """The learnable prompt: ``image`` and ``target`` (3, S, S) normalised, as parameters of one
    module so that timm's ``ModelEmaV3`` can average them."""

    def __init__(self, image: torch.Tensor, target: torch.Tensor):
        super().__init__()
        self.image = torch.nn.Parameter(image.detach().clone().float())
        self.target = torch.nn.Parameter(target.detach().clone().float())


class PromptTuner:
    """A learnable prompt pair in front of a frozen model.

    ``image`` and ``target`` are ``nn.Parameter`` (3, S, S) in normalised space, initialised from
    ``init``; Adam with learning rate ``lr`` updates only them, and after each step they are
    clamped to the normalised image of [0, 1] so the prompt stays a displayable image. Every model
    parameter is set ``requires_grad=False`` (``close`` restores the flags) and the model is kept
    in eval mode, so no weight changes and no gradient is stored on it.

    ``objective`` ``"loss"`` minimises the model's masked smooth-L1 (its training loss);
    ``"palette"`` the cross-entropy of the nearest-palette-colour decision (``palette_loss``,
    ``colours`` from ``codec_palette``), which follows mIoU / AP where the smooth-L1 does not;
    ``"heatmap"`` the cross-entropy of the keypoint decoder's argmax (``heatmap_loss``, the
    (G, B) class colours as ``colours``), which follows keypoint AP; ``"psnr"`` minus the mean
    per-image PSNR of restoration (``psnr_loss``). ``seg_type``: the SegGPT type
    token the model paints with (None: its default), as the prompt will be used.

    ``ema`` > 0 keeps an exponential moving average of the prompt over the steps (timm's
    ``ModelEmaV3``, decay warmed up from 0 and capped at ``ema``), and ``prompt`` returns the
    average: what is validated and kept. Adam on a few queries a step moves every pixel by about
    ``lr`` each step, so the live prompt jitters around its optimum and the validation's best step
    is partly picked by that jitter; the average sits nearer the optimum (measured in
    docs/prompt-tune.md).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        init: Prompt,
        lr: float = 0.01,
        objective: str = "loss",
        colours: torch.Tensor | None = None,
        seg_type: str | None = None,
        ema: float = 0.0,
    ):
        if lr <= 0:
            raise PainterError(f"--lr {lr}: must be > 0")
        if objective not in OBJECTIVES:
            raise PainterError(f"objective {objective!r}: expected {', '.join(OBJECTIVES)}")
        if objective == "heatmap" and colours is None:
            raise PainterError("the heatmap objective needs the keypoint class colours")
        check_ema(ema)
        self.objective, self.colours, self.seg_type = objective, colours, seg_type
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self._flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        self.pair = PromptPair(init.image, init.target).to(self.device)
        self.image, self.target = self.pair.image, self.pair.target
        self.updates = 0  # Adam steps taken (the EMA's warm-up clock)
        self.average = None
        if ema:
            from timm.utils import ModelEmaV3

            self.average = ModelEmaV3(self.pair, decay=ema, use_warmup=True)
        self.optimizer = torch.optim.Adam([self.image, self.target], lr=lr)
        self.lo, self.hi = _pixel_bounds(self.device)
        self.patch = int(model.config.patch_size)

    def loss(self, images: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None):
        """The tuning objective (a scalar) of queries (N, 3, S, S) below the learnable prompt."""
        imgs, tgts, mask, full_valid = stack_canvases(
            self.image,
            self.target,
            images.to(self.device),
            targets.to(self.device),
            None if valid is None else valid.to(self.device),
            self.patch,
        )
        if self.objective == "loss":
            loss, _ = self.model(imgs, tgts, mask, full_valid, seg_type=self.seg_type)
            return loss
        _, pred = self.model(
            imgs, tgts, mask, full_valid, compute_loss=False, seg_type=self.seg_type
        )
        s = images.shape[-2]
        fn = {"heatmap": heatmap_loss, "psnr": psnr_loss}.get(self.objective, palette_loss)
        return fn(pred[:, :, s:], tgts[:, :, s:], full_valid[:, :, s:], self.colours)

    def step(
        self, images: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None
    ) -> float:
        """One Adam step on a batch; returns the batch loss before the step."""
        self.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(images, targets, valid)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.image.copy_(torch.maximum(torch.minimum(self.image, self.hi), self.lo))
            self.target.copy_(torch.maximum(torch.minimum(self.target, self.hi), self.lo))
        self.updates += 1
        if self.average is not None:
            self.average.update(self.pair, step=self.updates)
        return float(loss.detach())

    def prompt(self, name: str = "tuned") -> Prompt:
        """The prompt to validate and keep: the moving average with ``ema``, else the live one."""
        pair = self.pair if self.average is None else self.average.module
        return Prompt(pair.image.detach().cpu().clone(), pair.target.detach().cpu().clone(), name)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "image": self.image.detach().cpu().clone(),
            "target": self.target.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }
        if self.average is not None:
            state["ema_image"] = self.average.module.image.detach().cpu().clone()
            state["ema_target"] = self.average.module.target.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.image.copy_(state["image"].to(self.device))
            self.target.copy_(state["target"].to(self.device))
            if self.average is not None:
                self.average.module.image.copy_(state["ema_image"].to(self.device))
                self.average.module.target.copy_(state["ema_target"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state.get("updates", 0))  # absent in states saved before the EMA

    def close(self) -> None:
        for p, flag in zip(self.model.parameters(), self._flags, strict=True):
            p.requires_grad_(flag)


@dataclass
class TuneState:
    """Where a tuning run stands (what ``tune_state.pt`` holds besides the tuner): the last step
    done, the validation history, the initial prompt's score, and the best prompt so far
    (``best``: ``image``/``target`` (3, S, S) normalised, ``score``, ``step``; empty before the
    first validation)."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    initial: float | None = None
    best: dict[str, Any] = field(default_factory=dict)

    def improves(self, score: float, higher_is_better: bool) -> bool:
        """True when ``score`` beats the best so far (any score beats none or a NaN)."""
        if not self.best or not math.isfinite(self.best["score"]):
            return True
        return score > self.best["score"] if higher_is_better else score < self.best["score"]


def tune_prompt(
    model: torch.nn.Module,
    train: Any,
    task: str,
    train_indices: Sequence[int],
    init: Prompt,
    *,
    out: str | Path,
    validate: Callable[[Prompt], float],
    higher_is_better: bool,
    metric: str = "loss",
    steps: int = 200,
    lr: float = 0.01,
    batch_size: int = 8,
    val_every: int = 25,
    save_every: int = 25,
    seed: int = 0,
    resume: bool = False,
    fingerprint: dict[str, Any] | None = None,
    progress: bool = True,
    objective: str = "loss",
    seg_type: str | None = None,
    ema: float = 0.0,
) -> dict[str, Any]:
    """Tune ``init`` for ``steps`` Adam steps on batches of ``train_indices`` (seeded per step, so
    a resumed run sees the same batches), validating with ``validate(prompt) -> score`` at step 0,
    every ``val_every`` steps and at the end; the best prompt is kept. ``objective`` is what the
    steps minimise (``PromptTuner``; ``palette`` takes its colours from ``train``'s codec);
    ``seg_type`` the SegGPT type token the model paints with; ``ema`` > 0 validates and keeps the
    prompt's moving average over the steps (``PromptTuner``).

    State is saved atomically to ``out/tune_state.pt`` every ``save_every`` steps; ``resume``
    continues from it. Writes ``image.png``, ``target.png``, ``prompt.safetensors`` and
    ``report.json`` into ``out``; returns the report.
    """
    out = Path(out)
    pool = _check_tuning(out, task, train_indices, steps, batch_size, val_every, save_every)
    fp = json.loads(json.dumps(fingerprint or {"task": task}, default=str))
    state_path = out / TUNE_STATE
    colours = codec_palette(train.codec(task)) if objective != "loss" else None
    tuner = PromptTuner(
        model, init, lr, objective=objective, colours=colours, seg_type=seg_type, ema=ema
    )
    try:
        state = _load_state(state_path, tuner, fp, resume)

        def save() -> None:
            _save_state(state_path, state, tuner, fp)

        if state.initial is None:  # a state saved at step 0 already holds its evaluation
            state.initial = _validate(state, tuner, validate, higher_is_better, 0, None)
            save()
        _train_steps(
            tuner,
            QueryStore(train, task, init.size),
            pool,
            state,
            lambda step, loss: _validate(state, tuner, validate, higher_is_better, step, loss),
            save,
            steps=steps,
            batch_size=batch_size,
            val_every=val_every,
            save_every=save_every,
            seed=seed,
            label=f"tuning {task}" if progress else None,
            metric=metric,
        )
    finally:
        tuner.close()
    save_prompt(out, Prompt(state.best["image"], state.best["target"], name="tuned"))
    report = {
        "task": task,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "initial": json_float(state.initial),
        "tuned": json_float(state.best["score"]),
        "best_step": state.best["step"],
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "objective": objective,
        "ema": ema,
        "init": init.name,
        "history": state.history,
        "prompt": str(out),
    }
    write_json(out / REPORT_FILE, report)
    return report


def _check_tuning(
    out: Path,
    task: str,
    train_indices: Sequence[int],
    steps: int,
    batch_size: int,
    val_every: int,
    save_every: int,
) -> list[int]:
    """The training queries to tune on, once the options are checked (one-line errors)."""
    if out.exists() and not out.is_dir():
        raise PainterError(f"{out}: --out exists and is not a folder")
    for name, v in (("--steps", steps), ("--batch-size", batch_size)):
        if v < 1:
            raise PainterError(f"{name} {v}: must be >= 1")
    if val_every < 1 or save_every < 1:
        raise PainterError("--val-every and --save-every must be >= 1")
    pool = [int(i) for i in train_indices]
    if not pool:
        raise PainterError(f"task {task!r}: no training queries left to tune on")
    return pool


def _load_state(
    path: Path, tuner: PromptTuner, fingerprint: dict[str, Any], resume: bool
) -> TuneState:
    """The state an earlier run left at ``path``, loaded into ``tuner`` (``resume`` only; a run
    with another ``fingerprint`` is an error), or a fresh state when there is none."""
    if not path.is_file():
        if resume:
            log.info("%s: nothing to resume, starting from step 0", path)
        return TuneState()
    if not resume:
        raise PainterError(
            f"{path}: an earlier tuning run is there",
            "pass --resume to continue it, or choose another --out",
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if json.loads(saved["fingerprint"]) != fingerprint:
        raise PainterError(
            f"{path}: saved by a run with other settings (checkpoint, task, data, lr...)",
            "use another --out, or the same settings",
        )
    tuner.load_state_dict(saved["tuner"])
    log.info("resuming prompt tuning at step %d", int(saved["step"]))
    return TuneState(
        step=int(saved["step"]),
        history=list(saved["history"]),
        initial=saved["initial"],
        best={
            "image": saved["best_image"],
            "target": saved["best_target"],
            "score": saved["best_score"],
            "step": saved["best_step"],
        },
    )


def _save_state(
    path: Path, state: TuneState, tuner: PromptTuner, fingerprint: dict[str, Any]
) -> None:
    doc = {
        "step": state.step,
        "tuner": tuner.state_dict(),
        "history": state.history,
        "initial": state.initial,
        "best_image": state.best["image"],
        "best_target": state.best["target"],
        "best_score": state.best["score"],
        "best_step": state.best["step"],
        "fingerprint": json.dumps(fingerprint),
    }
    atomic_write(path, lambda fh: torch.save(doc, fh))


def _validate(
    state: TuneState,
    tuner: PromptTuner,
    validate: Callable[[Prompt], float],
    higher_is_better: bool,
    step: int,
    loss: float | None,
) -> float:
    """Score the tuner's current prompt, record it in the history, keep it if it is the best."""
    prompt = tuner.prompt()
    score = float(validate(prompt))
    state.history.append({"step": step, "loss": loss, "score": json_float(score)})
    if state.improves(score, higher_is_better):
        state.best.update(image=prompt.image, target=prompt.target, score=score, step=step)
    return score


def step_batch(pool: Sequence[int], batch_size: int, seed: int, step: int) -> list[int]:
    """The training queries of ``step``: drawn from ``pool`` with a generator seeded by
    ``(seed, step)``, so a resumed run sees the same batches (with replacement only when the
    pool is smaller than a batch)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57, step]))
    batch = rng.choice(len(pool), size=batch_size, replace=len(pool) < batch_size)
    return [pool[int(k)] for k in batch]


def _train_steps(
    tuner: PromptTuner,
    store: QueryStore,
    pool: Sequence[int],
    state: TuneState,
    validate: Callable[[int, float], float],
    save: Callable[[], None],
    *,
    steps: int,
    batch_size: int,
    val_every: int,
    save_every: int,
    seed: int,
    label: str | None,
    metric: str,
) -> None:
    """Adam steps ``state.step + 1 .. steps``: ``validate(step, mean loss since the last
    validation)`` every ``val_every`` steps and at the end, ``save()`` every ``save_every`` steps
    and at the end; a progress bar named ``label`` (None: no bar)."""
    bar = None
    if label is not None:
        from painter_cli.console import make_progress

        bar = make_progress()
        bar.start()
        bar_task = bar.add_task(label, total=steps, completed=state.step, info="")
    try:
        recent: list[float] = []
        for step in range(state.step + 1, steps + 1):
            images, targets, valid = store.get(step_batch(pool, batch_size, seed, step))
            loss = tuner.step(images, targets, valid)
            recent.append(loss)
            state.step = step
            if step % val_every == 0 or step == steps:
                score = validate(step, float(np.mean(recent)))
                recent = []
                log.debug("step %d: %s %.5f", step, metric, score)
            if step % save_every == 0 or step == steps:
                save()
            if bar is not None:
                bar.update(bar_task, advance=1, info=f"loss {loss:.4f}")
    finally:
        if bar is not None:
            bar.stop()
