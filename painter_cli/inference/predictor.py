"""Prompts, canvas assembly and the ``Predictor`` that paints queries with a loaded model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError
from painter_cli.inference.images import IMAGE_EXTS, fit_square
from painter_cli.model import IMAGENET_MEAN, IMAGENET_STD, denormalize

log = logging.getLogger(__name__)

PROMPT_TENSORS = "prompt.safetensors"
ENSEMBLES = ("features", "outputs")
PRECISIONS = ("fp32", "bf16")

RESTORATION_KINDS = frozenset({"restoration", "denoise", "derain", "lowlight", "enhance"})
# Back-resize mode per kind, as the official eval scripts do (spec 9.7): bilinear for semantic
# and depth, nearest for instance and pose, bicubic for the low-level tasks.
_BACK_RESIZE = {"depth": "bilinear", "semseg": "bilinear", "semantic": "bilinear"}
_BACK_RESIZE.update({"instance": "nearest", "panoptic": "nearest", "keypoints": "nearest"})


def restoration_kind(kind: str | None) -> bool:
    return kind in RESTORATION_KINDS


def back_resize_mode(kind: str | None) -> str:
    """Interpolation used to bring the painted square back to the query's size."""
    return _BACK_RESIZE.get(kind or "", "bicubic")


# --------------------------------------------------------------------------------------------
# Prompts


@dataclass
class Prompt:
    """One in-context example: normalised tensors ``image`` and ``target`` of shape (3, S, S).

    ``image_rgb``/``target_rgb`` (uint8 (h, w, 3)) are kept only for previews; ``name`` says where
    the prompt came from.
    """

    image: torch.Tensor
    target: torch.Tensor
    name: str = ""
    image_rgb: np.ndarray | None = field(default=None, repr=False)
    target_rgb: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.image.shape[-1])


