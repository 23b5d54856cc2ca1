"""The visual prompt kinds (clicks, box, scribble, polygon, mask) and their validation.

Public names are re-exported by ``napari_seem.core.prompts``; see that module for the coordinate
frame (level-0 ``(row, col)``, pixel centres at integers, image extent ``[-0.5, H - 0.5]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from napari_seem.core.arrays import (
    ValueEq,
    as_bool_mask,
    as_int_pair,
    mask_from_dict,
    mask_to_dict,
    readonly,
)

__all__ = [
    "VISUAL_TYPES",
    "Box",
    "MaskPrompt",
    "Points",
    "Polygon",
    "PromptError",
    "Scribble",
    "VisualPrompt",
    "as_coords",
    "as_flag",
    "as_image_shape",
    "as_number",
    "as_optional_name",
    "as_plane",
    "check_inside",
    "from_kind_dict",
    "unpack",
    "visual_from_dict",
]

Coords = npt.NDArray[np.float64]
Bounds = tuple[float, float, float, float]


class PromptError(ValueError):
    """A prompt is malformed or does not fit its image; the message says how to fix it."""

    __module__ = "napari_seem.core.prompts"  # its public home, shown in tracebacks


# ----------------------------------------------------------------------------- validation


def as_coords(value: Any, *, what: str, min_count: int = 1, noun: str = "point") -> Coords:
    """``value`` as a read-only ``(N, 2)`` float64 array of finite ``(row, col)`` pairs."""
    try:
        raw = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise PromptError(f"{what} must be an (N, 2) array of (row, col); got {value!r}") from exc
    if raw.dtype.kind not in "iuf":
        raise PromptError(
            f"{what} must be numbers (row, col); got dtype {raw.dtype}: pass an (N, 2) array"
        )
    array = raw.astype(np.float64, copy=True)
    if array.shape == (2,):
        array = array[None]  # a single (row, col) pair
    elif array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise PromptError(f"{what} must have shape (N, 2) as (row, col); got shape {array.shape}")
    if len(array) < min_count:
        plural = {"vertex": "vertices"}.get(noun, noun + "s")
        counted = f"{min_count} {noun if min_count == 1 else plural}"
        raise PromptError(f"{what} needs at least {counted}; got {len(array)}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise PromptError(
            f"{what} holds a non-finite coordinate at index {i}: "
            f"({float(array[i, 0])}, {float(array[i, 1])}); use finite pixel coordinates"
        )
    return readonly(array)


def as_number(value: Any, *, what: str) -> float:
    """``value`` as a finite float (bools and strings are refused)."""
    if isinstance(value, bool | str | bytes):
        raise PromptError(f"{what} must be a number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be a number; got {value!r}") from exc
    if not np.isfinite(number):
        raise PromptError(f"{what} must be finite; got {number}")
    return number


def as_flag(value: Any, *, what: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise PromptError(f"{what} must be True or False; got {value!r}")
    return bool(value)


def as_image_shape(value: Any, *, what: str = "image_shape") -> tuple[int, int]:
    """``value`` as ``(H, W)``: two positive ints."""
    try:
        items = tuple(value)
    except TypeError as exc:
        raise PromptError(f"{what} must be (H, W); got {value!r}") from exc
    if len(items) != 2:
        raise PromptError(
            f"{what} must be (H, W) of one 2-D plane; got {items}: "
            "pass `image.shape[:2]` for RGB, and the plane index separately for stacks"
        )
    height, width = as_int_pair(items, what=what, error=PromptError)
    if height <= 0 or width <= 0:
        raise PromptError(f"{what} must be positive; got {(height, width)}")
    return height, width


def as_plane(value: Any, *, what: str = "plane") -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError as exc:
        raise PromptError(
            f"{what} must be a tuple of plane indices, e.g. (z,); got {value!r}"
        ) from exc
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer) or item < 0:
            raise PromptError(
                f"{what} must hold non-negative integer indices, e.g. (z,); got {items}"
            )
    return tuple(int(i) for i in items)


def as_optional_name(value: Any, *, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PromptError(f"{what} must be a non-empty string or None; got {value!r}")
    return value.strip()


def check_inside(coords: Coords, image_shape: tuple[int, int], *, what: str) -> None:
    """Raise when a ``(row, col)`` lies outside the image extent ``[-0.5, H - 0.5]``."""
    height, width = image_shape
    rows, cols = coords[:, 0], coords[:, 1]
    outside = (rows < -0.5) | (rows > height - 0.5) | (cols < -0.5) | (cols > width - 0.5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise PromptError(
            f"{what} ({float(rows[i])}, {float(cols[i])}) lies outside the image of shape "
            f"({height}, {width}): coordinates must satisfy -0.5 <= row <= {height - 0.5} and "
            f"-0.5 <= col <= {width - 0.5} (pixel centres at integers); move or drop it"
        )


def coord_bounds(coords: Coords, margin: float = 0.0) -> Bounds:
    low = coords.min(axis=0) - margin
    high = coords.max(axis=0) + margin
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def unpack(
    data: Any, kind: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    """Check the keys of a ``to_dict`` payload (``kind`` optional but must match)."""
    if not isinstance(data, Mapping):
        raise PromptError(f"a {kind!r} prompt must be a dict; got {type(data).__name__}")
    if data.get("kind", kind) != kind:
        raise PromptError(f"expected a {kind!r} prompt; got kind {data.get('kind')!r}")
    missing = [key for key in required if key not in data]
    if missing:
        raise PromptError(f"a {kind!r} prompt dict is missing {missing}")
    unknown = sorted(set(data) - {"kind", *required, *optional})
    if unknown:
        raise PromptError(f"a {kind!r} prompt dict has unknown keys {unknown}")
    return data


# -------------------------------------------------------------------------- visual prompts


@dataclass(frozen=True, eq=False)
class Points(ValueEq):
    """Clicks: ``N >= 1`` points, each positive ("this") or negative ("not this").

    Attributes:
        coords: ``(N, 2)`` float64 level-0 ``(row, col)``, read-only.
        positive: ``(N,)`` bool, read-only; a scalar bool is broadcast.

    Build with ``Points.clicks(positive=[(r, c), ...], negative=[...])`` or
    ``Points.click(r, c)``; add one with ``with_click``.
    """

    coords: Coords
    positive: npt.NDArray[np.bool_]
    kind: ClassVar[str] = "points"

    def __post_init__(self) -> None:
        coords = as_coords(self.coords, what="Points.coords")
        flags = np.asarray(self.positive)
        if flags.dtype != np.bool_:
            raise PromptError(
                f"Points.positive must be bool (True = positive click); got dtype {flags.dtype}"
            )
        if flags.ndim == 0:
            flags = np.full(len(coords), bool(flags))
        if flags.shape != (len(coords),):
            raise PromptError(
                f"Points.positive must have one flag per point, shape ({len(coords)},); "
                f"got shape {flags.shape}"
            )
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "positive", readonly(flags.copy()))

    @classmethod
    def clicks(cls, positive: npt.ArrayLike = (), negative: npt.ArrayLike = ()) -> Points:
        """Positive clicks first, then negative ones; each an ``(N, 2)`` ``(row, col)`` list."""
        pos = as_coords(positive, what="positive clicks", min_count=0)
        neg = as_coords(negative, what="negative clicks", min_count=0)
        flags = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
        return cls(np.concatenate([pos, neg]), flags)

    @classmethod
    def click(cls, row: float, col: float, *, positive: bool = True) -> Points:
        """A single click at level-0 ``(row, col)``."""
        return cls(np.array([[row, col]], dtype=np.float64), np.array([positive]))

    def with_click(self, row: float, col: float, *, positive: bool = True) -> Points:
        """A copy with one more click appended (the next round of interactive refinement)."""
        return Points(
            np.concatenate([self.coords, [[row, col]]]),
            np.concatenate([self.positive, [bool(positive)]]),
        )

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def has_positive(self) -> bool:
        return bool(self.positive.any())

    def bounds(self) -> Bounds:
        """``(row_min, col_min, row_max, col_max)`` of the click positions, level-0."""
        return coord_bounds(self.coords)

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        """Raise ``PromptError`` when a click lies outside an image of ``image_shape``."""
        check_inside(self.coords, image_shape, what="point")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "coords": self.coords.tolist(),
            "positive": self.positive.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Points:
        data = unpack(data, cls.kind, required=("coords", "positive"))
        return cls(data["coords"], np.asarray(data["positive"]))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box around one object; always positive.

    Corners are level-0 pixel-centre coordinates: ``Box(60, 30, 94, 64)`` covers rows
    60..94 and columns 30..64 inclusive (35 x 35 pixels). A napari rectangle drawn along
    pixel edges (``59.5 .. 94.5``) covers the same pixels. ``Box.from_corners`` accepts
    two opposite corners in any order.
    """

    row_min: float
    col_min: float
    row_max: float
    col_max: float
    kind: ClassVar[str] = "box"
    positive: ClassVar[bool] = True
    has_positive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("row_min", "col_min", "row_max", "col_max"):
            object.__setattr__(self, name, as_number(getattr(self, name), what=f"Box.{name}"))
        if self.row_max <= self.row_min or self.col_max <= self.col_min:
            raise PromptError(
                f"Box has zero or negative size: rows {self.row_min}..{self.row_max}, columns "
                f"{self.col_min}..{self.col_max}; a box needs row_min < row_max and "
                "col_min < col_max (Box.from_corners sorts two corners for you; use a click "
                "for a single pixel)"
            )

    @classmethod
    def from_corners(cls, corner: npt.ArrayLike, opposite: npt.ArrayLike) -> Box:
        """The box spanned by two opposite ``(row, col)`` corners, in any order."""
        pair = as_coords([corner, opposite], what="Box corners")
        low, high = pair.min(axis=0), pair.max(axis=0)
        return cls(float(low[0]), float(low[1]), float(high[0]), float(high[1]))

    @property
    def center(self) -> tuple[float, float]:
        """Level-0 ``(row, col)`` of the box centre (the official SEEM box rule uses it)."""
        return (self.row_min + self.row_max) / 2, (self.col_min + self.col_max) / 2

    def bounds(self) -> Bounds:
        return self.row_min, self.col_min, self.row_max, self.col_max

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        corners = np.array([[self.row_min, self.col_min], [self.row_max, self.col_max]])
        check_inside(corners, image_shape, what="box corner")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "row_min": self.row_min,
            "col_min": self.col_min,
            "row_max": self.row_max,
            "col_max": self.col_max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Box:
        data = unpack(data, cls.kind, required=("row_min", "col_min", "row_max", "col_max"))
        return cls(data["row_min"], data["col_min"], data["row_max"], data["col_max"])


