"""The SEEM visual sampler: binary prompt masks -> prompt tokens and pooled prompt vectors.

Every visual prompt (click, stroke, box, polygon, painted mask, or the same drawn on a
referring image) arrives here as a positive and a negative binary mask per prompt in the
padded model frame ``(n_prompts, H_pad, W_pad)``. This module turns them into

- per-level *visual prompt tokens* that enter the decoder's self-attention, and
- *pooled prompt vectors* (mean of ``mask_features`` at the positive points) used to pick
  the answering spatial query.

The parameters involved (``level_embed``, ``mask_sptial_embed``, ``pn_indicator``) are
owned by the decoder module (official names); this module is functional.

Point frame. A mask pixel at ``(row, col)`` of the padded frame becomes the normalised
point ``(row / H_pad, col / W_pad)``; a feature map of size ``(h, w)`` is read there with
bilinear ``grid_sample(..., align_corners=True)``, i.e. at feature location
``(row / H_pad * (h - 1), col / W_pad * (w - 1))``. That is not the pixel centre, but it
is what the official model was trained with, so it is kept.

Point selection (deterministic, ``RULE_POINTS`` of the reference fixtures). The official
code draws up to 512 of a batch element's mask pixels at random, anew for the pooled
vectors and for every level. Here every nonzero pixel is used, in raster order
(prompt-major), while there are at most ``max_points``; above that the pixels at positions
``floor(k * N / max_points)`` of that list are used. The cap applies to all prompts of
one batch element together (the official draw works on the whole ``(P, H, W)`` stack),
and the same points serve the pooled vectors and every level. One known difference from
the official draw: it gives every prompt equal probability mass, so a small prompt next to
a large one keeps nearly all its pixels, while this rule thins all prompts alike. It only
matters above ``max_points`` pixels in total; the fixtures pin this rule.

Referring image ("example" prompt). Calling :func:`encode_visual_prompts` with the
referring image's features and its stroke gives the tokens and pooled vectors that are
injected unchanged into the decode of the target image. Because ``prompt_index`` is always
part of :class:`VisualPromptTokens`, the official v1 failure on this path (a missing
index variable) cannot happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "PromptPoints",
    "VisualPromptTokens",
    "encode_visual_prompts",
    "sample_prompt_points",
]

# MAX_SPATIAL_LEN of every released SEEM config.
DEFAULT_MAX_POINTS = 512


@dataclass(frozen=True)
class VisualPromptTokens:
    """Visual prompt tokens of one batch for every decoder feature level.

    Shapes use ``L`` feature levels (3), batch ``B``, hidden width ``D``, ``T`` tokens
    (padded to the longest batch element), ``P`` prompts.

    Attributes:
        tokens: ``L`` tensors ``(T, B, D)``: sampled level features projected by
            ``mask_sptial_embed[i]`` plus ``pn_indicator.weight[0]`` (positive) or ``[1]``
            (negative). Order per batch element: all positive points (prompt-major, raster
            order), then all negative points. A padding token holds the projected feature
            at the top-left corner (the official padding convention) and no indicator.
        padding: ``L`` bool tensors ``(B, T)``, True where a token is padding.
        prompt_index: ``L`` long tensors ``(B, T)``: the prompt each token belongs to,
            -1 for padding.
        pooled_pos: ``(P, B, D)`` mean of ``mask_features`` sampled at each prompt's
            positive points; -1 everywhere for a prompt without positive points.
        pooled_neg: ``(P, B, D)`` the same for negative points; -1 everywhere for a prompt
            without negative points (official convention).

    The same points serve every level, so ``padding`` and ``prompt_index`` are equal across
    levels; they are kept per level because the decoder consumes them per level.
    """

    tokens: tuple[torch.Tensor, ...]
    padding: tuple[torch.Tensor, ...]
    prompt_index: tuple[torch.Tensor, ...]
    pooled_pos: torch.Tensor
    pooled_neg: torch.Tensor

    @property
    def num_prompts(self) -> int:
        return int(self.pooled_pos.shape[0])


class PromptPoints(NamedTuple):
    """Points drawn from the prompt masks of one batch element.

    Attributes:
        prompt_index: ``(N,)`` int64, the prompt each point comes from (non-decreasing).
        yx: ``(N, 2)`` float32, ``(row / H_pad, col / W_pad)`` in the padded model frame,
            each in ``[0, 1)``.
    """

    prompt_index: torch.Tensor
    yx: torch.Tensor


def sample_prompt_points(masks: torch.Tensor, max_points: int = DEFAULT_MAX_POINTS) -> PromptPoints:
    """Deterministically pick the prompt pixels of one batch element (``RULE_POINTS``).

    Args:
        masks: ``(P, H_pad, W_pad)`` bool (any dtype; nonzero = set), one mask per prompt
            in the padded model frame (row = y, col = x, origin top-left).
        max_points: cap on the number of points over all ``P`` prompts together.

    Returns:
        All ``N`` nonzero pixels in raster order (prompt, then row, then column) when
        ``N <= max_points``; otherwise the ``max_points`` pixels at positions
        ``floor(k * N / max_points)``, ``k = 0 .. max_points - 1``, of that list. An empty
        stack gives ``N = 0``. Coordinates are normalised by ``(H_pad, W_pad)``.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (P, H_pad, W_pad), got shape {tuple(masks.shape)}")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    # torch.nonzero is lexicographic on every device, which is the raster order we promise.
    nz = torch.nonzero(masks)  # (N, 3): prompt, row, col
    n = nz.shape[0]
    if n > max_points:
        keep = torch.arange(max_points, device=nz.device) * n // max_points
        nz = nz[keep]
    # The official code divides the int64 indices in float32; doing the same keeps the
    # pooled vectors bit-identical to it.
    size = torch.tensor([masks.shape[1], masks.shape[2]], dtype=torch.float32, device=nz.device)
    yx = nz[:, 1:].to(torch.float32) / size  # (N, 2)
    return PromptPoints(prompt_index=nz[:, 0], yx=yx)


