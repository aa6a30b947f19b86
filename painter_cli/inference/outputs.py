"""Output files of one painted query: painted image, preview and the decoded result per codec kind."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from painter_cli.inference.images import write_json, write_npy, write_png
from painter_cli.inference.predictor import Prompt, output_scale, quantize, to_uint8
from painter_cli.model import denormalize

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Output files


def turbo(x: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 with a polynomial fit of the Turbo colour map."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    coeffs = (
        (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
        (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
        (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
    )
    channels = []
    for c in coeffs:
        acc = np.zeros_like(x)
        for a in reversed(c):
            acc = acc * x + a
        channels.append(acc)
    return (np.clip(np.stack(channels, axis=-1), 0, 1) * 255).astype(np.uint8)


def _panel(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR), dtype=np.uint8)


def preview_image(panels: Sequence[np.ndarray], height: int = 256, gap: int = 4) -> np.ndarray:
    """Side-by-side strip of uint8 (h, w, 3) panels, each scaled to ``height`` (white gaps)."""
    scaled = [_panel(p, height) for p in panels]
    width = sum(p.shape[1] for p in scaled) + gap * (len(scaled) - 1)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for p in scaled:
        strip[:, x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return strip


def prompt_panels(prompt: Prompt) -> tuple[np.ndarray, np.ndarray]:
    """The prompt pair as uint8 RGB for previews (de-normalised tensors for tuned prompts)."""
    if prompt.image_rgb is not None and prompt.target_rgb is not None:
        return prompt.image_rgb, prompt.target_rgb
    both = denormalize(torch.stack([prompt.image, prompt.target]).float())
    arrs = to_uint8(both.permute(0, 2, 3, 1).numpy())
    return arrs[0], arrs[1]


def clear_previous(out: Path) -> int:
    """Remove the files an earlier ``painter predict`` wrote into ``out``, as its
    ``predictions.json`` lists them (so a ``_labels.png`` of another task does not stay beside
    the new results), and that file itself; returns how many files went. Other files stay."""
    listing = Path(out) / "predictions.json"
    try:
        records = json.loads(listing.read_text())
    except (OSError, ValueError):
        return 0
    names: set[str] = {"predictions.json", "predict_config.json"}
    for rec in records if isinstance(records, list) else []:
        if isinstance(rec, dict):
            outputs = rec.get("outputs")
            files = [rec.get("painted"), rec.get("preview")]
            files += list(outputs.values()) if isinstance(outputs, dict) else []
            names.update(f for f in files if isinstance(f, str))
    removed = 0
    for name in sorted(names):
        path = Path(out) / name
        # Only plain names directly in ``out``: a doctored listing must not reach elsewhere.
        if path.parent == Path(out) and path.name == name and path.is_file():
            path.unlink()
            removed += 1
    return removed


def coco_image_id(stem: str, index: int) -> int:
    """COCO-style image id: the number in a numeric file name (``000000391460`` -> 391460), else
    the query's position in ``predictions.json``."""
    return int(stem) if stem.isdigit() else index


def _label_png(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)


def write_depth(out: Path, stem: str, depth_m: np.ndarray) -> dict[str, str]:
    """Depth (H, W) metres -> 16-bit PNG in millimetres (truncated, as the official script), the
    float32 metres as ``.npy`` and a Turbo-coloured preview."""
    metres = np.asarray(depth_m, dtype=np.float64)
    # mm / 1000 * 1000 can land an ulp below the integer: round off that ulp before truncating.
    mm = np.clip(np.round(metres * 1000.0, 6), 0, 65535).astype(np.uint16)
    depth_m = metres.astype(np.float32)
    files = {"depth": f"{stem}_depth.png", "depth_npy": f"{stem}_depth.npy"}
    files["depth_color"] = f"{stem}_depth_color.png"
    write_png(out / files["depth"], mm)
    write_npy(out / files["depth_npy"], depth_m)
    lo, hi = float(depth_m.min()), float(depth_m.max())
    write_png(out / files["depth_color"], turbo((depth_m - lo) / max(hi - lo, 1e-6)))
    return files