@dataclass(frozen=True, eq=False)
class Scribble(ValueEq):
    """A brush stroke: the polyline through ``vertices`` drawn with a square brush.

    Attributes:
        vertices: ``(N, 2)`` float64 level-0 ``(row, col)``, ``N >= 1`` (one vertex = a dab).
        width: brush width in level-0 pixels (> 0); 3 is the official SEEM 3x3 brush.
        positive: False for a "not this" stroke.
    """

    vertices: Coords
    _: KW_ONLY
    width: float = 3.0
    positive: bool = True
    kind: ClassVar[str] = "scribble"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "vertices", as_coords(self.vertices, what="Scribble.vertices", noun="vertex")
        )
        width = as_number(self.width, what="Scribble.width")
        if width <= 0:
            raise PromptError(
                f"Scribble.width is the brush width in pixels and must be > 0; got {width}"
            )
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "positive", as_flag(self.positive, what="Scribble.positive"))

    @property
    def has_positive(self) -> bool:
        return self.positive

    def bounds(self) -> Bounds:
        """Bounds of the stroke including half the brush width, level-0."""
        return coord_bounds(self.vertices, self.width / 2)

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        check_inside(self.vertices, image_shape, what="scribble vertex")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vertices": self.vertices.tolist(),
            "width": self.width,
            "positive": self.positive,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scribble:
        data = unpack(data, cls.kind, required=("vertices",), optional=("width", "positive"))
        return cls(
            data["vertices"], width=data.get("width", 3.0), positive=data.get("positive", True)
        )


