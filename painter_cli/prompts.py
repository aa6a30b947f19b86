"""Prompt selection and prompt tuning: the paper's "searched" and "learned" prompts (spec section 8).

Selection (``select_prompts``) scores candidate training pairs of a task as the in-context prompt of
probe queries that are never candidates, and keeps the best. The score of a candidate is the mean
over probes of the per-query headline metric of ``painter_cli.metrics`` (one query per
``evaluation.evaluate`` call, so a score is a plain mean that grows probe by probe), or the masked
smooth-L1 loss of the painted probe target for tasks without a metric (``score="loss"``). Successive
halving scores every candidate on a few probes, keeps the best half, doubles the probes and repeats,
so the cost is about ``2 N m0 + M log2 N`` forward passes instead of ``N M``
(``halving_cost``). Per-(candidate, probe) scores are cached in ``OUT/scores.json`` (atomic writes),
so an interrupted selection resumes where it stopped. ``per_query`` adds retrieval: each probe is
prompted with the candidate whose image is most similar (a pixel descriptor or the model's encoder).

Tuning (``PromptTuner``, ``tune_prompt``) makes the top half of both canvases (the prompt image and
the prompt target, normalised (3, S, S)) learnable tensors in front of a frozen model, trained with
the model's own masked loss on training queries of the task (bottom half masked), with Adam;
periodic validation with the task metric on a probe set keeps the best prompt. Outputs are
``image.png``/``target.png`` and the exact tensors in ``prompt.safetensors`` (read by
``predict --prompt DIR``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from painter_cli.errors import PainterError
from painter_cli.inference import (
    PROMPT_TENSORS,
    Predictor,
    Prompt,
    atomic_write,
    checkpoint_or_default,
    default_size,
    load_checkpoint,
    load_image,
    load_prompt_tensors,
    load_target,
    make_prompt,
    prompt_sources,
    resolve_device,
    to_uint8,
    write_json,
    write_png,
)
from painter_cli.inference.images import umask_mode
from painter_cli.model import IMAGENET_MEAN, IMAGENET_STD, denormalize

log = logging.getLogger(__name__)

SCORE_MODES = ("auto", "metric", "loss")
FEATURES = ("pixels", "encoder")
SCORES_FILE = "scores.json"
REPORT_FILE = "report.json"
TUNE_STATE = "tune_state.pt"
TOP_DIR = "top"

ScoreFn = Callable[[int, Sequence[int]], list[float]]


# --------------------------------------------------------------------------------------------
# Small helpers


class TaskView:
    """A shard reader seen through some samples of one task: what ``evaluate`` reads
    (``tasks``, ``codec``, ``indices``, ``reader[i]``, ``dirs``), so probes are any index list."""

    def __init__(self, reader: Any, task: str, indices: Sequence[int]):
        self.reader = reader
        self.task = task
        self.dirs = reader.dirs
        self._indices = np.asarray(list(indices), dtype=np.int64)

    @property
    def tasks(self) -> list[str]:
        return [self.task]

    def codec(self, task: str) -> Any:
        return self.reader.codec(task)

    def task_info(self, task: str) -> dict[str, Any]:
        return self.reader.task_info(task)

    def indices(self, task: str) -> np.ndarray:
        if task != self.task:
            raise PainterError(f"task {task!r} is not in this view (it holds {self.task!r})")
        return self._indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.reader[int(i)]


def parse_count(value: str | int | None, option: str = "--candidates") -> int | None:
    """``"all"``/None -> None (every pair), else a positive int."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise PainterError(f"{option} {value}: expected a number or 'all'") from None
    if n < 1:
        raise PainterError(f"{option} {value}: must be >= 1")
    return n


def resolve_scoring(kind: str, mode: str = "auto") -> tuple[str, str, bool]:
    """``(mode, metric name, higher_is_better)``: the headline metric of ``kind``, or the masked
    loss (lower is better) when ``mode`` is ``loss`` or the kind has no metric on shards."""
    from painter_cli.metrics import metric_for_kind

    if mode not in SCORE_MODES:
        raise PainterError(f"--score {mode}: expected one of {', '.join(SCORE_MODES)}")
    if mode != "loss":
        try:
            head = metric_for_kind(kind)
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


def _nanmean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _rank_key(score: float, higher_is_better: bool) -> tuple[bool, float]:
    """Sort key, best first; NaN (no usable probe) sorts last."""
    if not math.isfinite(score):
        return (True, 0.0)
    return (False, -score if higher_is_better else score)


