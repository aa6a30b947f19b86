"""Write the bundled default into the package: model, prompts, examples, metrics, test references.

    python bench/bundle.py --prompts                          # prompts/ and examples/ only
    python bench/bundle.py --concepts                         # the new-concept example only
    python bench/bundle.py --checkpoint CKPT [--limit 100]    # + model, metrics.json, grid, test refs
    python bench/bundle.py --checkpoint CKPT --select         # in-domain prompts by prompt-select
    python bench/bundle.py --stage runs/NAME [--score 100]    # commit a finished stage: stages/NAME/
    python bench/bundle.py --stage DIR --as NAME --no-weights # its stage.json only, under NAME

``--name`` (default ``defaults.BUNDLED_MODEL``) names the model folder
(``painter_cli/assets/models/<name>/``) and its training chain (``CHAINS``: the recipes in order,
each stage starting from the one before; ``--until RECIPE`` bundles an earlier stage). Once a
stage's run (``runs/<run>``) has finished, ``--stage runs/<run>`` commits its last checkpoint as
``stages/<run>/`` (``model.safetensors``, ``config.json``) with a ``stage.json`` (steps, canvases,
wall seconds, losses; with ``--score N`` its scores: ``bench/incontext.py --segment`` on N
queries, the task table on ``--score-incontext`` (30) queries a task, ``bench/photos.py`` with
train-pair prompts), which is where the next stage's ``run.init`` points and what
``metrics.json`` reads when the run directory is gone.

Prompts are training-split pairs (``painter_cli/assets/prompts/<task>/image.png + target.png``;
the held-out synthetic-fgseg has only its ood split: its sample 0, never scored by the bench).
In-domain prompts are train sample 1, or with ``--select`` the pair ``painter prompt-select``
picks with the checkpoint (32 train candidates, 16 probes held out of the train split: the val
split the bench scores is never seen; fgseg keeps its fixed pair, as an unseen task would);
examples are val-split queries (``examples/<task>.png``). All are regenerated from the synthetic
generator (seed 0) at the suite's size, or at the model's per-image side when that is larger, so
they do not depend on a cache. The new-concept example (``--concepts``, and with every
``--prompts``): ``examples/two-shapes.png`` holds one shape of each of two held-out classes
(``CONCEPTS``, own looks), and ``prompts/concepts/<class>/`` a scene of that class with its mask
(white on black); the two masks of the query go to ``tests/data/two_shapes_masks.npz``.

With ``--checkpoint``: the checkpoint's ``model.safetensors`` and ``config.json`` go to
``models/<name>/`` with a ``metrics.json`` (every stage of the chain, the ``bench/incontext.py``
table, its ``--segment`` report and the ``bench/photos.py`` table), the grid to
``assets/grid.png``, and the model's painting of the depth example to
``tests/data/bundled_depth_painted.npy`` (what ``tests/test_defaults.py`` compares against).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import zlib
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
from painter_cli.inference import write_json  # noqa: E402
from painter_cli.sources.synthetic import SYNTHETIC_TASKS, generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ASSETS / "recipes"
STAGES = ROOT / "stages"  # committed stage checkpoints: stages/<run name>/
RUNS = ROOT / "runs"
TEST_REF = ROOT / "tests" / "data" / "bundled_depth_painted.npy"
CONCEPT_MASKS = ROOT / "tests" / "data" / "two_shapes_masks.npz"
STAGE_FILE = "stage.json"
# The stages that trained each bundled model, in order: ``(recipe, run)``, the recipe's name in the
# recipes folder and the run it writes (``runs/<run>``, committed as ``stages/<run>``); each stage
# starts from the one before (its ``run.init``). Later ``<name>-stageK.toml`` recipes are found on
# disk (run: the recipe's name), so a stage added to the chain needs no edit here.
CHAINS = {
    "bundled-tiny": [("bundled-tiny", "bundled-tiny")]
    + [(f"bundled-tiny-stage{k}", f"bundled-tiny-{k}") for k in range(2, 6)],
    "bundled-mini": [
        ("seggpt-suite", "seggpt-suite"),
        ("seggpt-suite-stage2", "seggpt-suite-2"),
        ("bundled-mini", "bundled-mini"),
    ],
}
# The train sample each in-domain prompt comes from (1: several objects in every task).
PROMPT_INDEX = 1
# The new-concept example: two held-out (ood) classes that differ in outline and look.
CONCEPTS = ("heart", "arrow")


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def save_pair(sample, folder: Path) -> Path:
    """A generated sample as a prompt pair: ``folder/image.png`` and ``folder/target.png``."""
    save_png(sample.image, folder / "image.png")
    save_png(sample.target, folder / "target.png")
    return folder


# --- the training chain -----------------------------------------------------------------------


def chain(name: str, until: str | None = None) -> list[tuple[str, str]]:
    """The ``(recipe, run)`` stages that trained ``name``, in order (``CHAINS`` and the later
    stages found on disk), up to ``until`` (a recipe name) when given."""
    if name not in CHAINS:
        raise SystemExit(f"--name {name}: no chain known (known: {', '.join(CHAINS)})")
    stages = list(CHAINS[name])
    known = {r for r, _ in stages}
    later = sorted(
        (int(m.group(1)), p.stem)
        for p in RECIPES.glob(f"{name}-stage*.toml")
        if (m := re.fullmatch(rf"{re.escape(name)}-stage(\d+)", p.stem)) and p.stem not in known
    )
    stages += [(recipe, recipe) for _, recipe in later]
    if until is not None:
        names = [r for r, _ in stages]
        if until not in names:
            raise SystemExit(f"--until {until}: not a stage of {name} ({', '.join(names)})")
        stages = stages[: names.index(until) + 1]
    for recipe, _ in stages:
        if not (RECIPES / f"{recipe}.toml").is_file():
            raise SystemExit(f"{RECIPES / recipe}.toml: missing (a stage of {name})")
    return stages


def run_summary(run_dir: Path) -> dict:
    """What a run's ``metrics.jsonl`` and ``config.toml`` say: ``{"steps", "batch_size",
    "canvases", "wall_s", "train_loss", "val_loss"}``. ``wall_s``: the sum of the logged
    intervals (canvases / samples_per_s, validation included, start-up not), in seconds."""
    from painter_cli.config import load_run_config

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r]
    batch = load_run_config(run_dir / "config.toml").optim.batch_size
    wall, prev = 0.0, 0
    for r in rows:
        if r.get("samples_per_s"):
            wall += (r["step"] - prev) * batch / r["samples_per_s"]
        prev = r["step"]
    steps = rows[-1]["step"] if rows else 0
    return {
        "steps": steps,
        "batch_size": batch,
        "canvases": steps * batch,
        "wall_s": round(wall, 1),
        "train_loss": rows[-1]["loss"] if rows else None,
        "val_loss": next((r["val_loss"] for r in reversed(rows) if "val_loss" in r), None),
    }


def train_pair_prompts(folder: Path) -> dict[str, str]:
    """The ``bench/photos.py`` prompts of a stage record, ``{bench task: folder}``: each
    restoration's train sample ``PROMPT_INDEX`` of the suite, written under ``folder`` (the
    bundled prompts are chosen only when a model is packaged, so stages are compared on these)."""
    import photos

    prompts = {}
    for task, (synthetic, _) in photos.TASKS.items():
        s = generate(synthetic, PROMPT_INDEX, split="train", size=SUITE_SIZE, seed=SUITE_SEED)
        prompts[task] = str(save_pair(s, folder / task))
    return prompts


def stage_scores(checkpoint: str | Path, segment_queries: int, incontext_queries: int) -> dict:
    """A stage record's scores: ``bench/incontext.py --segment`` on ``segment_queries`` queries
    (held-out selectivity, one-shot), its task table on ``incontext_queries`` queries a task, and
    ``bench/photos.py`` on the installed photographs with :func:`train_pair_prompts`."""
    import tempfile

    import incontext
    import photos

    suite = ensure_suite()
    scores = {
        "segment": incontext.segment_report(checkpoint, suite, segment_queries),
        "segment_queries": segment_queries,
        "incontext": incontext.incontext_table(checkpoint, suite, incontext_queries),
        "incontext_queries": incontext_queries,
        "suite": suite.name,
    }
    shots = photos.installed_photos()
    if shots:
        with tempfile.TemporaryDirectory() as tmp:
            table = photos.photo_table(
                str(checkpoint), shots, prompts=train_pair_prompts(Path(tmp))
            )
        scores["photos"] = {
            task: {k: round(r["mean"][k], 3) for k in ("input", "output", "gain")}
            for task, r in table.items()
        }
        scores["photos"]["photographs"] = len(shots)
    return scores


def commit_stage(
    run_dir: Path,
    score: int,
    name: str | None = None,
    weights: bool = True,
    score_incontext: int = 30,
) -> Path:
    """Copy a finished run's last checkpoint to ``stages/<name>/`` (default: the run folder's
    name) with its ``stage.json`` (``run_summary``, plus ``stage_scores(score,
    score_incontext)`` when ``score`` > 0); ``weights`` False: the ``stage.json`` alone (a stage
    no later one starts from)."""
    from painter_cli.checkpoint import resolve_checkpoint

    src = resolve_checkpoint(run_dir)
    dest = STAGES / (name or run_dir.name)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("model.safetensors", "config.json"):
        shutil.copy2(src / f, tmp / f)
    record = {"run": dest.name, "checkpoint": src.name, **run_summary(run_dir)}
    if score > 0:
        record["scores"] = stage_scores(tmp, score, score_incontext)
    if not weights:
        for f in ("model.safetensors", "config.json"):
            (tmp / f).unlink()
    write_json(tmp / STAGE_FILE, record)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    print(f"{src} -> {dest}: {json.dumps({k: v for k, v in record.items() if k != 'scores'})}")
    return dest


def stage_record(recipe: str, run: str, run_dir: Path | None = None) -> dict:
    """One stage for ``metrics.json``: recipe, run, command, init, and what its run (``run_dir``,
    else ``runs/<run>``) or its committed ``stages/<run>/stage.json`` says (``source``)."""
    from painter_cli.config import resolve

    path = (RECIPES / f"{recipe}.toml").relative_to(ROOT).as_posix()
    cfg = resolve(RECIPES / f"{recipe}.toml")
    record = {
        "recipe": path,
        "run": f"runs/{run}",
        "command": f"painter train {path} --out runs/{run}",
        "init": cfg.run.init or None,
        "recipe_steps": cfg.schedule.steps,
        "source": None,
    }
    for d in (run_dir, RUNS / run):
        if d is not None and (d / "metrics.jsonl").is_file() and (d / "config.toml").is_file():
            where = d.resolve()  # a run of this checkout by its path, another by its name
            source = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where.name
            return {**record, **run_summary(d), "source": Path(source).as_posix()}
    stage_file = STAGES / run / STAGE_FILE
    if stage_file.is_file():
        doc = json.loads(stage_file.read_text())
        doc.pop("run", None)
        return {**record, **doc, "source": stage_file.relative_to(ROOT).as_posix()}
    print(f"warning: {recipe}: no runs/{run} nor {stage_file}: not recorded", file=sys.stderr)
    return record


def check_chain(stages: list[tuple[str, str]], recorded_init: str | None) -> None:
    """Warn where a stage's ``run.init`` is not the stage before it, or where the checkpoint did
    not start where the last recipe says (``recorded_init``: its config's, made absolute)."""
    from painter_cli.config import resolve

    inits = [resolve(RECIPES / f"{r}.toml").run.init for r, _ in stages]
    for k in range(1, len(stages)):
        if Path(inits[k]).name != stages[k - 1][1]:
            print(
                f"warning: {stages[k][0]} starts from {inits[k]!r}, not {stages[k - 1][1]}",
                file=sys.stderr,
            )
    if Path(recorded_init or "").name != Path(inits[-1]).name:
        print(
            f"warning: the checkpoint started from {recorded_init!r}, but {stages[-1][0]} from "
            f"{inits[-1]!r}: is it that stage's?",
            file=sys.stderr,
        )


def finite(value):
    """``value`` with every non-finite float (an infinite PSNR) as None: valid JSON."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- prompts and examples ---------------------------------------------------------------------


def model_side(checkpoint: str | Path | None) -> int:
    """The per-image side of ``checkpoint`` (0: none given or found)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    from painter_cli.checkpoint import load_model
    from painter_cli.inference import model_image_size

    return model_image_size(load_model(checkpoint, device="cpu"))


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


def write_prompts(size: int, chosen: dict[str, int] | None = None) -> dict[str, str]:
    """Write prompts/ and examples/ at ``size`` px; returns task -> the prompt's sample id."""
    chosen = chosen or {}
    ids = {}
    for task in _prompted(suite_tasks("train") + suite_tasks("ood")):
        split, index = ("train", PROMPT_INDEX) if task in suite_tasks("train") else ("ood", 0)
        index = chosen.get(task, index)
        s = generate(task, index, split=split, size=size, seed=SUITE_SEED)
        save_pair(s, ASSETS / "prompts" / task)
        split, index = ("val", 0) if split == "train" else ("ood", 1)
        q = generate(task, index, split=split, size=size, seed=SUITE_SEED)
        save_png(q.image, ASSETS / "examples" / f"{task}.png")
        print(f"{task}: prompt {s.id}, example {q.id}")
        ids[task] = s.id
    return ids


def concept_scenes(size: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, tuple]]:
    """The new-concept example at ``size`` px: ``(query (S, S, 3) uint8, {class: (S, S) bool
    visible mask in the query}, {class: (prompt image, prompt target (S, S, 3) uint8)})``. Each
    prompt scene holds its class and one other held-out class (as training prompts hold 2-4
    shapes) apart, the target its class's mask, white on black. Own seed stream: not a suite
    sample."""
    from painter_cli.sources.synthetic import OOD_CLASSES, segment_scene

    by_name = {c.name: c for c in OOD_CLASSES}
    classes = [by_name[n] for n in CONCEPTS]
    # The first scene of the stream whose two shapes lie apart, are of like size and stand out
    # from the background, so a newcomer sees both and the painting plainly shows the choice.
    for attempt in range(1000):
        rng = np.random.default_rng([SUITE_SEED, zlib.crc32(b"bundled-two-shapes"), attempt])
        query, masks = segment_scene(rng, size, classes, False)
        areas = [m.sum() for m in masks]
        if _apart(*masks) and min(areas) >= 0.6 * max(areas) and _stand_out(query, masks):
            break
    others = [c for c in OOD_CLASSES if c.name not in CONCEPTS]
    prompts = {}
    for cls in classes:
        other = others[int(rng.integers(len(others)))]
        for _ in range(1000):  # the prompted shape whole: apart from the other one
            image, (mask, other_mask) = segment_scene(rng, size, [cls, other], False)
            if _apart(mask, other_mask):
                break
        prompts[cls.name] = (image, np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1))
    return query, dict(zip(CONCEPTS, masks, strict=True)), prompts


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    """The bounding boxes of two (S, S) bool masks are disjoint."""
    (ya, xa), (yb, xb) = np.nonzero(a), np.nonzero(b)
    return bool(
        ya.max() < yb.min() or yb.max() < ya.min() or xa.max() < xb.min() or xb.max() < xa.min()
    )


