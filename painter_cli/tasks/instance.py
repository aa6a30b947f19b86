"""Class-agnostic instance segmentation (COCO): each instance painted by its mass-centre location.

Location palette (official ``define_colors_per_location_r_gb``): an 80x80 grid of cells, made of
4x4 global blocks (R = ``255 - (gy*4 + gx)*15``) of 20x20 local cells (G = ``255 - ly*13``,
B = ``255 - lx*13``), 6400 colours. An instance with mass centre ``(cx, cy)`` (mean column, mean
row) on a W x H canvas falls in cell ``(ax, ay) = (int(cx/W*79), int(cy/H*79))``, with
``gx, lx = divmod(ax, 20)`` and ``gy, ly = divmod(ay, 20)``. Background is black.

Decoding (official ``post_process_segm_output_by_threshold`` + mmdet ``mask_matrix_nms``): every
location colour ``c`` gets the mask ``mean_ch |painted - c| < dist_thr``; its "maskness" is the mean
distance inside the mask; the ``pre_nms`` lowest-maskness colours are kept with
``score = 1 - maskness / max(max maskness, 1)``; Matrix NMS (gaussian, sigma 2) decays the scores and
the ``max_num`` best remain. Like the official code, black pixels are candidates too: pure black is
within 15.3 of the darkest colour (30, 8, 8), so the background usually yields one low-score mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.tasks.base import (
    FG_THRESHOLD,
    MIN_FG_ELEMENTS,
    Codec,
    as_label_map,
    as_painted,
    register,
    unique_colours,
)

GRID = 80
LOCAL = 20  # local cells per colour block and axis (GRID = 4 blocks x LOCAL)
R_STEP = 255 // 16  # 15
GB_STEP = 256 // 20 + 1  # 13
_R_LEVELS = (255 - np.arange(16) * R_STEP).astype(np.float32)  # index gy*4 + gx
_GB_LEVELS = (255 - np.arange(LOCAL) * GB_STEP).astype(np.float32)  # index ly (G) or lx (B)


def location_colour(ax: np.ndarray | int, ay: np.ndarray | int) -> np.ndarray:
    """RGB uint8 colour(s) of grid cell(s) ``(ax, ay)`` (column, row), each in 0..79."""
    ax, ay = np.asarray(ax), np.asarray(ay)
    gx, lx = np.divmod(ax, LOCAL)
    gy, ly = np.divmod(ay, LOCAL)
    rgb = np.stack([255 - (gy * 4 + gx) * R_STEP, 255 - ly * GB_STEP, 255 - lx * GB_STEP], -1)
    return rgb.astype(np.uint8)


def location_palette() -> np.ndarray:
    """(6400, 3) uint8: row ``ay * 80 + ax`` is the colour of cell (ax, ay)."""
    ay, ax = np.divmod(np.arange(GRID * GRID), GRID)
    return location_colour(ax, ay)


def matrix_nms(
    scores: np.ndarray,
    inter: np.ndarray,
    areas: np.ndarray,
    sigma: float = 2.0,
    max_num: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian Matrix NMS (SOLOv2; mmdet ``mask_matrix_nms``) for one class.

    ``scores`` (K,), ``inter`` (K, K) pairwise mask intersections in pixels, ``areas`` (K,).
    Returns ``(order, decayed_scores)``: indices into the inputs of the ``max_num`` best masks after
    decay, best first, and their decayed scores.
    """
    k = scores.shape[0]
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    order = np.argsort(-scores, kind="stable")
    s = scores[order].astype(np.float64)
    i_sorted = inter[np.ix_(order, order)].astype(np.float64)
    a = areas[order].astype(np.float64)
    union = a[:, None] + a[None, :] - i_sorted
    iou = np.triu(np.divide(i_sorted, union, out=np.zeros_like(i_sorted), where=union > 0), 1)
    # compensate[i]: how much mask i was itself suppressed by a higher-scoring mask.
    compensate = iou.max(axis=0)
    decay = np.exp(-sigma * iou**2) / np.exp(-sigma * compensate[:, None] ** 2)
    s = s * decay.min(axis=0)
    final = np.argsort(-s, kind="stable")[:max_num]
    return order[final], s[final]