def _find_with_stem(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def prompt_sources(spec: str) -> list[tuple[str, str] | str]:
    """Resolve a ``--prompt`` value to a list of ``(image, target)`` path pairs, or to the path of a
    ``prompt.safetensors`` file.

    ``spec`` is ``IMAGE:TARGET``, or a folder holding ``prompt.safetensors``, ``image.* + target.*``,
    or ``<name>.* + <name>_target.*`` pairs.
    """
    path = Path(spec)
    if not path.exists() and ":" in spec:
        image, target = spec.rsplit(":", 1)
        for p in (image, target):
            if not Path(p).is_file():
                raise PainterError(
                    f"{p}: prompt file not found",
                    "check the path; both IMAGE and TARGET must exist",
                )
        return [(image, target)]
    if path.is_file():
        if path.name.endswith(".safetensors"):
            return [str(path)]
        raise PainterError(
            f"{path}: a prompt is a folder or IMAGE:TARGET, not a single image",
            "give the target too: --prompt IMAGE:TARGET",
        )
    if not path.is_dir():
        raise PainterError(
            f"{spec}: prompt not found",
            "give a prompt folder (image + target, or prompt.safetensors) or IMAGE:TARGET",
        )
    if (path / PROMPT_TENSORS).is_file():
        return [str(path / PROMPT_TENSORS)]
    image, target = _find_with_stem(path, "image"), _find_with_stem(path, "target")
    if image and target:
        return [(str(image), str(target))]
    pairs: list[tuple[str, str] | str] = []
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    for img in files:
        if img.stem.endswith("_target") or img.stem == "target":
            continue
        tgt = _find_with_stem(path, f"{img.stem}_target")
        if tgt is None:
            raise PainterError(
                f"{img}: prompt image without a target in {path}",
                f"add {img.stem}_target.png (or image.* + target.*)",
            )
        pairs.append((str(img), str(tgt)))
    if not pairs:
        raise PainterError(
            f"{path}: no prompt pair found", "a prompt folder holds image.* + target.* files"
        )
    return pairs


def load_prompt_tensors(path: str | Path, patch_size: int | None = None) -> Prompt:
    """Read a ``prompt.safetensors`` written by prompt-tune: normalised ``image``/``target`` (3, S, S),
    non-empty and finite; with ``patch_size``, S must be a multiple of it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PainterError(f"{path}: not a readable safetensors file ({exc})") from None
    image, target = tensors.get("image"), tensors.get("target")
    if image is None or target is None:
        raise PainterError(f"{path}: needs tensors 'image' and 'target'")
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise PainterError(f"{path}: 'image' must have shape (3, S, S), got {tuple(image.shape)}")
    if target.shape != image.shape:
        raise PainterError(f"{path}: 'target' shape {tuple(target.shape)} != 'image' shape")
    side = int(image.shape[-1])
    if side == 0:
        raise PainterError(
            f"{path}: prompt tensors are empty (0x0)",
            "write the prompt again with `painter prompt-tune`",
        )
    if patch_size and side % patch_size:
        raise PainterError(
            f"{path}: prompt tensors are {side}x{side}; the side must be a positive multiple of "
            f"the patch size {patch_size}",
            "write the prompt again with `painter prompt-tune` at a valid --size",
        )
    for name, t in (("image", image), ("target", target)):
        if not torch.isfinite(t.float()).all():
            raise PainterError(
                f"{path}: tensor '{name}' holds NaN or infinite values",
                "write the prompt again with `painter prompt-tune`",
            )
    return Prompt(image.float(), target.float(), name=str(path))


# --------------------------------------------------------------------------------------------
# The predictor


def normalize_rgb(rgb: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 ``(x/255 - mean)/std`` with the ImageNet statistics the
    model was trained with, computed in float64 then cast (as the official scripts)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).double() / 255.0
    return ((t - mean) / std).float()


def make_prompt(
    image: np.ndarray,
    target: np.ndarray,
    size: int,
    *,
    discrete: bool = False,
    target_resize: str | None = None,
    keep_aspect: bool = False,
    name: str = "",
) -> Prompt:
    """Build a ``Prompt`` of side ``size`` from uint8 (H, W, 3) image and target of the same size.

    The image is resized bicubic. The target with ``target_resize`` (``nearest`` or ``bicubic``,
    see ``target_resample``); None: NEAREST for a discrete codec (labels must not blend into a
    third colour), bicubic otherwise.
    """
    from painter_cli.pixels import array_to_rgb

    image = array_to_rgb(image, f"{name or 'prompt'} image")
    target = array_to_rgb(target, f"{name or 'prompt'} target")
    if image.shape[:2] != target.shape[:2]:
        raise PainterError(
            f"{name or 'prompt'}: image {image.shape[1]}x{image.shape[0]} and target "
            f"{target.shape[1]}x{target.shape[0]} differ in size"
        )
    tgt_mode = target_resize or ("nearest" if discrete else "bicubic")
    if tgt_mode not in ("nearest", "bicubic"):
        raise PainterError(f"target resize {tgt_mode!r}: expected nearest or bicubic")
    img = fit_square(image, size, "bicubic", keep_aspect)
    tgt = fit_square(target, size, tgt_mode, keep_aspect)
    return Prompt(normalize_rgb(img), normalize_rgb(tgt), name, image, target)


# Kinds whose targets the official training resized bicubic (all others nearest, spec 9.11).
OFFICIAL_TRAIN_BICUBIC_KINDS = frozenset({"depth", "keypoints"})


def target_resample(rule: str, codec: Any = None) -> str:
    """``nearest`` or ``bicubic``: how a prompt target of ``codec`` (None: unknown) is resized to
    the canvas under a checkpoint's rule (``checkpoint.TARGET_RESIZES``)."""
    if rule in ("nearest", "bicubic"):
        return rule
    if rule == "official-train":
        return (
            "bicubic" if getattr(codec, "kind", None) in OFFICIAL_TRAIN_BICUBIC_KINDS else "nearest"
        )
    if rule == "codec":
        return "nearest" if getattr(codec, "discrete", False) else "bicubic"
    raise PainterError(
        f"--target-resize {rule}: expected auto, codec, official-train, bicubic or nearest"
    )


def file_target_resize(mode: str, pil_mode: str | None) -> str:
    """``mode`` for a prompt target read from a file of PIL mode ``pil_mode``: the official eval
    scripts resize the file as read, and PIL's default resample is NEAREST for palette (``P``) and
    bilevel (``1``) images, so under ``bicubic`` such a file is still resized nearest."""
    return "nearest" if mode == "bicubic" and pil_mode in ("P", "1") else mode


def model_image_size(model: torch.nn.Module) -> int:
    """The model's own per-image side (canvas width)."""
    return int(model.config.img_size[1])


def default_size(model: torch.nn.Module, kind: str | None = None) -> int:
    """Per-image side: the model's own (448 for ViT-L), but 560 for panoptic at 448 (as eval.sh)."""
    own = model_image_size(model)
    if kind == "panoptic" and own == 448:
        return 560
    return own


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked against the devices this machine has."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise PainterError(f"--device {device}: expected auto, cpu or cuda")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise PainterError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise PainterError(
                f"--device {device}: CUDA is not available here", "use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise PainterError(
                f"--device {device}: this machine has {count} CUDA device(s)",
                f"use --device cuda:0 .. cuda:{count - 1}, cpu or auto",
            )
    return resolved