def _stand_out(image: np.ndarray, masks: list[np.ndarray], apart: float = 80.0) -> bool:
    """Each shape's mean colour is at least ``apart`` (RGB distance, 0..255 units) from the
    background's (the pixels of no shape)."""
    background = image[~np.logical_or.reduce(masks)].astype(np.float64).mean(axis=0)
    return all(
        np.linalg.norm(image[m].astype(np.float64).mean(axis=0) - background) >= apart
        for m in masks
    )


def write_concepts(size: int) -> None:
    """``examples/two-shapes.png``, ``prompts/concepts/<class>/`` and the query's masks."""
    query, masks, prompts = concept_scenes(size)
    save_png(query, ASSETS / "examples" / "two-shapes.png")
    for name, (image, target) in prompts.items():
        save_png(image, ASSETS / "prompts" / "concepts" / name / "image.png")
        save_png(target, ASSETS / "prompts" / "concepts" / name / "target.png")
    CONCEPT_MASKS.parent.mkdir(parents=True, exist_ok=True)
    tmp = CONCEPT_MASKS.with_name(f".{CONCEPT_MASKS.stem}.tmp.npz")
    np.savez_compressed(tmp, **masks)
    tmp.replace(CONCEPT_MASKS)
    areas = ", ".join(f"{n} {int(m.sum())} px" for n, m in masks.items())
    print(f"two-shapes example ({areas}), prompts/concepts/{{{','.join(CONCEPTS)}}}")