class InstanceCodec(Codec):
    """``coco-instance``: class-agnostic instances painted by mass-centre location.

    ``encode``: (H, W) integer instance id map (0 = background, other values = instances) ->
    (H, W, 3) uint8. ``decode``: (H, W, 3) painted -> list of ``(mask bool (H, W), score float)``,
    best first (at most ``max_num``). ``valid``: all ones, or all zeros when the target has fewer
    than 300 non-black channel elements.
    """

    kind = "instance"
    discrete = True

    def __init__(
        self,
        dist_thr: float = 19.0,
        pre_nms: int = 2000,
        max_num: int = 100,
        sigma: float = 2.0,
    ):
        self.name = "coco-instance"
        self.dist_thr = float(dist_thr)
        self.pre_nms = int(pre_nms)
        self.max_num = int(max_num)
        self.sigma = float(sigma)
        if self.dist_thr <= 0 or self.pre_nms < 1 or self.max_num < 1:
            raise PainterError("codec coco-instance: dist_thr, pre_nms and max_num must be > 0")

    def params(self) -> dict[str, Any]:
        return {
            "dist_thr": self.dist_thr,
            "pre_nms": self.pre_nms,
            "max_num": self.max_num,
            "sigma": self.sigma,
        }

    def encode(self, ground_truth: Any) -> np.ndarray:
        ids = as_label_map(ground_truth, "instance id map")
        h, w = ids.shape
        out = np.zeros((h, w, 3), np.uint8)
        uniq, inverse = np.unique(ids.ravel(), return_inverse=True)
        inverse = inverse.ravel()
        ys, xs = np.divmod(np.arange(h * w), w)
        count = np.bincount(inverse, minlength=uniq.size).astype(np.float64)
        cx = np.bincount(inverse, weights=xs, minlength=uniq.size) / count
        cy = np.bincount(inverse, weights=ys, minlength=uniq.size) / count
        ax = (cx / w * (GRID - 1)).astype(np.int64)
        ay = (cy / h * (GRID - 1)).astype(np.int64)
        lut = location_colour(ax, ay)
        lut[uniq == 0] = 0
        out[:] = lut[inverse].reshape(h, w, 3)
        return out

    def candidates(self, painted: np.ndarray) -> dict[str, np.ndarray]:
        """The per-colour candidate masks before NMS, kept sparse over the image's distinct colours.

        Returns ``cells`` (K,) grid index ``ay*80+ax`` of each kept colour (lowest maskness first),
        ``scores`` (K,), ``areas`` (K,), ``inter`` (K, K) pairwise intersections, and the sparse
        membership ``pair_u``/``pair_k`` (distinct colour ``u`` lies in mask ``k``) with ``inverse``
        (pixel -> distinct colour) to rebuild masks.
        """
        cols, inverse, counts = unique_colours(painted)
        limit = self.dist_thr
        # Only levels near each colour can be within the threshold: a window of levels around the
        # nearest one per channel (9 per channel for the default threshold, not all 16x20x20).
        win_r = int(np.ceil(3 * limit / R_STEP)) + 1
        win_gb = int(np.ceil(3 * limit / GB_STEP)) + 1
        off_r = np.arange(-win_r, win_r + 1)
        off_gb = np.arange(-win_gb, win_gb + 1)
        pu_parts, pc_parts, pd_parts = [], [], []
        step = max(1, (1 << 21) // (off_r.size * off_gb.size**2))
        for s in range(0, cols.shape[0], step):
            c = cols[s : s + step]
            lv_r = np.rint((255 - c[:, 0:1]) / R_STEP).astype(np.int64) + off_r[None]
            lv_g = np.rint((255 - c[:, 1:2]) / GB_STEP).astype(np.int64) + off_gb[None]
            lv_b = np.rint((255 - c[:, 2:3]) / GB_STEP).astype(np.int64) + off_gb[None]
            dr = _level_distance(c[:, 0:1], lv_r, _R_LEVELS)
            dg = _level_distance(c[:, 1:2], lv_g, _GB_LEVELS)
            db = _level_distance(c[:, 2:3], lv_b, _GB_LEVELS)
            d = (dr[:, :, None, None] + dg[:, None, :, None] + db[:, None, None, :]) / 3.0
            u, i, j, k = np.nonzero(d < limit)
            pd_parts.append(d[u, i, j, k])
            g, ly, lx = lv_r[u, i], lv_g[u, j], lv_b[u, k]
            gy, gx = np.divmod(g, 4)
            pu_parts.append(u + s)
            pc_parts.append((gy * LOCAL + ly) * GRID + gx * LOCAL + lx)
        pair_u = np.concatenate(pu_parts)
        pair_c = np.concatenate(pc_parts)
        pair_d = np.concatenate(pd_parts).astype(np.float64)
        n = counts.astype(np.float64)
        area = np.bincount(pair_c, weights=n[pair_u], minlength=GRID * GRID)
        dsum = np.bincount(pair_c, weights=n[pair_u] * pair_d, minlength=GRID * GRID)
        present = np.nonzero(area > 0)[0]
        maskness = dsum[present] / area[present]
        keep = np.argsort(maskness, kind="stable")[: self.pre_nms]
        cells, maskness = present[keep], maskness[keep]
        scores = 1.0 - maskness / max(float(maskness.max(initial=0.0)), 1.0)
        # Map colour cells to kept-candidate indices and drop pairs of discarded colours.
        slot = np.full(GRID * GRID, -1, np.int64)
        slot[cells] = np.arange(cells.size)
        pair_k = slot[pair_c]
        sel = pair_k >= 0
        pair_u, pair_k, pair_d = pair_u[sel], pair_k[sel], pair_d[sel]
        inter = _intersections(pair_u, pair_k, pair_d, n, cells.size)
        return {
            "cells": cells,
            "scores": scores,
            "areas": area[cells],
            "inter": inter,
            "pair_u": pair_u,
            "pair_k": pair_k,
            "inverse": inverse,
        }

    def decode(self, painted: np.ndarray) -> list[tuple[np.ndarray, float]]:
        h, w = as_painted(painted).shape[:2]
        cand = self.candidates(painted)
        order, scores = matrix_nms(
            cand["scores"], cand["inter"], cand["areas"], self.sigma, self.max_num
        )
        n_u = int(cand["inverse"].max()) + 1 if cand["inverse"].size else 0
        by_k = np.argsort(cand["pair_k"], kind="stable")
        ks = cand["pair_k"][by_k]
        results = []
        for k, score in zip(order, scores, strict=True):
            lo, hi = np.searchsorted(ks, [k, k + 1])
            member = np.zeros(n_u, bool)
            member[cand["pair_u"][by_k[lo:hi]]] = True
            results.append((member[cand["inverse"]].reshape(h, w), float(score)))
        return results

    def valid(self, target: np.ndarray) -> np.ndarray:
        t = as_painted(target, "instance target")
        if int((t > FG_THRESHOLD).sum()) < MIN_FG_ELEMENTS:
            return np.zeros(t.shape, np.float32)
        return np.ones(t.shape, np.float32)


def _level_distance(values: np.ndarray, levels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """|value - table[level]| (float32), +inf where the level index is outside the table."""
    inside = (levels >= 0) & (levels < table.size)
    d = np.abs(values - table[np.clip(levels, 0, table.size - 1)])
    return np.where(inside, d, np.float32(np.inf)).astype(np.float32)


def _intersections(
    pair_u: np.ndarray, pair_k: np.ndarray, pair_d: np.ndarray, n: np.ndarray, k: int
) -> np.ndarray:
    """(k, k) pixel counts shared by every two candidate masks, from the sparse membership pairs
    (distinct colour ``pair_u`` lies in mask ``pair_k`` at distance ``pair_d``; colour ``u`` covers
    ``n[u]`` pixels).

    inter = A^T diag(n) A for the membership matrix A (colours x masks), one BLAS product per chunk
    of colours over the masks that chunk touches. Colours are ordered by their nearest mask, so a
    chunk touches few masks and the products stay small.
    """
    inter = np.zeros((k, k), np.float64)
    if pair_u.size == 0 or k == 0:
        return inter
    # float32 sums of integer counts are exact below 2**24 pixels.
    dtype = np.float32 if n.sum() < 2**24 else np.float64
    n_u = int(pair_u.max()) + 1
    by_colour = np.lexsort((pair_d, pair_u))
    first = by_colour[np.r_[True, np.diff(pair_u[by_colour]) != 0]]
    nearest = np.full(n_u, k, np.int64)  # colours in no kept mask sort last and add nothing
    nearest[pair_u[first]] = pair_k[first]
    colour_order = np.argsort(nearest, kind="stable")
    rank = np.empty(n_u, np.int64)
    rank[colour_order] = np.arange(n_u)
    weights = n[colour_order].astype(dtype)
    rows = rank[pair_u]
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], pair_k[order]
    step = 256
    bounds = np.searchsorted(rows, np.arange(0, n_u + step, step))
    for c in range(len(bounds) - 1):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        base = c * step
        local, col = np.unique(cols[lo:hi], return_inverse=True)
        a = np.zeros((min(step, n_u - base), local.size), dtype)
        a[rows[lo:hi] - base, col.ravel()] = 1.0
        inter[np.ix_(local, local)] += a.T @ (a * weights[base : base + a.shape[0], None])
    return inter


register("coco-instance", InstanceCodec)
