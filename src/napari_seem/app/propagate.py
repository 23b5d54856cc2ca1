"""Follow one object through a stack, plane by plane (the referring rule).

Frames: level-0 ``(row, col)`` pixels of each plane; a plane is one index per stack axis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from napari_seem.app.backend import ModelBackend
from napari_seem.core.progress import Reporter, check_cancelled, report
from napari_seem.core.prompts import MaskPrompt, ObjectPrompt
from napari_seem.core.results import ObjectMask

__all__ = ["propagate"]


def propagate(
    model: ModelBackend,
    session_of: Callable[[tuple[int, ...]], str],
    plane_shape: tuple[int, ...],
    start_plane: tuple[int, ...],
    start: ObjectMask,
    *,
    axis: int = 0,
    direction: int = 1,
    reporter: Reporter | None,
    cancel: threading.Event,
    on_plane: Callable[[tuple[int, ...], ObjectMask], None],
    min_area: int = 8,
) -> int:
    """Follow ``start`` (found on ``start_plane``) along stack ``axis``.

    The mask on the previous plane is the example for the next (``refer`` with the previous
    plane's session as the example). It stops at the stack's end, on cancel, or when the
    object is gone (an empty mask, or fewer than ``min_area`` pixels).

    Args:
        session_of: the session id of the image on a plane (opened on first use).
        plane_shape: sizes of the stack axes.
        direction: ``+1`` (forward) or ``-1`` (backward).
        on_plane: called with ``(plane, mask)`` for every plane the object is found on
            (from the calling thread).

    Returns:
        The number of planes the object was found on (the start plane excluded).

    Raises:
        Cancelled: ``cancel`` was set (planes found so far were handed to ``on_plane``).
    """
    plane = [int(p) for p in start_plane]
    stop = plane_shape[axis] if direction > 0 else -1
    total = max(abs(stop - plane[axis]) - 1, 1)
    previous, previous_plane = start, tuple(plane)
    found = 0
    report(reporter, 0, total)
    for step, index in enumerate(range(plane[axis] + direction, stop, direction), start=1):
        check_cancelled(cancel, "propagate")
        plane[axis] = index
        here = tuple(plane)
        example = ObjectPrompt((MaskPrompt(previous.mask, previous.offset),))
        answers = model.refer(session_of(here), session_of(previous_plane), example)
        obj = answers[0] if answers and not answers[0].is_empty else None
        report(reporter, step, total)
        if obj is None or obj.area < min_area:
            break
        on_plane(here, obj)
        found += 1
        previous, previous_plane = obj, here
    return found
