"""Losses of SEEM training: mask BCE (or focal) and dice on matched masks, and class
cross-entropy of caption embeddings against text embeddings with SEEM's temperature.

Masks are compared at the stride-4 resolution of ``mask_features`` against area-averaged
("soft") targets: the prediction cannot express finer detail, and the soft border keeps the
logits calibrated for the bilinear upsampling the predictor applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "class_loss",
    "dice_loss",
    "focal_loss",
    "mask_bce_loss",
    "soft_targets",
]


def soft_targets(masks: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """``(T, H, W)`` bool masks in the padded frame -> ``(T, H/stride, W/stride)`` float in
    ``[0, 1]``: the covered fraction of each output cell."""
    if masks.shape[0] == 0:
        h, w = masks.shape[-2] // stride, masks.shape[-1] // stride
        return masks.new_zeros((0, h, w), dtype=torch.float32)
    return F.avg_pool2d(masks[:, None].float(), stride)[:, 0]


def mask_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask mean sigmoid BCE: ``(T, N)`` logits and targets -> ``(T,)``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Per-mask sigmoid focal loss (RetinaNet form): ``(T, N)`` -> ``(T,)``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return (weight * ce * (1 - p_t) ** gamma).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask ``1 - dice`` with +1 smoothing: ``(T, N)`` -> ``(T,)``."""
    prob = logits.sigmoid()
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def class_loss(
    logits: torch.Tensor, target: torch.Tensor, *, no_object_weight: float = 0.1
) -> torch.Tensor:
    """Cross-entropy of ``(Q, K+1)`` class logits (``exp(logit_scale) * cos``) against
    ``(Q,)`` int64 targets, the last class ("background" / no object) down-weighted as in
    SEEM (``no_object_weight``, official 0.1)."""
    k1 = logits.shape[-1]
    weight = torch.ones(k1, device=logits.device, dtype=logits.dtype)
    weight[-1] = no_object_weight
    return F.cross_entropy(logits, target, weight=weight)
