"""The official interactive protocol (SEEM_SPEC "Memory and rounds") driving any segmenter.

SEEM is evaluated through :func:`napari_seem.evaluation.heldout.click_protocol`; the classical
baselines go through :func:`simulate_clicks`, which places the same clicks
(:func:`~napari_seem.train.prompts_sim.first_click` then
:func:`~napari_seem.train.prompts_sim.next_click` on the current error) and stops by the
same rules, so both methods answer the same simulated user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.evaluation.metrics import mask_iou
from napari_seem.train.prompts_sim import Click, first_click, next_click

__all__ = ["ClickSegmenter", "pick_ids", "simulate_clicks"]

BoolMask = npt.NDArray[np.bool_]
#: ``segment(clicks, previous)``: every click so far (in order) and the previous answer
#: (None on the first click) -> the ``(H, W)`` bool answer.
ClickSegmenter = Callable[[Sequence[Click], BoolMask | None], BoolMask]


def pick_ids(labels: npt.NDArray[np.integer[Any]], most: int | None) -> list[int]:
    """The instance ids of ``labels`` to evaluate: all, or ``most`` spread evenly over the
    sorted ids (deterministic; not biased to the first rows of the image)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if most is not None and len(ids) > most:
        ids = ids[np.linspace(0, len(ids) - 1, most).round().astype(int)]
    return [int(i) for i in ids]


def simulate_clicks(
    segment: ClickSegmenter,
    labels: npt.NDArray[np.integer[Any]],
    ids: Sequence[int],
    *,
    max_clicks: int = 20,
    stop_iou: float = 0.90,
) -> list[list[float]]:
    """IoU after each click, one list per object of ``ids`` (lists stop at ``stop_iou``).

    Args:
        labels: ``(H, W)`` instance labels, the truth.
    """
    curves: list[list[float]] = []
    for i in ids:
        target = labels == i
        if not target.any():
            continue
        clicks = [first_click(target)]
        previous: BoolMask | None = None
        curve: list[float] = []
        for _ in range(max_clicks):
            pred = segment(clicks, previous)
            iou = mask_iou(pred, target)
            curve.append(iou)
            if iou >= stop_iou:
                break
            nxt = next_click(pred, target)
            if nxt is None:
                break
            clicks.append(nxt)
            previous = pred
        curves.append(curve)
    return curves
