"""Hungarian matching of predicted masks to target masks (Mask2Former / SEEM style).

The cost of assigning query ``q`` to target ``t`` is
``w_class * (-p_q[class_t]) + w_mask * BCE(q, t) + w_dice * dice(q, t)``, computed for all
pairs at once on the same pixels the loss uses; ``scipy.optimize.linear_sum_assignment``
solves the assignment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

__all__ = ["hungarian_match", "pairwise_bce", "pairwise_dice"]


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction against every target.

    Args:
        logits: ``(Q, N)`` mask logits at ``N`` pixels.
        targets: ``(T, N)`` target values in ``[0, 1]`` at the same pixels.

    Returns:
        ``(Q, T)``.
    """
    n = logits.shape[1]
    pos = F.softplus(-logits) @ targets.t()
    neg = F.softplus(logits) @ (1 - targets).t()
    return (pos + neg) / n


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - dice`` of every prediction ``(Q, N)`` against every target ``(T, N)``: ``(Q, T)``."""
    prob = logits.sigmoid()
    inter = prob @ targets.t()
    total = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (2 * inter + 1) / (total + 1)


@torch.no_grad()
def hungarian_match(
    mask_logits: torch.Tensor,
    targets: torch.Tensor,
    class_prob: torch.Tensor | None = None,
    target_classes: torch.Tensor | None = None,
    *,
    w_class: float = 2.0,
    w_mask: float = 5.0,
    w_dice: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match ``T <= Q`` targets to ``Q`` queries one-to-one at minimal total cost.

    Args:
        mask_logits: ``(Q, N)`` predicted mask logits.
        targets: ``(T, N)`` target masks (float, soft allowed).
        class_prob: ``(Q, K+1)`` class probabilities, or None (mask costs only).
        target_classes: ``(T,)`` int64 class index of each target (with ``class_prob``).

    Returns:
        ``(query_index, target_index)``, two ``(min(Q, T),)`` int64 tensors.
    """
    if targets.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    cost = w_mask * pairwise_bce(mask_logits.float(), targets.float())
    cost = cost + w_dice * pairwise_dice(mask_logits.float(), targets.float())
    if class_prob is not None and target_classes is not None:
        cost = cost - w_class * class_prob[:, target_classes].float()
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