def _json_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def safe_name(text: str) -> str:
    """A sample id as a file-name stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "pair"


def split_indices(
    train: Any,
    task: str,
    n_candidates: int | None,
    probe_size: int,
    seed: int = 0,
    probe_reader: Any = None,
) -> tuple[list[int], list[int]]:
    """``(candidates, probes)``: seeded random draws of ``task``. Without ``probe_reader`` the
    probes come from ``train`` and are never candidates. ``n_candidates`` None = all."""
    if probe_size < 1:
        raise PainterError(f"--probe-size {probe_size}: must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9B0BE]))
    pool = [int(i) for i in rng.permutation(train.indices(task))]
    if probe_reader is None:
        if len(pool) < probe_size + 1:
            raise PainterError(
                f"task {task!r} has {len(pool)} training pairs: too few for {probe_size} probes "
                "and at least one candidate",
                "lower --probe-size or give --probe VAL_SHARDS",
            )
        probes, pool = pool[:probe_size], pool[probe_size:]
    else:
        avail = [int(i) for i in rng.permutation(probe_reader.indices(task))]
        if not avail:
            raise PainterError(f"task {task!r} has no samples in the --probe shards")
        probes = avail[:probe_size]
    if not pool:
        raise PainterError(f"task {task!r} has no training pairs to select from")
    candidates = pool if n_candidates is None else pool[:n_candidates]
    return candidates, probes


# --------------------------------------------------------------------------------------------
# Successive halving


def halving_schedule(
    n_candidates: int, n_probes: int, min_probes: int = 1
) -> list[tuple[int, int]]:
    """Rounds as ``(candidates scored, probes used)``.

    The candidate count halves (rounding up) until two are left; the probe count doubles, ending at
    ``n_probes``: round r of R uses ``max(ceil(n_probes / 2^(R-1-r)), min(min_probes, n_probes))``
    probes (``min_probes`` keeps the first, noisiest rounds from ranking on one or two queries).
    One candidate: one round.
    """
    if n_candidates < 1 or n_probes < 1:
        raise PainterError("successive halving needs at least one candidate and one probe")
    alive = [n_candidates]
    while alive[-1] > 2:
        alive.append(math.ceil(alive[-1] / 2))
    rounds = len(alive)
    floor = max(1, min(min_probes, n_probes))
    return [
        (n, max(floor, math.ceil(n_probes / 2 ** (rounds - 1 - r)))) for r, n in enumerate(alive)
    ]


def halving_cost(n_candidates: int, n_probes: int, min_probes: int = 1) -> int:
    """(candidate, probe) evaluations of a halving run: ``sum_r n_r (m_r - m_{r-1})`` (probes
    scored in an earlier round are reused)."""
    total, prev = 0, 0
    for n, m in halving_schedule(n_candidates, n_probes, min_probes):
        total += n * (m - prev)
        prev = m
    return total


@dataclass
class HalvingResult:
    """``ranking``: candidates best first (later-eliminated first, then by score); ``scores``:
    candidate -> (mean score, probes it was scored on); ``rounds``: per round the candidates
    scored, the probes used and the candidates kept."""

    ranking: list[int]
    scores: dict[int, tuple[float, int]]
    rounds: list[dict[str, Any]]


def successive_halving(
    candidates: Sequence[int],
    probes: Sequence[int],
    score: ScoreFn,
    higher_is_better: bool,
    min_probes: int = 1,
) -> HalvingResult:
    """Rank ``candidates`` by ``score(candidate, probes) -> per-probe scores`` with successive
    halving: every round scores the survivors on the first ``m_r`` probes (asking ``score`` only
    for probes they have not been scored on) and keeps the best half."""
    candidates = list(dict.fromkeys(int(c) for c in candidates))
    probes = [int(p) for p in probes]
    schedule = halving_schedule(len(candidates), len(probes), min_probes)
    per: dict[int, list[float]] = {c: [] for c in candidates}
    final: dict[int, tuple[float, int]] = {}
    rounds = []
    alive = candidates
    for r, (n, m) in enumerate(schedule):
        for c in alive:
            have = len(per[c])
            if have < m:
                new = list(score(c, probes[have:m]))
                if len(new) != m - have:
                    raise PainterError(f"scorer returned {len(new)} scores for {m - have} probes")
                per[c].extend(new)
        means = {c: _nanmean(per[c][:m]) for c in alive}
        order = sorted(alive, key=lambda c: _rank_key(means[c], higher_is_better))
        for c in alive:
            final[c] = (means[c], m)
        keep = order if r == len(schedule) - 1 else order[: math.ceil(n / 2)]
        rounds.append({"candidates": n, "probes": m, "kept": list(keep)})
        alive = keep
    ranking = sorted(
        candidates, key=lambda c: (-final[c][1], *_rank_key(final[c][0], higher_is_better))
    )
    return HalvingResult(ranking, final, rounds)


# --------------------------------------------------------------------------------------------
# The on-disk score cache


class ScoreCache:
    """Per-(candidate, probe) scores in ``path`` (JSON, atomic writes, at most every
    ``interval`` seconds unless forced), bound to a ``fingerprint`` of what makes a score
    (checkpoint, task, shards, size, scoring): a cache of another selection is an error."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], interval: float = 2.0):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.interval = interval
        self.scores: dict[str, dict[str, float | None]] = {}
        self.forward_passes = 0
        self.evaluations = 0
        self._saved = time.monotonic()
        self._dirty = False
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise PainterError(f"{self.path}: unreadable score cache ({exc})") from None
            if doc.get("fingerprint") != self.fingerprint:
                raise PainterError(
                    f"{self.path}: holds scores of another selection (checkpoint, task, data, size "
                    "or scoring differ)",
                    "use another --out, or delete the file to start over",
                )
            self.scores = doc.get("scores", {})
            self.forward_passes = int(doc.get("forward_passes", 0))
            self.evaluations = int(doc.get("evaluations", 0))

    def get(self, candidate: int, probe: int) -> float | None:
        return self.scores.get(str(candidate), {}).get(str(probe))

    def has(self, candidate: int, probe: int) -> bool:
        return str(probe) in self.scores.get(str(candidate), {})

    def put(self, candidate: int, probe: int, value: float) -> None:
        self.scores.setdefault(str(candidate), {})[str(probe)] = _json_float(value)
        self._dirty = True

    def save(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._saved < self.interval):
            return
        doc = {
            "fingerprint": self.fingerprint,
            "forward_passes": self.forward_passes,
            "evaluations": self.evaluations,
            "scores": self.scores,
        }
        write_json(self.path, doc)
        self._saved = time.monotonic()
        self._dirty = False

    def wrap(self, score: ScoreFn, advance: Callable[[int], None] | None = None) -> ScoreFn:
        """``score`` answered from the cache where possible; new scores are stored. Forward passes
        are the scorer's ``forward_passes`` counter when it has one, else one per evaluation."""

        def cached(candidate: int, probes: Sequence[int]) -> list[float]:
            missing = [p for p in probes if not self.has(candidate, p)]
            if missing:
                before = getattr(score, "forward_passes", None)
                values = list(score(candidate, missing))
                if len(values) != len(missing):
                    raise PainterError(
                        f"scorer returned {len(values)} scores for {len(missing)} probes"
                    )
                after = getattr(score, "forward_passes", None)
                passes = len(missing) if before is None else after - before
                for p, v in zip(missing, values, strict=True):
                    self.put(candidate, p, v)
                self.evaluations += len(missing)
                self.forward_passes += passes
                self.save()
                if advance is not None:
                    advance(len(missing))
            return [_nan_if_none(self.get(candidate, p)) for p in probes]

        return cached


