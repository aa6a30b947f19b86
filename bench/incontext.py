"""Evidence that a model learned in context: the synthetic suite's val split scored per task with
the right prompt, with the prompts of the other tasks and with a blank prompt.

Baseline (same run): the controls. ``wrong`` is the mean score of the other tasks' bundled prompts
on this task (a prompt of another task, drawn at random); ``wrong_best`` is the best of them (the
strongest wrong prompt, named in ``wrong_best_task``; for a restoration task it is usually another
restoration task, whose prompt asks for the same clean image); ``blank`` is a black image with a
black target. The right prompt is the task's bundled pair (``painter_cli/assets/
prompts/<task>``). The out-of-domain task (synthetic-fgseg, ood split, never trained on) is
scored on its samples other than the one its prompt came from.
Goal: the right prompt wins every in-domain task by a clear margin and beats both controls on the
out-of-domain task (``margin``: right minus the better of ``wrong`` and ``blank``; ``margin_best``:
right minus the best of every control; both signed so that > 0 is a win).

    python bench/incontext.py                      # bundled model, table on stdout
    python bench/incontext.py --json               # {task: {metric, higher_is_better, right, ...}}
    python bench/incontext.py --checkpoint runs/x --grid painter_cli/assets/grid.png
    python bench/incontext.py --suite-seed 1       # a second query set: the seed-1 suite's val/ood

``--segment`` measures instead whether a model paints the concept its prompt shows
(synthetic-segment; suite version 4 adds synthetic-segment-outline, the same scenes in free
colours):

* selectivity: queries that each hold two shapes A and B of different classes (drawn by the
  suite's own ``segment_scene``, so both masks are known), painted once prompted by a sample of
  class A and once by one of class B (samples of the suite split whose target is that class, of
  the query's form); IoU with the prompted shape minus IoU with the other, averaged over both
  prompts and the queries (``metrics.selectivity``). A model that ignores the prompt's content
  scores 0. Reported for the training classes (val split) and the held-out classes (ood split),
  each in the look-differing and the free-colour (outline only) form.
* one-shot mIoU of the ood split (FSS-1000's protocol, ``metrics.FewShotMeter``): every ood
  sample is a query, prompted by another sample of its class (``right``), by a sample of another
  class (``other_class``) and by a black pair (``blank``).

    python bench/incontext.py --segment --checkpoint runs/seggpt-suite --json
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from painter_cli.defaults import (
    bundled_model,
    bundled_prompt,
    ensure_suite,
    suite_queries,
    suite_tasks,
)
from painter_cli.evaluation import evaluate
from painter_cli.inference import Predictor, finish, load_image, make_prompt
from painter_cli.shards import ShardReader
from painter_cli.sources.synthetic import SYNTHETIC_TASKS


def table_tasks() -> list[str]:
    """The tasks of the in-context table: every suite task with a bundled prompt (a grouped task,
    synthetic-segment, has no single right prompt: ``--segment`` measures it)."""
    tasks = dict.fromkeys(suite_tasks("train") + suite_tasks("ood"))
    return [t for t in tasks if not SYNTHETIC_TASKS[t].grouped]


def load_pair(task: str) -> tuple[np.ndarray, np.ndarray]:
    """The bundled prompt pair of ``task``: (image, target) uint8 (H, W, 3)."""
    folder = bundled_prompt(task)
    return load_image(folder / "image.png"), load_image(folder / "target.png")


def task_reader(suite: Path, task: str) -> tuple[ShardReader, str]:
    split = "val" if "val" in SYNTHETIC_TASKS[task].splits else "ood"
    return ShardReader(suite / split), split


def query_indices(reader: ShardReader, task: str, split: str, limit: int) -> list[int]:
    return suite_queries(reader, task)[:limit]


class _Subset:
    """A reader restricted to some samples of one task (what ``evaluate`` reads)."""

    def __init__(self, reader: ShardReader, task: str, indices: list[int]):
        self.reader, self.task, self._idx = reader, task, np.asarray(indices, np.int64)
        self.tasks, self.dirs = [task], reader.dirs

    def indices(self, task: str) -> np.ndarray:
        return self._idx

    def codec(self, task: str):
        return self.reader.codec(task)

    def task_info(self, task: str):
        return self.reader.task_info(task)

    def __getitem__(self, i: int):
        return self.reader[i]


def score(predictor, reader, task, image, target, cache) -> dict:
    codec = reader.codec(task)
    prompt = make_prompt(image, target, predictor.size, discrete=codec.discrete, name=task)
    return evaluate(predictor, reader, task, [prompt], progress=False, cache=cache)


def incontext_table(checkpoint: str | Path, suite: Path, limit: int) -> dict[str, dict]:
    """``{task: {"metric", "higher_is_better", "right", "wrong", "wrong_best", "wrong_best_task",
    "blank", "margin", "margin_best", "images", "split"}}`` over the suite's val split (ood for the
    held-out task)."""
    from painter_cli.checkpoint import load_model

    model = load_model(checkpoint, device="cpu")
    predictor = Predictor(model)
    tasks = table_tasks()
    pairs = {t: load_pair(t) for t in tasks}
    table: dict[str, dict] = {}
    for task in tasks:
        reader, split = task_reader(suite, task)
        predictor.seg_type = task_seg_type(checkpoint, model, reader.codec(task).kind, task)
        sub = _Subset(reader, task, query_indices(reader, task, split, limit))
        cache: dict = {}
        right = score(predictor, sub, task, *pairs[task], cache)
        metric, hib = right["metric"], bool(right["higher_is_better"])
        others = {
            o: score(predictor, sub, task, *pairs[o], cache)[metric] for o in tasks if o != task
        }
        pick = max if hib else min
        best_task = pick(others, key=lambda o: others[o])
        wrong = float(np.mean(list(others.values())))
        image, target = pairs[task]
        black = (np.zeros_like(image), np.zeros_like(target))
        blank = float(score(predictor, sub, task, *black, cache)[metric])
        sign = 1.0 if hib else -1.0
        table[task] = {
            "metric": metric,
            "higher_is_better": hib,
            "right": float(right[metric]),
            "wrong": wrong,
            "wrong_best": float(others[best_task]),
            "wrong_best_task": best_task,
            "blank": blank,
            "margin": float(sign * (right[metric] - pick(wrong, blank))),
            "margin_best": float(sign * (right[metric] - pick(others[best_task], blank))),
            "images": int(right["images"]),
            "split": split,
        }
    return table


def task_seg_type(checkpoint: str | Path, model, kind: str, task: str) -> str | None:
    """The type token ``painter predict`` paints ``task`` (codec ``kind``) with (None: Painter)."""
    from painter_cli.checkpoint import resolve_seg_type

    return resolve_seg_type(checkpoint, model, None, kind, task)


def write_grid(
    checkpoint: str | Path, suite: Path, path: Path, scale: int = 2, extra: list[tuple] = ()
) -> Path:
    """A picture: one row per task; columns prompt image, prompt target, query, painted output,
    ground truth (each the suite's generation size, upscaled ``scale``x, nearest). ``extra``:
    more synthetic-segment rows ``(label, prompt image, prompt target, query, truth)``, uint8
    (S, S, 3) each (e.g. one query prompted by two concepts)."""
    from PIL import Image, ImageDraw

    from painter_cli.checkpoint import load_model

    model = load_model(checkpoint, device="cpu")
    predictor = Predictor(model)
    tasks = table_tasks()
    labels, rows = list(tasks), []
    for task in tasks:
        reader, split = task_reader(suite, task)
        sample = reader[query_indices(reader, task, split, 1)[0]]
        rows.append(
            _grid_row(predictor, checkpoint, task, reader.codec(task), *load_pair(task), sample)
        )
    seg = ShardReader(suite / "ood").codec(SEGMENT) if extra else None
    for label, image, target, query, truth in extra:
        labels.append(label)
        sample = {"image": query, "target": truth}
        rows.append(_grid_row(predictor, checkpoint, SEGMENT, seg, image, target, sample))
    size = rows[0][0].shape[0] * scale
    gap, label_w, head = 4, 150, 18
    cols = ("prompt", "prompt target", "query", "painted", "truth")
    width = label_w + len(cols) * (size + gap)
    height = head + len(rows) * (size + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        draw.text((label_w + c * (size + gap) + 2, 3), name, fill=(0, 0, 0))
    for r, (task, cells) in enumerate(zip(labels, rows, strict=True)):
        y = head + r * (size + gap)
        draw.text((4, y + size // 2 - 6), task, fill=(0, 0, 0))
        for c, cell in enumerate(cells):
            im = Image.fromarray(np.asarray(cell, np.uint8)).resize((size, size), Image.NEAREST)
            canvas.paste(im, (label_w + c * (size + gap), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    return path


def _grid_row(predictor, checkpoint, task, codec, image, target, sample) -> list[np.ndarray]:
    """The cells of one grid row (``task`` painted with ``codec``): prompt image, prompt target,
    query, painted, truth."""
    predictor.seg_type = task_seg_type(checkpoint, predictor.model, codec.kind, task)
    prompt = make_prompt(image, target, predictor.size, discrete=codec.discrete)
    painted = predictor.paint(predictor.query(sample["image"])[None], [prompt])[0]
    h, w = sample["image"].shape[:2]
    out = finish(painted, h, w, codec.kind).astype(np.uint8)
    return [image, target, sample["image"], out, sample["target"]]


def markdown(table: dict[str, dict]) -> str:
    lines = [
        "| task | metric | right prompt | other task's prompt (mean) | blank prompt | margin "
        "| best other prompt (task) | margin vs best |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, r in table.items():
        arrow = "higher" if r["higher_is_better"] else "lower"
        lines.append(
            f"| {task} ({r['split']}) | {r['metric']} ({arrow} is better) | {r['right']:.3f} | "
            f"{r['wrong']:.3f} | {r['blank']:.3f} | {r['margin']:+.3f} | "
            f"{r['wrong_best']:.3f} ({r['wrong_best_task']}) | {r['margin_best']:+.3f} |"
        )
    return "\n".join(lines)


# --- synthetic-segment: does the painting follow the prompt's concept? ------------------------------

SEGMENT = "synthetic-segment"
OUTLINE = "synthetic-segment-outline"  # the same scenes in free colours: outline alone decides
FORMS = {"look": SEGMENT, "free": OUTLINE}


def _foreground(predictor, codec, image: np.ndarray, prompt) -> np.ndarray:
    """(H, W) bool: the pixels of ``image`` painted as foreground under ``prompt``."""
    painted = predictor.paint(predictor.query(image)[None], [prompt])[0]
    h, w = image.shape[:2]
    out = finish(painted, h, w, codec.kind).astype(np.uint8)
    return codec.decode(out) > 0


def _class_prompt(predictor, reader, members: list[int], rng):
    """A prompt of one class: a random one of its samples ``members`` (global indices)."""
    s = reader[members[int(rng.integers(len(members)))]]
    return predictor.prompt(s["image"], s["target"], discrete=reader.codec(SEGMENT).discrete)


def two_shape_queries(split: str, free: bool, count: int, size: int, seed: int = 0) -> list:
    """``count`` query scenes of ``split``'s class pool, each holding one shape of two different
    classes A and B: ``[(image uint8 (size, size, 3), mask A, mask B, name A, name B)]``, drawn by
    the suite's ``segment_scene`` from a stream of their own (not the suite's samples)."""
    from painter_cli.sources.synthetic import SEGMENT_POOLS, segment_scene

    pool = SEGMENT_POOLS[split]
    out = []
    for i in range(count):
        words = [seed, zlib.crc32(b"two-shape-queries"), zlib.crc32(split.encode()), int(free), i]
        rng = np.random.default_rng(np.random.SeedSequence(words))
        a, b = (pool[int(k)] for k in rng.choice(len(pool), 2, replace=False))
        image, (mask_a, mask_b) = segment_scene(rng, size, [a, b], free)
        out.append((image, mask_a, mask_b, a.name, b.name))
    return out


def selectivity_table(predictor, reader: ShardReader, split: str, limit: int, seed: int = 0):
    """``{"look": {...}, "free": {...}}`` of ``metrics.SelectivityMeter`` results on ``limit``
    two-shape queries per form; the prompts are samples of ``reader`` (the suite's ``split``) of
    the form's task (``FORMS``; a form whose task the suite lacks is left out)."""
    from painter_cli.metrics import SelectivityMeter

    codec = reader.codec(SEGMENT)
    rng = np.random.default_rng(seed)
    size = int(reader[int(reader.indices(SEGMENT)[0])]["image"].shape[0])
    result = {}
    for form, task in FORMS.items():
        if task not in reader.tasks:
            continue
        members = {g: [int(i) for i in idx] for g, idx in reader.groups(task).items()}
        meter = SelectivityMeter()
        for image, mask_a, mask_b, a, b in two_shape_queries(
            split, form == "free", limit, size, seed
        ):
            if a not in members or b not in members:
                continue  # a class without a sample in this split to prompt with
            pa, pb = (_class_prompt(predictor, reader, members[n], rng) for n in (a, b))
            pred_a = _foreground(predictor, codec, image, pa)
            pred_b = _foreground(predictor, codec, image, pb)
            meter.update(pred_a, pred_b, mask_a, mask_b)
        result[form] = meter.compute()
    return result


def oneshot_table(
    predictor, reader: ShardReader, limit: int, seed: int = 0, task: str = SEGMENT
) -> dict:
    """FSS-1000's one-shot protocol on ``reader``'s ``task`` samples (at most ``limit``
    queries): ``{condition: {"miou", "fb_iou"}, "queries"}`` for the conditions ``right``
    (another sample of the query's class), ``other_class`` (a sample of another class) and
    ``blank`` (a black pair)."""
    from painter_cli.metrics import FewShotMeter

    codec = reader.codec(task)
    groups = {g: [int(i) for i in idx] for g, idx in reader.groups(task).items()}
    rng = np.random.default_rng(seed)
    meters = {c: FewShotMeter() for c in ("right", "other_class", "blank")}
    queries = [(g, i) for g, idx in groups.items() for i in idx if len(idx) >= 2]
    queries = [queries[int(k)] for k in sorted(rng.permutation(len(queries))[:limit])]
    for group, i in queries:
        q = reader[i]
        same = [j for j in groups[group] if j != i]
        others = [j for g, idx in groups.items() if g != group for j in idx]
        gt = codec.decode(q["target"]) > 0
        for cond, pick in (("right", same), ("other_class", others)):
            s = reader[pick[int(rng.integers(len(pick)))]]
            prompt = predictor.prompt(s["image"], s["target"], discrete=codec.discrete)
            meters[cond].update(_foreground(predictor, codec, q["image"], prompt), gt, group)
        black = np.zeros_like(q["image"])
        blank = predictor.prompt(black, black, discrete=codec.discrete)
        meters["blank"].update(_foreground(predictor, codec, q["image"], blank), gt, group)
    out: dict = {}
    for cond, meter in meters.items():
        r = meter.compute()
        out[cond] = {"miou": r["miou"], "fb_iou": r["fb_iou"]}
    out["queries"] = len(queries)
    out["classes"] = len({g for g, _ in queries})
    return out


def segment_report(checkpoint: str | Path, suite: Path, limit: int, seed: int = 0) -> dict:
    """``{"selectivity": {"val": {...}, "ood": {...}}, "oneshot_ood": {...}}`` (see the module
    docstring; ``"oneshot_ood_outline"`` too on a suite of version 4) of ``checkpoint`` on the
    suite in ``suite``."""
    from painter_cli.checkpoint import load_model, resolve_seg_type

    model = load_model(checkpoint, device="cpu")
    # A SegGPT model of ours paints with the type token it trained synthetic-segment with.
    predictor = Predictor(
        model, seg_type=resolve_seg_type(checkpoint, model, None, "semseg", SEGMENT)
    )
    readers = {split: ShardReader(suite / split) for split in ("val", "ood")}
    for split, reader in readers.items():
        if SEGMENT not in reader.tasks:
            raise SystemExit(
                f"{suite / split}: no {SEGMENT} (a suite of version 3 or later is needed)"
            )
    report = {
        "selectivity": {
            split: selectivity_table(predictor, reader, split, limit, seed)
            for split, reader in readers.items()
        },
        "oneshot_ood": oneshot_table(predictor, readers["ood"], 4 * limit, seed),
    }
    if OUTLINE in readers["ood"].tasks:
        report["oneshot_ood_outline"] = oneshot_table(
            predictor, readers["ood"], 4 * limit, seed, OUTLINE
        )
    return report


def segment_markdown(report: dict) -> str:
    lines = [
        "| classes | form | selectivity (+- s.e.) | IoU prompted shape | IoU other shape | queries |",
        "|---|---|---:|---:|---:|---:|",
    ]
    names = {"val": "training (val)", "ood": "held out (ood)"}
    forms = {"look": "own look", "free": "free colours"}
    for split, by_form in report["selectivity"].items():
        for form, r in by_form.items():
            lines.append(
                f"| {names[split]} | {forms[form]} | {r['selectivity']:+.1f} +- {r['sem']:.1f} | "
                f"{r['prompted']:.1f} | {r['other']:.1f} | {r['queries']} |"
            )
    for key, what in (("oneshot_ood", "own look"), ("oneshot_ood_outline", "free colours")):
        if key not in report:
            continue
        o = report[key]
        lines += [
            "",
            f"one-shot on the ood split, {what} ({o['queries']} queries, {o['classes']} classes):",
            "",
            "| prompt | mIoU | FB-IoU |",
            "|---|---:|---:|",
        ]
        for cond in ("right", "other_class", "blank"):
            lines.append(f"| {cond} | {o[cond]['miou']:.1f} | {o[cond]['fb_iou']:.1f} |")
    return "\n".join(lines)


def query_suite(seed: int) -> Path:
    """The suite of generator seed ``seed`` in the cache, with (at least) its val and ood splits,
    which hold every query the bench scores; written once (the train split is not needed)."""
    from painter_cli.defaults import encode_suite, suite_root
    from painter_cli.encode import nworkers_default

    root = suite_root(seed=seed)
    encode_suite(root, seed=seed, workers=nworkers_default(), splits=("val", "ood"))
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--suite", type=Path, default=None, help="default: the cached suite")
    ap.add_argument("--limit", type=int, default=100, help="queries per task")
    ap.add_argument("--json", action="store_true", help="print the table as JSON")
    ap.add_argument("--grid", type=Path, default=None, help="also write the picture here")
    ap.add_argument(
        "--segment",
        action="store_true",
        help="measure synthetic-segment instead: selectivity and the ood one-shot mIoU "
        "(--limit: two-shape queries per split and form; 4x that one-shot queries)",
    )
    ap.add_argument("--seed", type=int, default=0, help="--segment: queries and prompts")
    ap.add_argument(
        "--suite-seed",
        type=int,
        default=None,
        help="score the val/ood queries of the suite generated with this seed (e.g. 1: a second "
        "query set; its val and ood splits are written to the cache once)",
    )
    args = ap.parse_args(argv)
    ckpt = args.checkpoint or bundled_model()
    if args.suite_seed is not None:
        suite = query_suite(args.suite_seed)
    else:
        suite = args.suite or ensure_suite()
    if args.segment:
        report = segment_report(ckpt, suite, args.limit, args.seed)
        print(json.dumps(report, indent=2) if args.json else segment_markdown(report))
        return 0
    table = incontext_table(ckpt, suite, args.limit)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(markdown(table))
        wins = sum(r["margin"] > 0 for r in table.values())
        best = sum(r["margin_best"] > 0 for r in table.values())
        print(f"\nthe right prompt beats both controls on {wins}/{len(table)} tasks")
        print(f"and the best prompt of any other task on {best}/{len(table)}")
    if args.grid:
        print(f"grid -> {write_grid(ckpt, suite, args.grid)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
