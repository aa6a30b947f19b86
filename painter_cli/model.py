"""The Painter / SegGPT model: a ViT-L encoder over an (image, target) canvas pair and a light decoder.

Canvases are (N, 3, H, W) float tensors, ImageNet-normalised, with H = 2W: the prompt pair on top,
the query at the bottom. The token grid is (Hp, Wp) = (H / p, W / p) and L = Hp * Wp.

The architecture follows the official code (see ``shared/spec/official-model-training-inference.md``):
- one patch embedding for both canvases; masked target tokens are replaced by ``mask_token``;
- separate image/target streams through blocks ``0..merge_index`` then averaged;
- every block uses global attention with decomposed relative positions (the released checkpoints
  never applied their window attention), the absolute positions are resampled bicubically from the
  stored pretraining grid at every forward and the rel-pos tables linearly, so any canvas with
  H = 2W works;
- four taps (blocks 5/11/17/23 for ViT-L) pass through the shared final LayerNorm, are
  concatenated and decoded to a full canvas.

The blocks are timm's SAM blocks (``timm.models.vision_transformer_sam``), so parameter names match
the released ``painter_vit_large.pth`` / ``seggpt_vit_large.pth`` files key for key.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer_sam import Attention as SamAttention
from timm.models.vision_transformer_sam import Block as SamBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

from painter_cli.errors import PainterError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ATTN_IMPLS = ("fused", "bias", "reference")
LOSS_VARIANTS = ("painter", "seggpt")
# The official ignore rule drops a sample whose de-normalised visible target sums to < 300 on its
# 896 x 448 canvas (an almost black target). The sum grows with the canvas area, so the threshold
# is scaled by it: exactly 300 at 896 x 448, 1.5 at 64 x 32 (where an absolute 300 drops nearly
# half of the synthetic instance and keypoint canvases, whose targets are mostly black).
DARK_TARGET_SUM = 300.0
DARK_TARGET_CANVAS = (896, 448)


def dark_target_threshold(height: int, width: int) -> float:
    """The visible-target sum below which ``loss_variant="painter"`` ignores a sample of an
    ``height`` x ``width`` canvas (de-normalised [0, 1] units, all channels)."""
    return DARK_TARGET_SUM * height * width / (DARK_TARGET_CANVAS[0] * DARK_TARGET_CANVAS[1])


SEG_TYPES = {"semantic": 0, "instance": 1}


def seg_type_for_kind(kind: str) -> str:
    """The SegGPT type token ``painter train`` gives a task of codec ``kind``: instance codecs the
    instance token, every other task (semseg, fgseg, depth, ...) the semantic one."""
    return "instance" if kind == "instance" else "semantic"


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return mean, std


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> ImageNet-normalised tensor of the same shape."""
    mean, std = _stats(x01)
    return (x01 - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) ImageNet-normalised tensor -> RGB in [0, 1] units (not clipped)."""
    mean, std = _stats(x)
    return x * std + mean


# --------------------------------------------------------------------------------------------
# Config


@dataclass
class PainterConfig:
    """Everything needed to build a :class:`Painter`; saved in every checkpoint.

    ``img_size`` is the full canvas (H, W) in pixels with H = 2W. ``pretrain_img_size`` fixes the
    stored absolute-position grid ((pretrain / patch)^2 + 1 cls slot); it is resampled to the
    canvas grid at every forward. ``merge_index``: the image and target streams are averaged right
    after this block. ``feature_blocks``: the blocks whose (normed) outputs feed the decoder.
    ``num_type_tokens``: 0 for Painter, 2 for SegGPT (semantic / instance type tokens).

    Switches (not part of the architecture): ``grad_checkpointing`` (activation checkpointing of
    the blocks while training), ``compile`` (``torch.compile`` each block), ``attn_impl``
    (``fused``: one SDPA call with the rel-pos terms folded into augmented q/k; ``bias``: SDPA
    with a materialised rel-pos bias; ``reference``: the official explicit-softmax math) and
    ``loss_variant`` (``painter``: dark-visible-target ignore rule and +1e-2 in the denominator;
    ``seggpt``: neither).
    """

    img_size: tuple[int, int] = (896, 448)
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    decoder_embed_dim: int = 64
    pretrain_img_size: int = 224
    merge_index: int = 2
    feature_blocks: tuple[int, ...] = (5, 11, 17, 23)
    drop_path_rate: float = 0.1
    num_type_tokens: int = 0
    layer_norm_eps: float = 1e-6
    smooth_l1_beta: float = 0.01
    loss_variant: str = "painter"
    attn_impl: str = "fused"
    grad_checkpointing: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        self.img_size = tuple(int(v) for v in self.img_size)
        self.feature_blocks = tuple(int(v) for v in self.feature_blocks)
        self.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PainterConfig:
        """Build from a plain dict (e.g. a checkpoint's ``config.json``); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PainterError(
                f"unknown model config key(s): {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(known))}",
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        d["feature_blocks"] = list(self.feature_blocks)
        return d

    def replace(self, **changes: Any) -> PainterConfig:
        """A copy with ``changes`` applied (unknown keys are errors)."""
        d = self.to_dict()
        d.update(changes)
        return PainterConfig.from_dict(d)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (Hp, Wp) of the configured canvas."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        hp, wp = self.grid
        return hp * wp

    def validate(self) -> None:
        h, w = self.img_size if len(self.img_size) == 2 else (0, 0)
        p = self.patch_size
        problems = []
        if len(self.img_size) != 2 or h != 2 * w or h % p or w % p:
            problems.append(
                f"img_size {self.img_size} must be (H, W) with H = 2W, both divisible by patch_size {p}"
            )
        if self.embed_dim % self.num_heads:
            problems.append(
                f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}"
            )
        if self.pretrain_img_size % p:
            problems.append(
                f"pretrain_img_size {self.pretrain_img_size} not divisible by patch_size {p}"
            )
        if not 0 <= self.merge_index < self.depth:
            problems.append(f"merge_index {self.merge_index} outside 0..{self.depth - 1}")
        fb = self.feature_blocks
        if (
            not fb
            or list(fb) != sorted(set(fb))
            or fb[0] < self.merge_index
            or fb[-1] >= self.depth
        ):
            problems.append(
                f"feature_blocks {fb} must be increasing block indices in {self.merge_index}..{self.depth - 1}"
                " (taps are taken after the stream merge)"
            )
        if self.num_type_tokens not in (0, 2):
            problems.append(
                f"num_type_tokens must be 0 (Painter) or 2 (SegGPT), got {self.num_type_tokens}"
            )
        if self.attn_impl not in ATTN_IMPLS:
            problems.append(f"attn_impl {self.attn_impl!r} not one of {ATTN_IMPLS}")
        if self.loss_variant not in LOSS_VARIANTS:
            problems.append(f"loss_variant {self.loss_variant!r} not one of {LOSS_VARIANTS}")
        if problems:
            raise PainterError("invalid model config: " + "; ".join(problems))


