"""Tiny fake datasets in the exact on-disk layouts of the simple sources (ADE20K, derain, LoL,
pairs). Each writer returns the ground truth it wrote, so tests compare decoded shards with it.

Images are random smooth colour fields plus noise (so JPEG and PNG behave like photos); label maps
are random rectangles with known labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: a bilinear-upsampled coarse colour grid plus mild noise."""
    coarse = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.int16)
    noisy = smooth + rng.integers(-6, 7, size=(h, w, 3), dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def label_map(rng: np.random.Generator, h: int, w: int, max_label: int) -> np.ndarray:
    """(h, w) uint8 labels: background 0 with a few rectangles of labels in 1..max_label."""
    labels = np.zeros((h, w), np.uint8)
    for _ in range(4):
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        dy, dx = int(rng.integers(3, h // 2 + 3)), int(rng.integers(3, w // 2 + 3))
        labels[y : y + dy, x : x + dx] = rng.integers(1, max_label + 1)
    labels[0, 0] = max_label  # the extreme label is always present
    return labels


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_jpeg(path: Path, array: np.ndarray) -> np.ndarray:
    """Write a JPEG; returns the pixels PIL decodes from it (the lossless reference)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=90)
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def corrupt_jpeg(path: Path) -> None:
    """Overwrite ``path`` with a truncated JPEG (header present, data cut)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def make_ade20k(
    root: Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (24, 32), seed: int = 0
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """ADEChallengeData2016 layout. Returns ``{split: {id: (decoded image, labels 0..150)}}``."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for split, folder, n, tag in (
        ("train", "training", n_train, "train"),
        ("val", "validation", n_val, "val"),
    ):
        out[split] = {}
        for i in range(n):
            h, w = size[0] + i, size[1] - i  # sizes differ between images
            stem = f"ADE_{tag}_{i + 1:08d}"
            image = save_jpeg(root / "images" / folder / f"{stem}.jpg", photo(rng, h, w))
            labels = label_map(rng, h, w, 150)
            save_png(root / "annotations" / folder / f"{stem}.png", labels)
            out[split][stem] = (image, labels)
    return out


def _restoration_pairs(
    rng: np.random.Generator, inputs: Path, targets: Path, n: int, size: tuple[int, int], ext: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for i in range(n):
        h, w = size[0] + i, size[1] + 2 * i
        clean = photo(rng, h, w)
        degraded = np.clip(clean.astype(np.int16) // 3 + rng.integers(0, 20, clean.shape), 0, 255)
        degraded = degraded.astype(np.uint8)
        stem = f"{i + 1}"
        if ext == "jpg":
            degraded = save_jpeg(inputs / f"{stem}.jpg", degraded)
            clean = save_jpeg(targets / f"{stem}.jpg", clean)
        else:
            save_png(inputs / f"{stem}.png", degraded)
            save_png(targets / f"{stem}.png", clean)
        out[stem] = (degraded, clean)
    return out


def make_derain(
    root: Path,
    n_train: int = 3,
    n_test: int = 2,
    sets: tuple[str, ...] = ("Rain100L", "Rain100H"),
    size: tuple[int, int] = (20, 28),
    seed: int = 1,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Rain13K layout (train as JPEG, test sets as PNG). ``{split: {id: (input, clean)}}``."""
    rng = np.random.default_rng(seed)
    out = {
        "train": _restoration_pairs(
            rng, root / "train/input", root / "train/target", n_train, size, "jpg"
        )
    }
    out["test"] = {}
    for s in sets:
        pairs = _restoration_pairs(
            rng, root / f"test/{s}/input", root / f"test/{s}/target", n_test, size, "png"
        )
        out["test"].update({f"{s}/{k}": v for k, v in pairs.items()})
    out["val"] = {k: v for k, v in out["test"].items() if k.startswith("Rain100H/")}
    return out


def make_lol(
    root: Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (20, 30), seed: int = 2
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """LoL layout (PNG). ``{split: {id: (low, high)}}`` (val and test are both eval15)."""
    rng = np.random.default_rng(seed)
    out = {
        "train": _restoration_pairs(
            rng, root / "our485/low", root / "our485/high", n_train, size, "png"
        ),
        "val": _restoration_pairs(
            rng, root / "eval15/low", root / "eval15/high", n_val, size, "png"
        ),
    }
    out["test"] = out["val"]
    return out


def make_pairs(
    root: Path, n: int = 3, size: tuple[int, int] = (16, 20), seed: int = 3, num_classes: int = 5
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Custom-task layout: images/<stem>.jpg|png and targets/<stem>.png painted with the
    ``semseg`` codec (``num_classes``). Returns ``{stem: (image, painted target, labels)}``."""
    from painter_cli.tasks import get_codec

    codec = get_codec("semseg", num_classes=num_classes)
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        h, w = size[0] + i, size[1]
        stem = f"img{i}"
        image = photo(rng, h, w)
        if i % 2 == 0:
            image = save_jpeg(root / "images" / f"{stem}.jpg", image)
        else:
            save_png(root / "images" / f"{stem}.png", image)
        labels = label_map(rng, h, w, num_classes)
        target = codec.encode(labels)
        save_png(root / "targets" / f"{stem}.png", target)
        out[stem] = (image, target, labels)
    return out