def check_prompt_size(prompt: Prompt, size: int | None, patch: int) -> None:
    """A tensor prompt's side must be a positive multiple of ``patch`` and (when given) ``size``."""
    name = prompt.name or "prompt"
    if prompt.size <= 0 or prompt.size % patch:
        raise PainterError(
            f"{name}: prompt tensors are {prompt.size}x{prompt.size}; the side must be a positive "
            f"multiple of the patch size {patch}",
            "write the prompt again with `painter prompt-tune` at a valid --size",
        )
    if size is not None and prompt.size != size:
        raise PainterError(
            f"{name}: prompt tensors are {prompt.size}x{prompt.size} but the canvas uses {size}",
            f"use --size {prompt.size}",
        )


def check_size_option(size: int | None) -> None:
    """``--size``: None (the model's own) or a positive side; 0 is not "the default"."""
    if size is not None and size <= 0:
        raise PainterError(
            f"--size {size}: must be a positive multiple of the patch size",
            "omit --size for the model's own, or pass e.g. --size 448",
        )


class Predictor:
    """Paints the target of queries given prompts with a loaded ``Painter`` model.

    ``size`` is the per-image side S (canvas 2S x S); the model resamples its positions for sizes
    other than its own. ``precision`` is ``fp32`` or ``bf16`` (autocast). ``seg_type`` selects the
    SegGPT type token (``instance``/``semantic``) for models that have them.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        size: int | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        seg_type: str | None = None,
    ):
        if precision not in PRECISIONS:
            raise PainterError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device) if device is not None else _first_device(model)
        self.model = model.to(self.device).eval()
        self.patch = int(model.config.patch_size)
        self.size = int(size) if size is not None else model_image_size(model)
        if self.size <= 0 or self.size % self.patch:
            raise PainterError(
                f"--size {self.size}: must be a positive multiple of the patch size {self.patch}"
            )
        self.precision = precision
        self.seg_type = seg_type

    # -- tensors ---------------------------------------------------------------------------
    def normalize(self, rgb: np.ndarray) -> torch.Tensor:
        return normalize_rgb(rgb)

    def prompt(self, image: np.ndarray, target: np.ndarray, **kwargs: Any) -> Prompt:
        """``make_prompt`` at this predictor's size (keyword arguments as there)."""
        return make_prompt(image, target, self.size, **kwargs)

    def query(self, image: np.ndarray, keep_aspect: bool = False) -> torch.Tensor:
        """Image array (``pixels.array_to_rgb``: uint8 (H, W, 3), gray (H, W), RGBA, 16-bit,
        float 0..1) -> normalised (3, S, S), bicubic (PIL, as the official loader)."""
        from painter_cli.pixels import array_to_rgb

        rgb = array_to_rgb(image, "query")
        return self.normalize(fit_square(rgb, self.size, "bicubic", keep_aspect))

    def check_prompt(self, prompt: Prompt) -> None:
        check_prompt_size(prompt, self.size, self.patch)

    # -- canvas ----------------------------------------------------------------------------
    def canvas(
        self, prompt: Prompt, queries: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stack prompt over each query.

        ``queries``: (N, 3, S, S) normalised. Returns ``imgs``/``tgts`` (N, 3, 2S, S) and ``mask``
        (N, L) float, 1 on the bottom half of the patch grid (L = 2S/p * S/p). The bottom half of
        ``tgts`` repeats the prompt target; it is masked, so its content never reaches the model.
        """
        n = queries.shape[0]
        top = prompt.image.to(queries.device, queries.dtype).expand(n, -1, -1, -1)
        imgs = torch.cat([top, queries], dim=2)
        tgt = prompt.target.to(queries.device, queries.dtype)
        tgts = torch.cat([tgt, tgt], dim=1).expand(n, -1, -1, -1).contiguous()
        grid = (2 * self.size // self.patch) * (self.size // self.patch)
        mask = torch.zeros(n, grid, device=queries.device)
        mask[:, grid // 2 :] = 1.0
        return imgs, tgts, mask

    def _forward(self, imgs: torch.Tensor, tgts: torch.Tensor, mask: torch.Tensor, **kw):
        if self.seg_type is not None:
            kw["seg_type"] = self.seg_type
        dev = self.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            _, pred = self.model(imgs, tgts, mask, compute_loss=False, **kw)
        return pred.float()

    @torch.no_grad()
    def paint(
        self,
        queries: torch.Tensor,
        prompts: Sequence[Prompt],
        ensemble: str = "features",
    ) -> torch.Tensor:
        """Paint (N, 3, S, S) normalised queries -> (N, 3, S, S) float64 in [0, 1] units
        (unclipped).

        One prompt: one canvas per query. Several prompts: ``features`` averages the query half of
        every block's attention output across one canvas per prompt (SegGPT's feature ensemble);
        ``outputs`` paints one canvas per prompt and averages the painted images.
        """
        if not prompts:
            raise PainterError("no prompt given", "pass --prompt PAIR")
        if ensemble not in ENSEMBLES:
            raise PainterError(f"--ensemble {ensemble}: expected one of {', '.join(ENSEMBLES)}")
        for p in prompts:
            self.check_prompt(p)
        queries = queries.to(self.device)
        s = self.size
        if len(prompts) == 1 or ensemble == "outputs":
            total = None
            for p in prompts:
                imgs, tgts, mask = self.canvas(p, queries)
                pred = self._forward(imgs, tgts, mask)[:, :, s:]
                total = pred if total is None else total + pred
            return _denormalize64(total / len(prompts))
        outs = []
        for q in queries:
            imgs, tgts, mask = self._ensemble_canvas(prompts, q)
            pred = self._forward(imgs, tgts, mask, feature_ensemble=True)
            outs.append(pred[0, :, s:])
        return _denormalize64(torch.stack(outs))

    @torch.no_grad()
    def paint_each(
        self,
        queries: torch.Tensor,
        prompts: Sequence[Sequence[Prompt]],
        ensemble: str = "features",
    ) -> torch.Tensor:
        """``paint`` with prompts of their own per query: query ``i`` of the (N, 3, S, S) batch is
        painted with ``prompts[i]`` (N lists of K prompts each, K the same for all) -> (N, 3, S, S)
        float64 in [0, 1] units. One-prompt canvases of different queries share a forward."""
        if len(prompts) != queries.shape[0]:
            raise PainterError(f"{queries.shape[0]} queries but {len(prompts)} prompt lists")
        shots = {len(p) for p in prompts}
        if len(shots) != 1 or 0 in shots:
            raise PainterError(f"every query needs the same number of prompts, got {sorted(shots)}")
        if ensemble not in ENSEMBLES:
            raise PainterError(f"--ensemble {ensemble}: expected one of {', '.join(ENSEMBLES)}")
        k = shots.pop()
        for ps in prompts:
            for p in ps:
                self.check_prompt(p)
        queries = queries.to(self.device)
        s = self.size
        if k == 1 or ensemble == "outputs":
            total = None
            for j in range(k):
                parts = [
                    self.canvas(ps[j], q[None]) for ps, q in zip(prompts, queries, strict=True)
                ]
                imgs, tgts, mask = (torch.cat([part[t] for part in parts]) for t in range(3))
                pred = self._forward(imgs, tgts, mask)[:, :, s:]
                total = pred if total is None else total + pred
            return _denormalize64(total / k)
        outs = []
        for ps, q in zip(prompts, queries, strict=True):
            imgs, tgts, mask = self._ensemble_canvas(ps, q)
            outs.append(self._forward(imgs, tgts, mask, feature_ensemble=True)[0, :, s:])
        return _denormalize64(torch.stack(outs))

    def _ensemble_canvas(self, prompts: Sequence[Prompt], query: torch.Tensor):
        """P canvases (one per prompt) of the same query: (P, 3, 2S, S) x2 and mask (P, L)."""
        parts = [self.canvas(p, query[None]) for p in prompts]
        return tuple(torch.cat([part[i] for part in parts]) for i in range(3))


def _denormalize64(pred: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) normalised float32 model output -> float64 [0, 1] units on the CPU: the
    official scripts de-normalise in float64 (``output * std`` with numpy's float64 statistics)."""
    return denormalize(pred.detach().cpu().double())


