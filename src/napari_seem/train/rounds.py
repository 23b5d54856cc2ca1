"""Simulated prompts of one training crop: the first round's prompts and the earlier
rounds with memory (the official corrective click per object, as the click protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.train.prompts_sim import (
    PromptKind,
    first_click,
    next_click,
    simulate_prompt,
    stamp_click,
)

__all__ = ["crop_prompts", "earlier_round", "neighbour_click", "prompted_objects"]


def crop_prompts(
    seg: np.ndarray,
    chosen: list[int],
    rng: np.random.Generator,
    *,
    kinds: Sequence[PromptKind],
    neighbour_negative: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative ``(P, S, S)`` bool prompt masks for the ``chosen`` segment ids
    of ``seg`` (``(S, S)`` int32 ids, padded crop frame): one simulated prompt of a random
    kind each, sometimes a negative click outside, and with probability
    ``neighbour_negative`` a negative click on a touching object."""
    pos = np.zeros((len(chosen), *seg.shape), bool)
    neg = np.zeros_like(pos)
    for p, i in enumerate(chosen):
        target = seg == i
        kind = kinds[int(rng.integers(len(kinds)))]
        pos[p] = simulate_prompt(target, kind, rng)
        outside = np.nonzero(~target)
        if rng.random() < 0.15 and len(outside[0]):  # a negative click outside
            j = int(rng.integers(len(outside[0])))
            stamp_click(neg[p], int(outside[0][j]), int(outside[1][j]))
            neg[p] &= ~target
        if neighbour_negative and rng.random() < neighbour_negative:
            neighbour_click(seg, target, neg[p], rng)
    return pos, neg


def prompted_objects(
    seg: np.ndarray,
    ids: list[int],
    rng: np.random.Generator,
    *,
    max_prompts: int,
    kinds: Sequence[PromptKind],
    neighbour_negative: float = 0.0,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The interactive task of one crop: 1..``max_prompts`` of the segment ``ids`` of ``seg``
    drawn at random, and their first-round prompts (:func:`crop_prompts`).

    Returns:
        ``(chosen, pos, neg)``: the chosen ids and their ``(P, S, S)`` bool prompt masks.
    """
    n = int(rng.integers(1, min(max_prompts, len(ids)) + 1))
    chosen = [ids[int(j)] for j in rng.choice(len(ids), n, replace=False)]
    pos, neg = crop_prompts(seg, chosen, rng, kinds=kinds, neighbour_negative=neighbour_negative)
    return chosen, pos, neg


def neighbour_click(
    seg: np.ndarray, target: np.ndarray, neg: np.ndarray, rng: np.random.Generator
) -> None:
    """A negative click (in place in ``neg``) at the deepest point of a random object
    within 6 px of ``target``: the correction a user makes when two touching objects
    come back as one."""
    from scipy import ndimage

    ring = ndimage.binary_dilation(target, iterations=6) & ~target
    near = np.unique(seg[ring])
    near = near[near > 0]
    if not len(near):
        return
    click = first_click(seg == near[int(rng.integers(len(near)))])  # its deepest point
    stamp_click(neg, click.row, click.col)
    neg &= ~target


@torch.no_grad()
def earlier_round(
    model: SeemModel,
    features: ImageFeatures,
    seg: np.ndarray,
    chosen: list[int],
    pos: np.ndarray,
    neg: np.ndarray,
    prev: torch.Tensor | None,
    *,
    device: torch.device,
) -> torch.Tensor:
    """Decode the prompts so far, add the protocol's corrective click per object (in
    place in ``pos`` / ``neg``) and return the answer's mask logits as memory."""
    tokens = model.encode_visual_prompts(
        features,
        torch.from_numpy(pos[None]).to(device),
        torch.from_numpy(neg[None]).to(device),
    )
    out = model.decode(
        features, visual_prompts=tokens, prev_mask=prev, tasks=("spatial",), return_aux=False
    )
    assert out.prev_mask is not None
    logits = out.prev_mask  # (1, P, h, w)
    full = F.interpolate(logits.float(), size=seg.shape, mode="bilinear", align_corners=False)[0]
    pred = (full > 0).cpu().numpy()
    for p, i in enumerate(chosen):
        click = next_click(pred[p], seg == i)
        if click is not None:
            stamp_click(pos[p] if click.positive else neg[p], click.row, click.col)
    return logits.detach()