def write_labels(
    out: Path, stem: str, labels: np.ndarray, query_rgb: np.ndarray, colours: np.ndarray
) -> dict[str, str]:
    """Semantic labels (H, W) -> PNG of the label values (8-bit, 16-bit above 255) and an overlay
    of the label colours (``colours`` (H, W, 3) uint8) on the query."""
    files = {"labels": f"{stem}_labels.png", "overlay": f"{stem}_overlay.png"}
    write_png(out / files["labels"], _label_png(np.asarray(labels)))
    overlay = 0.5 * query_rgb.astype(np.float32) + 0.5 * colours.astype(np.float32)
    write_png(out / files["overlay"], overlay.astype(np.uint8))
    return files


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids (H, W) -> COCO panoptic PNG colours (id = R + 256 G + 256^2 B)."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def write_instances(
    out: Path, stem: str, instances: Sequence[tuple[np.ndarray, float]], image_id: int
) -> dict[str, str]:
    """Instances ``[(mask (H, W) bool, score)]`` -> COCO results json (RLE masks, class-agnostic
    ``category_id`` 1) and a panoptic-style PNG: segment ``k`` (1-based, by descending score) owns
    the pixels of its mask not claimed by a better-scored one."""
    order = sorted(range(len(instances)), key=lambda i: -float(instances[i][1]))
    results = []
    ids = None
    for rank, i in enumerate(order, start=1):
        mask, score = np.asarray(instances[i][0], dtype=bool), float(instances[i][1])
        if ids is None:
            ids = np.zeros(mask.shape, np.int64)
        ids[(ids == 0) & mask] = rank
        rle = _rle(mask)
        ys, xs = np.nonzero(mask)
        bbox = [0.0, 0.0, 0.0, 0.0]
        if xs.size:
            bbox = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
        results.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle,
                "score": score,
                "bbox": bbox,
                "area": int(mask.sum()),
                "segment_id": rank,
            }
        )
    files = {"instances": f"{stem}_instances.json", "instances_png": f"{stem}_instances.png"}
    write_json(out / files["instances"], results)
    if ids is not None:
        write_png(out / files["instances_png"], id_to_rgb(ids))
    else:
        files.pop("instances_png")
    return files


def write_panoptic(
    out: Path, stem: str, ids: np.ndarray, segments: Sequence[dict[str, Any]], image_id: int
) -> dict[str, str]:
    """A panoptic result: id map (H, W) and ``segments_info`` -> COCO panoptic json (with RLE masks
    per segment) and the panoptic PNG (id = R + 256 G + 256^2 B)."""
    ids = np.asarray(ids, dtype=np.int64)
    files = {"panoptic": f"{stem}_panoptic.json", "panoptic_png": f"{stem}_panoptic.png"}
    infos = []
    for seg in segments:
        info = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(seg).items()}
        info["segmentation"] = _rle(ids == int(info["id"]))
        infos.append(info)
    record = {"image_id": image_id, "file_name": files["panoptic_png"], "segments_info": infos}
    write_json(out / files["panoptic"], record)
    write_png(out / files["panoptic_png"], id_to_rgb(ids))
    return files


def write_keypoints(
    out: Path, stem: str, keypoints: np.ndarray, image_id: int, score: float | None = None
) -> dict[str, str]:
    """Keypoints (K, 3) ``x, y, score`` (pixels of the query) -> COCO keypoint-results json."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    if score is None:
        from painter_cli.metrics import rescore_keypoints

        score = rescore_keypoints(kp, 1.0) if kp.size else 0.0
    files = {"keypoints": f"{stem}_keypoints.json"}
    result = {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": [round(float(v), 3) for v in kp.ravel()],
        "score": float(score),
    }
    write_json(out / files["keypoints"], [result])
    return files


def _keypoint_array(decoded: Any) -> tuple[np.ndarray, float | None]:
    """The (K, 3) keypoints of a keypoints codec's decode result (``KeypointResult``, dict or array)."""
    if hasattr(decoded, "keypoints"):
        return np.asarray(decoded.keypoints), None
    if isinstance(decoded, dict):
        for key in ("keypoints", "coords"):
            if key in decoded:
                return np.asarray(decoded[key]), decoded.get("score")
    if isinstance(decoded, tuple | list) and len(decoded) == 2:
        return np.asarray(decoded[1]), None
    return np.asarray(decoded), None


