"""Segment everything in a region of a plane: the ``"segment"`` job, or a grid of clicks.

Frames: level-0 ``(row, col)`` pixels of one image plane; a box is ``(row0, col0, row1,
col1)``, max exclusive. Works over any :class:`~napari_seem.app.backend.ModelBackend`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.app.backend import Box, JobKindMissing, ModelBackend
from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE
from napari_seem.core.progress import Reporter, check_cancelled, report
from napari_seem.core.prompts import ObjectPrompt, Points, TextPrompt
from napari_seem.core.results import ObjectMask

__all__ = ["everything_in_box", "grid_objects", "new_part"]


def everything_in_box(
    model: ModelBackend,
    session_id: str,
    image_shape: tuple[int, int],
    vocabulary: Sequence[str],
    *,
    box: Box | None,
    reporter: Reporter | None,
    cancel: threading.Event,
    object_mask_threshold: float = 0.4,
    step: int = 64,
    min_area: int = 16,
    mode: str = DEFAULT_EVERYTHING_MODE,
) -> list[ObjectMask]:
    """Segment every object in ``box`` (default the whole ``(H, W)`` plane).

    Runs the ``"segment"`` job: ``mode`` decoding (``"auto"``: ``"points"`` for models that
    decode prompts in windows, such as seem-lite, else ``"panoptic"``) with ``vocabulary``
    on every tile, objects crossing tile seams merged into one, each named by its class
    (``object_mask_threshold``: panoptic: least class probability of a kept object;
    ``min_area``: smaller objects are dropped). Progress counts tiles.

    Without a vocabulary (SEEM's panoptic head needs class names), or on an older server
    without the ``"segment"`` job, it prompts a grid of clicks instead (:func:`grid_objects`).

    Raises:
        Cancelled: ``cancel`` was set; objects found so far are lost.
    """
    h, w = image_shape
    region = box or (0, 0, h, w)
    if vocabulary:
        params: dict[str, Any] = {
            "vocabulary": list(vocabulary),
            "object_mask_threshold": float(object_mask_threshold),
            "min_area": int(min_area),
        }
        # "auto" is the job's default: left out, a server older than the modes runs its
        # own default (panoptic) instead of refusing the parameter
        if mode != DEFAULT_EVERYTHING_MODE:
            params["mode"] = mode
        try:
            crop = model.segment(session_id, params, box=region, reporter=reporter, cancel=cancel)
        except JobKindMissing:
            pass
        else:
            check_cancelled(cancel, "segment everything")
            return crop.to_objects(source="panoptic")
    text = vocabulary[0] if len(vocabulary) == 1 else None
    return grid_objects(
        model,
        session_id,
        region,
        text=text,
        step=step,
        min_area=min_area,
        reporter=reporter,
        cancel=cancel,
    )


def grid_objects(
    model: ModelBackend,
    session_id: str,
    box: Box,
    *,
    text: str | None,
    step: int,
    min_area: int,
    reporter: Reporter | None,
    cancel: threading.Event,
) -> list[ObjectMask]:
    """Prompt a grid of clicks every ``step`` level-0 pixels of ``box``, one object each.

    A click landing on an object already found is skipped; a click's object is kept when it
    covers at least ``min_area`` pixels and is mostly new (:func:`new_part`). ``text``
    composes with every click. Progress counts clicks.
    """
    r0, c0, r1, c1 = box
    rows = np.arange(r0 + step // 2, r1, step)
    cols = np.arange(c0 + step // 2, c1, step)
    grid = [(int(r), int(c)) for r in rows for c in cols]
    covered = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    found: list[ObjectMask] = []
    query = None if text is None else TextPrompt(text)
    report(reporter, 0, len(grid))
    for done, (row, col) in enumerate(grid, start=1):
        check_cancelled(cancel, "segment everything")
        if not covered[row - r0, col - c0]:
            obj = model.predict(session_id, ObjectPrompt((Points.click(row, col),), query))
            kept = new_part(obj, covered, (r0, c0), min_area)
            if kept is not None:
                found.append(kept)
        report(reporter, done, len(grid))
    return found


def new_part(
    obj: ObjectMask, covered: npt.NDArray[np.bool_], origin: tuple[int, int], min_area: int
) -> ObjectMask | None:
    """``obj`` minus what ``covered`` (a region's ``(h, w)`` bool at level-0 ``origin``)
    holds, if it is mostly new.

    Marks the kept part in ``covered``. The object is clipped to the region.
    """
    if obj.is_empty:
        return None
    (row, col), (h, w) = obj.offset, obj.mask.shape
    r0, c0 = origin
    rh, rw = covered.shape
    top, left = max(row - r0, 0), max(col - c0, 0)
    bottom, right = min(row - r0 + h, rh), min(col - c0 + w, rw)
    if bottom <= top or right <= left:
        return None
    crop = obj.mask[top - (row - r0) : bottom - (row - r0), left - (col - c0) : right - (col - c0)]
    window = covered[top:bottom, left:right]
    new = crop & ~window
    area = int(crop.sum())
    if int(new.sum()) < max(min_area, area // 2):
        return None
    window |= new
    return ObjectMask(
        new,
        (top + r0, left + c0),
        score=obj.score,
        class_name=obj.class_name,
        class_score=obj.class_score,
        source="points",  # a grid of clicks, like the "points" mode of segment everything
    )
