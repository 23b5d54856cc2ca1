"""Text grounding: over the whole image (the official path) or in windows, for models
trained on crops (``prompt_window``; seem-lite). Built only on the predictor's public
operations.

Whole image (:func:`ground_whole_image`): the official model returns one mask per phrase
(the best grounding query); here the best one comes first and further queries follow when
their share of the phrase's softmax over queries is at least ``score_threshold`` and their
mask does not duplicate a better one
(:func:`napari_seem.model.postprocess.rank_grounding_queries`).

Windows (:func:`ground_in_windows`):

The image's encoded features are cut into windows of the trained crop size at a stride of
half a window (:func:`napari_seem.model.prompt_window.tile_windows`). Each window decodes
the phrases once; per phrase, the grounding query whose caption best matches the phrase
answers for that window (seem-lite is trained to answer an empty mask when the phrase
names nothing in the crop). Every stride-4 cell takes its logit from the window whose
centre is nearest (the most context), and the phrase's instances are the connected parts
of the resulting mask, largest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from napari_seem.core.results import ObjectMask
from napari_seem.model.postprocess import rank_grounding_queries, vl_similarity
from napari_seem.model.prompt_window import crop_features, owner_cells, tile_windows

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["ground_in_windows", "ground_whole_image"]


def ground_in_windows(
    predictor: SeemPredictor,
    texts: list[str],
    *,
    max_instances: int | None = None,
    min_area: int = 1,
) -> list[ObjectMask]:
    """Instances of each phrase on the predictor's current image (level-0 masks)."""
    enc = predictor.encoded
    feats = enc.features
    size = int(getattr(predictor.model, "prompt_window", None) or max(feats.padded_hw))
    windows = tile_windows(feats.padded_hw, size)
    cells_hw = tuple(feats.mask_features.shape[-2:])
    owner = torch.from_numpy(owner_cells(windows, (cells_hw[0], cells_hw[1])))
    canvas = torch.zeros((len(texts), *cells_hw), dtype=torch.float32)
    sentences = torch.stack([predictor.sentence_embedding(t) for t in texts])
    scale = predictor.model.text_encoder.logit_scale.float()
    with predictor.inference():
        tokens, padding = predictor.model.text_encoder.grounding_tokens(texts, predictor.tokenizer)
        tokens = tokens.to(feats.mask_features.dtype)
        for k, window in enumerate(windows):
            rows, cols = window.cells(4)
            mine = owner[rows, cols] == k
            if not bool(mine.any()):
                continue
            out = predictor.model.decode(
                crop_features(feats, window),
                grounding_tokens=tokens,
                grounding_padding=padding,
                tasks=("grounding",),
            )
            assert out.pred_gmasks is not None and out.pred_gtexts is not None
            sim = vl_similarity(out.pred_gtexts[0].float(), sentences, scale)  # (Q, T)
            best = sim.argmax(0)
            answer = out.pred_gmasks[0, best].float().cpu()  # (T, h, w)
            view = canvas[:, rows, cols]
            view[:, mine] = answer[:, mine]
            canvas[:, rows, cols] = view
    masks = predictor.logits_to_masks(canvas.to(predictor.device))  # (T, H, W) bool
    probs = torch.sigmoid(canvas)
    objects: list[ObjectMask] = []
    for t, text in enumerate(texts):
        parts, n = ndimage.label(masks[t])
        if n == 0:
            continue
        areas = np.bincount(parts.ravel(), minlength=n + 1)[1:]
        order = np.argsort(-areas)
        if max_instances is not None:
            order = order[:max_instances]
        score = float(probs[t][canvas[t] > 0].mean()) if bool((canvas[t] > 0).any()) else 0.0
        for i in order:
            if areas[i] < min_area:
                continue
            objects.append(
                ObjectMask.from_full(
                    parts == i + 1,
                    score=score,
                    class_name=text,
                    class_score=score,
                    source="grounding",
                )
            )
    return objects


def ground_whole_image(
    predictor: SeemPredictor,
    texts: list[str],
    *,
    score_threshold: float = 0.05,
    max_instances: int | None = None,
) -> list[ObjectMask]:
    """Ranked instances of each phrase on the predictor's current image, decoded once over
    the whole image (level-0 masks, best first per phrase)."""
    enc = predictor.encoded
    model = predictor.model
    with predictor.inference():
        tokens, padding = model.text_encoder.grounding_tokens(texts, predictor.tokenizer)
        out = model.decode(
            enc.features,
            grounding_tokens=tokens.to(enc.features.mask_features.dtype),
            grounding_padding=padding,
            tasks=("grounding",),
        )
    assert out.pred_gmasks is not None and out.pred_gtexts is not None
    sentences = torch.stack([predictor.sentence_embedding(t) for t in texts])
    sim = vl_similarity(
        out.pred_gtexts[0].float(), sentences, model.text_encoder.logit_scale.float()
    )  # (Q, T)
    ranked = rank_grounding_queries(
        sim,
        out.pred_gmasks[0].float(),
        score_threshold=score_threshold,
        max_matches=max_instances,
    )
    objects = []
    for text, matches in zip(texts, ranked, strict=True):
        masks = predictor.logits_to_masks(out.pred_gmasks[0, matches.queries])
        for mask, score in zip(masks, matches.scores.tolist(), strict=True):
            objects.append(
                ObjectMask.from_full(
                    mask, score=score, class_name=text, class_score=score, source="grounding"
                )
            )
    return objects
