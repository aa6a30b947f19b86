"""Scoring a prompt on probe queries with a frozen model.

A candidate's score on a probe is the per-query headline metric of ``painter_cli.metrics`` (one
query per ``evaluation.evaluate`` call, so a score over probes is a plain mean that grows probe by
probe), or the masked smooth-L1 loss of the painted probe target for tasks without a metric on
shards (``score="loss"``, lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError
from painter_cli.inference import Predictor, Prompt, make_prompt, to_uint8
from painter_cli.model import denormalize
from painter_cli.prompts.halving import nanmean
from painter_cli.shards import TaskView

SCORE_MODES = ("auto", "metric", "loss")


def resolve_scoring(kind: str, mode: str = "auto", codec: Any = None) -> tuple[str, str, bool]:
    """``(mode, metric name, higher_is_better)``: the headline metric of ``kind`` (of ``codec``
    when given: ``metrics.metric_for_codec``), or the masked loss (lower is better) when ``mode``
    is ``loss`` or the kind has no metric on shards."""
    from painter_cli.metrics import metric_for_codec, metric_for_kind

    if mode not in SCORE_MODES:
        raise PainterError(f"--score {mode}: expected one of {', '.join(SCORE_MODES)}")
    if mode != "loss":
        try:
            head = metric_for_codec(codec) if codec is not None else metric_for_kind(kind)
        except PainterError:
            head = None
        # Panoptic PQ needs ground truth that shards do not carry (see evaluation.py).
        if head is not None and kind != "panoptic":
            return "metric", head.name, head.higher_is_better
        if mode == "metric":
            raise PainterError(
                f"codec kind {kind!r} has no metric on shards", "use --score loss (masked loss)"
            )
    return "loss", "loss", False


def stack_canvases(
    prompt_image: torch.Tensor,
    prompt_target: torch.Tensor,
    images: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None,
    patch: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One prompt (3, S, S) over N queries (N, 3, S, S), all normalised.

    Returns ``imgs``, ``tgts`` (N, 3, 2S, S), ``mask`` (N, L) with the bottom half (the query's
    target) masked, and ``valid`` (N, 3, 2S, S): ones on top, the queries' ``valid`` (None = ones)
    below. Differentiable in the prompt tensors.
    """
    n, _, s, _ = images.shape
    top = prompt_image.to(images.dtype).unsqueeze(0).expand(n, -1, -1, -1)
    ttop = prompt_target.to(targets.dtype).unsqueeze(0).expand(n, -1, -1, -1)
    imgs = torch.cat([top, images], dim=2)
    tgts = torch.cat([ttop, targets], dim=2)
    grid = (2 * s // patch) * (s // patch)
    mask = torch.zeros(n, grid, device=images.device)
    mask[:, grid // 2 :] = 1.0
    bottom = torch.ones_like(targets) if valid is None else valid.to(targets.dtype)
    full_valid = torch.cat([torch.ones_like(bottom), bottom], dim=2)
    return imgs, tgts, mask, full_valid


class QueryStore:
    """Training or probe pairs of a task as normalised tensors at side ``size``: ``get(indices)``
    -> ``(images, targets, valid)`` each (N, 3, S, S); keeps up to ``capacity`` pairs in memory."""

    def __init__(
        self,
        reader: Any,
        task: str,
        size: int,
        capacity: int = 512,
        target_resize: str | None = None,
    ):
        self.reader = reader
        self.codec = reader.codec(task)
        self.size = size
        self.capacity = capacity
        self.target_resize = target_resize  # nearest/bicubic as the checkpoint; None: the codec's
        self._items: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def pair(self, index: int) -> Prompt:
        s = self.reader[int(index)]
        if s.get("target") is None:
            raise PainterError(f"sample {s['id']} has no target")
        return make_prompt(
            s["image"],
            s["target"],
            self.size,
            discrete=self.codec.discrete,
            target_resize=self.target_resize,
            name=str(s["id"]),
        )

    def _item(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self._items.get(index)
        if item is None:
            p = self.pair(index)
            tgt_u8 = to_uint8(denormalize(p.target[None])[0].permute(1, 2, 0).numpy())
            valid = torch.from_numpy(
                np.ascontiguousarray(self.codec.valid(tgt_u8).transpose(2, 0, 1), np.float32)
            )
            item = (p.image, p.target, valid)
            if len(self._items) >= self.capacity:
                self._items.pop(next(iter(self._items)))
            self._items[index] = item
        return item

    def get(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        items = [self._item(int(i)) for i in indices]
        return tuple(torch.stack([it[k] for it in items]) for k in range(3))  # type: ignore[return-value]


class ModelScorer:
    """Scores a candidate training pair as the prompt of probe queries with a frozen model.

    ``score(candidate, probes)`` -> one score per probe: the headline metric of the probe's
    in-context prediction (``evaluation.evaluate`` on that single query), or the masked loss of its
    painted target (mode ``loss``; probes batched by ``batch_size``). ``forward_passes`` counts the
    canvases the model has painted (a forward hook), flip-test canvases included. ``seg_type``: the
    SegGPT type token to paint with (``checkpoint.resolve_seg_type``; None: the model's default).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train: Any,
        probe_reader: Any,
        task: str,
        size: int,
        *,
        mode: str = "auto",
        batch_size: int = 8,
        metric_variant: str | None = None,
        device: str | torch.device | None = None,
        target_resize: str | None = None,
        seg_type: str | None = None,
    ):
        self.model = model
        self.seg_type = seg_type
        self.predictor = Predictor(model, size=size, device=device, seg_type=seg_type)
        self.train = train
        self.probe_reader = probe_reader
        self.task = task
        self.size = size
        self.batch_size = max(1, int(batch_size))
        self.metric_variant = metric_variant
        self.kind = train.codec(task).kind
        self.mode, self.metric, self.higher_is_better = resolve_scoring(
            self.kind, mode, train.codec(task)
        )
        # Candidates are prompts: their targets resized as the checkpoint's (``target_resize``).
        self.candidates = QueryStore(train, task, size, capacity=256, target_resize=target_resize)
        self.probes = QueryStore(probe_reader, task, size, capacity=1024)
        self.forward_passes = 0
        self._eval_cache: dict = {}
        self._hook = model.register_forward_hook(self._count)

    def _count(self, module: Any, args: tuple, output: Any) -> None:
        if args:
            self.forward_passes += int(args[0].shape[0])

    def close(self) -> None:
        self._hook.remove()

    def prompt(self, candidate: int) -> Prompt:
        return self.candidates.pair(candidate)

    def __call__(self, candidate: int, probes: Sequence[int]) -> list[float]:
        return self.score_prompt(self.prompt(candidate), probes)

    @torch.no_grad()
    def score_prompt(self, prompt: Prompt, probes: Sequence[int]) -> list[float]:
        """Per-probe scores of any ``prompt`` (e.g. a tuned one)."""
        if self.mode == "loss":
            out: list[float] = []
            for k in range(0, len(probes), self.batch_size):
                out.extend(self._losses(prompt, probes[k : k + self.batch_size]))
            return out
        from painter_cli.evaluation import evaluate

        scores = []
        for p in probes:
            view = TaskView(self.probe_reader, self.task, [p])
            res = evaluate(
                self.predictor,
                view,
                self.task,
                [prompt],
                batch_size=1,
                metric_variant=self.metric_variant,
                progress=False,
                cache=self._eval_cache,
            )
            scores.append(float(res[self.metric]))
        return scores

    def _losses(self, prompt: Prompt, probes: Sequence[int]) -> list[float]:
        dev = self.predictor.device
        images, targets, valid = (t.to(dev) for t in self.probes.get(probes))
        imgs, tgts, mask, full_valid = stack_canvases(
            prompt.image.to(dev), prompt.target.to(dev), images, targets, valid, self.model_patch
        )
        _, pred = self.model(imgs, tgts, mask, compute_loss=False, seg_type=self.seg_type)
        return [
            float(
                self.model.forward_loss(
                    pred[j : j + 1], tgts[j : j + 1], mask[j : j + 1], full_valid[j : j + 1]
                )
            )
            for j in range(len(probes))
        ]

    @property
    def model_patch(self) -> int:
        return int(self.model.config.patch_size)

    def set_score(self, prompt: Prompt, probes: Sequence[int]) -> float:
        """One score of ``prompt`` over all ``probes`` together: the set-level metric of
        ``evaluate`` (e.g. mIoU of the summed confusion matrix), or the mean loss."""
        if self.mode == "loss":
            return nanmean(self.score_prompt(prompt, probes))
        from painter_cli.evaluation import evaluate

        res = evaluate(
            self.predictor,
            TaskView(self.probe_reader, self.task, probes),
            self.task,
            [prompt],
            batch_size=self.batch_size,
            metric_variant=self.metric_variant,
            progress=False,
            cache=self._eval_cache,
        )
        return float(res[self.metric])