def concept_rows() -> list[tuple]:
    """The grid's concept rows: ``(label, prompt image, prompt target, query, truth)`` from the
    bundled files (one row per concept: the same query, its prompt choosing the shape)."""
    from painter_cli.inference import load_image

    masks = np.load(CONCEPT_MASKS)
    query = load_image(ASSETS / "examples" / "two-shapes.png")
    rows = []
    for name in CONCEPTS:
        folder = ASSETS / "prompts" / "concepts" / name
        truth = np.repeat(masks[name][..., None].astype(np.uint8) * 255, 3, axis=-1)
        image, target = load_image(folder / "image.png"), load_image(folder / "target.png")
        rows.append((f"segment (ood): {name}", image, target, query, truth))
    return rows


# --- the bundled model --------------------------------------------------------------------------


def painted_reference(model_dir: Path) -> np.ndarray:
    """(3, S, S) float32: the model's painting of the depth example with the depth prompt (with
    the type token ``painter predict`` uses for depth on a SegGPT model)."""
    from painter_cli.checkpoint import load_model, resolve_seg_type
    from painter_cli.inference import Predictor, load_image, make_prompt

    model = load_model(model_dir, device="cpu")
    predictor = Predictor(
        model, seg_type=resolve_seg_type(model_dir, model, None, "depth", "synthetic-depth")
    )
    prompt = make_prompt(
        load_image(ASSETS / "prompts" / "synthetic-depth" / "image.png"),
        load_image(ASSETS / "prompts" / "synthetic-depth" / "target.png"),
        predictor.size,
    )
    query = predictor.query(load_image(ASSETS / "examples" / "synthetic-depth.png"))
    return predictor.paint(query[None], [prompt])[0].numpy().astype(np.float32)