def _first_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def to_uint8(painted01: np.ndarray) -> np.ndarray:
    """[0, 1]-unit float -> uint8 with clipping and truncation (the official ``astype``)."""
    return np.clip(painted01 * 255.0, 0, 255).astype(np.uint8)


def quantize(painted: np.ndarray) -> np.ndarray:
    """A finished 0..255 float image -> uint8 by clipping and truncation (the official ``.int()``
    / ``astype(uint8)``), with no round trip through [0, 1] that could cross an integer."""
    return np.clip(painted, 0, 255).astype(np.uint8)


# Depth is finished in 0..10000 (the official ``* 10000`` before resizing, then the channel mean
# is truncated to whole millimetres); every other kind in 0..255.
DEPTH_SCALE = 10000.0


def output_scale(kind: str | None) -> float:
    """The units ``finish`` returns for ``kind``: 10000 for depth (mm), else 255 (colour levels)."""
    return DEPTH_SCALE if kind == "depth" else 255.0


def finish(
    painted: torch.Tensor | np.ndarray,
    height: int,
    width: int,
    kind: str | None = None,
    keep_aspect: bool = False,
) -> np.ndarray:
    """One painted (3, S, S) [0, 1]-unit prediction -> (height, width, 3) float64 in
    ``0..output_scale(kind)``, in the official scripts' order and float64 precision (spec 5.2):

    - low-level tasks: resize bicubic in [0, 1] units, clip to [0, 1], then x 255;
    - depth: x 10000, clip to 0..10000, resize bilinear (decoding averages the channels and
      truncates to millimetres);
    - other kinds: x 255, clip, resize (bilinear for semantic, nearest for instance/keypoints/
      panoptic, bicubic without a kind, clipped again after).

    ``quantize`` truncates the 0..255 result to the official uint8 files.
    """
    from painter_cli.inference.resample import resize_back

    arr = painted.numpy() if isinstance(painted, torch.Tensor) else np.asarray(painted)
    arr = np.transpose(arr, (1, 2, 0)).astype(np.float64)
    mode = back_resize_mode(kind)
    if restoration_kind(kind):
        arr = np.clip(resize_back(arr, height, width, mode, keep_aspect), 0.0, 1.0)
        return arr * 255.0
    scale = output_scale(kind)
    arr = np.clip(arr * scale, 0.0, scale)
    return np.clip(resize_back(arr, height, width, mode, keep_aspect), 0.0, scale)


