"""The wire protocol between the engine server and its clients (pydantic models).

Both sides import this module, so a request the client builds is the request the server
validates. It imports numpy and pydantic only (never torch or FastAPI).

**Mask payload.** A predicted mask travels as JSON: ``MaskPayload`` holds the crop's
``shape`` and ``data``, the base64 text of ``zlib.compress(np.packbits(mask))`` (row-major,
first pixel in the high bit, ``encoding = "zlib-packbits"``). One bit per pixel plus zlib
keeps an object of a few megapixels at a few kilobytes, and JSON keeps the reply fully
described by the OpenAPI schema (no metadata hidden in headers).

**Errors.** Every refusal is an :class:`ErrorReply` ``{"error": {"type", "message"}}``;
``type`` is the engine's error class name (``UnknownSessionError``, ...) or one of the
transport's own (``Unauthorized``, ``PathNotAllowed``, ``ValidationError``, ``NotFound``,
``InternalError``).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from napari_seem.prompts import ObjectPrompt, ReferringExample, TextPrompt, prompt_from_dict
from napari_seem.results import ObjectMask

__all__ = [
    "MASK_ENCODING",
    "ErrorBody",
    "ErrorReply",
    "HealthReply",
    "InfoReply",
    "JobEventReply",
    "JobRequest",
    "JobStatusReply",
    "MaskPayload",
    "ObjectMaskReply",
    "OpenSessionRequest",
    "PredictRequest",
    "SessionReply",
    "decode_mask",
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
    path: str = Field(
        description="zarr / OME-Zarr directory or TIFF file readable by the server, inside "
        "one of its allowed roots; pixels never travel through the socket"
    )
    bands: tuple[int, int, int] | None = Field(
        default=None, description="channel indices for R, G, B of a multi-band image"
    )
    plane: list[int] = Field(
        default_factory=list, description="one index per plane axis of a stack, e.g. [z]"
    )


class SessionReply(BaseModel):
    session_id: str
    image_shape: tuple[int, int] = Field(description="level-0 (H, W)")
    grid_shape: tuple[int, int] = Field(description="tile rows and columns")
    tile_size: tuple[int, int] = Field(description="core size (th, tw) of the tiles")
    halo: int


class PredictRequest(BaseModel):
    prompt: dict[str, Any] = Field(
        description="an ObjectPrompt as ObjectPrompt.to_dict() writes it (level-0 (row, col))"
    )
    object_id: str | None = Field(
        default=None, description="names the object across rounds (the engine's memory)"
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


class JobRequest(BaseModel):
    kind: Literal["encode_region"] = "encode_region"
    box: tuple[int, int, int, int] | None = Field(
        default=None,
        description="level-0 (row0, col0, row1, col1), max exclusive; default the whole image",
    )


class JobStatusReply(BaseModel):
    job_id: str
    kind: str
    session_id: str
    state: JobStateName
    done: int = Field(description="work units finished (tiles for encode_region)")
    total: int
    error: str | None = None


class JobEventReply(BaseModel):
    job_id: str
    seq: int
    state: JobStateName
    done: int
    total: int
    error: str | None = None


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