# Literal data: the two released configurations and small ones for CPU work.
PRESETS: dict[str, dict[str, Any]] = {
    "painter-vit-large": {
        "img_size": (896, 448),
        "patch_size": 16,
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 64,
        "pretrain_img_size": 224,
        "merge_index": 2,
        "feature_blocks": (5, 11, 17, 23),
        "drop_path_rate": 0.1,
        "num_type_tokens": 0,
        "loss_variant": "painter",
    },
    "seggpt-vit-large": {
        "img_size": (896, 448),
        "patch_size": 16,
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 64,
        "pretrain_img_size": 224,
        "merge_index": 2,
        "feature_blocks": (5, 11, 17, 23),
        "drop_path_rate": 0.1,
        "num_type_tokens": 2,
        "loss_variant": "seggpt",
    },
    "painter-base": {
        "img_size": (448, 224),
        "patch_size": 16,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 64,
        "pretrain_img_size": 224,
        "merge_index": 2,
        "feature_blocks": (2, 5, 8, 11),
        "drop_path_rate": 0.1,
        "num_type_tokens": 0,
        "loss_variant": "painter",
    },
    "painter-small": {
        "img_size": (224, 112),
        "patch_size": 16,
        "embed_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 32,
        "pretrain_img_size": 224,
        "merge_index": 2,
        "feature_blocks": (2, 5, 8, 11),
        "drop_path_rate": 0.1,
        "num_type_tokens": 0,
        "loss_variant": "painter",
    },
    "painter-tiny": {
        "img_size": (64, 32),
        "patch_size": 8,
        "embed_dim": 64,
        "depth": 6,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 16,
        "pretrain_img_size": 32,
        "merge_index": 1,
        "feature_blocks": (1, 3, 4, 5),
        "drop_path_rate": 0.0,
        "num_type_tokens": 0,
        "loss_variant": "painter",
    },
    # SegGPT's architecture (type tokens, its loss) at CPU size: 64 px images (canvas 128 x 64,
    # patch 8), width 128, 1.76 M parameters; the model of the SegGPT suite recipe.
    "seggpt-mini": {
        "img_size": (128, 64),
        "patch_size": 8,
        "embed_dim": 128,
        "depth": 6,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 16,
        "pretrain_img_size": 64,
        "merge_index": 1,
        "feature_blocks": (1, 3, 4, 5),
        "drop_path_rate": 0.0,
        "num_type_tokens": 2,
        "loss_variant": "seggpt",
    },
}


