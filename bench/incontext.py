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
"""

from __future__ import annotations

import argparse
import json
import sys
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

    predictor = Predictor(load_model(checkpoint, device="cpu"))
    tasks = suite_tasks("train") + suite_tasks("ood")
    pairs = {t: load_pair(t) for t in tasks}
    table: dict[str, dict] = {}
    for task in tasks:
        reader, split = task_reader(suite, task)
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


def write_grid(checkpoint: str | Path, suite: Path, path: Path, scale: int = 2) -> Path:
    """A picture: one row per task; columns prompt image, prompt target, query, painted output,
    ground truth (each the suite's generation size, upscaled ``scale``x, nearest)."""
    from PIL import Image, ImageDraw

    from painter_cli.checkpoint import load_model

    predictor = Predictor(load_model(checkpoint, device="cpu"))
    tasks = suite_tasks("train") + suite_tasks("ood")
    rows = []
    for task in tasks:
        reader, split = task_reader(suite, task)
        sample = reader[query_indices(reader, task, split, 1)[0]]
        image, target = load_pair(task)
        codec = reader.codec(task)
        prompt = make_prompt(image, target, predictor.size, discrete=codec.discrete)
        painted = predictor.paint(predictor.query(sample["image"])[None], [prompt])[0]
        h, w = sample["image"].shape[:2]
        out = finish(painted, h, w, codec.kind).astype(np.uint8)
        cells = [image, target, sample["image"], out, sample["target"]]
        rows.append(cells)
    size = rows[0][0].shape[0] * scale
    gap, label_w, head = 4, 150, 18
    cols = ("prompt", "prompt target", "query", "painted", "truth")
    width = label_w + len(cols) * (size + gap)
    height = head + len(rows) * (size + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        draw.text((label_w + c * (size + gap) + 2, 3), name, fill=(0, 0, 0))
    for r, (task, cells) in enumerate(zip(tasks, rows, strict=True)):
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--suite", type=Path, default=None, help="default: the cached suite")
    ap.add_argument("--limit", type=int, default=100, help="queries per task")
    ap.add_argument("--json", action="store_true", help="print the table as JSON")
    ap.add_argument("--grid", type=Path, default=None, help="also write the picture here")
    args = ap.parse_args(argv)
    ckpt = args.checkpoint or bundled_model()
    suite = args.suite or ensure_suite()
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
