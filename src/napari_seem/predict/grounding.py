"""Text grounding in windows, for models trained on crops (``prompt_window``; seem-lite).

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
from napari_seem.model.postprocess import vl_similarity
from napari_seem.model.prompt_window import crop_features, owner_cells, tile_windows

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["ground_in_windows"]


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
    sentences = torch.stack([predictor._sentence(t) for t in texts])
    scale = predictor.model.text_encoder.logit_scale.float()
    with predictor._inference():
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
    masks = predictor._to_image(canvas.to(predictor.device))  # (T, H, W) bool
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
