"""Write the bundled default into the package: model, prompts, examples, metrics, test reference.

    python bench/bundle.py --prompts                          # prompts/ and examples/ only
    python bench/bundle.py --checkpoint RUN_DIR [--limit 100] # + model, metrics.json, grid, test ref
    python bench/bundle.py --checkpoint RUN_DIR --select      # in-domain prompts by prompt-select

Prompts are training-split pairs (``painter_cli/assets/prompts/<task>/image.png + target.png``;
the held-out synthetic-fgseg has only its ood split: its sample 0, never scored by the bench).
In-domain prompts are train sample 1, or with ``--select`` the pair ``painter prompt-select``
picks with the checkpoint (32 train candidates, 16 probes held out of the train split: the val
split the bench scores is never seen; fgseg keeps its fixed pair, as an unseen task would);
examples are val-split queries (``examples/<task>.png``). All are regenerated from the synthetic
generator (seed 0, size 64), so they do not depend on a cache. With ``--checkpoint``: the
checkpoint's ``model.safetensors`` and ``config.json`` go to ``models/bundled-tiny/`` with a
``metrics.json`` (training summary and the ``bench/incontext.py`` table), the grid to
``assets/grid.png``, and the model's painted output for the depth example to
``tests/data/bundled_depth_painted.npy`` (what ``tests/test_defaults.py`` compares against).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from painter_cli.defaults import (  # noqa: E402
    ASSETS,
    BUNDLED_MODEL,
    SUITE_SEED,
    SUITE_SIZE,
    ensure_suite,
    suite_tasks,
)
from painter_cli.sources.synthetic import SYNTHETIC_TASKS, generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_REF = ROOT / "tests" / "data" / "bundled_depth_painted.npy"
# The training stages (stage k starts from stage k-1's run directory, see its run.init).
RECIPES = ["painter_cli/assets/recipes/bundled-tiny.toml"] + [
    f"painter_cli/assets/recipes/bundled-tiny-stage{k}.toml" for k in range(2, 6)
]
RUNS = ["runs/bundled-tiny"] + [f"runs/bundled-tiny-{k}" for k in range(2, 6)]
# The train sample each in-domain prompt comes from (1: several objects in every task).
PROMPT_INDEX = 1


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def _prompted(tasks: list[str]) -> list[str]:
    """The tasks that get a bundled prompt: all but grouped ones (synthetic-segment has no single
    right prompt), each once."""
    return [t for t in dict.fromkeys(tasks) if not SYNTHETIC_TASKS[t].grouped]


def select_prompts(checkpoint: str) -> dict[str, int]:
    """The train index ``painter prompt-select`` picks for each in-domain task."""
    import tempfile

    from painter_cli.prompts import SelectSettings, run_select

    suite = ensure_suite()
    chosen = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in _prompted(suite_tasks("train")):
            settings = SelectSettings(
                task=task,
                data=[str(suite / "train")],
                out=str(Path(tmp) / task),
                checkpoint=checkpoint,
                candidates=32,
                probe_size=16,
                top=1,
                random=0,
                device="cpu",
            )
            best = run_select(settings)["best"]["id"]
            chosen[task] = int(best.rsplit("-", 1)[1])
            print(f"{task}: prompt-select picked {best}")
    return chosen


def write_prompts(chosen: dict[str, int] | None = None) -> dict[str, str]:
    """Write prompts/ and examples/; returns task -> the prompt's sample id."""
    chosen = chosen or {}
    ids = {}
    for task in _prompted(suite_tasks("train") + suite_tasks("ood")):
        split, index = ("train", PROMPT_INDEX) if task in suite_tasks("train") else ("ood", 0)
        index = chosen.get(task, index)
        s = generate(task, index, split=split, size=SUITE_SIZE, seed=SUITE_SEED)
        save_png(s.image, ASSETS / "prompts" / task / "image.png")
        save_png(s.target, ASSETS / "prompts" / task / "target.png")
        split, index = ("val", 0) if split == "train" else ("ood", 1)
        q = generate(task, index, split=split, size=SUITE_SIZE, seed=SUITE_SEED)
        save_png(q.image, ASSETS / "examples" / f"{task}.png")
        print(f"{task}: prompt {s.id}, example {q.id}")
        ids[task] = s.id
    return ids


def painted_reference(model_dir: Path) -> np.ndarray:
    """(3, S, S) float32: the model's painting of the depth example with the depth prompt."""
    from painter_cli.checkpoint import load_model
    from painter_cli.inference import Predictor, load_image, make_prompt

    predictor = Predictor(load_model(model_dir, device="cpu"))
    prompt = make_prompt(
        load_image(ASSETS / "prompts" / "synthetic-depth" / "image.png"),
        load_image(ASSETS / "prompts" / "synthetic-depth" / "target.png"),
        predictor.size,
    )
    query = predictor.query(load_image(ASSETS / "examples" / "synthetic-depth.png"))
    return predictor.paint(query[None], [prompt])[0].numpy().astype(np.float32)


def write_model(checkpoint: str, limit: int, prompts: dict[str, str]) -> None:
    import incontext

    from painter_cli.checkpoint import resolve_checkpoint

    src = resolve_checkpoint(checkpoint)
    dest = ASSETS / "models" / BUNDLED_MODEL
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(src / "model.safetensors", tmp / "model.safetensors")
    doc = json.loads((src / "config.json").read_text())
    # This machine's paths mean nothing elsewhere: record the recipe's (empty = the cached suite).
    data = doc.get("run", {}).get("data", {})
    for key in ("paths", "val_paths"):
        if key in data:
            data[key] = []
    if doc.get("run", {}).get("run", {}).get("init"):
        doc["run"]["run"]["init"] = RUNS[-2]  # the stage before the bundled one
    (tmp / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
    suite = ensure_suite()
    table = incontext.incontext_table(tmp, suite, limit)
    run_dir = src.parent.parent
    rows = []
    metrics_file = run_dir / "metrics.jsonl"
    if metrics_file.is_file():
        rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line]
    last_val = next((r["val_loss"] for r in reversed(rows) if "val_loss" in r), None)
    metrics = {
        "model": BUNDLED_MODEL,
        "recipes": RECIPES,
        "commands": [f"painter train {r} --out {o}" for r, o in zip(RECIPES, RUNS, strict=True)],
        "step": doc.get("meta", {}).get("step"),
        "train_loss": rows[-1]["loss"] if rows else None,
        "val_loss": last_val,
        "incontext": table,
        "incontext_queries_per_task": limit,
        "prompts": prompts,
        "bench": "python bench/incontext.py --json",
    }
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    print(incontext.markdown(table))
    incontext.write_grid(dest, suite, ASSETS / "grid.png")
    TEST_REF.parent.mkdir(parents=True, exist_ok=True)
    np.save(TEST_REF, painted_reference(dest))
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"bundled {src} -> {dest} ({size / 1e6:.2f} MB), grid and {TEST_REF.name} written")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", action="store_true", help="write prompts/ and examples/")
    ap.add_argument("--checkpoint", default=None, help="checkpoint or run dir to bundle")
    ap.add_argument("--limit", type=int, default=100, help="bench queries per task")
    ap.add_argument("--select", action="store_true", help="pick prompts with prompt-select")
    args = ap.parse_args()
    if args.prompts or args.checkpoint:
        chosen = select_prompts(args.checkpoint) if args.select and args.checkpoint else None
        ids = write_prompts(chosen)
    if args.checkpoint:
        write_model(args.checkpoint, args.limit, ids)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
