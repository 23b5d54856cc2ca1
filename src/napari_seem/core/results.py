"""What the engine answers: frozen object masks and the segmentation of one image plane.

Frame: level-0 image pixels, ``(row, col)``, origin top-left. An ``ObjectMask`` stores a
crop of its mask and the level-0 offset of the crop's top-left pixel, so a small object
on a huge image stays small. Masks travel in dicts as ``{"shape", "offset", "rle"}``
(``napari_seem.core.arrays``), like mask prompts.

One ``ObjectMask`` answers one prompt; an object the model found nothing for is kept as
an *empty* mask (``is_empty``, a ``(0, 0)`` crop) so that answers stay aligned with the
prompts that asked for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.arrays import ValueEq, as_bool_mask, as_int_pair, mask_from_dict, mask_to_dict
from napari_seem.core.prompts import ObjectPrompt, ReferringExample, TextPrompt, prompt_from_dict

__all__ = ["SOURCES", "ObjectMask", "ResultPrompt", "SegmentationResult"]

BoolMask = npt.NDArray[np.bool_]
ResultPrompt = ObjectPrompt | TextPrompt | ReferringExample

# Conventional values of ObjectMask.source, one per SEEM task or "segment everything" mode
# (not enforced).
SOURCES = (
    "interactive",
    "grounding",
    "referring",
    "panoptic",
    "instance",
    "semantic",
    "points",
)
# Version of the SegmentationResult dict format; bump on an incompatible change.
FORMAT_VERSION = 1


def _finite(value: Any, *, what: str, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a number; got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{what} must be finite; got {value!r}")
    return float(value)


def _image_shape(value: Any) -> tuple[int, int]:
    shape = as_int_pair(value, what="image_shape")
    if shape[0] <= 0 or shape[1] <= 0:
        raise ValueError(f"image_shape must be two positive integers (H, W); got {value!r}")
    return shape


@dataclass(frozen=True, eq=False, repr=False)
class ObjectMask(ValueEq):
    """One segmented object.

    Attributes:
        mask: ``(h, w)`` bool crop, read-only (0/1 arrays are converted); may be empty.
        offset: level-0 ``(row, col)`` of ``mask[0, 0]``.
        score: the model's confidence for this mask (finite; higher is better).
        class_name: class or phrase the object was matched to, if any.
        class_score: confidence of ``class_name``, if any.
        prompt: the prompt this answers (``ObjectPrompt`` for interactive,
            ``TextPrompt`` for grounding, ``ReferringExample`` for referring), if any.
        source: the task that produced it, conventionally one of ``SOURCES``.
    """

    mask: BoolMask
    offset: tuple[int, int] = (0, 0)
    _: KW_ONLY
    score: float
    class_name: str | None = None
    class_score: float | None = None
    prompt: ResultPrompt | None = None
    source: str = "interactive"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", as_bool_mask(self.mask, what="ObjectMask.mask"))
        object.__setattr__(self, "offset", as_int_pair(self.offset, what="ObjectMask.offset"))
        object.__setattr__(self, "score", _finite(self.score, what="ObjectMask.score"))
        class_score = _finite(self.class_score, what="ObjectMask.class_score", optional=True)
        object.__setattr__(self, "class_score", class_score)
        if self.class_name is not None and not isinstance(self.class_name, str):
            raise ValueError(
                f"ObjectMask.class_name must be a string or None; got {self.class_name!r}"
            )
        if self.prompt is not None and not isinstance(
            self.prompt, ObjectPrompt | TextPrompt | ReferringExample
        ):
            raise ValueError(
                "ObjectMask.prompt must be an ObjectPrompt, TextPrompt, ReferringExample or "
                f"None; got {type(self.prompt).__name__}"
            )
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"ObjectMask.source must be a non-empty string; got {self.source!r}")

    @classmethod
    def from_full(
        cls,
        mask: npt.ArrayLike,
        *,
        score: float,
        class_name: str | None = None,
        class_score: float | None = None,
        prompt: ResultPrompt | None = None,
        source: str = "interactive",
    ) -> ObjectMask:
        """An object from a full-image ``(H, W)`` mask, cropped to its bounding box.

        An empty mask gives an empty object (``(0, 0)`` crop at offset ``(0, 0)``), never
        an error or ``None``: the answer stays paired with its prompt.
        """
        full = as_bool_mask(mask, what="ObjectMask.mask")
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        if rows.size == 0:
            crop, offset = np.zeros((0, 0), dtype=bool), (0, 0)
        else:
            crop = full[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            offset = (int(rows[0]), int(cols[0]))
        return cls(
            crop,
            offset,
            score=score,
            class_name=class_name,
            class_score=class_score,
            prompt=prompt,
            source=source,
        )

    def __repr__(self) -> str:
        return (
            f"ObjectMask(area={self.area}, bbox={self.bbox}, score={self.score:.4g}, "
            f"class_name={self.class_name!r}, source={self.source!r})"
        )

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def is_empty(self) -> bool:
        return not self.mask.any()

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """Tight level-0 ``(row_min, col_min, row_max, col_max)``, max exclusive (like
        ``skimage.measure.regionprops``); ``None`` for an empty mask."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        if rows.size == 0:
            return None
        row, col = self.offset
        return (
            row + int(rows[0]),
            col + int(cols[0]),
            row + int(rows[-1]) + 1,
            col + int(cols[-1]) + 1,
        )

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` when the crop does not lie inside ``image_shape``."""
        if self.mask.size == 0:
            return
        (row, col), (h, w) = self.offset, self.mask.shape
        if row < 0 or col < 0 or row + h > image_shape[0] or col + w > image_shape[1]:
            raise ValueError(
                f"ObjectMask crop of shape ({h}, {w}) at offset ({row}, {col}) does not fit "
                f"an image of shape {tuple(image_shape)}: crop it to the image first"
            )

    def full(self, image_shape: tuple[int, int]) -> BoolMask:
        """The mask pasted into a new ``image_shape`` ``(H, W)`` bool array."""
        shape = _image_shape(image_shape)
        self.check_fits(shape)
        out = np.zeros(shape, dtype=bool)
        (row, col), (h, w) = self.offset, self.mask.shape
        out[row : row + h, col : col + w] = self.mask
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **mask_to_dict(self.mask, self.offset),
            "score": self.score,
            "class_name": self.class_name,
            "class_score": self.class_score,
            "prompt": None if self.prompt is None else self.prompt.to_dict(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectMask:
        if not isinstance(data, Mapping) or "score" not in data:
            raise ValueError("an ObjectMask dict needs 'shape', 'offset', 'rle' and 'score'")
        mask, offset = mask_from_dict(data, what="an ObjectMask dict")
        prompt = data.get("prompt")
        if prompt is not None:
            prompt = prompt_from_dict(prompt)
            if not isinstance(prompt, ObjectPrompt | TextPrompt | ReferringExample):
                raise ValueError(f"an ObjectMask prompt cannot be a {prompt.kind!r} prompt")
        return cls(
            mask,
            offset,
            score=data["score"],
            class_name=data.get("class_name"),
            class_score=data.get("class_score"),
            prompt=prompt,
            source=data.get("source", "interactive"),
        )


@dataclass(frozen=True)
class SegmentationResult:
    """The objects found in one image plane.

    Attributes:
        image_shape: ``(H, W)`` of the plane; every object fits in it.
        objects: the objects, in answer order (e.g. the order of the prompts).
        plane: leading indices of the plane in a stack; ``()`` for a 2-D image.
    """

    image_shape: tuple[int, int]
    objects: tuple[ObjectMask, ...] = ()
    _: KW_ONLY
    plane: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        shape = _image_shape(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        objects = tuple(self.objects)
        for i, obj in enumerate(objects):
            if not isinstance(obj, ObjectMask):
                raise ValueError(f"objects[{i}] must be an ObjectMask; got {type(obj).__name__}")
            obj.check_fits(shape)
        object.__setattr__(self, "objects", objects)
        plane = tuple(self.plane)
        if not all(
            isinstance(i, int | np.integer) and not isinstance(i, bool) and i >= 0 for i in plane
        ):
            raise ValueError(f"plane must hold non-negative integer indices; got {plane!r}")
        object.__setattr__(self, "plane", tuple(int(i) for i in plane))

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[ObjectMask]:
        return iter(self.objects)

    def __getitem__(self, index: int) -> ObjectMask:
        return self.objects[index]

    def to_labels(self, dtype: npt.DTypeLike = np.uint32) -> npt.NDArray[np.integer[Any]]:
        """An ``(H, W)`` label image: object ``i`` (0-based) gets id ``i + 1``, 0 = background.

        Where objects overlap, the pixel goes to the higher ``score``; on a tie, to the
        earlier object. Empty objects keep their id but paint nothing.

        Raises:
            ValueError: ``dtype`` is not an integer type that can hold ``len(self)``.
        """
        kind = np.dtype(dtype)
        if kind.kind not in "iu" or np.iinfo(kind).max < len(self.objects):
            raise ValueError(
                f"to_labels needs an integer dtype that holds ids up to {len(self.objects)}; "
                f"got {kind}"
            )
        labels = np.zeros(self.image_shape, dtype=kind)
        # Paint the lowest priority first so that the winner of each overlap paints last.
        order = sorted(range(len(self.objects)), key=lambda i: (self.objects[i].score, -i))
        for i in order:
            obj = self.objects[i]
            (row, col), (h, w) = obj.offset, obj.mask.shape
            labels[row : row + h, col : col + w][obj.mask] = i + 1
        return labels

    def class_table(self) -> list[dict[str, Any]]:
        """One JSON-safe row per object: ``id`` (as in ``to_labels``), ``class_name``,
        ``class_score``, ``score``, ``area`` (of the object's own mask, before overlaps are
        resolved), ``bbox`` (``[row_min, col_min, row_max, col_max]``, max exclusive, or
        ``None``) and ``source``."""
        rows = []
        for i, obj in enumerate(self.objects):
            bbox = obj.bbox
            rows.append(
                {
                    "id": i + 1,
                    "class_name": obj.class_name,
                    "class_score": obj.class_score,
                    "score": obj.score,
                    "area": obj.area,
                    "bbox": None if bbox is None else list(bbox),
                    "source": obj.source,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "segmentation_result",
            "version": FORMAT_VERSION,
            "image_shape": list(self.image_shape),
            "plane": list(self.plane),
            "objects": [obj.to_dict() for obj in self.objects],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentationResult:
        if not isinstance(data, Mapping) or data.get("kind") != "segmentation_result":
            raise ValueError("not a SegmentationResult dict (kind 'segmentation_result')")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"segmentation result format version {data.get('version')!r} is not supported "
                f"(this is version {FORMAT_VERSION}); update napari-seem on both sides"
            )
        if "image_shape" not in data:
            raise ValueError("a SegmentationResult dict needs 'image_shape'")
        return cls(
            data["image_shape"],
            tuple(ObjectMask.from_dict(obj) for obj in data.get("objects", ())),
            plane=tuple(data.get("plane", ())),
        )