@dataclass(frozen=True, eq=False)
class Polygon(ValueEq):
    """A filled polygon (implicitly closed).

    Attributes:
        vertices: ``(N, 2)`` float64 level-0 ``(row, col)``, ``N >= 3``.
        positive: False for a "not this" region.
    """

    vertices: Coords
    _: KW_ONLY
    positive: bool = True
    kind: ClassVar[str] = "polygon"

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "vertices",
            as_coords(self.vertices, what="Polygon.vertices", min_count=3, noun="vertex"),
        )
        object.__setattr__(self, "positive", as_flag(self.positive, what="Polygon.positive"))

    @property
    def has_positive(self) -> bool:
        return self.positive

    def bounds(self) -> Bounds:
        return coord_bounds(self.vertices)

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        check_inside(self.vertices, image_shape, what="polygon vertex")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vertices": self.vertices.tolist(), "positive": self.positive}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Polygon:
        data = unpack(data, cls.kind, required=("vertices",), optional=("positive",))
        return cls(data["vertices"], positive=data.get("positive", True))


@dataclass(frozen=True, eq=False, repr=False)
class MaskPrompt(ValueEq):
    """A painted mask, or a crop of one, placed in the image.

    Attributes:
        mask: ``(h, w)`` bool, read-only, not empty; 0/1 integer or float arrays are
            converted.
        offset: level-0 ``(row, col)`` of ``mask[0, 0]`` (integers: mask pixels sit on
            image pixels).
        positive: False for a "not this" region.

    ``MaskPrompt.from_full(full_mask)`` crops a full-image mask to its bounding box.
    """

    mask: npt.NDArray[np.bool_]
    offset: tuple[int, int] = (0, 0)
    _: KW_ONLY
    positive: bool = True
    kind: ClassVar[str] = "mask"

    def __post_init__(self) -> None:
        mask = as_bool_mask(self.mask, what="MaskPrompt.mask", error=PromptError)
        if not mask.any():
            raise PromptError(
                f"MaskPrompt.mask of shape {mask.shape} is empty (no True pixel): paint at "
                "least one pixel, or leave the mask prompt out"
            )
        object.__setattr__(self, "mask", mask)
        offset = as_int_pair(self.offset, what="MaskPrompt.offset", error=PromptError)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "positive", as_flag(self.positive, what="MaskPrompt.positive"))

    @classmethod
    def from_full(cls, mask: npt.ArrayLike, *, positive: bool = True) -> MaskPrompt:
        """A mask prompt from a full-image ``(H, W)`` mask, cropped to its bounding box."""
        full = as_bool_mask(mask, what="MaskPrompt.mask", error=PromptError)
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        if rows.size == 0:
            return cls(full, positive=positive)  # raises the "empty" error
        crop = full[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return cls(crop, (int(rows[0]), int(cols[0])), positive=positive)

    def __repr__(self) -> str:
        return (
            f"MaskPrompt(shape={self.mask.shape}, offset={self.offset}, "
            f"area={int(self.mask.sum())}, positive={self.positive})"
        )

    @property
    def has_positive(self) -> bool:
        return self.positive

    def bounds(self) -> Bounds:
        """Level-0 extent of the mask's pixel centres."""
        row, col = self.offset
        return row, col, row + self.mask.shape[0] - 1.0, col + self.mask.shape[1] - 1.0

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        height, width = image_shape
        row, col = self.offset
        h, w = self.mask.shape
        if row < 0 or col < 0 or row + h > height or col + w > width:
            raise PromptError(
                f"MaskPrompt of shape ({h}, {w}) at offset ({row}, {col}) does not fit the image "
                f"of shape ({height}, {width}): it spans rows {row}..{row + h - 1} and columns "
                f"{col}..{col + w - 1}; crop the mask to the image or fix its offset"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **mask_to_dict(self.mask, self.offset),
            "positive": self.positive,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskPrompt:
        data = unpack(data, cls.kind, required=("shape", "offset", "rle"), optional=("positive",))
        mask, offset = mask_from_dict(data, what="a 'mask' prompt", error=PromptError)
        return cls(mask, offset, positive=data.get("positive", True))


VisualPrompt: TypeAlias = Points | Box | Scribble | Polygon | MaskPrompt
VISUAL_TYPES = (Points, Box, Scribble, Polygon, MaskPrompt)


def from_kind_dict(data: Any, types: tuple[Any, ...], what: str) -> Any:
    """Rebuild a prompt from its ``to_dict()`` form: the one of ``types`` (prompt classes, each
    with a ``kind`` and a ``from_dict``) whose ``kind`` the dict names.

    Raises:
        PromptError: ``data`` is not a mapping or names no kind of ``types`` (``what`` says
            what was expected, e.g. ``"a visual prompt dict"``).
    """
    kind = data.get("kind") if isinstance(data, Mapping) else None
    for cls in types:
        if cls.kind == kind:
            return cls.from_dict(data)
    kinds = [cls.kind for cls in types]
    raise PromptError(f"{what} needs 'kind' in {kinds}; got {kind!r}")


def visual_from_dict(data: Any) -> VisualPrompt:
    """Rebuild a visual prompt from its ``to_dict()`` form, dispatching on ``"kind"``."""
    prompt: VisualPrompt = from_kind_dict(data, VISUAL_TYPES, "a visual prompt dict")
    return prompt
