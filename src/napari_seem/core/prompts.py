"""What the user asks for: validated, frozen prompt types with a JSON-safe dict form.

Coordinate frame (every type here): level-0 image pixels as ``(row, col)`` floats, origin
at the top-left, **pixel centres at integers**. Pixel ``(i, j)`` covers
``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``, so an image of shape ``(H, W)`` covers
``-0.5 <= row <= H - 0.5`` and ``-0.5 <= col <= W - 0.5``; that is the range a coordinate
must lie in (napari reports a click on the outer half of an edge pixel as e.g. ``-0.3``).
For a stack, the plane is given once on the ``PromptSet`` (``plane=(z,)``), never per point.

Types:

- visual prompts, one kind each: ``Points`` (clicks), ``Box``, ``Scribble``, ``Polygon``,
  ``MaskPrompt``; every one but ``Box`` can be negative ("not this");
- ``TextPrompt``: a referring expression or class name;
- ``ObjectPrompt``: every prompt for ONE object (clicks, boxes, ... and optional text);
- ``ReferringExample``: visual prompts drawn on ANOTHER image ("segment what I marked
  there"), which is named by ``image_ref`` and resolved by the engine;
- ``PromptSet``: everything for one request on one image plane.

Every rejection raises ``PromptError`` (a ``ValueError``) saying what is wrong and what to
do. ``to_dict()`` gives plain JSON-safe dicts tagged with ``"kind"``; ``from_dict`` (or
``prompt_from_dict`` for any kind) reverses it. Masks travel as ``{"shape", "offset",
"rle"}`` (see ``napari_seem.core.arrays``). Rasterisation into a model frame is in
``napari_seem.core.rasterize``. The visual kinds are defined in ``napari_seem.core.visual`` and
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from napari_seem.core.arrays import ValueEq
from napari_seem.core.visual import (
    VISUAL_TYPES,
    Box,
    MaskPrompt,
    Points,
    Polygon,
    PromptError,
    Scribble,
    VisualPrompt,
    as_image_shape,
    as_optional_name,
    as_plane,
    from_kind_dict,
    unpack,
    visual_from_dict,
)

__all__ = [
    "Box",
    "MaskPrompt",
    "ObjectPrompt",
    "Points",
    "Polygon",
    "Prompt",
    "PromptError",
    "PromptSet",
    "ReferringExample",
    "Scribble",
    "TextPrompt",
    "VisualPrompt",
    "prompt_from_dict",
]

# Version of the PromptSet dict format; bump on an incompatible change.
FORMAT_VERSION = 1


def _visual_tuple(value: Any, *, what: str) -> tuple[VisualPrompt, ...]:
    """``value`` (one visual prompt or an iterable of them) as a tuple."""
    items = (value,) if isinstance(value, VISUAL_TYPES) else tuple(value)
    for i, item in enumerate(items):
        if isinstance(item, TextPrompt | str):
            raise PromptError(f"{what}[{i}] is text: pass text as `text=` instead")
        if not isinstance(item, VISUAL_TYPES):
            names = ", ".join(cls.__name__ for cls in VISUAL_TYPES)
            raise PromptError(f"{what}[{i}] must be one of {names}; got {type(item).__name__}")
    return items


@dataclass(frozen=True)
class TextPrompt:
    """A referring expression or class name (``"the left nucleus"``); stripped, non-empty."""

    text: str
    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise PromptError(f"TextPrompt.text must be a string; got {type(self.text).__name__}")
        if not self.text.strip():
            raise PromptError("TextPrompt.text is empty: give a word or phrase, e.g. 'nucleus'")
        object.__setattr__(self, "text", self.text.strip())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextPrompt:
        return cls(unpack(data, cls.kind, required=("text",))["text"])


def _text(value: Any) -> TextPrompt:
    return value if isinstance(value, TextPrompt) else TextPrompt(value)


@dataclass(frozen=True)
class ObjectPrompt:
    """Every prompt for ONE object: its clicks, boxes, scribbles, polygons, masks and text.

    Attributes:
        visual: visual prompts in level-0 coordinates of the request's image (a single
            prompt or a list is accepted and stored as a tuple).
        text: optional text composed with the visual prompts (``"nucleus"`` + one click);
            a plain string is accepted.
        label: optional name for the result (e.g. a napari label name); not sent to the model.

    At least one visual prompt or a text is required; visual prompts without text need at
    least one positive prompt (negatives alone do not say which object).
    """

    visual: tuple[VisualPrompt, ...] = ()
    text: TextPrompt | None = None
    _: KW_ONLY
    label: str | None = None
    kind: ClassVar[str] = "object"

    def __post_init__(self) -> None:
        visual = _visual_tuple(self.visual, what="ObjectPrompt.visual")
        object.__setattr__(self, "visual", visual)
        if self.text is not None:
            object.__setattr__(self, "text", _text(self.text))
        object.__setattr__(self, "label", as_optional_name(self.label, what="ObjectPrompt.label"))
        if not visual and self.text is None:
            raise PromptError(
                "ObjectPrompt is empty: give at least one visual prompt (click, box, scribble, "
                "polygon, mask) or a text"
            )
        if visual and self.text is None and not self.has_positive:
            raise PromptError(
                "ObjectPrompt has only negative prompts: add a positive click, box, scribble, "
                "polygon or mask (or a text) that marks the object"
            )

    @property
    def has_positive(self) -> bool:
        """Whether some visual prompt is positive."""
        return any(p.has_positive for p in self.visual)

    def with_prompts(self, *visual: VisualPrompt) -> ObjectPrompt:
        """A copy with ``visual`` prompts appended (e.g. the next refinement click)."""
        return ObjectPrompt((*self.visual, *visual), self.text, label=self.label)

    def check_fits(self, image_shape: tuple[int, int]) -> None:
        for prompt in self.visual:
            prompt.check_fits(image_shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "visual": [p.to_dict() for p in self.visual],
            "text": None if self.text is None else self.text.to_dict(),
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectPrompt:
        data = unpack(data, cls.kind, required=(), optional=("visual", "text", "label"))
        text = data.get("text")
        return cls(
            tuple(visual_from_dict(p) for p in data.get("visual", ())),
            None if text is None else TextPrompt.from_dict(text),
            label=data.get("label"),
        )


@dataclass(frozen=True, eq=False)
class ReferringExample(ValueEq):
    """ "Segment what I marked over there": visual prompts drawn on ANOTHER image.

    The example carries no pixels of its own over the wire: ``image_ref`` names the other
    image (a napari layer name, a file path or an engine-side image id) and the engine
    resolves it. In-process callers may attach the pixels as ``image`` instead; it is held
    by reference (not copied), ignored by ``==`` and never serialised.

    Attributes:
        image_shape: ``(H, W)`` of the other image's plane; ``visual`` is validated in it.
        visual: the marks on the other image (level-0 ``(row, col)`` of THAT image),
            together one example object; at least one positive.
        image_ref: key of the other image; needed for ``to_dict``.
        image: optional ``(H, W)`` or ``(H, W, C)`` array of the other image.
        label: optional name for the result.
        plane: plane indices of the other image when it is a stack.
    """

    image_shape: tuple[int, int]
    visual: tuple[VisualPrompt, ...]
    _: KW_ONLY
    image_ref: str | None = None
    image: npt.NDArray[Any] | None = field(default=None, compare=False, repr=False)
    label: str | None = None
    plane: tuple[int, ...] = ()
    kind: ClassVar[str] = "example"

    def __post_init__(self) -> None:
        shape = as_image_shape(self.image_shape, what="ReferringExample.image_shape")
        object.__setattr__(self, "image_shape", shape)
        visual = _visual_tuple(self.visual, what="ReferringExample.visual")
        object.__setattr__(self, "visual", visual)
        ref = as_optional_name(self.image_ref, what="ReferringExample.image_ref")
        object.__setattr__(self, "image_ref", ref)
        object.__setattr__(
            self, "label", as_optional_name(self.label, what="ReferringExample.label")
        )
        object.__setattr__(self, "plane", as_plane(self.plane, what="ReferringExample.plane"))
        if ref is None and self.image is None:
            raise PromptError(
                "ReferringExample needs the other image: give `image_ref` (a layer name, path "
                "or image id the engine knows) or the pixels as `image`"
            )
        if self.image is not None:
            image = np.asarray(self.image)
            if image.ndim not in (2, 3) or image.shape[:2] != shape:
                raise PromptError(
                    f"ReferringExample.image has shape {image.shape} but image_shape is {shape}: "
                    "pass an (H, W) or (H, W, C) array of that image's plane"
                )
            object.__setattr__(self, "image", image)
        if not visual:
            raise PromptError("ReferringExample has no visual prompt: mark the example object")
        if not any(p.has_positive for p in visual):
            raise PromptError(
                "ReferringExample has only negative prompts: add a positive mark on the example"
            )
        for prompt in visual:
            try:
                prompt.check_fits(shape)
            except PromptError as exc:
                raise PromptError(f"in the referring example: {exc}") from None

    @classmethod
    def from_image(
        cls,
        image: npt.NDArray[Any],
        visual: tuple[VisualPrompt, ...] | VisualPrompt,
        *,
        image_ref: str | None = None,
        label: str | None = None,
        plane: tuple[int, ...] = (),
    ) -> ReferringExample:
        """An example on an in-memory ``(H, W[, C])`` image; ``image_shape`` is taken from it."""
        array = np.asarray(image)
        if array.ndim not in (2, 3):
            raise PromptError(
                f"ReferringExample.image must be (H, W) or (H, W, C); got shape {array.shape}"
            )
        return cls(
            (int(array.shape[0]), int(array.shape[1])),
            _visual_tuple(visual, what="ReferringExample.visual"),
            image_ref=image_ref,
            image=array,
            label=label,
            plane=plane,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; raises ``PromptError`` when there is no ``image_ref``."""
        if self.image_ref is None:
            raise PromptError(
                "a ReferringExample with only an in-memory image cannot be serialised: set "
                "`image_ref` to a key the engine can resolve (pixels never travel in prompts)"
            )
        return {
            "kind": self.kind,
            "image_shape": list(self.image_shape),
            "visual": [p.to_dict() for p in self.visual],
            "image_ref": self.image_ref,
            "label": self.label,
            "plane": list(self.plane),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferringExample:
        data = unpack(
            data,
            cls.kind,
            required=("image_shape", "visual", "image_ref"),
            optional=("label", "plane"),
        )
        return cls(
            data["image_shape"],
            tuple(visual_from_dict(p) for p in data["visual"]),
            image_ref=data["image_ref"],
            label=data.get("label"),
            plane=tuple(data.get("plane", ())),
        )


@dataclass(frozen=True)
class PromptSet:
    """Everything asked of one image plane in one request.

    Attributes:
        image_shape: ``(H, W)`` of the plane; every visual prompt must fit in it.
        objects: one ``ObjectPrompt`` per object to segment interactively (bare visual
            prompts are wrapped into one object each).
        texts: grounding expressions; each asks for the object(s) it describes (plain
            strings are accepted).
        example: an optional referring example on another image.
        plane: leading indices of the plane in a stack (``(z,)``, ``(t, z)``); ``()`` for
            a 2-D image.

    An empty set is valid (``is_empty``); the engine decides what that means.
    """

    image_shape: tuple[int, int]
    objects: tuple[ObjectPrompt, ...] = ()
    texts: tuple[TextPrompt, ...] = ()
    example: ReferringExample | None = None
    _: KW_ONLY
    plane: tuple[int, ...] = ()
    kind: ClassVar[str] = "prompt_set"

    def __post_init__(self) -> None:
        shape = as_image_shape(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "plane", as_plane(self.plane))
        if isinstance(self.objects, (ObjectPrompt, *VISUAL_TYPES)):
            raw_objects: tuple[Any, ...] = (self.objects,)
        else:
            raw_objects = tuple(self.objects)
        objects = tuple(
            ObjectPrompt((o,)) if isinstance(o, VISUAL_TYPES) else o for o in raw_objects
        )
        for i, obj in enumerate(objects):
            if not isinstance(obj, ObjectPrompt):
                raise PromptError(
                    f"PromptSet.objects[{i}] must be an ObjectPrompt; got {type(obj).__name__}"
                )
            try:
                obj.check_fits(shape)
            except PromptError as exc:
                raise PromptError(f"object {i}: {exc}") from None
        object.__setattr__(self, "objects", objects)
        texts = (self.texts,) if isinstance(self.texts, str | TextPrompt) else tuple(self.texts)
        object.__setattr__(self, "texts", tuple(_text(t) for t in texts))
        if self.example is not None and not isinstance(self.example, ReferringExample):
            raise PromptError(
                f"PromptSet.example must be a ReferringExample; got {type(self.example).__name__}"
            )

    @property
    def is_empty(self) -> bool:
        return not self.objects and not self.texts and self.example is None

    @property
    def tasks(self) -> tuple[str, ...]:
        """SEEM tasks this request needs, among "interactive", "grounding", "referring"."""
        wanted = (
            ("interactive", bool(self.objects)),
            ("grounding", bool(self.texts)),
            ("referring", self.example is not None),
        )
        return tuple(name for name, on in wanted if on)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "image_shape": list(self.image_shape),
            "plane": list(self.plane),
            "objects": [o.to_dict() for o in self.objects],
            "texts": [t.to_dict() for t in self.texts],
            "example": None if self.example is None else self.example.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptSet:
        data = unpack(
            data,
            cls.kind,
            required=("image_shape",),
            optional=("version", "plane", "objects", "texts", "example"),
        )
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise PromptError(
                f"prompt set format version {version!r} is not supported (this is version "
                f"{FORMAT_VERSION}); update napari-seem on both sides"
            )
        example = data.get("example")
        return cls(
            data["image_shape"],
            tuple(ObjectPrompt.from_dict(o) for o in data.get("objects", ())),
            tuple(TextPrompt.from_dict(t) for t in data.get("texts", ())),
            None if example is None else ReferringExample.from_dict(example),
            plane=tuple(data.get("plane", ())),
        )


Prompt: TypeAlias = VisualPrompt | TextPrompt | ObjectPrompt | ReferringExample | PromptSet
_ALL_TYPES = (*VISUAL_TYPES, TextPrompt, ObjectPrompt, ReferringExample, PromptSet)


def prompt_from_dict(data: Mapping[str, Any]) -> Prompt:
    """Rebuild any prompt type from its ``to_dict()`` form, dispatching on ``"kind"``."""
    prompt: Prompt = from_kind_dict(data, _ALL_TYPES, "a prompt dict")
    return prompt
