"""What prompt tuning minimises: the model's masked smooth-L1 (its training loss, the default), or
a cross-entropy aligned with the task's decoder (``palette``: the nearest-colour decision of
semseg/instance; ``heatmap``: the keypoint decoder's argmax; ``psnr``: the restoration metric's
mean per-image PSNR)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError

OBJECTIVES = ("loss", "palette", "heatmap", "psnr")
# Pixel-unit temperature of the palette objective: an L1 distance gap of 10 levels is one nat.
PALETTE_TEMPERATURE = 10.0
# Heat temperature of the heatmap objective: a heat gap of 0.05 (13 levels of R) is one nat.
HEAT_TEMPERATURE = 0.05
# A codec palette larger than this (instance: 6400 location colours) is cut to the colours
# present in each batch, so the logits stay (N, K, S, S) with small K.
_PALETTE_MAX = 256


def resolve_objective(kind: str, objective: str = "loss") -> str:
    """Check that ``objective`` suits a task of ``kind``: ``loss`` (the model's masked smooth-L1,
    the default for every kind), ``palette`` (semseg, instance) or ``heatmap`` (keypoints). The
    two decoder-aligned objectives are opt-in: on the bundled model neither beats the loss on
    held-out queries (the palette one lowers held-out mIoU while its own value falls)."""
    if objective not in OBJECTIVES:
        raise PainterError(f"--objective {objective}: expected {', '.join(OBJECTIVES)}")
    if objective == "palette" and kind not in ("semseg", "instance"):
        raise PainterError(
            f"--objective palette needs a palette task (semseg or instance), not {kind!r}",
            "use --objective loss",
        )
    if objective == "heatmap" and kind != "keypoints":
        raise PainterError(
            f"--objective heatmap needs a keypoints task, not {kind!r}", "use --objective loss"
        )
    if objective == "psnr" and kind != "restoration":
        raise PainterError(
            f"--objective psnr needs a restoration task, not {kind!r}", "use --objective loss"
        )
    return objective


def codec_palette(codec: Any) -> torch.Tensor | None:
    """(K, 3) float32 colours in 0..255 the codec decodes to (black included where it is a
    class), or None when there are more than a few hundred (instance: taken from each batch);
    for keypoints the (K, 2) (G, B) class colours (``heatmap_loss``)."""
    kind = getattr(codec, "kind", "")
    if kind == "keypoints":  # (K, 2): the (G, B) class colours, R holds the heat
        from painter_cli.tasks.keypoints import keypoint_colours

        return torch.from_numpy(keypoint_colours(codec.num_keypoints).astype(np.float32))
    if kind == "semseg":
        cols = np.asarray(codec.colours, np.float32)
        if getattr(codec, "background", False):
            cols = np.concatenate([np.zeros((1, 3), np.float32), cols])
        return torch.from_numpy(cols) if len(cols) <= _PALETTE_MAX else None
    return None


def palette_loss(
    pred: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None,
    colours: torch.Tensor | None = None,
    temperature: float = PALETTE_TEMPERATURE,
) -> torch.Tensor:
    """Cross-entropy of the decoder's nearest-colour decision: per pixel, logits
    ``-L1(painted, colour_k) / temperature`` over the palette ``colours`` (K, 3) in 0..255 (None:
    black plus the colours present in ``targets``), against the target pixel's nearest colour.

    ``pred`` and ``targets`` (N, 3, S, S) normalised (the painted and the true query targets);
    ``valid`` (N, 3, S, S) pixel weights (None = ones). Returns the weighted mean (a scalar).
    """
    from painter_cli.model import denormalize

    painted = denormalize(pred.float()) * 255.0
    truth = denormalize(targets.detach().float()) * 255.0
    if colours is None:
        present = torch.round(truth).clamp(0, 255).permute(0, 2, 3, 1).reshape(-1, 3).unique(dim=0)
        colours = torch.cat([torch.zeros(1, 3, device=present.device), present])
    cols = colours.to(painted.device, torch.float32).view(1, -1, 3, 1, 1)
    labels = (truth[:, None] - cols).abs().sum(2).argmin(1)  # (N, S, S)
    logits = -(painted[:, None] - cols).abs().sum(2) / temperature  # (N, K, S, S)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weight = torch.ones_like(ce) if valid is None else (valid.to(ce.dtype).mean(1) > 0).to(ce.dtype)
    return (ce * weight).sum() / weight.sum().clamp_min(1.0)


def psnr_loss(
    pred: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None, colours: Any = None
) -> torch.Tensor:
    """Minus the mean per-image PSNR in dB (``metrics.psnr``'s ``10 log10(1 / MSE)`` over RGB in
    [0, 1], the painted pixels clipped as the decoder clips them): the number restoration is
    judged by, where the model's smooth-L1 weighs every pixel of every image alike and so favours
    the images with the largest errors. ``pred`` and ``targets`` (N, 3, S, S) normalised;
    ``valid`` (N, 3, S, S) pixel weights or None. ``colours`` is unused (the tuner's signature)."""
    from painter_cli.model import denormalize

    painted = denormalize(pred.float()).clamp(0.0, 1.0)
    truth = denormalize(targets.detach().float()).clamp(0.0, 1.0)
    weight = torch.ones_like(truth) if valid is None else valid.to(truth.dtype)
    mse = ((painted - truth) ** 2 * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1.0)
    return (10.0 * torch.log10(mse.clamp_min(1e-10))).mean()


def heatmap_loss(
    pred: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None,
    colours: torch.Tensor,
    temperature: float = HEAT_TEMPERATURE,
) -> torch.Tensor:
    """Cross-entropy of the keypoint decoder's argmax: for keypoint k, logits over the pixels
    ``R/255 * P_k / temperature``, with ``P_k`` the soft nearest-class probability of the pixel's
    (G, B) (``softmax(-L1 / PALETTE_TEMPERATURE)`` over the K class colours and (0, 0)), against
    the pixel where the true target's heat of class k peaks. Keypoints absent from a target (no
    heat of their class) and targets with no valid pixel are left out.

    ``pred`` and ``targets`` (N, 3, S, S) normalised; ``valid`` (N, 3, S, S) or None; ``colours``
    (K, 2) (G, B) in 0..255. Returns the mean over the present keypoints (0 when there are none).
    """
    from painter_cli.model import denormalize

    painted = denormalize(pred.float()) * 255.0
    truth = denormalize(targets.detach().float()) * 255.0
    cols = torch.cat([colours.to(painted.device, torch.float32), painted.new_zeros(1, 2)])
    cols = cols.view(1, -1, 2, 1, 1)  # (1, K+1, 2, 1, 1)
    k = cols.shape[1] - 1
    true_cls = (truth[:, None, 1:] - cols).abs().sum(2).argmin(1)  # (N, S, S)
    true_heat = truth[:, None, 0] * (
        true_cls[:, None] == torch.arange(k, device=cols.device)[None, :, None, None]
    )  # (N, K, S, S)
    peak, index = true_heat.flatten(2).max(2)  # (N, K)
    present = peak > 0
    if valid is not None:
        present &= (valid.flatten(1).amax(1) > 0)[:, None]
    if not bool(present.any()):
        return pred.sum() * 0.0
    prob = torch.softmax(-(painted[:, None, 1:] - cols).abs().sum(2) / PALETTE_TEMPERATURE, 1)
    heat = painted[:, None, 0].clamp(0, 255) / 255.0 * prob[:, :k]  # (N, K, S, S)
    logits = heat.flatten(2) / temperature  # (N, K, S*S)
    return torch.nn.functional.cross_entropy(logits[present], index[present], reduction="mean")