def _nan_if_none(v: float | None) -> float:
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------------------------
# Canvases and the model scorer


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

    def __init__(self, reader: Any, task: str, size: int, capacity: int = 512):
        self.reader = reader
        self.codec = reader.codec(task)
        self.size = size
        self.capacity = capacity
        self._items: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def pair(self, index: int) -> Prompt:
        s = self.reader[int(index)]
        if s.get("target") is None:
            raise PainterError(f"sample {s['id']} has no target")
        return make_prompt(
            s["image"], s["target"], self.size, discrete=self.codec.discrete, name=str(s["id"])
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
    canvases the model has painted (a forward hook), flip-test canvases included.
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
    ):
        self.model = model
        self.predictor = Predictor(model, size=size, device=device)
        self.train = train
        self.probe_reader = probe_reader
        self.task = task
        self.size = size
        self.batch_size = max(1, int(batch_size))
        self.metric_variant = metric_variant
        self.kind = train.codec(task).kind
        self.mode, self.metric, self.higher_is_better = resolve_scoring(self.kind, mode)
        self.candidates = QueryStore(train, task, size, capacity=256)
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
        _, pred = self.model(imgs, tgts, mask, compute_loss=False)
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
            return _nanmean(self.score_prompt(prompt, probes))
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


# --------------------------------------------------------------------------------------------
# Retrieval (per-query prompts)


def pixel_descriptor(images: Sequence[np.ndarray], side: int = 16) -> np.ndarray:
    """(H, W, 3) uint8 images -> (N, side*side*3) descriptors: a bilinear thumbnail, zero-mean and
    unit-norm (cosine similarity, insensitive to global brightness offsets)."""
    rows = []
    for img in images:
        thumb = Image.fromarray(np.asarray(img, np.uint8)).resize((side, side), Image.BILINEAR)
        v = np.asarray(thumb, np.float32).ravel()
        v = v - v.mean()
        rows.append(v / max(float(np.linalg.norm(v)), 1e-6))
    return np.stack(rows)


