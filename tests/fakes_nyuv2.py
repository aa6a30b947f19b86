"""A tiny fake NYUv2 tree in the official layout, with the depths it holds.

* ``sync/<scene>/rgb_%05d.jpg`` + ``sync_depth_%05d.png`` (uint16 millimetres, 0 = missing): the BTS
  training set.
* ``nyu_depth_v2_labeled.mat``: MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB header, written in
  MATLAB's column-major layout: ``images`` (N, 3, W, H) uint8, ``rawDepths`` (N, W, H) float32
  metres, ``sceneTypes`` a (1, N) cell of object references to uint16 char arrays in ``#refs#``.
* ``splits.mat``: MATLAB v5 (scipy.io.savemat) with 1-based column vectors ``trainNdxs`` and
  ``testNdxs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SCENES = ["kitchen", "living_room", "bathroom", "study_room", "office", "bedroom"]


@dataclass
class NyuTruth:
    root: Path
    train_depth_mm: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (H, W) uint16
    images: np.ndarray | None = None  # (N, H, W, 3) uint8 of the labeled set
    raw_depths: np.ndarray | None = None  # (N, H, W) float32 metres
    scenes: list[str] = field(default_factory=list)
    test_ndxs: list[int] = field(default_factory=list)  # 1-based


def _matlab_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    return header.ljust(512, b"\x00")


def write_labeled_mat(path: Path, images: np.ndarray, raw: np.ndarray, scenes: list[str]) -> None:
    """``images`` (N, H, W, 3) uint8 and ``raw`` (N, H, W) float32, stored as MATLAB v7.3 would."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        d = f.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # (N, 3, W, H)
        d.attrs["MATLAB_class"] = np.bytes_("uint8")
        d = f.create_dataset("rawDepths", data=raw.transpose(0, 2, 1).astype(np.float32))
        d.attrs["MATLAB_class"] = np.bytes_("single")
        refs = f.create_group("#refs#")
        handles = []
        for i, name in enumerate(scenes):
            chars = np.array([[ord(c)] for c in name], dtype=np.uint16)  # a 1xL char is (L, 1)
            ds = refs.create_dataset(f"s{i}", data=chars)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            handles.append(ds.ref)
        cell = f.create_dataset("sceneTypes", shape=(1, len(scenes)), dtype=h5py.ref_dtype)
        cell[0, :] = handles
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as f:
        f.write(_matlab_header())


def write_nyuv2(root: Path, n_labeled: int = 6, height: int = 480, width: int = 640) -> NyuTruth:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    truth = NyuTruth(root=root)
    # Training frames: 2 scenes x 2 frames, 48x64, with holes (0 = missing) and a depth > 10 m.
    for scene, frames in (("study_room_0005b", (94, 101)), ("bedroom_0001", (0, 7))):
        d = root / "sync" / scene
        d.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            depth = rng.integers(300, 9000, (48, 64)).astype(np.uint16)
            depth[:4, :4] = 0
            depth[-1, -1] = 12000
            Image.fromarray(rgb).save(d / f"rgb_{frame:05d}.jpg", quality=90)
            Image.fromarray(depth).save(d / f"sync_depth_{frame:05d}.png")
            truth.train_depth_mm[f"{scene}/rgb_{frame:05d}.jpg"] = depth
    # The labeled set.
    images = rng.integers(0, 256, (n_labeled, height, width, 3), dtype=np.uint8)
    raw = rng.uniform(0.5, 9.5, (n_labeled, height, width)).astype(np.float32)
    raw[:, 100:110, 200:220] = 0.0  # holes of the raw depth
    scenes = [SCENES[i % len(SCENES)] for i in range(n_labeled)]
    write_labeled_mat(root / "nyu_depth_v2_labeled.mat", images, raw, scenes)
    test = [2, 4, 5]  # 1-based, as in splits.mat
    train = [i for i in range(1, n_labeled + 1) if i not in test]
    savemat(
        root / "splits.mat",
        {
            "trainNdxs": np.array(train, np.float64)[:, None],
            "testNdxs": np.array(test, np.float64)[:, None],
        },
    )
    truth.images, truth.raw_depths, truth.scenes, truth.test_ndxs = images, raw, scenes, test
    return truth
