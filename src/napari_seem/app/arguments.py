"""The scripting API's prompt arguments, checked and turned into prompts.

Coordinates are level-0 ``(row, col)`` pixels of the image plane, origin top-left, pixel
centres at integers. Every function raises :class:`~napari_seem.core.prompts.PromptError`
with a message naming the bad argument.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    PromptError,
    Scribble,
    TextPrompt,
    VisualPrompt,
)

__all__ = [
    "build_object",
    "flags_of",
    "new_object_id",
    "numeric",
    "object_list",
    "point_array",
    "texts_of",
    "vocabulary_of",
]


def build_object(
    image_shape: tuple[int, int],
    *,
    points: npt.ArrayLike | None = None,
    point_labels: npt.ArrayLike | None = None,
    boxes: npt.ArrayLike | None = None,
    scribbles: Sequence[npt.ArrayLike] | None = None,
    scribble_labels: npt.ArrayLike | None = None,
    masks: npt.ArrayLike | Sequence[npt.ArrayLike] | None = None,
    text: str | None = None,
) -> list[ObjectPrompt]:
    """The objects the keyword prompts of :func:`segment` describe (validated).

    Everything given describes ONE object, except several ``boxes`` without other visual
    prompts: then each box is its own object.
    """
    visual: list[VisualPrompt] = []
    if points is not None:
        coords = point_array(points, "points")
        if point_labels is None:
            flags = np.ones(len(coords), bool)
        else:
            flags = flags_of(point_labels, len(coords), "point_labels")
        if len(coords):
            visual.append(Points(coords, flags))
    box_list: list[Box] = []
    if boxes is not None:
        arr = np.asarray(boxes, dtype=float) if numeric(boxes) else None
        if arr is None or arr.ndim not in (1, 2) or arr.shape[-1] != 4:
            shape = None if arr is None else arr.shape
            raise PromptError(
                f"boxes must be an (N, 4) array of (row0, col0, row1, col1); got shape {shape}"
            )
        box_list = [Box.from_corners(b[:2], b[2:]) for b in arr.reshape(-1, 4)]
    if scribbles is not None:
        one = numeric(scribbles) and np.ndim(np.asarray(scribbles)) == 2
        strokes: list[Any] = [scribbles] if one else list(scribbles)
        flags = (
            np.ones(len(strokes), bool)
            if scribble_labels is None
            else flags_of(scribble_labels, len(strokes), "scribble_labels")
        )
        for i, (stroke, flag) in enumerate(zip(strokes, flags, strict=True)):
            visual.append(Scribble(point_array(stroke, f"scribbles[{i}]"), positive=bool(flag)))
    if masks is not None:
        mask_list = [masks] if np.ndim(masks) == 2 else list(masks)  # type: ignore[arg-type]
        for i, mask in enumerate(mask_list):
            arr = np.asarray(mask)
            if arr.shape != tuple(image_shape):
                raise PromptError(
                    f"masks[{i}] has shape {arr.shape}; a mask prompt covers the whole image "
                    f"plane, shape {tuple(image_shape)}"
                )
            if arr.dtype != bool and not (arr.dtype.kind in "iu" and arr.max(initial=0) <= 1):
                raise PromptError(
                    f"masks[{i}] must be a bool (or 0/1) array; got dtype {arr.dtype}"
                )
            if not arr.any():
                raise PromptError(f"masks[{i}] is empty: mark the object with True pixels")
            visual.append(MaskPrompt.from_full(arr.astype(bool)))
    objects: list[ObjectPrompt]
    if len(box_list) > 1:
        if visual:
            raise PromptError(
                f"{len(box_list)} boxes and other visual prompts: clicks, scribbles and masks "
                "combine with at most one box (one object); for several objects pass one box "
                "per object and nothing else, or call segment() once per object"
            )
        objects = [ObjectPrompt((b,), text) for b in box_list]  # type: ignore[arg-type]
    elif visual or box_list:
        objects = [ObjectPrompt((*visual, *box_list), text)]  # type: ignore[arg-type]
    else:
        objects = []
    for i, obj in enumerate(objects):
        try:
            obj.check_fits(image_shape)
        except PromptError as exc:
            raise PromptError(f"object {i}: {exc}") from None
    return objects


def numeric(value: Any) -> bool:
    """Whether ``value`` converts to a numeric (int / float) array (False when ragged)."""
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except ValueError:  # ragged
        return False


def point_array(value: Any, what: str) -> npt.NDArray[np.float64]:
    """``value`` as an ``(N, 2)`` float array of level-0 ``(row, col)`` (one pair: ``(1, 2)``)."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be an (N, 2) array of (row, col); got {value!r}") from None
    if arr.shape == (2,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise PromptError(f"{what} must be an (N, 2) array of (row, col); got shape {arr.shape}")
    return arr


def flags_of(value: Any, count: int, what: str) -> npt.NDArray[np.bool_]:
    """``value`` as ``(count,)`` bool polarity flags (1 positive, 0 negative; a scalar repeats)."""
    arr = np.asarray(value).reshape(-1) if np.ndim(value) else np.full(count, value)
    if arr.shape != (count,) or not np.isin(arr, (0, 1, True, False)).all():
        raise PromptError(
            f"{what} must hold one 1 (positive) or 0 (negative) per prompt ({count}); "
            f"got {np.asarray(value).tolist()!r}"
        )
    return arr.astype(bool)


def texts_of(text: str | Sequence[str] | None) -> list[str]:
    """The phrases of ``text`` (one string, a TextPrompt, or a list of them)."""
    if text is None:
        return []
    items = [text] if isinstance(text, str | TextPrompt) else list(text)
    out = []
    for item in items:
        out.append((item if isinstance(item, TextPrompt) else TextPrompt(item)).text)
    return out


def object_list(
    objects: Sequence[ObjectPrompt] | ObjectPrompt, shape: tuple[int, int]
) -> list[ObjectPrompt]:
    items = [objects] if isinstance(objects, ObjectPrompt) else list(objects)
    for i, obj in enumerate(items):
        if not isinstance(obj, ObjectPrompt):
            raise PromptError(f"objects[{i}] must be an ObjectPrompt; got {type(obj).__name__}")
        try:
            obj.check_fits(shape)
        except PromptError as exc:
            raise PromptError(f"objects[{i}]: {exc}") from None
    return items


def vocabulary_of(vocabulary: Sequence[str] | str) -> list[str]:
    items = vocabulary.split(",") if isinstance(vocabulary, str) else list(vocabulary)
    if not all(isinstance(v, str) for v in items):
        raise PromptError(f"vocabulary must be class names (strings); got {vocabulary!r}")
    names = [v.strip() for v in items]
    if not names or any(not n for n in names):
        raise PromptError(
            f"vocabulary must list class names, e.g. ['nucleus', 'cell']; got {vocabulary!r}"
        )
    if len(set(names)) != len(names):
        raise PromptError(f"vocabulary repeats a class name: {names}")
    return names


def new_object_id() -> str:
    """A fresh id naming one object across refinement rounds."""
    return uuid.uuid4().hex