@torch.no_grad()
def encoder_descriptor(model: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Normalised queries (N, 3, S, S) -> (N, C) unit-norm features from the model's own encoder:
    the image placed in both halves with the whole target masked, the last tap averaged over
    the top half's tokens."""
    dev = next(model.parameters()).device
    out = []
    for k in range(0, len(images), batch):
        x = images[k : k + batch].to(dev)
        imgs = torch.cat([x, x], dim=2)
        n, _, h, w = imgs.shape
        p = model.config.patch_size
        mask = torch.ones(n, (h // p) * (w // p), device=dev)
        feats = model.forward_features(imgs, torch.zeros_like(imgs), mask)[-1]
        v = feats[:, : feats.shape[1] // 2].mean(dim=(1, 2)).float()
        out.append(torch.nn.functional.normalize(v, dim=1).cpu())
    return torch.cat(out).numpy()


def retrieve(query_desc: np.ndarray, candidate_desc: np.ndarray) -> np.ndarray:
    """For each query (Q, D) the row of the most similar candidate (C, D) by cosine similarity."""
    sim = np.asarray(query_desc) @ np.asarray(candidate_desc).T
    return sim.argmax(axis=1)


def describe(
    kind: str, reader: Any, indices: Sequence[int], model: Any = None, size: int | None = None
) -> np.ndarray:
    """Descriptors of the images of ``indices`` in ``reader`` (``kind``: pixels or encoder)."""
    if kind not in FEATURES:
        raise PainterError(f"--features {kind}: expected one of {', '.join(FEATURES)}")
    if kind == "pixels":
        return pixel_descriptor([reader[int(i)]["image"] for i in indices])
    from painter_cli.inference import fit_square, normalize_rgb

    tensors = torch.stack(
        [normalize_rgb(fit_square(reader[int(i)]["image"], size)) for i in indices]
    )
    return encoder_descriptor(model, tensors)


# --------------------------------------------------------------------------------------------
# Selection


def _progress(total: int, description: str):
    from painter_cli.console import make_progress

    progress = make_progress()
    task_id = progress.add_task(description, total=total, info="")
    return progress, (lambda k: progress.advance(task_id, k))


def _sample_id(reader: Any, i: int) -> str:
    return reader.sample_id(int(i)) if hasattr(reader, "sample_id") else str(i)


def write_pair(folder: Path, stem: str, reader: Any, index: int) -> None:
    """Write training pair ``index`` as ``stem.png`` + ``stem``'s target (``image``/``target``
    stems: ``image.png`` + ``target.png``; others: ``stem.png`` + ``stem_target.png``)."""
    s = reader[int(index)]
    tstem = "target" if stem == "image" else f"{stem}_target"
    write_png(folder / f"{stem}.png", np.asarray(s["image"], np.uint8))
    write_png(folder / f"{tstem}.png", np.asarray(s["target"], np.uint8))


def _write_top(out: Path, reader: Any, ranked: Sequence[int]) -> Path:
    """The top pairs as a multi-prompt folder ``out/top`` (replaced as a whole)."""
    final = out / TOP_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".top.tmp-", dir=out))
    try:
        tmp.chmod(umask_mode(0o777))  # mkdtemp makes it owner-only
        for rank, c in enumerate(ranked, start=1):
            write_pair(tmp, f"{rank:02d}_{safe_name(_sample_id(reader, c))}", reader, c)
        if final.exists():
            old = out / f".top.old-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def select_prompts(
    train: Any,
    task: str,
    candidates: Sequence[int],
    probes: Sequence[int],
    score: ScoreFn,
    *,
    out: str | Path,
    metric: str,
    higher_is_better: bool,
    top: int = 5,
    random: int = 10,
    min_probes: int = 1,
    seed: int = 0,
    fingerprint: dict[str, Any] | None = None,
    per_query: Callable[[Sequence[int], Sequence[int]], Sequence[int]] | None = None,
    probe_reader: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Successive-halving search of ``candidates`` (indices of ``train``) on ``probes`` with
    ``score`` (candidate, probes) -> per-probe scores, cached in ``out/scores.json``.

    ``random`` seeded random candidates are also scored on every probe for ``random_mean``.
    ``per_query(candidates, probes)`` -> the candidate retrieved for each probe (retrieval mode).
    Writes ``out/image.png`` + ``target.png`` (best), ``out/top/`` (top ``top``) and
    ``out/report.json``; returns the report.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PainterError(f"{out}: --out exists and is not a folder")
    if top < 1:
        raise PainterError(f"--top {top}: must be >= 1")
    if random < 0:
        raise PainterError(f"--random {random}: must be >= 0")
    candidates = list(dict.fromkeys(int(c) for c in candidates))
    probes = [int(p) for p in probes]
    probe_reader = train if probe_reader is None else probe_reader
    cache = ScoreCache(out / SCORES_FILE, fingerprint or {"task": task})
    passes_before = cache.forward_passes
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A2D]))
    randoms = [int(c) for c in rng.permutation(candidates)[: min(random, len(candidates))]]
    total = halving_cost(len(candidates), len(probes), min_probes) + len(randoms) * len(probes)
    total += len(probes) if per_query is not None else 0
    bar, advance = _progress(total, f"scoring {task}") if progress else (None, None)
    scored = cache.wrap(score, advance)
    retrieval = None
    try:
        if bar is not None:
            bar.start()
        result = successive_halving(candidates, probes, scored, higher_is_better, min_probes)
        random_scores = {c: _nanmean(scored(c, probes)) for c in randoms}
        if per_query is not None:
            picks = [int(c) for c in per_query(candidates, probes)]
            values = [scored(c, [p])[0] for c, p in zip(picks, probes, strict=True)]
            retrieval = {
                "score": _json_float(_nanmean(values)),
                "queries": [
                    {
                        "id": _sample_id(probe_reader, p),
                        "prompt_id": _sample_id(train, c),
                        "prompt_index": c,
                        "score": _json_float(v),
                    }
                    for p, c, v in zip(probes, picks, values, strict=True)
                ],
            }
    finally:
        if bar is not None:
            bar.stop()
        cache.save(force=True)
    best = result.ranking[0]
    out.mkdir(parents=True, exist_ok=True)
    write_pair(out, "image", train, best)
    _write_top(out, train, result.ranking[:top])
    rows = [
        {
            "id": _sample_id(train, c),
            "index": c,
            "score": _json_float(result.scores[c][0]),
            "probes": result.scores[c][1],
        }
        for c in result.ranking
    ]
    report = {
        "task": task,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "best": {"id": _sample_id(train, best), "index": best, "score": rows[0]["score"]},
        "random_mean": _json_float(_nanmean(list(random_scores.values())))
        if random_scores
        else None,
        "random": [
            {"id": _sample_id(train, c), "index": c, "score": _json_float(v)}
            for c, v in random_scores.items()
        ],
        "candidates": rows,
        "forward_passes": cache.forward_passes,
        "forward_passes_this_run": cache.forward_passes - passes_before,
        "evaluations": cache.evaluations,
        "search_evaluations": halving_cost(len(candidates), len(probes), min_probes),
        "naive_evaluations": len(candidates) * len(probes),
        "rounds": [
            {"candidates": r["candidates"], "probes": r["probes"], "kept": len(r["kept"])}
            for r in result.rounds
        ],
        "probes": [_sample_id(probe_reader, p) for p in probes],
        "top": [row["id"] for row in rows[:top]],
        "prompt": str(out),
        "top_prompts": str(out / TOP_DIR),
    }
    if retrieval is not None:
        report["retrieval"] = retrieval
    write_json(out / REPORT_FILE, report)
    return report


