"""The wire protocol between the engine server and its clients (pydantic models).

Both sides import this module, so a request the client builds is the request the server
validates. It imports numpy and pydantic only (never torch or FastAPI).

**Mask payload.** A predicted mask travels as JSON: ``MaskPayload`` holds the crop's
``shape`` and ``data``, the base64 text of ``zlib.compress(np.packbits(mask))`` (row-major,
first pixel in the high bit, ``encoding = "zlib-packbits"``). One bit per pixel plus zlib
keeps an object of a few megapixels at a few kilobytes, and JSON keeps the reply fully
described by the OpenAPI schema (no metadata hidden in headers).

**Uploaded images** (``POST /images``) travel as binary, never as JSON: the body is
``zlib.compress(array.tobytes())`` of a C-order array (or the raw bytes with
``X-Array-Encoding: raw``), described by the headers ``X-Array-Dtype`` (a numpy dtype
string such as ``|u1``, ``<u2``, ``<f4``: bool, integers and floats only),
``X-Array-Shape`` (comma-separated sizes, 2 to 5 of them) and optionally ``X-Array-Axes``
(letters from ``tczyx``, e.g. ``zyx``). See :func:`encode_array` / :func:`decode_array`.

**Job results** travel as the binary labels payload of
:mod:`napari_seem.core.labels` (``GET /jobs/{id}/result``).

**Errors.** Every refusal is an :class:`ErrorReply` ``{"error": {"type", "message"}}``;
``type`` is the engine's error class name (``UnknownSessionError``, ...) or one of the
transport's own (``Unauthorized``, ``PathNotAllowed``, ``ValidationError``, ``NotFound``,
``InternalError``).
"""

from __future__ import annotations

import base64
import binascii
import math
import warnings
import zlib
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

from napari_seem.core.prompts import ObjectPrompt, ReferringExample, TextPrompt, prompt_from_dict
from napari_seem.core.results import ObjectMask

__all__ = [
    "ARRAY_HEADERS",
    "MASK_ENCODING",
    "ArrayPayloadError",
    "ErrorBody",
    "ErrorReply",
    "GroundRequest",
    "HealthReply",
    "ImageReply",
    "InfoReply",
    "JobEventReply",
    "JobRequest",
    "JobStatusReply",
    "MaskPayload",
    "ObjectMaskReply",
    "ObjectsReply",
    "OpenSessionRequest",
    "PredictReply",
    "PredictRequest",
    "ReferRequest",
    "SessionReply",
    "UseWeightsRequest",
    "WeightsReply",
    "decode_array",
    "decode_mask",
    "encode_array",
    "encode_mask",
    "object_mask_from_reply",
    "object_mask_to_reply",
]

MASK_ENCODING: Literal["zlib-packbits"] = "zlib-packbits"

JobStateName = Literal["queued", "running", "done", "cancelled", "failed"]


class ErrorBody(BaseModel):
    type: str = Field(description="error class, e.g. UnknownSessionError")
    message: str = Field(description="what went wrong and what to do about it")


class ErrorReply(BaseModel):
    error: ErrorBody


