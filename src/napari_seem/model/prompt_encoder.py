"""The SEEM visual sampler: binary prompt masks -> prompt tokens and pooled prompt vectors.

Every visual prompt (click, stroke, box, polygon, painted mask, or the same drawn on a
referring image) arrives here as a positive and a negative binary mask per prompt in the
padded model frame ``(n_prompts, H_pad, W_pad)``. This module turns them into

- per-level *visual prompt tokens* that enter the decoder's self-attention, and
- *pooled prompt vectors* (mean of ``mask_features`` at the positive points) used to pick
  the answering spatial query.

The parameters involved (``level_embed``, ``mask_sptial_embed``, ``pn_indicator``) are
owned by the decoder module (official names); this module is functional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["VisualPromptTokens"]


@dataclass(frozen=True)
class VisualPromptTokens:
    """Visual prompt tokens of one batch for every decoder feature level.

    Shapes use ``L`` feature levels (3), batch ``B``, hidden width ``D``, ``T`` tokens
    (padded to the longest batch element), ``P`` prompts.

    Attributes:
        tokens: ``L`` tensors ``(T, B, D)``: sampled level features projected by
            ``mask_sptial_embed[i]`` plus ``pn_indicator.weight[0]`` (positive) or ``[1]``
            (negative). Order per batch element: all positive points (prompt-major, raster
            order), then all negative points.
        padding: ``L`` bool tensors ``(B, T)``, True where a token is padding.
        prompt_index: ``L`` long tensors ``(B, T)``: the prompt each token belongs to,
            -1 for padding.
        pooled_pos: ``(P, B, D)`` mean of ``mask_features`` sampled at each prompt's
            positive points.
        pooled_neg: ``(P, B, D)`` the same for negative points; -1 everywhere for a prompt
            without negative points (official convention).
    """

    tokens: tuple[torch.Tensor, ...]
    padding: tuple[torch.Tensor, ...]
    prompt_index: tuple[torch.Tensor, ...]
    pooled_pos: torch.Tensor
    pooled_neg: torch.Tensor

    @property
    def num_prompts(self) -> int:
        return int(self.pooled_pos.shape[0])