@dataclass
class SelectSettings:
    """Resolved settings of ``painter prompt-select``."""

    task: str
    data: list[str] = field(default_factory=list)
    out: str | None = None
    checkpoint: str | None = None
    probe: list[str] | None = None
    candidates: int | None = 64
    probe_size: int = 32
    top: int = 5
    random: int = 10
    min_probes: int = 4
    per_query: bool = False
    features: str = "pixels"
    score: str = "auto"
    size: int | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0
    metric_variant: str | None = None


def with_suite_defaults(settings: Any, command: str) -> Any:
    """``settings`` with no ``data`` pointed at the synthetic suite's train split (``task`` then
    resolved there, kind accepted) and no ``out`` set to ``<command>-<task>``."""
    if not settings.data:
        from painter_cli.defaults import suite_data

        data, task = suite_data(settings.task, "train")
        settings = replace(settings, data=data, task=task)
    if not settings.out:
        settings = replace(settings, out=f"{command}-{settings.task}")
    return settings


def _open_task(data: Sequence[str], task: str) -> tuple[Any, str]:
    from painter_cli.evaluation import resolve_task
    from painter_cli.shards import ShardReader

    reader = ShardReader(list(data))
    return reader, resolve_task(reader, task)


def _open_data(settings: SelectSettings | TuneSettings) -> tuple[Any, Any, str]:
    """``(train reader, probe reader or None, task)`` of ``--data`` and ``--probe`` (which must hold
    the same task)."""
    train, task = _open_task(settings.data, settings.task)
    probe_reader = None
    if settings.probe:
        probe_reader, ptask = _open_task(settings.probe, task)
        if ptask != task:
            raise PainterError(f"--probe shards name the task {ptask!r}, --data {task!r}")
    return train, probe_reader, task


def _model_scorer(
    settings: SelectSettings | TuneSettings,
    model: Any,
    train: Any,
    preader: Any,
    task: str,
    size: int,
    mode: str,
    device: torch.device,
) -> ModelScorer:
    return ModelScorer(
        model,
        train,
        preader,
        task,
        size,
        mode=mode,
        batch_size=settings.batch_size,
        metric_variant=settings.metric_variant,
        device=device,
    )


def _data_fingerprint(
    settings: SelectSettings | TuneSettings, ckpt: str, task: str
) -> dict[str, Any]:
    """The leading fingerprint keys of a run: the weights, the task and the shards it reads."""
    return {
        "checkpoint": _checkpoint_key(ckpt),
        "task": task,
        "data": [str(Path(d).resolve()) for d in settings.data],
        "probe": [str(Path(d).resolve()) for d in settings.probe or []],
    }


def _checkpoint_key(ckpt: str) -> str:
    """What identifies the weights: the resolved checkpoint (a run dir's latest), or a preset."""
    from painter_cli.checkpoint import resolve_checkpoint
    from painter_cli.model import PRESETS
    from painter_cli.weights import KNOWN_WEIGHTS

    if (ckpt in PRESETS or ckpt in KNOWN_WEIGHTS) and not Path(ckpt).exists():
        return ckpt
    return str(resolve_checkpoint(ckpt).resolve())


def run_select(settings: SelectSettings) -> dict[str, Any]:
    """Run ``painter prompt-select``: everything is checked before the model is loaded."""
    settings = with_suite_defaults(settings, "prompt-select")
    if settings.features not in FEATURES:
        raise PainterError(f"--features {settings.features}: expected pixels or encoder")
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score)
    candidates, probes = split_indices(
        train, task, settings.candidates, settings.probe_size, settings.seed, probe_reader
    )
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    scorer = _model_scorer(settings, model, train, preader, task, size, mode, device)
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        "size": size,
        "score": mode,
        "metric_variant": settings.metric_variant,
    }
    per_query = None
    if settings.per_query:

        def per_query(cands: Sequence[int], qs: Sequence[int]) -> list[int]:
            cdesc = describe(settings.features, train, cands, model, size)
            qdesc = describe(settings.features, preader, qs, model, size)
            return [cands[k] for k in retrieve(qdesc, cdesc)]

    try:
        report = select_prompts(
            train,
            task,
            candidates,
            probes,
            scorer,
            out=settings.out,
            metric=metric,
            higher_is_better=hib,
            top=settings.top,
            random=settings.random,
            min_probes=settings.min_probes,
            seed=settings.seed,
            fingerprint=fingerprint,
            per_query=per_query,
            probe_reader=preader,
        )
    finally:
        scorer.close()
    report["settings"] = {**asdict(settings), "checkpoint": ckpt, "task": task, "size": size}
    write_json(Path(settings.out) / REPORT_FILE, report)
    return report


# --------------------------------------------------------------------------------------------
# Tuning


