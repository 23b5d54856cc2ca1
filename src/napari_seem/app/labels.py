"""Committed labels with undo, shared by the napari and Jupyter widgets (no Qt, no widgets).

Frames: a labels array is ``(..., H, W)`` integer, level-0 pixels of the image, leading
axes the stack plane (``plane``: one index per leading axis, ``()`` for 2-D). Arrays may be
numpy or writable zarr arrays: painting reads and writes only an object's crop window.

- :func:`paint_object` paints one object and returns what it overwrote (a :data:`Window`);
- :class:`EditLog` keeps undo steps (:class:`Edit`: the windows a commit overwrote, the ids
  and objects it added) and restores them newest first;
- :class:`LabelStore` is one label plane with its committed objects (object ``k`` is id
  ``k + 1``), as the Jupyter widget keeps it; the napari widget keeps its labels in layers
  and adapts this log to them (:mod:`napari_seem._napari.commits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.results import ObjectMask, SegmentationResult

__all__ = [
    "ZARR_LABELS_ABOVE",
    "Edit",
    "EditLog",
    "LabelStore",
    "Window",
    "paint_object",
    "restore",
]

#: Images with more pixels than this get a chunked zarr label array (sparse in memory).
ZARR_LABELS_ABOVE = 4096 * 4096

#: ``(index, previous)``: a window of a labels array (plane indices, then row and column
#: slices) and its pixels before a paint.
Window = tuple[tuple[int | slice, ...], npt.NDArray[Any]]


def paint_object(
    target: Any,
    obj: ObjectMask,
    value: int,
    *,
    plane: Sequence[int] = (),
    overwrite: bool = True,
) -> Window | None:
    """Paint ``obj`` with ``value`` into a labels array, in place, touching only its crop.

    Works on numpy arrays and on writable zarr arrays (a read-modify-write of the crop's
    window), so a huge on-disk labels array is never loaded.

    Args:
        target: ``(..., H, W)`` labels array (numpy or zarr), level-0 pixels.
        obj: the object (a crop and its level-0 offset).
        value: the label id to write.
        plane: leading indices of the plane in a stack.
        overwrite: paint over other labels; False keeps existing non-zero pixels.

    Returns:
        ``(index, previous)``: the window written and its content before, for undo; or
        ``None`` when the object is empty.
    """
    if obj.is_empty:
        return None
    (row, col), (h, w) = obj.offset, obj.mask.shape
    height, width = int(target.shape[-2]), int(target.shape[-1])
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + h, height), min(col + w, width)
    if r1 <= r0 or c1 <= c0:
        return None
    index: tuple[int | slice, ...] = (*(int(p) for p in plane), slice(r0, r1), slice(c0, c1))
    previous = np.array(target[index])
    mask = obj.mask[r0 - row : r1 - row, c0 - col : c1 - col]
    if not overwrite:
        mask = mask & (previous == 0)
    window = previous.copy()
    window[mask] = value
    target[index] = window
    return index, previous


def restore(target: Any, windows: Sequence[Window]) -> None:
    """Put back what :func:`paint_object` overwrote, newest window first."""
    for index, previous in reversed(windows):
        target[index] = previous


def window_box(index: tuple[int | slice, ...]) -> tuple[int, int, int, int]:
    """The level-0 ``(row0, col0, row1, col1)`` of a window's index (max exclusive)."""
    rows, cols = index[-2], index[-1]
    assert isinstance(rows, slice) and isinstance(cols, slice)
    return int(rows.start), int(cols.start), int(rows.stop), int(cols.stop)


@dataclass
class Edit:
    """One undo step.

    Attributes:
        target: what holds the painted array (a napari layer, a :class:`LabelStore`).
        windows: what the step overwrote, oldest first.
        ids: the new label ids it added (none when it extended an existing id).
        objects: the objects it added.
    """

    target: Any
    windows: list[Window] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    objects: list[ObjectMask] = field(default_factory=list)


class EditLog:
    """The undo steps made so far, newest last."""

    def __init__(self) -> None:
        self._edits: list[Edit] = []

    def __len__(self) -> int:
        return len(self._edits)

    def push(self, edit: Edit) -> None:
        """Record a step (steps that wrote nothing are not recorded)."""
        if edit.windows:
            self._edits.append(edit)

    def add_window(self, target: Any, window: Window) -> None:
        """Add a window to the last step when it painted ``target``, else as a new step."""
        if self._edits and self._edits[-1].target is target:
            self._edits[-1].windows.append(window)
        else:
            self._edits.append(Edit(target, [window]))

    def pop(self) -> Edit | None:
        """Remove and return the newest step (``None`` when there is none)."""
        return self._edits.pop() if self._edits else None


class LabelStore:
    """Committed objects painted into one label plane, with undo.

    Object ``k`` (0-based, in commit order) gets label id ``k + 1``; later objects paint over
    earlier ones. ``labels`` is a numpy ``(H, W)`` uint32 array, or a chunked zarr array
    for images above :data:`ZARR_LABELS_ABOVE` pixels (memory only for touched chunks), or
    the array the caller gave (numpy or a writable zarr array of shape ``(H, W)``).
    """

    def __init__(self, image_shape: tuple[int, int], labels: Any = None) -> None:
        self.image_shape = image_shape
        if labels is None:
            labels = _new_labels(image_shape)
        if tuple(labels.shape) != tuple(image_shape) or np.dtype(labels.dtype).kind not in "iu":
            raise ValueError(
                f"labels must be an integer array of shape {tuple(image_shape)} (the image "
                f"plane); got shape {tuple(labels.shape)} and dtype {labels.dtype}"
            )
        self.labels = labels
        self.objects: list[ObjectMask] = []
        self._log = EditLog()

    @property
    def can_undo(self) -> bool:
        return bool(len(self._log))

    def result(self) -> SegmentationResult:
        return SegmentationResult(self.image_shape, tuple(self.objects))

    def commit(self, objects: Sequence[ObjectMask]) -> list[tuple[int, int, int, int]]:
        """Paint ``objects`` (one undo step); returns the level-0 boxes that changed."""
        edit = Edit(self)
        for obj in objects:
            written = paint_object(self.labels, obj, len(self.objects) + 1)
            if written is None:
                continue
            edit.windows.append(written)
            edit.objects.append(obj)
            self.objects.append(obj)
        self._log.push(edit)
        return [window_box(index) for index, _ in edit.windows]

    def undo(self) -> list[tuple[int, int, int, int]]:
        """Revert the last commit; returns the boxes that changed (empty when none)."""
        edit = self._log.pop()
        if edit is None:
            return []
        restore(self.labels, edit.windows)
        del self.objects[len(self.objects) - len(edit.objects) :]
        return [window_box(index) for index, _ in edit.windows]

    def class_table(self) -> list[dict[str, Any]]:
        return self.result().class_table()

    def subsample(self, box: tuple[int, int, int, int], step: int) -> npt.NDArray[np.uint32]:
        """Labels of level-0 ``box`` (``row0``, ``col0`` multiples of ``step``) every ``step``."""
        r0, c0, r1, c1 = box
        return np.ascontiguousarray(
            np.asarray(self.labels[r0:r1:step, c0:c1:step]), dtype=np.uint32
        )


def _new_labels(image_shape: tuple[int, int]) -> Any:
    if image_shape[0] * image_shape[1] <= ZARR_LABELS_ABOVE:
        return np.zeros(image_shape, np.uint32)
    import zarr

    return zarr.create_array(
        store=zarr.storage.MemoryStore(),
        shape=image_shape,
        chunks=(1024, 1024),
        dtype="uint32",
        fill_value=0,
    )