def decode_painted(painted: np.ndarray | tuple[np.ndarray, np.ndarray], codec: Any) -> Any:
    """Decode what ``finish`` returns with ``codec`` (for panoptic: the pair ``(semantic,
    instance)``). Depth (0..10000 units) is the channel mean truncated to whole millimetres, in
    metres (float64, so ``write_depth`` gets the millimetres back exactly), as the official
    ``mean(-1) * 10000`` then ``.int()``; every other output is truncated to uint8 first (the
    official ``.int()`` / ``astype(uint8)``)."""
    if codec.kind == "panoptic":
        return codec.decode(tuple(quantize(p) for p in painted))
    if codec.kind == "depth":
        return np.trunc(np.asarray(painted, dtype=np.float64).mean(axis=2)) / 1000.0
    return codec.decode(quantize(painted))


def painted_uint8(painted: np.ndarray, kind: str | None = None) -> np.ndarray:
    """The ``_painted.png`` image of a finished prediction of ``kind`` (uint8 (H, W, 3))."""
    scale = output_scale(kind)
    return quantize(painted if scale == 255.0 else painted * (255.0 / scale))


def write_outputs(
    out: Path,
    stem: str,
    painted: np.ndarray | tuple[np.ndarray, np.ndarray],
    query_rgb: np.ndarray,
    prompt_pair: Any = None,
    codec: Any = None,
    image_id: int = 0,
) -> dict[str, Any]:
    """Write one query's files into ``out``.

    ``prompt_pair``: the prompt's (image, target) uint8 panels for the preview, or a list of such
    pairs (an ensemble's or panoptic's prompts: the preview shows them all), or None.

    ``painted``: (H, W, 3) float at the query's size as ``finish`` returns it for the codec's kind
    (for a panoptic codec the pair ``(semantic, instance)``). Everything is decoded before the first write. Returns the
    ``predictions.json`` record without ``query``: ``{"painted", "preview", "outputs"}``
    (file names relative to ``out``).
    """
    out = Path(out)
    decoded = None if codec is None else decode_painted(painted, codec)
    extra = None
    if isinstance(painted, tuple):
        painted, extra = painted
    painted_u8 = painted_uint8(painted, None if codec is None else codec.kind)
    record: dict[str, Any] = {"painted": f"{stem}_painted.png", "preview": f"{stem}_preview.png"}
    write_png(out / record["painted"], painted_u8)
    if prompt_pair is None:
        prompt_pair = []
    elif isinstance(prompt_pair[0], np.ndarray):
        prompt_pair = [prompt_pair]
    panels = [*(panel for pair in prompt_pair for panel in pair), query_rgb, painted_u8]
    outputs: dict[str, str] = {}
    if extra is not None:
        extra_u8 = quantize(extra)
        outputs["painted_instance"] = f"{stem}_painted_instance.png"
        write_png(out / outputs["painted_instance"], extra_u8)
        panels.append(extra_u8)
    write_png(out / record["preview"], preview_image(panels))
    if codec is not None:
        kind = codec.kind
        if kind == "depth":
            outputs.update(write_depth(out, stem, decoded))
        elif kind == "semseg":
            outputs.update(write_labels(out, stem, decoded, query_rgb, codec.encode(decoded)))
        elif kind == "instance":
            outputs.update(write_instances(out, stem, decoded, image_id))
        elif kind == "panoptic":
            outputs.update(write_panoptic(out, stem, decoded.ids, decoded.segments, image_id))
        elif kind == "keypoints":
            kp, score = _keypoint_array(decoded)
            outputs.update(write_keypoints(out, stem, kp, image_id, score))
        else:  # restoration: the decoded image itself
            outputs["restored"] = f"{stem}_restored.png"
            write_png(out / outputs["restored"], quantize(np.asarray(decoded)))
    record["outputs"] = outputs
    return record