def _pixel_bounds(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


OBJECTIVES = ("loss", "palette", "heatmap")
# Pixel-unit temperature of the palette objective: an L1 distance gap of 10 levels is one nat.
PALETTE_TEMPERATURE = 10.0
# Heat temperature of the heatmap objective: a heat gap of 0.05 (13 levels of R) is one nat.
HEAT_TEMPERATURE = 0.05
# A codec palette larger than this (instance: 6400 location colours) is cut to the colours
# present in each batch, so the logits stay (N, K, S, S) with small K.
_PALETTE_MAX = 256


def resolve_objective(kind: str, objective: str = "loss") -> str:
    """Check that ``objective`` suits a task of ``kind``: ``loss`` (the model's masked smooth-L1,
    the default for every kind), ``palette`` (semseg, instance) or ``heatmap`` (keypoints). The
    two decoder-aligned objectives are opt-in: on the bundled model neither beats the loss on
    held-out queries (the palette one lowers held-out mIoU while its own value falls)."""
    if objective not in OBJECTIVES:
        raise PainterError(f"--objective {objective}: expected {', '.join(OBJECTIVES)}")
    if objective == "palette" and kind not in ("semseg", "instance"):
        raise PainterError(
            f"--objective palette needs a palette task (semseg or instance), not {kind!r}",
            "use --objective loss",
        )
    if objective == "heatmap" and kind != "keypoints":
        raise PainterError(
            f"--objective heatmap needs a keypoints task, not {kind!r}", "use --objective loss"
        )
    return objective


def codec_palette(codec: Any) -> torch.Tensor | None:
    """(K, 3) float32 colours in 0..255 the codec decodes to (black included where it is a
    class), or None when there are more than a few hundred (instance: taken from each batch);
    for keypoints the (K, 2) (G, B) class colours (``heatmap_loss``)."""
    kind = getattr(codec, "kind", "")
    if kind == "keypoints":  # (K, 2): the (G, B) class colours, R holds the heat
        from painter_cli.tasks.keypoints import keypoint_colours

        return torch.from_numpy(keypoint_colours(codec.num_keypoints).astype(np.float32))
    if kind == "semseg":
        cols = np.asarray(codec.colours, np.float32)
        if getattr(codec, "background", False):
            cols = np.concatenate([np.zeros((1, 3), np.float32), cols])
        return torch.from_numpy(cols) if len(cols) <= _PALETTE_MAX else None
    return None


def palette_loss(
    pred: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None,
    colours: torch.Tensor | None = None,
    temperature: float = PALETTE_TEMPERATURE,
) -> torch.Tensor:
    """Cross-entropy of the decoder's nearest-colour decision: per pixel, logits
    ``-L1(painted, colour_k) / temperature`` over the palette ``colours`` (K, 3) in 0..255 (None:
    black plus the colours present in ``targets``), against the target pixel's nearest colour.

    ``pred`` and ``targets`` (N, 3, S, S) normalised (the painted and the true query targets);
    ``valid`` (N, 3, S, S) pixel weights (None = ones). Returns the weighted mean (a scalar).
    """
    from painter_cli.model import denormalize

    painted = denormalize(pred.float()) * 255.0
    truth = denormalize(targets.detach().float()) * 255.0
    if colours is None:
        present = torch.round(truth).clamp(0, 255).permute(0, 2, 3, 1).reshape(-1, 3).unique(dim=0)
        colours = torch.cat([torch.zeros(1, 3, device=present.device), present])
    cols = colours.to(painted.device, torch.float32).view(1, -1, 3, 1, 1)
    labels = (truth[:, None] - cols).abs().sum(2).argmin(1)  # (N, S, S)
    logits = -(painted[:, None] - cols).abs().sum(2) / temperature  # (N, K, S, S)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weight = torch.ones_like(ce) if valid is None else (valid.to(ce.dtype).mean(1) > 0).to(ce.dtype)
    return (ce * weight).sum() / weight.sum().clamp_min(1.0)


def heatmap_loss(
    pred: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None,
    colours: torch.Tensor,
    temperature: float = HEAT_TEMPERATURE,
) -> torch.Tensor:
    """Cross-entropy of the keypoint decoder's argmax: for keypoint k, logits over the pixels
    ``R/255 * P_k / temperature``, with ``P_k`` the soft nearest-class probability of the pixel's
    (G, B) (``softmax(-L1 / PALETTE_TEMPERATURE)`` over the K class colours and (0, 0)), against
    the pixel where the true target's heat of class k peaks. Keypoints absent from a target (no
    heat of their class) and targets with no valid pixel are left out.

    ``pred`` and ``targets`` (N, 3, S, S) normalised; ``valid`` (N, 3, S, S) or None; ``colours``
    (K, 2) (G, B) in 0..255. Returns the mean over the present keypoints (0 when there are none).
    """
    from painter_cli.model import denormalize

    painted = denormalize(pred.float()) * 255.0
    truth = denormalize(targets.detach().float()) * 255.0
    cols = torch.cat([colours.to(painted.device, torch.float32), painted.new_zeros(1, 2)])
    cols = cols.view(1, -1, 2, 1, 1)  # (1, K+1, 2, 1, 1)
    k = cols.shape[1] - 1
    true_cls = (truth[:, None, 1:] - cols).abs().sum(2).argmin(1)  # (N, S, S)
    true_heat = truth[:, None, 0] * (
        true_cls[:, None] == torch.arange(k, device=cols.device)[None, :, None, None]
    )  # (N, K, S, S)
    peak, index = true_heat.flatten(2).max(2)  # (N, K)
    present = peak > 0
    if valid is not None:
        present &= (valid.flatten(1).amax(1) > 0)[:, None]
    if not bool(present.any()):
        return pred.sum() * 0.0
    prob = torch.softmax(-(painted[:, None, 1:] - cols).abs().sum(2) / PALETTE_TEMPERATURE, 1)
    heat = painted[:, None, 0].clamp(0, 255) / 255.0 * prob[:, :k]  # (N, K, S, S)
    logits = heat.flatten(2) / temperature  # (N, K, S*S)
    return torch.nn.functional.cross_entropy(logits[present], index[present], reduction="mean")


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
    (G, B) class colours as ``colours``), which follows keypoint AP.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        init: Prompt,
        lr: float = 0.01,
        objective: str = "loss",
        colours: torch.Tensor | None = None,
    ):
        if lr <= 0:
            raise PainterError(f"--lr {lr}: must be > 0")
        if objective not in ("loss", "palette", "heatmap"):
            raise PainterError(f"objective {objective!r}: expected loss, palette or heatmap")
        if objective == "heatmap" and colours is None:
            raise PainterError("the heatmap objective needs the keypoint class colours")
        self.objective, self.colours = objective, colours
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self._flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        self.image = torch.nn.Parameter(init.image.detach().clone().float().to(self.device))
        self.target = torch.nn.Parameter(init.target.detach().clone().float().to(self.device))
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
            loss, _ = self.model(imgs, tgts, mask, full_valid)
            return loss
        _, pred = self.model(imgs, tgts, mask, full_valid, compute_loss=False)
        s = images.shape[-2]
        fn = heatmap_loss if self.objective == "heatmap" else palette_loss
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
        return float(loss.detach())

    def prompt(self, name: str = "tuned") -> Prompt:
        return Prompt(self.image.detach().cpu().clone(), self.target.detach().cpu().clone(), name)

    def state_dict(self) -> dict[str, Any]:
        return {
            "image": self.image.detach().cpu().clone(),
            "target": self.target.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.image.copy_(state["image"].to(self.device))
            self.target.copy_(state["target"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])

    def close(self) -> None:
        for p, flag in zip(self.model.parameters(), self._flags, strict=True):
            p.requires_grad_(flag)


def save_prompt(out: str | Path, prompt: Prompt) -> None:
    """``out/image.png``, ``out/target.png`` (de-normalised, S x S) and ``out/prompt.safetensors``
    (the exact normalised (3, S, S) tensors ``image`` and ``target``)."""
    from safetensors.torch import save

    out = Path(out)
    both = denormalize(torch.stack([prompt.image, prompt.target]).float().cpu())
    arrs = to_uint8(both.permute(0, 2, 3, 1).numpy())
    write_png(out / "image.png", arrs[0])
    write_png(out / "target.png", arrs[1])
    tensors = {
        "image": prompt.image.detach().float().cpu().contiguous(),
        "target": prompt.target.detach().float().cpu().contiguous(),
    }
    data = save(tensors, metadata={"format": "painter-prompt"})
    atomic_write(out / PROMPT_TENSORS, lambda fh: fh.write(data))


def load_prompt(spec: str | Path, size: int, codec: Any = None) -> Prompt:
    """The first prompt of a ``--prompt`` folder or ``IMAGE:TARGET`` at side ``size``
    (``prompt.safetensors`` when present, used exactly)."""
    src = prompt_sources(str(spec))
    if len(src) > 1:
        log.warning("%s holds %d prompt pairs; using the first", spec, len(src))
    first = src[0]
    if isinstance(first, str):
        prompt = load_prompt_tensors(first)
        if prompt.size != size:
            raise PainterError(
                f"{first}: prompt tensors are {prompt.size}x{prompt.size}, not {size}"
            )
        return prompt
    image, target = load_image(first[0]), load_target(first[1], codec)
    discrete = bool(getattr(codec, "discrete", False))
    return make_prompt(image, target, size, discrete=discrete, name=f"{first[0]}:{first[1]}")


def _save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda fh: torch.save(state, fh))


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
) -> dict[str, Any]:
    """Tune ``init`` for ``steps`` Adam steps on batches of ``train_indices`` (seeded per step, so
    a resumed run sees the same batches), validating with ``validate(prompt) -> score`` at step 0,
    every ``val_every`` steps and at the end; the best prompt is kept. ``objective`` is what the
    steps minimise (``PromptTuner``; ``palette`` takes its colours from ``train``'s codec).

    State is saved atomically to ``out/tune_state.pt`` every ``save_every`` steps; ``resume``
    continues from it. Writes ``image.png``, ``target.png``, ``prompt.safetensors`` and
    ``report.json`` into ``out``; returns the report.
    """
    out = Path(out)
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
    fp = json.loads(json.dumps(fingerprint or {"task": task}, default=str))
    state_path = out / TUNE_STATE
    size = init.size
    store = QueryStore(train, task, size)
    colours = codec_palette(train.codec(task)) if objective != "loss" else None
    tuner = PromptTuner(model, init, lr, objective=objective, colours=colours)
    start, history = 0, []
    best: dict[str, Any] = {}
    initial = None
    if state_path.is_file():
        if not resume:
            raise PainterError(
                f"{state_path}: an earlier tuning run is there",
                "pass --resume to continue it, or choose another --out",
            )
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if json.loads(state["fingerprint"]) != fp:
            raise PainterError(
                f"{state_path}: saved by a run with other settings (checkpoint, task, data, lr...)",
                "use another --out, or the same settings",
            )
        tuner.load_state_dict(state["tuner"])
        start, history, initial = int(state["step"]), list(state["history"]), state["initial"]
        best = {
            "image": state["best_image"],
            "target": state["best_target"],
            "score": state["best_score"],
            "step": state["best_step"],
        }
        log.info("resuming prompt tuning at step %d", start)
    elif resume:
        log.info("%s: nothing to resume, starting from step 0", state_path)

    def better(score: float) -> bool:
        if not best or not math.isfinite(best["score"]):
            return True
        return score > best["score"] if higher_is_better else score < best["score"]

    def evaluate_now(step: int, loss: float | None) -> float:
        prompt = tuner.prompt()
        score = float(validate(prompt))
        history.append({"step": step, "loss": loss, "score": _json_float(score)})
        if better(score):
            best.update(image=prompt.image, target=prompt.target, score=score, step=step)
        return score

    def save(step: int) -> None:
        _save_state(
            state_path,
            {
                "step": step,
                "tuner": tuner.state_dict(),
                "history": history,
                "initial": initial,
                "best_image": best["image"],
                "best_target": best["target"],
                "best_score": best["score"],
                "best_step": best["step"],
                "fingerprint": json.dumps(fp),
            },
        )

    bar = None
    try:
        if initial is None:  # a state saved at step 0 already holds its evaluation
            initial = evaluate_now(0, None)
            save(0)
        if progress:
            from painter_cli.console import make_progress

            bar = make_progress()
            bar.start()
            bar_task = bar.add_task(f"tuning {task}", total=steps, completed=start, info="")
        recent: list[float] = []
        for step in range(start + 1, steps + 1):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57, step]))
            batch = rng.choice(len(pool), size=batch_size, replace=len(pool) < batch_size)
            images, targets, valid = store.get([pool[int(k)] for k in batch])
            loss = tuner.step(images, targets, valid)
            recent.append(loss)
            if step % val_every == 0 or step == steps:
                score = evaluate_now(step, float(np.mean(recent)))
                recent = []
                log.debug("step %d: %s %.5f", step, metric, score)
            if step % save_every == 0 or step == steps:
                save(step)
            if bar is not None:
                bar.update(bar_task, advance=1, info=f"loss {loss:.4f}")
    finally:
        if bar is not None:
            bar.stop()
        tuner.close()
    tuned = Prompt(best["image"], best["target"], name="tuned")
    save_prompt(out, tuned)
    report = {
        "task": task,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "initial": _json_float(initial),
        "tuned": _json_float(best["score"]),
        "best_step": best["step"],
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "objective": objective,
        "init": init.name,
        "history": history,
        "prompt": str(out),
    }
    write_json(out / REPORT_FILE, report)
    return report


