"""Committing objects into a target labels layer, with undo (no Qt).

A commit paints each object with a new label id (one past the largest id in the layer's
``features['index']``), touching only the object's crop window of the labels array
(numpy or a zarr array on disk), and appends one row per id to the layer's ``features``:
``index``, ``class_name``, ``score``, ``source``. :meth:`CommitLog.undo` restores the
windows and drops the rows of the last commit. The painting and the undo steps are
:mod:`napari_seem.app.labels` (shared with the Jupyter widget); this module adds the
napari layer specifics (``layer.data``, the feature table, ``refresh``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from napari_seem.app.labels import Edit, EditLog, paint_object, restore
from napari_seem.core.results import ObjectMask

__all__ = ["CommitLog", "next_label_id"]


def next_label_id(labels: Any) -> int:
    """One past the largest id the labels layer knows (features, else its data if small)."""
    features = labels.features
    best = 0
    if "index" in features and len(features):
        best = int(np.nanmax(np.asarray(features["index"], dtype=np.float64)))
    data = labels.data[0] if getattr(labels, "multiscale", False) else labels.data
    if isinstance(data, np.ndarray):  # an on-disk array is never scanned
        best = max(best, int(data.max(initial=0)))
    return best + 1


class CommitLog:
    """The commits made so far, newest last, for undo (an :class:`EditLog` over layers)."""

    def __init__(self) -> None:
        self._log = EditLog()

    def __len__(self) -> int:
        return len(self._log)

    def commit(
        self,
        layer: Any,
        objects: Sequence[ObjectMask],
        plane: Sequence[int],
        *,
        default_class: str | None = None,
        label_id: int | None = None,
    ) -> list[int]:
        """Paint ``objects`` on ``plane`` of ``layer`` as new ids; one undo step.

        Args:
            layer: a napari Labels layer over the image's level-0 pixel grid.
            objects: the objects to paint (empty ones are skipped).
            default_class: the class name for objects without one (e.g. the prompt text).
            label_id: paint every object with this existing id instead of new ids (used to
                extend one object through a stack); no feature row is added.

        Returns:
            The ids painted.
        """
        steps = self.commit_steps(
            layer, objects, plane, default_class=default_class, label_id=label_id
        )
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                return list(finished.value)

    def commit_steps(
        self,
        layer: Any,
        objects: Sequence[ObjectMask],
        plane: Sequence[int],
        *,
        default_class: str | None = None,
        label_id: int | None = None,
    ) -> Generator[int, None, list[int]]:
        """:meth:`commit` one object per step, for a caller that spreads a large commit
        over several GUI event-loop turns.

        Each ``next()`` paints one object and yields how many objects were handled so far;
        the last step appends the feature rows, records the one undo step and refreshes
        the layer; the generator then returns the ids painted (``StopIteration.value``).
        Nothing is shown or undoable before that last step.
        """
        edit = Edit(layer)
        ids: list[int] = []
        rows = []
        next_id = next_label_id(layer) if label_id is None else label_id
        for handled, obj in enumerate(objects, start=1):
            value = next_id if label_id is None else label_id
            written = paint_object(layer.data, obj, value, plane=plane)
            if written is not None:
                edit.windows.append(written)
                ids.append(value)
                if label_id is None:
                    rows.append(
                        {
                            "index": value,
                            "class_name": obj.class_name or default_class or "object",
                            "score": float(obj.score),
                            "source": obj.source,
                        }
                    )
                    next_id += 1
            yield handled
        if not edit.windows:
            return []
        if rows:
            self._append_rows(layer, rows)
            edit.ids = ids
        self._log.push(edit)
        layer.refresh()
        return ids

    def extend(self, layer: Any, obj: ObjectMask, plane: Sequence[int], label_id: int) -> None:
        """Paint one more plane of an object into the LAST commit (same undo step)."""
        written = paint_object(layer.data, obj, label_id, plane=plane)
        if written is None:
            return
        self._log.add_window(layer, written)
        layer.refresh()

    def undo(self) -> Any | None:
        """Revert the last commit; returns its layer, or ``None`` when there is none."""
        edit = self._log.pop()
        if edit is None:
            return None
        restore(edit.target.data, edit.windows)
        if edit.ids:
            features = edit.target.features
            keep = ~np.isin(np.asarray(features["index"]), edit.ids)
            edit.target.features = features[keep].reset_index(drop=True)
        edit.target.refresh()
        return edit.target

    @staticmethod
    def _append_rows(layer: Any, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        features = layer.features
        added = pd.DataFrame(rows)
        table = added if features.shape[1] == 0 else pd.concat([features, added], ignore_index=True)
        layer.features = table