def _sample_at(features: torch.Tensor, yx: torch.Tensor) -> torch.Tensor:
    """Bilinearly read ``features`` at normalised points.

    Args:
        features: ``(B, C, h, w)`` any float dtype.
        yx: ``(B, T, 2)`` ``(row, col)`` normalised to ``[0, 1]`` of the padded frame.

    Returns:
        ``(B, C, T)`` sampled features (zero outside the map, align_corners=True).
    """
    grid = 2.0 * yx.flip(-1).to(features.dtype) - 1.0  # (B, T, 2) as (x, y) in [-1, 1]
    out = F.grid_sample(
        features, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros", align_corners=True
    )  # (B, C, T, 1)
    return out.squeeze(3)


def _pool_per_prompt(
    mask_features: torch.Tensor, points: PromptPoints, num_prompts: int
) -> torch.Tensor:
    """Mean of ``mask_features`` over each prompt's points.

    Args:
        mask_features: ``(1, D, h, w)`` mask features of one batch element.
        points: the element's points (``N`` of them).
        num_prompts: ``P``.

    Returns:
        ``(P, D)``; a prompt without points gets a vector of -1.
    """
    dim = mask_features.shape[1]
    sampled = _sample_at(mask_features, points.yx[None])[0].t()  # (N, D)
    pooled = []
    for p in range(num_prompts):
        rows = sampled[points.prompt_index == p]  # (N_p, D)
        if rows.shape[0] > 0:
            pooled.append(rows.mean(dim=0))
        else:
            pooled.append(
                torch.full((dim,), -1.0, dtype=mask_features.dtype, device=mask_features.device)
            )
    return torch.stack(pooled)


def _as_batch(masks: torch.Tensor, name: str) -> torch.Tensor:
    """``(P, H, W)`` -> ``(1, P, H, W)``; ``(B, P, H, W)`` unchanged; anything else fails."""
    if masks.dim() == 3:
        return masks.unsqueeze(0)
    if masks.dim() != 4:
        raise ValueError(
            f"{name} must be (B, P, H_pad, W_pad) or (P, H_pad, W_pad), "
            f"got shape {tuple(masks.shape)}"
        )
    return masks


def _pool_batch(
    mask_features: torch.Tensor, points: Sequence[PromptPoints], num_prompts: int
) -> torch.Tensor:
    """Pooled vectors of every batch element: ``(B, D_m, h, w)`` -> ``(P, B, D_m)``."""
    per_element = [
        _pool_per_prompt(mask_features[b : b + 1], pts, num_prompts)  # (P, D_m)
        for b, pts in enumerate(points)
    ]
    return torch.stack(per_element, dim=1)  # (P, B, D_m)