@dataclass
class TuneSettings:
    """Resolved settings of ``painter prompt-tune``."""

    task: str
    data: list[str] = field(default_factory=list)
    out: str | None = None
    checkpoint: str | None = None
    probe: list[str] | None = None
    init: str | None = None
    steps: int = 200
    lr: float = 0.01
    batch_size: int = 8
    probe_size: int = 16
    val_every: int = 25
    save_every: int = 25
    score: str = "auto"
    objective: str = "loss"
    size: int | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    metric_variant: str | None = None


def run_tune(settings: TuneSettings) -> dict[str, Any]:
    """Run ``painter prompt-tune``: inputs are checked before the model is loaded."""
    settings = with_suite_defaults(settings, "prompt-tune")
    ckpt = checkpoint_or_default(settings.checkpoint)
    train, probe_reader, task = _open_data(settings)
    codec = train.codec(task)
    mode, metric, hib = resolve_scoring(codec.kind, settings.score)
    objective = resolve_objective(codec.kind, settings.objective)
    pool, probes = split_indices(
        train, task, None, settings.probe_size, settings.seed, probe_reader
    )
    if settings.init is not None:
        prompt_sources(settings.init)  # fail on a bad folder before loading the model
    device = resolve_device(settings.device)
    model = load_checkpoint(ckpt, device)
    size = settings.size or default_size(model, codec.kind)
    preader = probe_reader if probe_reader is not None else train
    if settings.init is not None:
        init = load_prompt(settings.init, size, codec)
    else:  # a seeded random training pair (never a probe)
        rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0x1217]))
        init = QueryStore(train, task, size).pair(pool[int(rng.integers(len(pool)))])
    scorer = _model_scorer(settings, model, train, preader, task, size, mode, device)
    scorer.close()  # only its scoring is used here, not its pass counter
    fingerprint = {
        **_data_fingerprint(settings, ckpt, task),
        "init": settings.init,
        "size": size,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "probe_size": settings.probe_size,
        "score": mode,
        "objective": objective,
        "seed": settings.seed,
    }
    report = tune_prompt(
        model,
        train,
        task,
        pool,
        init,
        out=settings.out,
        validate=lambda p: scorer.set_score(p, probes),
        higher_is_better=hib,
        metric=metric,
        steps=settings.steps,
        lr=settings.lr,
        batch_size=settings.batch_size,
        val_every=settings.val_every,
        save_every=settings.save_every,
        seed=settings.seed,
        resume=settings.resume,
        fingerprint=fingerprint,
        objective=objective,
    )
    report["settings"] = {**asdict(settings), "checkpoint": ckpt, "task": task, "size": size}
    write_json(Path(settings.out) / REPORT_FILE, report)
    return report
