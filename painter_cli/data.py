"""Training and validation canvases from shards: same-task pair sampling, joint augmentations, masks.

A training sample is two (image, target) pairs of one task stacked vertically (the first pair on
top, as the prompt), so the image canvas and the target canvas are (2S, S) with S the model's
canvas width. Sample ``i`` is a pure function of ``(seed, i)``: ``i`` is a global sample counter
(``StepSampler`` maps (optimizer step, accumulation index, rank, position) to it), so the data
order is a function of the step and a resumed run sees exactly the samples an uninterrupted one
would, whatever the number of workers.

Per pair (spec 4.5): random resized crop (scale 0.3-1, ratio 3/4-4/3, the same box for image and
target), colour jitter (0.4, 0.4, 0.2, 0.1) with p = 0.8 on the image only, horizontal flip of both;
instance, keypoint and panoptic pairs are only resized (no crop, jitter or flip). Per canvas: the
mask (bottom half with p = 0.1, else block-wise), then a second random resized crop of the whole
canvas (scale 0.3-1, ratio 0.3-0.7) except for half-mask and no-crop samples. Targets resize with
nearest when the codec is discrete and bicubic otherwise (``official_target_resize`` restores the
official rule: bicubic only for depth and keypoints). ``valid`` comes from the codec's rule on the
final target canvas.

Per-task options (``data.task_options``, all off by default): ``pair_by_group`` draws the prompt
and the query from two different samples of one group; ``recolor`` repaints both targets of a
canvas through one random colour mapping (``tasks.recolor``); ``fg_weight`` multiplies ``valid`` on
the target's non-black pixels; ``prompt_mask`` also masks part of the prompt's target in training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageEnhance

from painter_cli.config import TaskOptions
from painter_cli.errors import PainterError
from painter_cli.masking import MaskGenerator, half_mask, mask_prompt
from painter_cli.model import seg_type_for_kind
from painter_cli.tasks.recolor import RECOLOR_KINDS, recolor_pair

log = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Kinds whose pairs are only resized: their painted colours encode positions (instance mass
# centres, keypoint crops), so crops and flips would paint wrong targets.
NO_CROP_KINDS = frozenset({"instance", "keypoints", "panoptic"})
# The official loader resized only these targets bicubically (substring match on the type name).
OFFICIAL_BICUBIC_KINDS = frozenset({"depth", "keypoints"})
# fg_weight = "auto": measured on this many stored targets; the weight is clipped to [1, this].
AUTO_FG_SAMPLES = 32
AUTO_FG_MAX = 10.0


def task_weights(reader, data_cfg, where: str = "data") -> dict[str, float]:
    """Sampling weight per task (``data.weights``, else the paper's default from ``PAPER_TASKS``).

    Tasks are those of ``reader`` (restricted to ``data_cfg.tasks`` when given). A task without a
    weight, a task name in ``data.tasks`` or ``data.weights`` that the shards do not hold, or
    all-zero weights are errors.
    """
    from painter_cli.sources.base import PAPER_TASKS

    tasks = list(reader.tasks)
    unknown = [t for t in data_cfg.weights if t not in tasks]
    if unknown:  # most likely a typo: a silently unused weight would change the mix unnoticed
        raise PainterError(
            f"{where}: data.weights names {', '.join(unknown)}, not in the shards",
            hint=f"tasks there: {', '.join(tasks)}",
        )
    if data_cfg.tasks:
        missing = [t for t in data_cfg.tasks if t not in tasks]
        if missing:
            raise PainterError(
                f"{where}: data.tasks names {', '.join(missing)}, not in the shards",
                hint=f"tasks there: {', '.join(tasks)}",
            )
        tasks = list(data_cfg.tasks)
    out: dict[str, float] = {}
    for t in tasks:
        if t in data_cfg.weights:
            w = float(data_cfg.weights[t])
        elif t in PAPER_TASKS:
            w = PAPER_TASKS[t][1]
        elif len(tasks) == 1:  # one task: nothing to mix, any weight samples the same
            w = 1.0
        else:
            raise PainterError(
                f"{where}: task {t!r} has no sampling weight",
                hint=f"set one: --set data.weights.{t}=0.2",
            )
        if not (w >= 0 and math.isfinite(w)):
            raise PainterError(f"{where}: task {t!r} has a bad weight {w}")
        out[t] = w
    if not out or sum(out.values()) <= 0:
        raise PainterError(f"{where}: no task has a positive sampling weight")
    return {t: w for t, w in out.items() if w > 0}


def check_task_options(reader, data_cfg, where: str = "data") -> None:
    """``data.task_options`` may only name tasks the shards hold (a typo would silently train
    without the option)."""
    unknown = [t for t in data_cfg.task_options if t not in reader.tasks]
    if unknown:
        raise PainterError(
            f"{where}: data.task_options names {', '.join(unknown)}, not in the shards",
            hint=f"tasks there: {', '.join(reader.tasks)}",
        )


def foreground_fraction(reader, indices: np.ndarray, samples: int = AUTO_FG_SAMPLES) -> float:
    """Mean share of non-black pixels over up to ``samples`` stored targets of ``indices``
    (evenly spaced, so the measure is a function of the shards)."""
    pick = np.unique(np.linspace(0, len(indices) - 1, min(samples, len(indices))).round())
    fracs = [float((reader[int(indices[int(k)])]["target"] > 0).any(axis=2).mean()) for k in pick]
    return float(np.mean(fracs))


def auto_fg_weight(fraction: float) -> float:
    """``fg_weight = "auto"``: sqrt((1 - f) / f) clipped to [1, 10], f the foreground fraction
    (f = 0.2: 2). The square root goes half-way (in log) to the weight that makes foreground and
    background weigh the same, (1 - f) / f: on the edge task of ``bench/sparse.py`` (f = 0.18)
    the full weight 4.7 painted 57 % of the pixels as edge (edge IoU 28), weight 2 scored 41."""
    if fraction <= 0:
        return AUTO_FG_MAX
    return float(np.clip(math.sqrt((1.0 - fraction) / fraction), 1.0, AUTO_FG_MAX))


def rrc_box(
    h: int,
    w: int,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[int, int, int, int]:
    """A random-resized-crop box (left, top, right, bottom) in an h x w image (torchvision's
    sampling: area fraction uniform in ``scale``, w/h log-uniform in ``ratio``, 10 tries, then a
    centre crop clamped to ``ratio``)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return left, top, left + cw, top + ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return left, top, left + cw, top + ch


def color_jitter(im: Image.Image, rng: np.random.Generator, strength) -> Image.Image:
    """torchvision-style ColorJitter(brightness, contrast, saturation, hue) in a random order."""
    b, c, s, hue = strength
    ops = []
    if b > 0:
        ops.append(("b", rng.uniform(max(0.0, 1 - b), 1 + b)))
    if c > 0:
        ops.append(("c", rng.uniform(max(0.0, 1 - c), 1 + c)))
    if s > 0:
        ops.append(("s", rng.uniform(max(0.0, 1 - s), 1 + s)))
    if hue > 0:
        ops.append(("h", rng.uniform(-hue, hue)))
    for k in rng.permutation(len(ops)):
        op, f = ops[k]
        if op == "b":
            im = ImageEnhance.Brightness(im).enhance(f)
        elif op == "c":
            im = ImageEnhance.Contrast(im).enhance(f)
        elif op == "s":
            im = ImageEnhance.Color(im).enhance(f)
        else:
            hsv = np.array(im.convert("HSV"))
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(f * 255))) % 256
            im = Image.fromarray(hsv, "HSV").convert("RGB")
    return im


