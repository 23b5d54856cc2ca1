"""Which planes of a stack a run segments, and in which steps.

A plane is a tuple of level-0 plane indices over the image's plane axes (``t``/``z``); a 2-D
image has the one plane ``()``. A run goes in *steps*: one step with every selected plane, or
with ``propagate`` one step per position on the propagation axis (plane ``z + 1`` needs the
final labels of plane ``z``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_seem.batch.store import BatchConfigError

__all__ = ["Plane", "parse_planes", "plan_steps", "previous_plane"]

Plane = tuple[int, ...]


def parse_planes(planes: Any, plane_shape: tuple[int, ...], plane_axes: str) -> list[Plane]:
    """The sorted, distinct planes a ``planes`` value selects.

    Args:
        planes: ``"all"`` (or None), ``"0,3,5"``, or a sequence of ints / tuples of ints.
        plane_shape: sizes of the plane axes (``()`` for a 2-D image).
        plane_axes: their names, e.g. ``"tz"`` (for messages).

    Raises:
        BatchConfigError: an index outside the axes, or an empty selection.
    """
    if not plane_shape:
        if planes not in (None, "all", (), []):
            raise BatchConfigError(f"planes={planes!r}: this is a 2-D image without planes")
        return [()]
    if planes is None or planes == "all":
        return [tuple(int(i) for i in index) for index in np.ndindex(*plane_shape)]
    if isinstance(planes, str):
        try:
            planes = [int(p) for p in planes.split(",") if p.strip()]
        except ValueError:
            raise BatchConfigError(
                f"planes={planes!r}: give 'all' or plane indices such as '0,3,5'"
            ) from None
    out = []
    for p in planes:
        index = (int(p),) if isinstance(p, int | np.integer) else tuple(int(i) for i in p)
        if len(index) != len(plane_shape) or any(
            not 0 <= i < n for i, n in zip(index, plane_shape, strict=False)
        ):
            raise BatchConfigError(
                f"plane {index} does not index the plane axes {plane_axes!r} of sizes "
                f"{plane_shape}; use 0..{plane_shape[0] - 1}"
                + (" per axis (tuples for several plane axes)" if len(plane_shape) > 1 else "")
            )
        out.append(index)
    if not out:
        raise BatchConfigError("planes is empty: give 'all' or at least one plane index")
    return sorted(set(out))


def plan_steps(planes: list[Plane], propagate: str | None, plane_axes: str) -> list[list[Plane]]:
    """The run's steps: all ``planes`` at once, or one step per position along ``propagate``."""
    if propagate is None:
        return [planes]
    if propagate not in plane_axes or len(propagate) != 1:
        raise BatchConfigError(
            f"propagate={propagate!r}: the image's plane axes are {plane_axes!r}; propagate "
            "along one of them (z or t)"
        )
    axis = plane_axes.index(propagate)
    positions = sorted({p[axis] for p in planes})
    return [[p for p in planes if p[axis] == pos] for pos in positions]


def previous_plane(plane: Plane, done_steps: list[list[Plane]], axis: int) -> Plane | None:
    """The plane of the last finished step on the same chain (other axes equal), if any."""
    for step in reversed(done_steps):
        for p in step:
            if all(p[i] == plane[i] for i in range(len(plane)) if i != axis):
                return p
    return None
