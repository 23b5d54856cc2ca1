"""Nodata pixels are never part of an object: clear them from interactive answers.

Batch runs clear nodata inside every tile (:mod:`napari_seem.batch.tasks`); answers of the
interactive paths (clicks, boxes, text grounding on one image) come back as
:class:`~napari_seem.core.results.ObjectMask` crops, which :func:`drop_nodata` intersects
with the source's valid mask (:meth:`ImageSource.read_valid_mask`: every mapped band holds
data, not the nodata value, NaN or inf) over the crop's window only.

Frame: level-0 ``(row, col)`` pixels of the object's plane.

No torch here (tier 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from napari_seem.core.results import ObjectMask

__all__ = ["drop_nodata", "has_nodata"]


def has_nodata(source: Any) -> bool:
    """Whether ``source`` can hold nodata pixels (a nodata value, or a float dtype: NaN)."""
    return source.config.nodata is not None or source.dtype.kind == "f"


def drop_nodata(
    objects: Sequence[ObjectMask], source: Any, plane: Sequence[int] = ()
) -> list[ObjectMask]:
    """``objects`` with their nodata pixels cleared (unchanged when the source has none).

    Args:
        objects: answers on ``source`` (level-0 crops).
        source: the :class:`~napari_seem.core.io.ImageSource` they were segmented on.
        plane: the plane of a stack (``()`` for 2-D).
    """
    if not has_nodata(source):
        return list(objects)
    height, width = source.spatial_shape
    out = []
    for obj in objects:
        h, w = obj.mask.shape
        if h == 0 or w == 0 or not obj.mask.any():
            out.append(obj)
            continue
        r0, c0 = obj.offset
        r1, c1 = min(r0 + h, height), min(c0 + w, width)
        valid = np.zeros((h, w), bool)
        valid[: r1 - r0, : c1 - c0] = source.read_valid_mask(r0, c0, r1, c1, plane=plane, level=0)
        kept = obj.mask & valid
        out.append(obj if kept.sum() == obj.mask.sum() else replace(obj, mask=kept))
    return out
