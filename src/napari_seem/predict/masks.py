"""Small mask and vocabulary helpers of the predictor (numpy + torch, no model).

Masks here are level-0 ``(H, W)`` bool arrays in ``(row, col)`` pixels of the current image
unless said otherwise; logits are the decoder's stride-4 ``(h, w)`` float maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_seem.core.prompts import Box, ObjectPrompt, PromptError

__all__ = ["bound_by_boxes", "clean_names", "mask_score", "touching"]


def mask_score(logits: torch.Tensor) -> float:
    """Mean probability inside the mask of ``(h, w)`` logits (0 for an empty mask)."""
    prob = torch.sigmoid(logits.float())
    inside = prob > 0.5
    return float(prob[inside].mean()) if bool(inside.any()) else 0.0


def clean_names(vocabulary: Sequence[str]) -> list[str]:
    """The stripped class names of ``vocabulary`` (a list, or one comma-separated string).

    Raises:
        PromptError: an empty vocabulary, an empty name or a repeated name.
    """
    if isinstance(vocabulary, str):
        vocabulary = [v for v in vocabulary.split(",")]
    names = [v.strip() for v in vocabulary]
    if not names or any(not n for n in names):
        raise PromptError(f"the vocabulary must be non-empty class names; got {list(vocabulary)!r}")
    if len(set(names)) != len(names):
        raise PromptError(f"the vocabulary repeats a class name: {names}")
    return names


def touching(mask: np.ndarray, marks: np.ndarray, obj: ObjectPrompt) -> np.ndarray:
    """The connected parts of ``mask`` (level 0, ``(H, W)`` bool) that touch the positive
    ``marks`` (``(H, W)`` bool, level 0); the mask unchanged when none does, or when the
    object has a box (the box bounds the answer instead)."""
    from scipy import ndimage

    if any(isinstance(p, Box) for p in obj.visual) or not (mask & marks).any():
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    parts, _ = ndimage.label(mask[window])
    keep = np.unique(parts[marks[window] & mask[window]])
    out = np.zeros_like(mask)
    out[window] = np.isin(parts, keep[keep > 0])
    return out


def bound_by_boxes(mask: np.ndarray, obj: ObjectPrompt) -> np.ndarray:
    """Clip a level-0 ``(H, W)`` bool mask to the union of the object's positive boxes (if
    it has any)."""
    boxes = [p for p in obj.visual if isinstance(p, Box)]
    if not boxes:
        return mask
    allowed = np.zeros_like(mask)
    h, w = mask.shape
    for box in boxes:
        r0 = max(int(np.floor(box.row_min)), 0)
        c0 = max(int(np.floor(box.col_min)), 0)
        r1 = min(int(np.ceil(box.row_max)) + 1, h)
        c1 = min(int(np.ceil(box.col_max)) + 1, w)
        allowed[r0:r1, c0:c1] = True
    return mask & allowed
