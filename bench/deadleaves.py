"""Does restoration training on dead-leaves scenes carry to real photographs? (issue 16 groundwork)

Two short ``painter train`` runs with the same recipe, steps and seed, each from the same start
(the bundled model by default), on restoration pairs of the suite's two restoration kinds that
the photograph bench measures (denoise: Gaussian noise sigma 10-30; low light: gamma 1.5-2.5,
brightness 0.1-0.35, noise 2, as ``painter_cli.sources.synthetic``), differing only in the clean
scenes:

* baseline: the suite's ``clean_scene`` (flat shapes on smooth fields);
* ours: ``painter_cli.sources.deadleaves.dead_leaves`` (photographs' statistics).

Both are then scored by ``bench/photos.py`` on real photographs (noise sigma 25; 20 % brightness),
each with a prompt pair from its own training scenes (sample 0) and with the bundled prompts.
Prints the mean PSNR gain over the degraded input per run, task and prompt.

    python bench/deadleaves.py                       # 600 steps each from the bundled model
    python bench/deadleaves.py --steps 300 --scratch --out runs/dl-exp

Measured: docs/bundled-model.md ("Towards version 3").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photos import installed_photos, photo_table  # noqa: E402

from painter_cli.inference import write_png  # noqa: E402
from painter_cli.shards import ShardReader, ShardWriter  # noqa: E402
from painter_cli.sources.base import Sample  # noqa: E402
from painter_cli.sources.deadleaves import dead_leaves  # noqa: E402
from painter_cli.sources.synthetic import clean_scene  # noqa: E402
from painter_cli.tasks import get_codec  # noqa: E402

TASKS = ("synthetic-denoise", "synthetic-lowlight")
SCENES = {"clean_scene": clean_scene, "dead_leaves": dead_leaves}

RECIPE = """# bench/deadleaves.py: restoration only, from {init}
preset = "tiny"

[model]
preset = "painter-tiny"
drop_path_rate = 0.0

[data]
num_workers = 1
weights = {{ "synthetic-denoise" = 1.0, "synthetic-lowlight" = 1.0 }}

[mask]
ratio = 0.5
min_block = 2
max_block = 8
half_prob = 0.7

[optim]
lr = {lr}
min_lr = 1e-5
weight_decay = 0.05
layer_decay = 1.0
batch_size = 32

[schedule]
steps = {steps}
warmup_steps = {warmup}

[run]
seed = 0
threads = 1
init = "{init}"
checkpoint_every = {steps}
keep_checkpoints = 1
log_every = 50
"""


def degrade(rng: np.random.Generator, clean: np.ndarray, task: str) -> np.ndarray:
    """The suite's degradations (``synthetic._denoise`` / ``_lowlight``) of a clean scene."""
    x = clean.astype(np.float64)
    if task == "synthetic-denoise":
        x = x + rng.normal(0, rng.uniform(10, 30), clean.shape)
    else:
        gamma = rng.uniform(1.5, 2.5)
        x = 255 * rng.uniform(0.1, 0.35) * (x / 255.0) ** gamma + rng.normal(0, 2, clean.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def write_pairs(out: Path, scene, count: int, size: int, seed: int) -> Path:
    """Restoration shards: ``count`` pairs per task of ``scene(rng, size)`` clean scenes."""
    codec = get_codec("restoration")
    specs = {t: {"codec": "restoration", "params": {}} for t in TASKS}
    with ShardWriter(out, specs) as writer:
        for t, task in enumerate(TASKS):
            for i in range(count):
                rng = np.random.default_rng([seed, t, i])
                clean = scene(rng, size)
                sample = Sample(f"{task}-{i:06d}", degrade(rng, clean, task), codec.encode(clean))
                writer.add(sample, task)
    return out


def own_prompts(shards: Path, folder: Path) -> dict[str, str]:
    """``{bench task: prompt folder}``: sample 0 of each task in ``shards``."""
    reader = ShardReader(shards)
    prompts = {}
    for task in TASKS:
        sample = reader[int(reader.indices(task)[0])]
        d = folder / task
        write_png(d / "image.png", sample["image"])
        write_png(d / "target.png", sample["target"])
        prompts[task.removeprefix("synthetic-")] = str(d)
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/deadleaves-exp"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--count", type=int, default=1000, help="pairs per task (1000)")
    parser.add_argument("--size", type=int, default=64, help="scene side in px (64)")
    parser.add_argument("--scratch", action="store_true", help="random init, not the bundled model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from painter_cli.defaults import bundled_model

    init = "" if args.scratch else str(bundled_model())
    lr = 1e-3 if args.scratch else 5e-4
    photos = installed_photos()
    results: dict[str, dict] = {}
    for name, scene in SCENES.items():
        root = args.out / name
        shards = root / "train"
        if not (shards / "index.json").is_file():
            write_pairs(shards, scene, args.count, args.size, seed=0)
        recipe = root / "recipe.toml"
        recipe.write_text(
            RECIPE.format(init=init, lr=lr, steps=args.steps, warmup=max(1, args.steps // 20))
        )
        run = root / "run"
        start = time.perf_counter()
        if not (run / "checkpoints").is_dir():
            cmd = ["painter", "train", str(recipe), "--data", str(shards), "--out", str(run)]
            subprocess.run(cmd, check=True, stdout=sys.stderr)  # stdout: the results only
        minutes = (time.perf_counter() - start) / 60
        prompts = own_prompts(shards, root / "prompts")
        results[name] = {
            "train_minutes": minutes,
            "own_prompt": photo_table(str(run), photos, prompts=prompts),
            "bundled_prompt": photo_table(str(run), photos),
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.steps} steps each from {'scratch' if args.scratch else 'the bundled model'}; ")
    print(f"{len(photos)} photographs ({', '.join(photos)}), 64 px; mean PSNR gain over the input")
    print("| clean scenes | prompt | denoise gain (dB) | low-light gain (dB) | train min |")
    print("|---|---|---:|---:|---:|")
    for name, r in results.items():
        for which in ("own_prompt", "bundled_prompt"):
            t = r[which]
            print(
                f"| {name} | {which.replace('_', ' ')} | {t['denoise']['mean']['gain']:+.2f} | "
                f"{t['lowlight']['mean']['gain']:+.2f} | {r['train_minutes']:.1f} |"
            )


if __name__ == "__main__":
    main()
