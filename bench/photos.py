"""Real photographs: does a model restore photographs it never saw? (issue 16's acceptance)

The photographs are the sample images that ship with installed packages, never in this repository
and never trained on: scikit-image's ``astronaut``, ``camera``, ``chelsea``, ``coffee``,
``rocket`` and ``motorcycle`` (the left view of ``stereo_motorcycle``), scikit-learn's
``load_sample_images`` (``china``, ``flower``) and matplotlib's ``grace_hopper`` when those are
installed, and the images of ``--photos DIR``. Each is centre-cropped to a square and shrunk to
``--size`` (64) px with a box filter, then degraded two ways: Gaussian noise of sigma 25 (seeded
per photograph) and darkening to 20 % brightness (``round(0.2 x pixel)``). ``painter predict``
(``run_predict``, the command's own code path) paints each degraded photograph with the bundled
``synthetic-denoise`` / ``synthetic-lowlight`` prompt (or ``--prompt TASK=FOLDER``), and the
output is scored at the photograph's size.

Baseline (same run): the degraded input itself (``input``: its PSNR against the clean photograph)
and "shrink to 32 px and back" (``shrink``: bicubic both ways, the blur any 32 px model could
get for free). ``ceiling``: the clean photograph shrunk to the model's own side and back, the best
a perfect painter at that canvas could score. Goal: ``gain`` = output minus input PSNR >= +2 dB for denoise, >= +3 dB for
low light (averaged over the photographs).

    python bench/photos.py                      # bundled model, table on stdout
    python bench/photos.py --json               # {task: {"photos": {...}, "mean": {...}}}
    python bench/photos.py --checkpoint runs/x --prompt denoise=DIR --photos ~/Pictures
    python bench/photos.py --stats              # scene statistics: photos, dead leaves, clean_scene

Measured on the bundled model (v2, 2026-12-05; 6 scikit-image photographs, 64 px): see
docs/bundled-model.md ("Real photographs").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from painter_cli.metrics import psnr

TASKS = {  # bench task -> (synthetic task whose prompt is used, goal in dB)
    "denoise": ("synthetic-denoise", 2.0),
    "lowlight": ("synthetic-lowlight", 3.0),
}
SKIMAGE_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "motorcycle")


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8)


def square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: the centre square, box-filtered to ``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BOX))


def installed_photos() -> dict[str, np.ndarray]:
    """``{name: (H, W, 3) uint8}`` of the sample photographs of the installed packages."""
    photos: dict[str, np.ndarray] = {}
    try:
        import skimage.data as data
    except ImportError:
        data = None
    if data is not None:
        for name in SKIMAGE_PHOTOS:
            if name == "motorcycle":
                photos[name] = _rgb(data.stereo_motorcycle()[0])
            else:
                photos[name] = _rgb(getattr(data, name)())
    try:
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        for fname, img in zip(sample.filenames, sample.images, strict=True):
            photos[Path(fname).stem] = _rgb(img)
    except ImportError:
        pass
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = _rgb(np.asarray(Image.open(f).convert("RGB")))
    except (ImportError, OSError, ValueError):
        pass
    return photos


def folder_photos(folder: Path) -> dict[str, np.ndarray]:
    from painter_cli.inference import IMAGE_EXTS, load_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return {p.stem: load_image(p) for p in files}


def degrade(clean: np.ndarray, task: str, index: int, seed: int, sigma: float, light: float):
    """The degraded (H, W, 3) uint8 photograph: Gaussian noise of ``sigma`` (its own generator:
    ``(seed, index)``) or ``light`` x brightness."""
    if task == "denoise":
        rng = np.random.default_rng([seed, index])
        noisy = clean.astype(np.float64) + rng.normal(0.0, sigma, clean.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return np.clip(np.rint(clean.astype(np.float64) * light), 0, 255).astype(np.uint8)


def shrink_and_back(image: np.ndarray, side: int = 32) -> np.ndarray:
    """(H, W, 3) uint8 shrunk to ``side`` and back, bicubic both ways (PIL; antialiased down)."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def paint(checkpoint: str, prompt: str, task: str, images: dict[str, np.ndarray]) -> dict:
    """``{name: restored (H, W, 3) uint8}``: ``painter predict`` on the images, as PNG files."""
    from painter_cli.inference import PredictSettings, load_image, run_predict, write_png

    with tempfile.TemporaryDirectory() as tmp:
        queries = []
        for name, img in images.items():
            queries.append(str(write_png(Path(tmp) / "in" / f"{name}.png", img)))
        out = Path(tmp) / "out"
        settings = PredictSettings(
            queries=queries, prompts=[prompt], checkpoint=checkpoint, task=task, out=str(out)
        )
        records = run_predict(settings)
        painted = {}
        for rec in records:
            name = Path(rec["query"]).stem
            painted[name] = load_image(out / rec["outputs"].get("restored", rec["painted"]))
    return painted


