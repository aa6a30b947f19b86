"""Retrieval: each query prompted with the candidate whose image is most similar to it (a pixel
descriptor or the model's own encoder), the ``--per-query`` mode of ``prompt-select``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from painter_cli.errors import PainterError

FEATURES = ("pixels", "encoder")


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