def get_config(name: str, **overrides: Any) -> PainterConfig:
    """The preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise PainterError(f"unknown model preset {name!r}", hint=f"one of: {', '.join(PRESETS)}")
    return PainterConfig.from_dict({**PRESETS[name], **overrides})


# --------------------------------------------------------------------------------------------
# Attention with decomposed relative positions


def get_rel_pos(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(L, C) table -> (size, size, C) with out[i, j] = table[i - j + size - 1].

    The table is resized linearly along L (align_corners=False) when it does not hold 2*size-1
    rows, as the official code does for other canvas sizes.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + (size - 1)]


def _onehot_keys(
    h: int, w: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h) one-hot of each key's row and (N, w) one-hot of its column, N = h*w row-major."""
    n = torch.arange(h * w, device=device)
    return F.one_hot(n // w, h).to(dtype), F.one_hot(n % w, w).to(dtype)


class PainterAttention(SamAttention):
    """timm's SAM attention (same parameters: qkv, proj, rel_pos_h, rel_pos_w) with three
    interchangeable implementations of softmax(q k^T * scale + rel_h + rel_w) v:

    - ``fused``: rel_h[i, kh] = q_i . Rh[qh_i, kh] is an (N, Hp) matrix per head (rel_w likewise
      (N, Wp)); concatenated to the pre-scaled query and matched by one-hot row/column indicators
      on the key side, q' . k' = scale q.k + rel_h[i, kh_j] + rel_w[i, kw_j], so a single fused
      SDPA call runs without the (heads, N, N) bias ever existing (forward or backward);
    - ``bias``: SDPA with the materialised (B, heads, N, N) bias (timm's path);
    - ``reference``: the official explicit softmax, for parity checks and the bench baseline.
    """

    def __init__(self, *args: Any, attn_impl: str = "fused", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.attn_impl = attn_impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, Hp, Wp, C) -> (B, Hp, Wp, C)."""
        b, h, w, _ = x.shape
        n = h * w
        nh, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x.reshape(b, n, -1)).view(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, hd)
        rh = get_rel_pos(h, self.rel_pos_h).to(q.dtype)
        rw = get_rel_pos(w, self.rel_pos_w).to(q.dtype)
        rq = q.reshape(b, nh, h, w, hd)
        # Terms use the unscaled q, as in the official code.
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, rh)  # (B, heads, Hp, Wp, Hp)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, rw)  # (B, heads, Hp, Wp, Wp)
        drop = self.attn_drop.p if self.training else 0.0

        if self.attn_impl == "fused":
            oh, ow = _onehot_keys(h, w, q.device, q.dtype)
            dim = hd + h + w
            pad = (-dim) % 8
            qa = [q * self.scale, rel_h.reshape(b, nh, n, h), rel_w.reshape(b, nh, n, w)]
            ka = [k, oh.expand(b, nh, n, h), ow.expand(b, nh, n, w)]
            # CPU/GPU flash kernels need equal q/k/v head dims; zero-padded v columns cost less
            # than the math fallback, and are sliced off below.
            va = [v, v.new_zeros(b, nh, n, dim + pad - hd)]
            if pad:
                qa.append(q.new_zeros(b, nh, n, pad))
                ka.append(k.new_zeros(b, nh, n, pad))
            out = F.scaled_dot_product_attention(
                torch.cat(qa, -1), torch.cat(ka, -1), torch.cat(va, -1), dropout_p=drop, scale=1.0
            )[..., :hd]
        elif self.attn_impl == "bias":
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, n, n)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = attn.view(b, nh, h, w, h, w) + rel_h[..., :, None] + rel_w[..., None, :]
            attn = self.attn_drop(attn.view(b, nh, n, n).softmax(dim=-1))
            out = attn @ v

        out = out.transpose(1, 2).reshape(b, n, -1)
        out = self.proj_drop(self.proj(out))
        return out.view(b, h, w, -1)


class PainterBlock(SamBlock):
    """timm's SAM block (global attention) with the SegGPT multi-prompt feature ensemble.

    ``ensemble``: 0 = off; 1 = the batch is [image stream (P), target stream (P)] and the query
    (bottom) half of the attention output is averaged over the P prompts within each stream;
    2 = the batch is P merged canvases, averaged over all P. Applied before the residual add;
    the prompt (top) halves are untouched.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool,
        input_size: tuple[int, int],
        attn_impl: str = "fused",
        **kwargs: Any,
    ):
        super().__init__(
            dim, num_heads, qkv_bias=qkv_bias, use_rel_pos=True, input_size=input_size, **kwargs
        )
        # Same parameter names as timm's attention; only the forward differs.
        self.attn = PainterAttention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=True,
            input_size=input_size,
            attn_impl=attn_impl,
        )

    def forward(self, x: torch.Tensor, ensemble: int = 0) -> torch.Tensor:
        """x (B, Hp, Wp, C) -> (B, Hp, Wp, C)."""
        a = self.attn(self.norm1(x))
        if ensemble:
            a = _ensemble_query_half(a, ensemble)
        x = x + self.drop_path1(self.ls1(a))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def _ensemble_query_half(a: torch.Tensor, mode: int) -> torch.Tensor:
    b, h, w, c = a.shape
    top, bottom = a[:, : h // 2], a[:, h // 2 :]
    if mode == 1:
        bottom = bottom.reshape(2, b // 2, h - h // 2, w, c).mean(1, keepdim=True)
        bottom = bottom.expand(2, b // 2, h - h // 2, w, c).reshape(b, h - h // 2, w, c)
    else:
        bottom = bottom.mean(0, keepdim=True).expand_as(bottom)
    return torch.cat([top, bottom], dim=1)


# --------------------------------------------------------------------------------------------
# The model


class Painter(nn.Module):
    """Painter (``num_type_tokens=0``) or SegGPT (``num_type_tokens=2``).

    ``Painter(config)`` or ``Painter(**config_fields)``. Parameters are named exactly like the
    official checkpoints (352 keys for Painter ViT-L, 354 for SegGPT ViT-L).
    """

    def __init__(self, config: PainterConfig | None = None, **overrides: Any):
        super().__init__()
        if config is None:
            config = PainterConfig.from_dict(overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = cfg = config
        c, p = cfg.embed_dim, cfg.patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, c))
        self.segment_token_x = nn.Parameter(torch.zeros(1, 1, 1, c))
        self.segment_token_y = nn.Parameter(torch.zeros(1, 1, 1, c))
        if cfg.num_type_tokens:
            self.type_token_cls = nn.Parameter(torch.zeros(1, 1, 1, c))
            self.type_token_ins = nn.Parameter(torch.zeros(1, 1, 1, c))
        pg = cfg.pretrain_img_size // p
        self.pos_embed = nn.Parameter(torch.zeros(1, pg * pg + 1, c))
        self.patch_embed = PatchEmbed(
            img_size=cfg.img_size,
            patch_size=p,
            in_chans=3,
            embed_dim=c,
            flatten=False,
            output_fmt="NHWC",
            strict_img_size=False,
        )
        # linspace(0, rate, depth), computed in Python so the model also builds on the meta device
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        norm = _layer_norm(cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(
            PainterBlock(
                dim=c,
                num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                drop_path=dpr[i],
                norm_layer=norm,
                act_layer=nn.GELU,
                input_size=cfg.grid,
                attn_impl=cfg.attn_impl,
            )
            for i in range(cfg.depth)
        )
        self.norm = norm(c)
        dc = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(c * len(cfg.feature_blocks), p * p * dc)
        self.decoder_pred = nn.Sequential(
            nn.Conv2d(dc, dc, kernel_size=3, padding=1),
            LayerNorm2d(dc, eps=cfg.layer_norm_eps),
            nn.GELU(),
            nn.Conv2d(dc, 3, kernel_size=1),
        )
        self._init_weights()
        if cfg.compile:
            for blk in self.blocks:
                blk.compile()

    def _init_weights(self) -> None:
        # Official init: tokens N(0, .02), pos trunc-normal(.02), Linear trunc-normal(.02) with
        # zero bias, LayerNorm 1/0, rel-pos zeros, convolutions keep PyTorch's default.
        # The official truncation bounds are +-2 absolute = 100 std, so trunc-normal is the
        # normal distribution; _trunc_normal samples it directly (erfinv-based sampling takes
        # minutes for ViT-L on CPU).
        for t in (self.mask_token, self.segment_token_x, self.segment_token_y):
            nn.init.normal_(t, std=0.02)
        if self.config.num_type_tokens:
            nn.init.normal_(self.type_token_cls, std=0.02)
            nn.init.normal_(self.type_token_ins, std=0.02)
        _trunc_normal(self.pos_embed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ---- helpers -------------------------------------------------------------------------

    def at_canvas(self, img_size: tuple[int, int]) -> Painter:
        """A copy built for canvas ``img_size`` (H, W), H = 2W, with the same weights: rel-pos
        tables are resized linearly, which is exactly what ``forward`` computes at that canvas
        anyway, so outputs there are unchanged; the stored absolute-position grid is resampled at
        every forward as before. Used to continue training a model at a larger canvas."""
        model = Painter(self.config.replace(img_size=tuple(img_size)))
        target = model.state_dict()
        state = {}
        for key, value in self.state_dict().items():
            if value.shape != target[key].shape:  # only rel_pos_h / rel_pos_w differ
                length = target[key].shape[0]
                value = F.interpolate(value.t()[None], size=length, mode="linear")[0].t()
            state[key] = value
        model.load_state_dict(state, strict=True)
        return model.train(self.training)

    def deepened(self, depth: int, seed: int = 0) -> Painter:
        """A copy with ``depth`` blocks computing exactly what this model computes: the new blocks
        start as identities (attention ``proj`` and MLP ``fc2`` zero, so each adds nothing to the
        residual stream) and are spread over the merged part, one after each block from
        ``merge_index + 1`` on (the later blocks first get a second), and every tap moves to the
        last block of its group, which carries the same output. Used to give a trained model more
        capacity and go on training it. ``seed`` draws the new blocks' other weights."""
        cfg = self.config
        if depth <= cfg.depth:
            raise PainterError(
                f"cannot deepen a {cfg.depth}-block model to {depth} blocks",
                hint="model.depth must exceed the run.init checkpoint's depth",
            )
        slots = list(range(cfg.merge_index + 1, cfg.depth))
        if not slots:
            raise PainterError("a model whose last block merges the streams cannot be deepened")
        extra = depth - cfg.depth
        after = {j: extra // len(slots) for j in slots}
        for j in slots[len(slots) - extra % len(slots) :]:
            after[j] += 1
        where, end, i = {}, {}, 0  # old block -> its new index; -> the last index of its group
        for j in range(cfg.depth):
            where[j] = i
            i += 1 + after.get(j, 0)
            end[j] = i - 1
        taps = tuple(end[t] for t in cfg.feature_blocks)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Painter(cfg.replace(depth=depth, feature_blocks=taps))
        state = model.state_dict()
        for key, value in self.state_dict().items():
            if key.startswith("blocks."):
                _, j, rest = key.split(".", 2)
                key = f"blocks.{where[int(j)]}.{rest}"
            state[key] = value
        for j in set(range(depth)) - set(where.values()):
            for name in ("attn.proj", "mlp.fc2"):
                state[f"blocks.{j}.{name}.weight"].zero_()
                state[f"blocks.{j}.{name}.bias"].zero_()
        model.load_state_dict(state, strict=True)
        return model.train(self.training)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay by name (1-D params are excluded by the
        optimiser grouping anyway), as in the official recipe."""
        return {"pos_embed"}

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, p*p*C), tokens row-major, each laid out (p_row, p_col, c)."""
        n, ch, h, w = imgs.shape
        p = self.config.patch_size
        if h != 2 * w or h % p:
            raise PainterError(f"canvas {h}x{w} is not 2:1 (H = 2W) with H divisible by {p}")
        x = imgs.reshape(n, ch, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * ch)

    def unpatchify(self, x: torch.Tensor, channels: int = 3) -> torch.Tensor:
        """(N, L, p*p*C) -> (N, C, H, W) for a 2:1 grid of L tokens."""
        n, length, _ = x.shape
        p = self.config.patch_size
        wp = int(math.isqrt(length // 2))
        hp = 2 * wp
        if hp * wp != length:
            raise PainterError(f"{length} tokens do not form a 2:1 grid")
        x = x.reshape(n, hp, wp, p, p, channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, hp * p, wp * p)

    def _abs_pos(self, hp: int, wp: int) -> torch.Tensor:
        """(1, Hp, Wp, C) absolute positions: the stored grid resampled bicubically, cls dropped."""
        g = int(math.isqrt(self.pos_embed.shape[1] - 1))
        pos = self.pos_embed
        if (hp, wp) != (g, g):
            pos = resample_abs_pos_embed(
                pos, new_size=[hp, wp], old_size=[g, g], num_prefix_tokens=1, antialias=False
            )
        return pos[:, 1:].reshape(1, hp, wp, -1)

    def _type_embedding(self, seg_type: Any, n: int, device: torch.device) -> torch.Tensor:
        if seg_type is None:
            seg_type = SEG_TYPES["instance"]  # the official inference default
        if isinstance(seg_type, str):
            if seg_type not in SEG_TYPES:
                raise PainterError(f"unknown seg_type {seg_type!r}", hint="semantic or instance")
            seg_type = SEG_TYPES[seg_type]
        st = torch.as_tensor(seg_type, device=device).reshape(-1)
        if st.numel() == 1:
            st = st.expand(n)
        sel = st.reshape(n, 1, 1, 1).to(self.type_token_cls.dtype)
        return self.type_token_cls * (1 - sel) + self.type_token_ins * sel

    # ---- forward ---------------------------------------------------------------------------

    def forward_features(
        self,
        imgs: torch.Tensor,
        tgts: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        seg_type: Any = None,
        feature_ensemble: bool = False,
    ) -> list[torch.Tensor]:
        """Encoder: returns the normed taps, each (N, Hp, Wp, C), in ``feature_blocks`` order.

        ``mask`` (N, L) or (N, Hp, Wp), 1 = masked target patch (None = nothing masked).
        ``seg_type`` (SegGPT only): 0/"semantic" or 1/"instance", per sample or for all.
        ``feature_ensemble``: the batch is P canvases sharing one query (bottom half); the query
        half of every attention output is averaged across them (SegGPT multi-prompt).
        """
        n = imgs.shape[0]
        x = self.patch_embed(imgs)
        y = self.patch_embed(tgts)
        _, hp, wp, _ = x.shape
        if mask is not None:
            m = mask.reshape(n, hp, wp, 1).to(torch.bool).to(y.dtype)
            y = y * (1 - m) + self.mask_token.to(y.dtype) * m
        x = x + self.segment_token_x
        y = y + self.segment_token_y
        pos = self._abs_pos(hp, wp)
        x = x + pos
        y = y + pos
        if self.config.num_type_tokens:
            t = self._type_embedding(seg_type, n, x.device)
            x = x + t
            y = y + t
        x = torch.cat([x, y], dim=0)

        cfg = self.config
        taps = set(cfg.feature_blocks)
        use_ckpt = cfg.grad_checkpointing and self.training and torch.is_grad_enabled()
        feats = []
        for i, blk in enumerate(self.blocks):
            ens = 0 if not feature_ensemble else (1 if i <= cfg.merge_index else 2)
            if use_ckpt:
                x = checkpoint(blk, x, ens, use_reentrant=False)
            else:
                x = blk(x, ens)
            if i == cfg.merge_index:
                x = (x[:n] + x[n:]) * 0.5
            if i in taps:
                feats.append(self.norm(x))
        return feats

    def forward_decoder(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Taps, each (N, Hp, Wp, C) -> predicted canvas (N, 3, H, W), normalised space."""
        x = self.decoder_embed(torch.cat(feats, dim=-1))
        n, hp, wp, _ = x.shape
        p, dc = self.config.patch_size, self.config.decoder_embed_dim
        x = x.reshape(n, hp, wp, p, p, dc)
        x = torch.einsum("nhwpqc->nchpwq", x).reshape(n, dc, hp * p, wp * p)
        return self.decoder_pred(x)

    def forward_loss(
        self,
        pred: torch.Tensor,
        tgts: torch.Tensor,
        mask: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked smooth-L1 (beta 0.01) between ``pred`` and ``tgts`` (both (N, 3, H, W),
        normalised), over masked pixels only, weighted by ``valid`` ((N, 3, H, W), None = ones).

        ``loss_variant="painter"``: a sample whose de-normalised visible target sums to less than
        ``dark_target_threshold(H, W)`` (300 on the official 896 x 448 canvas, scaled by the area:
        an (almost) black visible target) is ignored, and the denominator gets +1e-2, as in the
        official code. Unlike the official code the caller's ``valid`` is never modified.
        ``loss_variant="seggpt"``: no ignore rule, no +1e-2. Computed in fp32. Returns a scalar.
        """
        n, _, h, w = tgts.shape
        p = self.config.patch_size
        pred = pred.float()
        tgts = tgts.float()
        pix = mask.reshape(n, 1, h // p, 1, w // p, 1).to(torch.bool).to(tgts.dtype)
        pix = pix.expand(n, 1, h // p, p, w // p, p).reshape(n, 1, h, w)
        weight = pix.expand(n, 3, h, w)
        if valid is not None:
            weight = weight * valid.to(tgts.dtype)
        painter = self.config.loss_variant == "painter"
        if painter:
            visible = (denormalize(tgts) * (1 - pix)).sum(dim=(1, 2, 3))
            keep = visible >= dark_target_threshold(h, w)
            weight = weight * keep.to(tgts.dtype).view(n, 1, 1, 1)
        loss = F.smooth_l1_loss(pred, tgts, reduction="none", beta=self.config.smooth_l1_beta)
        denom = weight.sum() + 1e-2 if painter else weight.sum().clamp_min(1e-12)
        return (loss * weight).sum() / denom

    def forward(
        self,
        imgs: torch.Tensor,
        tgts: torch.Tensor,
        mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        *,
        seg_type: Any = None,
        feature_ensemble: bool = False,
        compute_loss: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """imgs, tgts (N, 3, H, W) normalised canvases; mask (N, L) or (N, Hp, Wp), 1 = masked
        target patch; valid (N, 3, H, W) pixel weights (None = ones, never mutated).

        Returns ``(loss, pred)``: the scalar loss of :meth:`forward_loss` (None when
        ``compute_loss`` is False) and the predicted canvas (N, 3, H, W) in normalised space.
        """
        if imgs.shape != tgts.shape or imgs.ndim != 4 or imgs.shape[1] != 3:
            raise PainterError(
                f"imgs {tuple(imgs.shape)} and tgts {tuple(tgts.shape)} must both be (N, 3, H, W)"
            )
        h, w = imgs.shape[-2:]
        p = self.config.patch_size
        if h != 2 * w or h % p:
            raise PainterError(f"canvas {h}x{w} must be 2:1 (H = 2W) with H divisible by {p}")
        if mask is None:
            mask = torch.zeros(imgs.shape[0], (h // p) * (w // p), device=imgs.device)
        feats = self.forward_features(
            imgs, tgts, mask, seg_type=seg_type, feature_ensemble=feature_ensemble
        )
        pred = self.forward_decoder(feats)
        loss = self.forward_loss(pred, tgts, mask, valid) if compute_loss else None
        return loss, pred


@torch.no_grad()
def _trunc_normal(t: torch.Tensor, std: float = 0.02, bound: float = 2.0) -> None:
    t.normal_(0.0, std).clamp_(-bound, bound)


def _layer_norm(eps: float):
    def make(dim: int, **kwargs: Any) -> nn.LayerNorm:
        return nn.LayerNorm(dim, eps=eps, **kwargs)

    return make


def build_model(
    name_or_config: str | PainterConfig, *, seed: int | None = 0, **overrides: Any
) -> Painter:
    """A randomly initialised model from a preset name or a config (seeded for reproducibility)."""
    cfg = (
        name_or_config if isinstance(name_or_config, PainterConfig) else get_config(name_or_config)
    )
    if overrides:
        cfg = cfg.replace(**overrides)
    if seed is None:
        return Painter(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Painter(cfg)