def to_normalized(canvas: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32, ImageNet-normalised."""
    x = (canvas.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


@dataclass(frozen=True)
class _Task:
    name: str
    indices: np.ndarray
    codec: object
    target_resample: int
    no_crop: bool
    options: TaskOptions = field(default_factory=TaskOptions)
    fg_weight: float = 1.0
    # pair_by_group: the samples of groups with >= 2 samples, group by group; group g is
    # pool[starts[g]:starts[g + 1]].
    pool: np.ndarray | None = None
    starts: np.ndarray | None = None

    @property
    def seg_type(self) -> str:
        """SegGPT's type token for this task (``model.SEG_TYPES`` names): its ``seg_type``
        option, else instance codecs get the instance token, every other task the semantic one."""
        return self.options.seg_type or seg_type_for_kind(self.codec.kind)

    def span(self, k: int) -> tuple[int, int]:
        """pair_by_group: (start in ``pool``, size) of the group of pool entry ``k``."""
        g = int(np.searchsorted(self.starts, k, side="right")) - 1
        return int(self.starts[g]), int(self.starts[g + 1] - self.starts[g])

    def partner(self, k: int, j: int) -> tuple[int, int]:
        """pair_by_group: global indices of pool entry ``k`` and of the ``j``-th other member of
        its group (``0 <= j < size - 1``; the sample itself is skipped, so a query is never its
        own prompt)."""
        lo, _ = self.span(k)
        j = lo + j + (lo + j >= k)
        return int(self.pool[k]), int(self.pool[j])


def _target_resample(codec, official: bool) -> int:
    if official:
        bicubic = codec.kind in OFFICIAL_BICUBIC_KINDS
    else:
        bicubic = not codec.discrete
    return Image.BICUBIC if bicubic else Image.NEAREST


def _pairing_pool(reader, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(pool, starts) of ``_Task`` for a ``pair_by_group`` task (``PainterError`` without groups)."""
    where = f"data.task_options.{task}.pair_by_group"
    groups = reader.groups(task)
    if not groups:
        raise PainterError(
            f"{where}: task {task!r} has no sample groups in {', '.join(map(str, reader.dirs))}",
            hint="encode it with groups (Sample.group: a class, a video), or turn pairing off",
        )
    members = [m for m in groups.values() if len(m) >= 2]
    single = len(groups) - len(members)
    if not members:
        raise PainterError(f"{where}: no group of task {task!r} has two samples to pair")
    if single:
        log.warning("task %s: %d group(s) with one sample left out of pairing", task, single)
    starts = np.cumsum([0] + [len(m) for m in members]).astype(np.int64)
    return np.concatenate(members).astype(np.int64), starts


class _CanvasBase(torch.utils.data.Dataset):
    def __init__(
        self,
        reader,
        tasks: list[str],
        *,
        canvas: tuple[int, int],
        patch_size: int,
        data_cfg,
        fg_weights: dict[str, float] | None = None,
    ):
        h, w = canvas
        if h != 2 * w or h % patch_size or w % patch_size:
            raise PainterError(
                f"canvas {h}x{w} must be 2:1 and divisible by the patch size {patch_size}"
            )
        self.reader = reader
        self.size = w  # each pair is resized to size x size
        self.grid = (h // patch_size, w // patch_size)
        self.cfg = data_cfg
        self.tasks: list[_Task] = []
        for t in tasks:
            idx = reader.indices(t)
            if len(idx) == 0:
                raise PainterError(
                    f"task {t!r} has no samples in {', '.join(map(str, reader.dirs))}"
                )
            codec = reader.codec(t)
            opts = data_cfg.task_options.get(t, TaskOptions())
            if opts.recolor and codec.kind not in RECOLOR_KINDS:
                raise PainterError(
                    f"data.task_options.{t}.recolor: task {t!r} has a {codec.kind} codec "
                    f"({codec.name}); random colouring repaints segmentation (semseg) targets only",
                    hint=f"turn it off: --set data.task_options.{t}.recolor=false",
                )
            pool = starts = None
            if opts.pair_by_group:
                pool, starts = _pairing_pool(reader, t)
            self.tasks.append(
                _Task(
                    t,
                    idx,
                    codec,
                    _target_resample(codec, data_cfg.official_target_resize),
                    codec.kind in NO_CROP_KINDS,
                    opts,
                    self._fg_weight(reader, t, idx, opts, fg_weights),
                    pool,
                    starts,
                )
            )
        self.task_names = [t.name for t in self.tasks]
        self.seg_types = [t.seg_type for t in self.tasks]
        self.fg_weights = {t.name: t.fg_weight for t in self.tasks}

    @staticmethod
    def _fg_weight(reader, task: str, idx, opts: TaskOptions, given: dict | None) -> float:
        if given is not None and task in given:
            return float(given[task])
        if opts.fg_weight != "auto":
            return float(opts.fg_weight)
        f = foreground_fraction(reader, idx)
        w = auto_fg_weight(f)
        log.info("task %s: foreground fraction %.3f: fg_weight auto = %.2f", task, f, w)
        return w

    def _load_pair(
        self, task: _Task, index: int, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One pair resized to (S, S, 3) uint8, augmented when ``rng`` is given."""
        item = self.reader[int(index)]
        im = Image.fromarray(item["image"])
        tg = Image.fromarray(item["target"])
        s = self.size
        augment = rng is not None and not task.no_crop
        if augment:
            box = rrc_box(
                im.height, im.width, rng, tuple(self.cfg.crop_scale), tuple(self.cfg.crop_ratio)
            )
        else:
            box = (0, 0, im.width, im.height)
        im = im.resize((s, s), Image.BICUBIC, box=box)
        tg = tg.resize((s, s), task.target_resample, box=box)
        if augment:
            if rng.random() < self.cfg.jitter_prob:
                im = color_jitter(im, rng, self.cfg.color_jitter)
            if rng.random() < self.cfg.flip_prob:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
                tg = tg.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(im), np.asarray(tg)

    def _recolor(self, task: _Task, tgt1, tgt2, rng: np.random.Generator):
        if not task.options.recolor:
            return tgt1, tgt2
        (tgt1, tgt2), _, _ = recolor_pair([tgt1, tgt2], rng)
        return tgt1, tgt2

    def _finish(self, task_id: int, img: np.ndarray, tgt: np.ndarray, mask: np.ndarray) -> dict:
        task = self.tasks[task_id]
        valid = task.codec.valid(tgt)
        if task.fg_weight != 1.0:
            # Non-black pixels (all three elements): a mask colour is learnt channel by channel.
            fg = (tgt > 0).any(axis=2, keepdims=True)
            valid = valid * np.where(fg, np.float32(task.fg_weight), np.float32(1.0))
        return {
            "imgs": to_normalized(img),
            "tgts": to_normalized(tgt),
            "mask": torch.from_numpy(mask),
            "valid": torch.from_numpy(np.ascontiguousarray(valid.transpose(2, 0, 1), np.float32)),
            "task": task_id,
        }


class TrainCanvases(_CanvasBase):
    """Training canvases; ``ds[i]`` for any i >= 0 is a pure function of ``(seed, i)``.

    Returns ``{"imgs", "tgts": (3, 2S, S) float32 normalised, "mask": (Hp, Wp) bool (True =
    masked target patch), "valid": (3, 2S, S) float32, "task": int (index in task_names)}``.
    ``len(ds)`` is the number of pairs of the sampled tasks (the length of one epoch).
    """

    def __init__(
        self,
        reader,
        weights: dict[str, float],
        *,
        canvas: tuple[int, int],
        patch_size: int,
        mask_gen: MaskGenerator,
        data_cfg,
        seed: int,
    ):
        super().__init__(
            reader, list(weights), canvas=canvas, patch_size=patch_size, data_cfg=data_cfg
        )
        w = np.array([weights[t] for t in self.task_names], np.float64)
        self.probs = w / w.sum()
        self.mask_gen = mask_gen
        self.seed = int(seed)
        if tuple(mask_gen.grid) != self.grid:
            raise PainterError(f"mask grid {mask_gen.grid} != canvas patch grid {self.grid}")

    def __len__(self) -> int:
        return int(sum(len(t.indices) for t in self.tasks))

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED, int(i)]))

    def pair(self, task: _Task, rng: np.random.Generator) -> tuple[int, int]:
        """Global sample indices (prompt, query) of one canvas of ``task``."""
        if task.pool is not None:
            k = int(rng.integers(0, len(task.pool)))
            _, size = task.span(k)
            return task.partner(k, int(rng.integers(0, size - 1)))
        # Like the official sampler the second pair may be the first one again (same task).
        first, second = rng.integers(0, len(task.indices), size=2)
        return int(task.indices[first]), int(task.indices[second])

    def __getitem__(self, i: int) -> dict:
        rng = self.rng(i)
        task_id = int(rng.choice(len(self.tasks), p=self.probs))
        task = self.tasks[task_id]
        first, second = self.pair(task, rng)
        img1, tgt1 = self._load_pair(task, first, rng)
        img2, tgt2 = self._load_pair(task, second, rng)
        tgt1, tgt2 = self._recolor(task, tgt1, tgt2, rng)
        img = np.concatenate([img1, img2], axis=0)
        tgt = np.concatenate([tgt1, tgt2], axis=0)
        mask, is_half = self.mask_gen(rng)
        if task.options.prompt_mask > 0:
            mask = mask_prompt(mask, task.options.prompt_mask, rng)
        if self.cfg.second_crop and not is_half and not task.no_crop:
            h, w = img.shape[:2]
            box = rrc_box(
                h, w, rng, tuple(self.cfg.second_crop_scale), tuple(self.cfg.second_crop_ratio)
            )
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC, box=box))
            tgt = np.asarray(Image.fromarray(tgt).resize((w, h), task.target_resample, box=box))
        return self._finish(task_id, img, tgt, mask)


class ValCanvases(_CanvasBase):
    """Validation canvases: per task its first ``per_task`` samples as queries, each with the next
    sample of the task as the prompt pair (``pair_by_group``: the first samples of groups with two
    or more, each with the next sample of its own group); no augmentation, bottom-half mask;
    ``recolor`` draws a fixed mapping per item. Same item layout as ``TrainCanvases``.
    ``fg_weights`` (task -> weight, e.g. ``TrainCanvases.fg_weights``) overrides the measured
    ``fg_weight = "auto"`` so validation weighs the loss as training does."""

    def __init__(
        self, reader, *, canvas, patch_size, data_cfg, per_task: int, tasks=None, fg_weights=None
    ):
        super().__init__(
            reader,
            list(tasks or reader.tasks),
            canvas=canvas,
            patch_size=patch_size,
            data_cfg=data_cfg,
            fg_weights=fg_weights,
        )
        self.items: list[tuple[int, int, int]] = []
        for k, task in enumerate(self.tasks):
            if task.pool is not None:
                # Queries in task order, each prompted by the next member of its group.
                for q in np.argsort(task.pool, kind="stable")[:per_task]:
                    lo, size = task.span(int(q))
                    prompt = task.pool[lo + (q - lo + 1) % size]
                    self.items.append((k, int(prompt), int(task.pool[q])))
                continue
            n = len(task.indices)
            for q in range(min(per_task, n)):
                self.items.append((k, int(task.indices[(q + 1) % n]), int(task.indices[q])))
        self.mask = half_mask(self.grid)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        task_id, prompt, query = self.items[i]
        task = self.tasks[task_id]
        img1, tgt1 = self._load_pair(task, prompt, None)
        img2, tgt2 = self._load_pair(task, query, None)
        rng = np.random.default_rng(np.random.SeedSequence([0x7A1, int(i)]))
        tgt1, tgt2 = self._recolor(task, tgt1, tgt2, rng)
        img = np.concatenate([img1, img2], axis=0)
        tgt = np.concatenate([tgt1, tgt2], axis=0)
        return self._finish(task_id, img, tgt, self.mask.copy())


class StepSampler(torch.utils.data.Sampler):
    """Global sample indices of one rank, from optimizer step ``start_step`` on, forever.

    Step ``s`` uses the samples ``s * batch .. (s + 1) * batch - 1``; micro-batch ``a`` of rank
    ``r`` (``micro`` samples) gets those at offset ``(a * world + r) * micro``. A single process
    with ``accum = world`` therefore sees the same micro-batches as ``world`` ranks.
    """

    def __init__(self, *, start_step: int, micro: int, accum: int, rank: int, world: int):
        self.start_step, self.micro, self.accum = start_step, micro, accum
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[int]:
        batch = self.micro * self.accum * self.world
        s = self.start_step
        while True:
            for a in range(self.accum):
                base = s * batch + (a * self.world + self.rank) * self.micro
                yield from range(base, base + self.micro)
            s += 1


def pack_batch(items: list[dict]) -> np.ndarray:
    """Collate canvases into one (N, 9*H*W + Hp*Wp + 1) float32 array (imgs, tgts, valid, mask,
    task). A numpy array travels from a worker through its pipe in one piece; torch tensors would
    go through shared memory, each needing a round trip to the (possibly descheduled) worker,
    which cost several ms per batch on a busy CPU."""
    rows = [
        np.concatenate(
            [
                it["imgs"].numpy().reshape(-1),
                it["tgts"].numpy().reshape(-1),
                it["valid"].numpy().reshape(-1),
                it["mask"].numpy().reshape(-1).astype(np.float32),
                np.array([it["task"]], np.float32),
            ]
        )
        for it in items
    ]
    return np.stack(rows)


def unpack_batch(buf, canvas: tuple[int, int], grid: tuple[int, int]) -> dict:
    """The inverse of ``pack_batch``: fresh tensors. They are copies, not views of ``buf``: a
    pickled array's data may sit at any alignment, and CPU kernels (oneDNN/MKL) can round
    differently for different alignments, which would break bitwise-exact resume."""
    buf = torch.as_tensor(buf)
    n = buf.shape[0]
    h, w = canvas
    hw = 3 * h * w
    out = {}
    for k, name in enumerate(("imgs", "tgts", "valid")):
        out[name] = buf[:, k * hw : (k + 1) * hw].reshape(n, 3, h, w).clone()
    cells = grid[0] * grid[1]
    out["mask"] = buf[:, 3 * hw : 3 * hw + cells].reshape(n, *grid) > 0.5
    out["task"] = buf[:, -1].round().long()
    return out


class CanvasLoader:
    """A DataLoader over a canvas dataset that yields the item dicts of ``TrainCanvases`` batched
    (``imgs``, ``tgts``, ``valid`` (N, 3, 2S, S), ``mask`` (N, Hp, Wp) bool, ``task`` (N,) int)."""

    def __init__(self, dataset, loader):
        self.loader = loader
        self.canvas = (2 * dataset.size, dataset.size)
        self.grid = dataset.grid

    def __iter__(self) -> Iterator[dict]:
        # Built now, not lazily at the first next(): starting the DataLoader iterator draws a base
        # seed, and it must not happen inside a step whose torch RNG was just reseeded.
        it = iter(self.loader)
        return (unpack_batch(buf, self.canvas, self.grid) for buf in it)


def make_loader(dataset, *, batch_size: int, num_workers: int, sampler=None) -> CanvasLoader:
    """A loader over ``dataset`` (``num_workers`` processes prefetch 4 batches each)."""
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": 4, "persistent_workers": False}
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        drop_last=False,
        collate_fn=pack_batch,
        # Our samples draw from their own numpy generators; this keeps the loader's worker-seed
        # draw off the global torch RNG (which seeds drop path).
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )
    return CanvasLoader(dataset, loader)