class HealthReply(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class InfoReply(BaseModel):
    model: str = Field(description="model variant name")
    device: str = Field(description="torch device the model runs on")
    checkpoint: str = Field(description="weights source ('random' for random weights)")
    version: str = Field(description="napari-seem version of the server")
    tile: int = Field(description="outer tile size in pixels (the model input)")
    halo: int = Field(description="context pixels on each side of a tile's core")


class OpenSessionRequest(BaseModel):
    path: str | None = Field(
        default=None,
        description="zarr / OME-Zarr directory or TIFF file readable by the server, inside "
        "one of its allowed roots; pixels never travel through the socket. Give exactly one "
        "of path and image_id.",
    )
    image_id: str | None = Field(
        default=None, description="an id returned by POST /images (a small in-memory image)"
    )
    bands: tuple[int, int, int] | None = Field(
        default=None, description="channel indices for R, G, B of a multi-band image"
    )
    plane: list[int] = Field(
        default_factory=list, description="one index per plane axis of a stack, e.g. [z]"
    )
    level: int = Field(
        default=0,
        ge=0,
        le=64,
        description="pyramid level to infer on (0 = full resolution; coarser = faster); "
        "prompts and masks stay in level-0 pixels",
    )

    @model_validator(mode="after")
    def _one_image(self) -> Self:
        if (self.path is None) == (self.image_id is None):
            raise ValueError(
                "give exactly one of 'path' (an image the server reads) and 'image_id' "
                "(from POST /images)"
            )
        return self


class SessionReply(BaseModel):
    session_id: str
    image_shape: tuple[int, int] = Field(description="level-0 (H, W)")
    grid_shape: tuple[int, int] = Field(description="tile rows and columns")
    tile_size: tuple[int, int] = Field(description="core size (th, tw) of the tiles")
    halo: int
    level: int = Field(default=0, description="pyramid level inference runs on")
    level_shape: tuple[int, int] | None = Field(
        default=None, description="(h, w) of that level; tile sizes count its pixels"
    )


class ImageReply(BaseModel):
    image_id: str
    shape: list[int] = Field(description="array shape as uploaded")
    dtype: str
    axes: str = Field(description="axis letters the server read the array with, e.g. 'zyx'")
    nbytes: int = Field(description="uncompressed bytes the server holds for it")


class PredictRequest(BaseModel):
    prompt: dict[str, Any] = Field(
        description="an ObjectPrompt as ObjectPrompt.to_dict() writes it (level-0 (row, col))"
    )
    object_id: str | None = Field(
        default=None, description="names the object across rounds (the engine's memory)"
    )
    vocabulary: list[str] | None = Field(
        default=None,
        description="class names: an object without text is named by its best class of "
        "them (never 'background'); absent: no class name",
    )


class MaskPayload(BaseModel):
    shape: tuple[int, int] = Field(description="(h, w) of the crop")
    encoding: Literal["zlib-packbits"] = MASK_ENCODING
    data: str = Field(description="base64 of zlib.compress(numpy.packbits(mask, row-major))")


class ObjectMaskReply(BaseModel):
    mask: MaskPayload
    offset: tuple[int, int] = Field(description="level-0 (row, col) of mask[0, 0]")
    score: float
    class_name: str | None = None
    class_score: float | None = None
    prompt: dict[str, Any] | None = Field(default=None, description="the prompt answered")
    source: str = "interactive"


class PredictReply(ObjectMaskReply):
    truncated: bool = Field(
        default=False,
        description="the object reached beyond max_tiles decoded tiles and was cut there",
    )
    max_tiles: int | None = Field(default=None, description="the tile limit of the answer")


BoxField = tuple[int, int, int, int] | None


class GroundRequest(BaseModel):
    text: str = Field(min_length=1, max_length=1000, description="the phrase, e.g. 'nucleus'")
    box: BoxField = Field(
        default=None,
        description="level-0 (row0, col0, row1, col1), max exclusive; default the whole image",
    )
    score_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    max_instances: int | None = Field(default=None, ge=1, le=10_000)


class ReferRequest(BaseModel):
    example_session_id: str = Field(description="the session whose image the example is on")
    example: dict[str, Any] = Field(
        description="an ObjectPrompt (ObjectPrompt.to_dict()) in level-0 pixels of the "
        "example image"
    )
    box: BoxField = Field(default=None, description="level-0 box of the target image")


class ObjectsReply(BaseModel):
    objects: list[ObjectMaskReply] = Field(description="best first")


class JobRequest(BaseModel):
    kind: str = Field(
        default="encode_region",
        min_length=1,
        max_length=100,
        description="a job kind the engine has registered ('encode_region', 'segment' and "
        "'fine_tune' are built in)",
    )
    box: BoxField = Field(
        default=None,
        description="level-0 (row0, col0, row1, col1), max exclusive; default the whole image "
        "(shorthand for params.box)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="kind-specific parameters, checked by the kind"
    )


class JobStatusReply(BaseModel):
    job_id: str
    kind: str
    session_id: str
    state: JobStateName
    done: int = Field(
        description="work units finished (tiles for encode_region and segment, optimizer "
        "steps for fine_tune)"
    )
    total: int
    error: str | None = None
    has_result: bool = Field(default=False, description="GET /jobs/{id}/result has a result")
    message: str | None = Field(
        default=None, description="latest progress text, e.g. 'step 40/100 loss 0.312'"
    )
    info: dict[str, Any] | None = Field(
        default=None,
        description="the JSON result of a finished job whose kind answers one (fine_tune: "
        "'weights' path, 'steps', 'loss', 'seconds', 'checkpoint', ...)",
    )


class JobEventReply(BaseModel):
    job_id: str
    seq: int
    state: JobStateName
    done: int
    total: int
    error: str | None = None
    message: str | None = None


class WeightsReply(BaseModel):
    variant: str = Field(description="model variant name")
    checkpoint: str = Field(description="what identifies the weights in use")
    path: str | None = Field(
        default=None, description="the weight file in use on top of the base (None: base)"
    )
    base: str = Field(description="what identifies the base weights")
    fine_tuned: bool = Field(description="a weight file is in use (path is set)")


class UseWeightsRequest(BaseModel):
    path: str | None = Field(
        default=None,
        description="a weight file the server may read (a fine_tune job's 'weights', or a "
        "file inside the allowed roots); null switches back to the base weights",
    )


def encode_mask(mask: npt.NDArray[np.bool_]) -> MaskPayload:
    """``mask`` ``(h, w)`` bool -> its compressed payload."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask payload holds a 2-D mask; got shape {mask.shape}")
    packed = zlib.compress(np.packbits(mask, axis=None).tobytes(), 6)
    return MaskPayload(
        shape=(int(mask.shape[0]), int(mask.shape[1])),
        data=base64.b64encode(packed).decode("ascii"),
    )


def decode_mask(payload: MaskPayload) -> npt.NDArray[np.bool_]:
    """The ``(h, w)`` bool mask of a payload.

    Raises:
        ValueError: the payload is corrupt or does not match its shape.
    """
    h, w = payload.shape
    if h < 0 or w < 0:
        raise ValueError(f"a mask payload's shape must be non-negative; got {payload.shape}")
    try:
        raw = zlib.decompress(base64.b64decode(payload.data, validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"corrupt mask payload: {exc}") from None
    bits = np.frombuffer(raw, dtype=np.uint8)
    if bits.size != (h * w + 7) // 8:
        raise ValueError(
            f"mask payload has {bits.size} bytes; shape {payload.shape} needs {(h * w + 7) // 8}"
        )
    return np.unpackbits(bits, count=h * w).astype(bool).reshape(h, w)


def object_mask_to_reply(obj: ObjectMask) -> ObjectMaskReply:
    """An engine answer as its wire form."""
    return ObjectMaskReply(
        mask=encode_mask(obj.mask),
        offset=obj.offset,
        score=obj.score,
        class_name=obj.class_name,
        class_score=obj.class_score,
        prompt=None if obj.prompt is None else obj.prompt.to_dict(),
        source=obj.source,
    )


def object_mask_from_reply(reply: ObjectMaskReply) -> ObjectMask:
    """The :class:`ObjectMask` a reply describes (equal to the server's object)."""
    prompt = None if reply.prompt is None else prompt_from_dict(reply.prompt)
    if prompt is not None and not isinstance(prompt, ObjectPrompt | TextPrompt | ReferringExample):
        raise ValueError(f"an ObjectMask prompt cannot be a {prompt.kind!r} prompt")
    return ObjectMask(
        decode_mask(reply.mask),
        reply.offset,
        score=reply.score,
        class_name=reply.class_name,
        class_score=reply.class_score,
        prompt=prompt,
        source=reply.source,
    )


# ---------------------------------------------------------------------------- arrays

ARRAY_HEADERS = ("X-Array-Dtype", "X-Array-Shape", "X-Array-Encoding", "X-Array-Axes")
_ARRAY_KINDS = "biuf"


class ArrayPayloadError(ValueError):
    """An uploaded array body that does not match its headers (or is too large:
    ``too_large``)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def encode_array(array: npt.ArrayLike, *, axes: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A numeric array as the ``POST /images`` body and headers (zlib, little-endian)."""
    data = np.asarray(array)
    if data.dtype.kind not in _ARRAY_KINDS:
        raise ValueError(
            f"only bool, integer and float arrays can be uploaded; got dtype {data.dtype}"
        )
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    headers = {
        "X-Array-Dtype": data.dtype.str,
        "X-Array-Shape": ",".join(str(n) for n in data.shape),
        "X-Array-Encoding": "zlib",
        "Content-Type": "application/octet-stream",
    }
    if axes is not None:
        headers["X-Array-Axes"] = axes
    return zlib.compress(data.tobytes(), 1), headers


def decode_array(
    body: bytes, *, dtype: str, shape: str, encoding: str, max_bytes: int
) -> npt.NDArray[Any]:
    """The array of a ``POST /images`` body (read-only, C-order).

    Raises:
        ArrayPayloadError: a bad dtype / shape header, a body that does not hold exactly
            that many bytes, or (``too_large``) more than ``max_bytes`` uncompressed.
    """
    try:
        with warnings.catch_warnings():  # deprecated aliases ('a') are refused below anyway
            warnings.simplefilter("ignore", DeprecationWarning)
            kind = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):
        kind = None
    if kind is None or kind.kind not in _ARRAY_KINDS or kind.fields is not None:
        raise ArrayPayloadError(
            f"X-Array-Dtype {dtype!r} is not a bool, integer or float numpy dtype "
            "(e.g. '|u1', '<u2', '<f4')"
        )
    try:
        sizes = [int(part) for part in shape.split(",")]
    except ValueError:
        sizes = []
    if not 2 <= len(sizes) <= 5 or min(sizes) < 1:
        raise ArrayPayloadError(
            f"X-Array-Shape {shape!r} must be 2 to 5 positive comma-separated sizes, "
            "e.g. '512,512' or '10,512,512'"
        )
    expected = math.prod(sizes) * kind.itemsize
    if expected > max_bytes:
        raise ArrayPayloadError(
            f"the array holds {expected} bytes; the server keeps at most {max_bytes} bytes "
            "of in-memory images: save it as zarr inside an allowed root and open it by path",
            too_large=True,
        )
    if encoding == "raw":
        raw = body
    elif encoding == "zlib":
        inflate = zlib.decompressobj()
        try:
            raw = inflate.decompress(body, expected + 1)  # never inflate past the bound
        except zlib.error as exc:
            raise ArrayPayloadError(f"the body is not zlib data: {exc}") from None
        if not inflate.eof:
            raise ArrayPayloadError(
                f"the zlib body holds more than the {expected} bytes X-Array-Shape and "
                "X-Array-Dtype promise (or is truncated)"
            )
    else:
        raise ArrayPayloadError(f"X-Array-Encoding must be 'zlib' or 'raw'; got {encoding!r}")
    if len(raw) != expected:
        raise ArrayPayloadError(
            f"the body holds {len(raw)} bytes; shape {tuple(sizes)} of {kind} needs {expected}"
        )
    return np.frombuffer(raw, dtype=kind).reshape(sizes)