def photo_table(
    checkpoint: str,
    photos: dict[str, np.ndarray],
    *,
    prompts: dict[str, str] | None = None,
    size: int = 64,
    sigma: float = 25.0,
    light: float = 0.2,
    seed: int = 0,
) -> dict[str, dict]:
    """``{task: {"prompt", "goal", "side", "photos": {name: {"input", "output", "shrink", "gain",
    "shrink_gain", "ceiling"}}, "mean": {...}}}``: PSNR (dB) of the degraded input, of the model's
    output, of the shrink baseline and of the ceiling against the clean photograph, at ``size``
    px; ``side``: the model's own per-image side."""
    from painter_cli.checkpoint import load_model
    from painter_cli.defaults import bundled_prompt
    from painter_cli.inference import model_image_size

    side = model_image_size(load_model(checkpoint, device="cpu"))

    prompts = prompts or {}
    clean = {name: square(img, size) for name, img in photos.items()}
    table: dict[str, dict] = {}
    for task, (synthetic, goal) in TASKS.items():
        prompt = prompts.get(task) or str(bundled_prompt(synthetic))
        degraded = {
            name: degrade(img, task, i, seed, sigma, light)
            for i, (name, img) in enumerate(clean.items())
        }
        restored = paint(checkpoint, prompt, synthetic, degraded)
        rows = {}
        for name, img in clean.items():
            r_in = psnr(degraded[name], img)
            r_out = psnr(restored[name], img)
            r_shrink = psnr(shrink_and_back(degraded[name]), img)
            rows[name] = {
                "input": r_in,
                "output": r_out,
                "shrink": r_shrink,
                "gain": r_out - r_in,
                "shrink_gain": r_shrink - r_in,
                "ceiling": psnr(shrink_and_back(img, side), img),
            }
        mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
        table[task] = {"prompt": prompt, "goal": goal, "side": side, "photos": rows, "mean": mean}
    return table


def statistics_table(photos: dict[str, np.ndarray], size: int = 64, scenes: int = 20) -> dict:
    """Mean ``scene_statistics`` of the photographs, of dead-leaves scenes and of the suite's
    ``clean_scene`` (``scenes`` seeds each) at ``size`` px."""
    from painter_cli.sources.deadleaves import dead_leaves, pink_scene, scene_statistics
    from painter_cli.sources.synthetic import clean_scene

    def mean(images):
        stats = [scene_statistics(im) for im in images]
        return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}

    out = {"photos": mean([square(img, size) for img in photos.values()])}
    for name, fn in (("dead_leaves", dead_leaves), ("pink_scene", pink_scene)):
        out[name] = mean([fn(np.random.default_rng(i), size) for i in range(scenes)])
    out["clean_scene"] = mean([clean_scene(np.random.default_rng(i), size) for i in range(scenes)])
    return out


def markdown(table: dict[str, dict]) -> str:
    lines = [
        "| task | photograph | degraded input (dB) | painted (dB) | gain | shrink 32 px and back "
        "(dB) | its gain | ceiling (dB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, t in table.items():
        rows = {**t["photos"], "**mean**": t["mean"]}
        for name, r in rows.items():
            lines.append(
                f"| {task} | {name} | {r['input']:.2f} | {r['output']:.2f} | {r['gain']:+.2f} | "
                f"{r['shrink']:.2f} | {r['shrink_gain']:+.2f} | {r['ceiling']:.2f} |"
            )
    goals = ", ".join(
        f"{task} {t['mean']['gain']:+.2f} dB (goal >= +{t['goal']:.0f}: "
        f"{'met' if t['mean']['gain'] >= t['goal'] else 'not met'})"
        for task, t in table.items()
    )
    return "\n".join(lines) + f"\n\nMean gain: {goals}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint (default: the bundled model)")
    parser.add_argument(
        "--prompt", action="append", default=[], help="TASK=FOLDER (denoise, lowlight); repeat"
    )
    parser.add_argument("--photos", type=Path, help="a folder of more photographs")
    parser.add_argument("--size", type=int, default=64, help="photograph side in px (64)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise sigma, 0..255 (25)")
    parser.add_argument("--light", type=float, default=0.2, help="brightness factor (0.2)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--stats", action="store_true", help="scene statistics instead")
    args = parser.parse_args()

    photos = installed_photos()
    if args.photos is not None:
        photos.update(folder_photos(args.photos))
    if not photos:
        sys.exit("no photographs: install scikit-image (or pass --photos DIR)")
    if args.stats:
        stats = statistics_table(photos, args.size)
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(f"{len(photos)} photographs, {args.size} px; scenes: 20 seeds")
            for name, s in stats.items():
                print(f"  {name:12s} " + "  ".join(f"{k} {v:7.2f}" for k, v in s.items()))
        return

    import torch

    from painter_cli.defaults import bundled_model

    torch.set_num_threads(args.threads)
    prompts = {}
    for spec in args.prompt:
        task, _, folder = spec.partition("=")
        if task not in TASKS or not folder:
            sys.exit(f"--prompt {spec}: expected TASK=FOLDER with TASK one of {', '.join(TASKS)}")
        prompts[task] = folder
    checkpoint = args.checkpoint or str(bundled_model())
    table = photo_table(
        checkpoint,
        photos,
        prompts=prompts,
        size=args.size,
        sigma=args.sigma,
        light=args.light,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"{checkpoint}: {len(photos)} photographs ({', '.join(photos)}), {args.size} px")
    print(markdown(table))


if __name__ == "__main__":
    main()
