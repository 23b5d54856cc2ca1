"""Decoding visual prompts on the current image, in prompt windows when the model has them.

A model with a ``prompt_window`` (seem-lite, trained on crops) decodes each prompt inside a
window of its trained crop size around the prompt (and its memory mask), see
:mod:`napari_seem.model.prompt_window`; the stride-4 cells outside the window get
``OUTSIDE_LOGIT``. Other models decode all prompts at once over the whole image. Built only
on the predictor's public operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.model.postprocess import vl_similarity
from napari_seem.model.prompt_window import OUTSIDE_LOGIT, Window, crop_features, prompt_window
from napari_seem.predict.encoding import EncodedImage

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["choose_candidates", "decode_spatial"]


def _windows(
    predictor: SeemPredictor,
    enc: EncodedImage,
    pos: np.ndarray,
    neg: np.ndarray,
    prev: torch.Tensor | None,
) -> list[Window | None]:
    """The prompt window of each prompt (None everywhere for a model without windows)."""
    size = getattr(predictor.model, "prompt_window", None)
    windows: list[Window | None] = [None] * len(pos)
    if size:
        padded_hw = enc.features.padded_hw
        for p in range(len(pos)):
            touched = pos[p] | neg[p]
            if prev is not None:
                grown = (prev[0, p] > 0).repeat_interleave(4, 0).repeat_interleave(4, 1)
                touched = touched | grown.cpu().numpy()[: touched.shape[0], : touched.shape[1]]
            windows[p] = prompt_window(touched, padded_hw, size)
    return windows


def decode_spatial(
    predictor: SeemPredictor,
    pos: np.ndarray,
    neg: np.ndarray,
    prev: torch.Tensor | None,
    *,
    encoded: EncodedImage | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode ``P`` prompts on the predictor's current image (or on ``encoded``, e.g. a
    zoom view of it, see :mod:`napari_seem.predict.views`).

    Args:
        pos, neg: ``(P, H_pad, W_pad)`` bool prompt masks in the padded model frame.
        prev: ``(1, P, h, w)`` stride-4 memory logits, or None.
        encoded: the encoding to decode on (default: the current image's).

    Returns:
        The spatial queries' ``(P*Q, h, w)`` mask logits, ``(P*Q, P)`` selection logits
        (-inf off the prompt's own queries) and ``(P*Q, D)`` caption embeddings.
    """
    enc = predictor.encoded if encoded is None else encoded
    windows = _windows(predictor, enc, pos, neg, prev)
    if all(w is None for w in windows):
        memory = predictor.image_memory() if encoded is None else None
        with predictor.inference():
            return predictor.decode_prompts(enc.features, pos, neg, prev, memory)
    q = predictor.model.decoder.config.queries_per_prompt
    h4, w4 = enc.features.mask_features.shape[-2:]
    dtype = enc.features.mask_features.dtype
    device = predictor.device
    smasks = torch.full((len(pos) * q, h4, w4), OUTSIDE_LOGIT, device=device, dtype=dtype)
    slogits = torch.full((len(pos) * q, len(pos)), float("-inf"), device=device)
    stexts: list[torch.Tensor] = []
    for p, window in enumerate(windows):
        rows = slice(p * q, (p + 1) * q)
        one = slice(p, p + 1)
        if window is None:
            feats, cells, px = enc.features, (slice(None), slice(None)), (slice(None),) * 2
        else:
            feats = crop_features(enc.features, window)
            cells = window.cells(4)
            px = window.cells(1)
        kept = None if prev is None else prev[:, one][..., cells[0], cells[1]]
        with predictor.inference():
            m, lg, tx = predictor.decode_prompts(
                feats, pos[one][:, px[0], px[1]], neg[one][:, px[0], px[1]], kept, None
            )
        smasks[rows][:, cells[0], cells[1]] = m.to(dtype)
        slogits[rows, p] = lg[:, 0].float()
        stexts.append(tx)
    return smasks, slogits, torch.cat(stexts)


def choose_candidates(
    predictor: SeemPredictor,
    objects: list[ObjectPrompt],
    spatial_logits: torch.Tensor,
    captions: torch.Tensor,
) -> torch.Tensor:
    """Index of the answering spatial query per object.

    Without text this is the official rule: the query whose mask embedding best matches
    the pooled prompt vector (``argmax`` of ``spatial_logits``). With text (composition,
    e.g. "nucleus" + a click) each of the object's candidate queries is scored by
    ``log_softmax(spatial logits) + log_softmax(text similarity)`` over its candidates,
    so the answer must fit both the visual prompt and the phrase.

    Args:
        predictor: embeds the phrases.
        objects: the ``P`` object prompts, in order.
        spatial_logits: ``(P*Q, P)``; -inf where a query belongs to another prompt.
        captions: ``(P*Q, D)`` caption embeddings of the spatial queries.
    """
    chosen = spatial_logits.float().argmax(0)
    q = spatial_logits.shape[0] // max(len(objects), 1)
    for p, obj in enumerate(objects):
        if obj.text is None:
            continue
        rows = slice(p * q, (p + 1) * q)
        visual = spatial_logits[rows, p].float().log_softmax(0)
        text = vl_similarity(
            captions[rows].float(),
            predictor.sentence_embedding(obj.text.text)[None],
            predictor.model.text_encoder.logit_scale.float(),
        )[:, 0].log_softmax(0)
        chosen[p] = p * q + int((visual + text).argmax())
    return chosen
