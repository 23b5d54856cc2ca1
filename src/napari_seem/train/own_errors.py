"""Corrective clicks from the model's own errors (the official multi-round protocol in
training, as SEEM and RITM train it).

After each round the answer ``pred`` of every prompt is compared with its exact instance
target; the next click goes to the centre (deepest point) of the largest error region:
positive in a false negative, negative in a false positive
(:func:`~napari_seem.train.prompts_sim.next_click`). When the answer swallowed most of a
touching neighbour, the correction is the user's obvious one instead: a negative click at
the deepest point of the swallowed neighbour (:func:`merged_neighbour_click`).

All masks are ``(S, S)`` bool in one pixel frame (the padded training crop).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from napari_seem.train.prompts_sim import Click, next_click, stamp_click

__all__ = ["add_click", "merged_neighbour_click", "own_error_clicks"]

BoolMask = npt.NDArray[np.bool_]


def merged_neighbour_click(
    pred: BoolMask, seg: np.ndarray, target_id: int, *, min_fraction: float = 0.3
) -> Click | None:
    """A negative click on the touching neighbour the answer ``pred`` covers most, if it
    covers at least ``min_fraction`` of that neighbour; else None.

    ``seg`` is the ``(S, S)`` int instance map; neighbours are objects within 3 px of the
    target ``seg == target_id``. The click is the deepest point of ``pred & neighbour``.
    """
    target = seg == target_id
    ring = ndimage.binary_dilation(target, iterations=3) & ~target
    near = np.unique(seg[ring])
    best: tuple[float, int] | None = None
    for n in near[near > 0]:
        other = seg == n
        frac = float((pred & other).sum()) / max(int(other.sum()), 1)
        if frac >= min_fraction and (best is None or frac > best[0]):
            best = (frac, int(n))
    if best is None:
        return None
    region = pred & (seg == best[1])
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, col = divmod(int(np.argmax(dist)), region.shape[1])
    return Click(row, col, False)


def add_click(pos: BoolMask, neg: BoolMask, target: BoolMask, click: Click) -> None:
    """Stamp ``click`` (3 x 3) into ``pos`` or ``neg`` in place; a positive click keeps only
    its pixels inside ``target``, a negative one only those outside (the centre always)."""
    blob = np.zeros_like(target)
    stamp_click(blob, click.row, click.col)
    blob &= target if click.positive else ~target
    blob[click.row, click.col] = True
    if click.positive:
        pos |= blob
    else:
        neg |= blob


def own_error_clicks(
    pred: BoolMask,
    seg: np.ndarray,
    chosen: Sequence[int],
    pos: BoolMask,
    neg: BoolMask,
    *,
    merged_fraction: float | None = 0.3,
) -> list[Click | None]:
    """Add the next corrective click of every prompt from its answer, in place.

    Args:
        pred: ``(P, S, S)`` bool answers of the last round.
        seg: ``(S, S)`` int instance ids (exact targets).
        chosen: the target id of each of the ``P`` prompts.
        pos, neg: ``(P, S, S)`` bool prompt masks so far (changed in place).
        merged_fraction: answer share of a touching neighbour from which the correction is
            a negative click on it (None: always the largest error region).

    Returns:
        The click added per prompt (None where the answer was exact).
    """
    clicks: list[Click | None] = []
    for p, i in enumerate(chosen):
        target = seg == i
        click = None
        if merged_fraction is not None:
            click = merged_neighbour_click(pred[p], seg, int(i), min_fraction=merged_fraction)
        if click is None:
            click = next_click(pred[p], target)
        if click is not None:
            add_click(pos[p], neg[p], target, click)
        clicks.append(click)
    return clicks