def _token_layout(
    pos_points: Sequence[PromptPoints], neg_points: Sequence[PromptPoints], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each token is read, whose it is and its sign, shared by every level.

    Returns:
        ``yx`` ``(B, T, 2)`` float32 normalised ``(row, col)``, 0 for padding (so padding
        reads the top-left corner, as the official code does); ``prompt_index`` ``(B, T)``
        int64, -1 for padding; ``polarity`` ``(B, T)`` int8, +1 positive, -1 negative,
        0 padding. Per element: positives first, then negatives.
    """
    batch = len(pos_points)
    n_pos = [p.yx.shape[0] for p in pos_points]
    n_all = [a + n.yx.shape[0] for a, n in zip(n_pos, neg_points, strict=True)]
    num_tokens = max(n_all)
    yx = torch.zeros(batch, num_tokens, 2, dtype=torch.float32, device=device)
    prompt_index = torch.full((batch, num_tokens), -1, dtype=torch.long, device=device)
    polarity = torch.zeros(batch, num_tokens, dtype=torch.int8, device=device)
    for b in range(batch):
        yx[b, : n_all[b]] = torch.cat([pos_points[b].yx, neg_points[b].yx])
        prompt_index[b, : n_all[b]] = torch.cat(
            [pos_points[b].prompt_index, neg_points[b].prompt_index]
        )
        polarity[b, : n_pos[b]] = 1
        polarity[b, n_pos[b] : n_all[b]] = -1
    return yx, prompt_index, polarity


def encode_visual_prompts(
    pos_masks: torch.Tensor,
    neg_masks: torch.Tensor | None,
    multi_scale_features: Sequence[torch.Tensor],
    mask_features: torch.Tensor,
    *,
    level_embed: torch.Tensor,
    mask_spatial_embed: Sequence[torch.Tensor],
    pn_indicator: torch.Tensor,
    max_points: int = DEFAULT_MAX_POINTS,
) -> VisualPromptTokens:
    """Turn positive/negative prompt masks into visual prompt tokens and pooled vectors.

    Args:
        pos_masks: ``(B, P, H_pad, W_pad)`` or ``(P, H_pad, W_pad)`` (then ``B = 1``) bool
            (any dtype; nonzero = set), positive pixels of each prompt in the padded model
            frame (row = y, col = x, origin top-left). Every batch element has the same
            ``P`` prompts.
        neg_masks: same shape, negative pixels; ``None`` means no negative pixels at all.
        multi_scale_features: ``L`` tensors ``(B, D, h_i, w_i)``, the pixel decoder's
            levels in decoder order (strides 32, 16, 8 of the padded frame).
        mask_features: ``(B, D_m, H_pad / 4, W_pad / 4)`` stride-4 mask features.
        level_embed: ``(L, D)`` ``sem_seg_head.predictor.level_embed.weight``.
        mask_spatial_embed: ``L`` tensors ``(D, D)``
            ``sem_seg_head.predictor.mask_sptial_embed.{i}``.
        pn_indicator: ``(2, D)`` ``sem_seg_head.predictor.pn_indicator.weight``; row 0 is
            added to positive tokens, row 1 to negative ones.
        max_points: per batch element cap on positive points and, separately, on negative
            points (see :func:`sample_prompt_points`).

    Returns:
        :class:`VisualPromptTokens` with ``T = max_b(N_pos[b] + N_neg[b])`` tokens per
        level, in the dtype and on the device of the features. For a referring image pass
        that image's masks and features; the result goes unchanged into the target decode.
    """
    pos = _as_batch(pos_masks, "pos_masks")
    neg = torch.zeros_like(pos) if neg_masks is None else _as_batch(neg_masks, "neg_masks")
    if neg.shape != pos.shape:
        raise ValueError(
            f"neg_masks shape {tuple(neg.shape)} differs from pos_masks {tuple(pos.shape)}"
        )
    batch, num_prompts = pos.shape[0], pos.shape[1]
    num_levels = len(multi_scale_features)
    if len(mask_spatial_embed) != num_levels or level_embed.shape[0] != num_levels:
        raise ValueError(
            f"{num_levels} feature levels but {level_embed.shape[0]} level embeddings and "
            f"{len(mask_spatial_embed)} mask_sptial_embed matrices"
        )
    if mask_features.shape[0] != batch or any(f.shape[0] != batch for f in multi_scale_features):
        raise ValueError(f"features must have batch size {batch}, like the prompt masks")

    # The official code draws points separately for the pooled vectors and for every level;
    # with a deterministic rule those draws coincide, so the points are computed once.
    pos_points = [sample_prompt_points(pos[b], max_points) for b in range(batch)]
    neg_points = [sample_prompt_points(neg[b], max_points) for b in range(batch)]
    pooled_pos = _pool_batch(mask_features, pos_points, num_prompts)  # (P, B, D_m)
    pooled_neg = _pool_batch(mask_features, neg_points, num_prompts)  # (P, B, D_m)

    yx, prompt_index, polarity = _token_layout(pos_points, neg_points, mask_features.device)
    polarity = polarity.t()[:, :, None]  # (T, B, 1)
    indicator = torch.where(
        polarity > 0,
        pn_indicator[0],
        torch.where(polarity < 0, pn_indicator[1], pn_indicator.new_zeros(())),
    )  # (T, B, D); padding gets none, as officially

    tokens = []
    for i, feat in enumerate(multi_scale_features):
        src = feat + level_embed[i][None, :, None, None]  # (B, D, h_i, w_i)
        # Bilinear sampling is linear, so it commutes with the projection: sampling first
        # costs T * D^2 instead of h_i * w_i * D^2 (the official order) and differs from it
        # by float rounding only (about 1 ulp).
        sampled = _sample_at(src, yx).permute(2, 0, 1)  # (T, B, D)
        tokens.append(sampled @ mask_spatial_embed[i] + indicator)

    padding = prompt_index < 0
    return VisualPromptTokens(
        tokens=tuple(tokens),
        padding=(padding,) * num_levels,
        prompt_index=(prompt_index,) * num_levels,
        pooled_pos=pooled_pos,
        pooled_neg=pooled_neg,
    )
