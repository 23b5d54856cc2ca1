"""Typed values the SEEM decoder produces, and the similarity scores computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_seem.model.layers import l2_normalize

__all__ = [
    "DecoderOutput",
    "DecoderPrediction",
    "ImageMemory",
    "class_logits",
]


@dataclass(frozen=True)
class ImageMemory:
    """Cross-attention keys and values of one batch of images, for every decoder layer.

    They depend on the image features and the decoder weights only, so a caller that decodes
    the same image many times (one interactive click after another) can compute them once
    with ``SeemDecoder.project_image`` and pass them to every ``forward``; the results are
    identical to those without the cache. Size: ``2 * sum_i(h_i * w_i) * D`` floats per
    image and layer.

    Attributes:
        keys_values: per layer ``i``, keys and values of level ``i % 3``, each
            ``(B, nh, h * w, hs)`` (heads split, row-major over ``h x w``).
        level_sizes: ``(h, w)`` of every feature level.
    """

    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    level_sizes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, kw_only=True)
class DecoderPrediction:
    """Head outputs of one prediction (from the initial queries or after one layer).

    ``B`` batch, ``K+1`` vocabulary size (last = no-object), ``P`` visual prompts, ``Q``
    spatial queries per prompt, ``h x w`` = stride 4 of the padded input (mask_features).
    Mask logits are float, threshold 0. A field is None when its group did not run.

    Attributes:
        pred_logits: ``(B, 101, K+1)`` class logits of the object queries,
            ``exp(logit_scale) * cos(caption, class embedding)``; None without a vocabulary.
        pred_masks: ``(B, 101, h, w)`` object-query mask logits.
        pred_captions: ``(B, 101, dim_proj)`` object-query caption embeddings,
            ``decoder_norm(q) @ class_embed``.
        pred_gmasks: ``(B, 101, h, w)`` grounding-query mask logits.
        pred_gtexts: ``(B, 101, dim_proj)`` grounding-query caption embeddings.
        pred_smasks: ``(B, P*Q, h, w)`` spatial-query mask logits; prompt ``p`` owns rows
            ``Q*p .. Q*p+Q-1``.
        pred_stexts: ``(B, P*Q, dim_proj)`` spatial-query caption embeddings.
        pred_smaskembs: ``(B, P*Q, mask_dim)`` spatial-query mask embeddings
            ``mask_embed(decoder_norm(q))``, used to pick the answer.
    """

    pred_logits: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    pred_captions: torch.Tensor | None = None
    pred_gmasks: torch.Tensor | None = None
    pred_gtexts: torch.Tensor | None = None
    pred_smasks: torch.Tensor | None = None
    pred_stexts: torch.Tensor | None = None
    pred_smaskembs: torch.Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class DecoderOutput(DecoderPrediction):
    """The last prediction, the interactive answer and the earlier predictions.

    Inherited ``pred_*`` fields hold the last prediction. Spatial fields are set when
    visual prompts were decoded:

    Attributes:
        pred_pspatials: ``(B, P, mask_dim)`` pooled positive prompt vectors (input echo).
        pred_nspatials: ``(B, P, mask_dim)`` pooled negative prompt vectors (-1 = none).
        spatial_logits: ``(B, P*Q, P)`` ``pred_smaskembs @ pred_pspatials^T``, -inf where
            the query does not belong to the prompt.
        selected_spatial_query: ``(B, P)`` int64 index into the ``P*Q`` spatial queries.
        prev_mask: ``(B, P, h, w)`` the answer: the selected spatial query's mask logits per
            prompt; pass it back as ``prev_mask`` in the next round.
        memory_indices: ``(num_memories,)`` int64 prompt of each memory token, when
            ``prev_mask`` was given.
        aux: the earlier predictions (initial queries, after layers ``1..num_layers-1``);
            empty when ``return_aux=False``.
    """

    pred_pspatials: torch.Tensor | None = None
    pred_nspatials: torch.Tensor | None = None
    spatial_logits: torch.Tensor | None = None
    selected_spatial_query: torch.Tensor | None = None
    prev_mask: torch.Tensor | None = None
    memory_indices: torch.Tensor | None = None
    aux: tuple[DecoderPrediction, ...] = ()


def class_logits(
    captions: torch.Tensor, class_embeddings: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """``exp(logit_scale) * cos(caption, class)`` (unclamped, as the official class head).

    Args:
        captions: ``(B, N, dim_proj)`` caption embeddings (any norm).
        class_embeddings: ``(K+1, dim_proj)`` unit-norm vocabulary embeddings.
        logit_scale: 0-d tensor (the text encoder's ``logit_scale``).

    Returns:
        ``(B, N, K+1)``.
    """
    v = l2_normalize(captions)
    return logit_scale.exp() * v @ class_embeddings.t()