def check_panoptic_prompts(count: int, task: str = "coco-panoptic") -> None:
    """A panoptic prediction paints two outputs, each with its own prompt: exactly two pairs."""
    if count != 2:
        raise PainterError(
            f"--task {task} paints two outputs: got {count} prompt pair(s)",
            "pass --prompt SEMANTIC_PAIR --prompt INSTANCE_PAIR (coco-semseg, coco-instance)",
        )


def paint_panoptic(
    predictor: Predictor,
    queries: torch.Tensor,
    prompts: Sequence[Prompt],
    sizes: Sequence[tuple[int, int]],
    keep_aspect: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two parts of a panoptic prediction (official eval: two separate inference runs).

    ``queries``: (N, 3, S, S) normalised; ``prompts``: [semantic pair, instance pair];
    ``sizes``: (height, width) of each query. Returns per query ``(semantic, instance)``, each
    (height, width, 3) float 0..255 (semantic back-resized bilinear, instance nearest), ready for
    the ``coco-panoptic`` codec (``decode_painted``).
    """
    check_panoptic_prompts(len(prompts))
    sem = predictor.paint(queries, prompts[:1])
    inst = predictor.paint(queries, prompts[1:])
    return [
        (
            finish(sem[j], h, w, "semseg", keep_aspect),
            finish(inst[j], h, w, "instance", keep_aspect),
        )
        for j, (h, w) in enumerate(sizes)
    ]