def write_model(
    name: str, checkpoint: str, limit: int, prompts: dict[str, str], until: str | None = None
) -> None:
    import incontext
    import photos

    from painter_cli.checkpoint import resolve_checkpoint

    src = resolve_checkpoint(checkpoint)
    run_dir = src.parent.parent if src.parent.name == "checkpoints" else None
    stages = chain(name, until)
    dest = ASSETS / "models" / name
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(src / "model.safetensors", tmp / "model.safetensors")
    doc = json.loads((src / "config.json").read_text())
    # This machine's paths mean nothing elsewhere: record the recipe's (empty = the cached suite;
    # init as the last recipe names the stage before it).
    data = doc.get("run", {}).get("data", {})
    for key in ("paths", "val_paths"):
        if key in data:
            data[key] = []
    run_cfg = doc.get("run", {}).get("run", {})
    check_chain(stages, run_cfg.get("init"))
    if run_cfg.get("init"):
        from painter_cli.config import resolve

        run_cfg["init"] = resolve(RECIPES / f"{stages[-1][0]}.toml").run.init
    write_json(tmp / "config.json", doc)
    suite = ensure_suite()
    table = incontext.incontext_table(tmp, suite, limit)
    segment = incontext.segment_report(tmp, suite, limit)
    shots = photos.installed_photos()
    photo = photos.photo_table(str(tmp), shots) if shots else {}
    if not shots:
        print(
            "warning: no photographs (install scikit-image): photos not measured", file=sys.stderr
        )
    records = [
        stage_record(recipe, run, run_dir if k == len(stages) - 1 else None)
        for k, (recipe, run) in enumerate(stages)
    ]
    total = {
        key: sum(r[key] for r in records) if all(r.get(key) is not None for r in records) else None
        for key in ("steps", "canvases", "wall_s")
    }
    last = records[-1]
    metrics = {
        "model": name,
        "architecture": {
            k: doc["model"].get(k) for k in ("img_size", "patch_size", "embed_dim", "depth")
        },
        "stages": records,
        "recipes": [r["recipe"] for r in records],
        "commands": [r["command"] for r in records],
        **{f"total_{k}": v for k, v in total.items()},
        "weights_sha256": hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest(),
        "step": doc.get("meta", {}).get("step"),
        "train_loss": last.get("train_loss"),
        "val_loss": last.get("val_loss"),
        "incontext": table,
        "incontext_queries_per_task": limit,
        "segment": segment,
        "photos": {
            t: {k: r[k] for k in ("goal", "side", "mean", "photos")} for t, r in photo.items()
        },
        "prompts": prompts,
        "concepts": list(CONCEPTS),
        "bench": [
            "python bench/incontext.py --json",
            "python bench/incontext.py --segment --json",
            "python bench/photos.py --json",
        ],
    }
    write_json(tmp / "metrics.json", finite(metrics))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    print(incontext.markdown(table))
    print(incontext.segment_markdown(segment))
    if photo:
        print(photos.markdown(photo))
    incontext.write_grid(dest, suite, ASSETS / "grid.png", extra=concept_rows())
    TEST_REF.parent.mkdir(parents=True, exist_ok=True)
    np.save(TEST_REF, painted_reference(dest))
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"bundled {src} -> {dest} ({size / 1e6:.2f} MB), grid and {TEST_REF.name} written")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default=BUNDLED_MODEL, help=f"model folder ({BUNDLED_MODEL})")
    ap.add_argument("--prompts", action="store_true", help="write prompts/ and examples/")
    ap.add_argument("--concepts", action="store_true", help="write the new-concept example only")
    ap.add_argument("--checkpoint", default=None, help="checkpoint or run dir to bundle")
    ap.add_argument("--limit", type=int, default=100, help="bench queries per task")
    ap.add_argument("--select", action="store_true", help="pick prompts with prompt-select")
    ap.add_argument("--until", default=None, help="bundle an earlier stage: its recipe's name")
    ap.add_argument("--stage", type=Path, default=None, help="commit this finished run's stage")
    ap.add_argument(
        "--score", type=int, default=0, help="--stage: segment queries a split (0: no scores)"
    )
    ap.add_argument(
        "--score-incontext", type=int, default=30, help="--stage --score: queries a suite task"
    )
    ap.add_argument("--as", dest="stage_name", default=None, help="--stage: its name (run's)")
    ap.add_argument("--no-weights", action="store_true", help="--stage: stage.json only")
    args = ap.parse_args()
    if args.stage is not None:
        commit_stage(
            args.stage, args.score, args.stage_name, not args.no_weights, args.score_incontext
        )
        return 0
    side = model_side(args.checkpoint or ASSETS / "models" / args.name)
    # The suite's size, or the model's side when larger (a prompt is never drawn smaller).
    size = max(SUITE_SIZE, side)
    if args.concepts or args.prompts or args.checkpoint:
        write_concepts(size)
    if args.prompts or args.checkpoint:
        chosen = select_prompts(args.checkpoint) if args.select and args.checkpoint else None
        ids = write_prompts(size, chosen)
    if args.checkpoint:
        write_model(args.name, args.checkpoint, args.limit, ids, args.until)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
