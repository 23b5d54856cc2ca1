"""Routes of uploaded in-memory images: ``POST`` / ``GET /images``, ``GET`` / ``DELETE
/images/{id}``.

The upload body is binary (see :func:`napari_seem.remote.protocol.decode_array`), never JSON.
"""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from napari_seem.remote.protocol import ArrayPayloadError, ImageReply, decode_array
from napari_seem.remote.routes.deps import AUTH, Context
from napari_seem.remote.routes.errors import ERRORS, ApiError

__all__ = ["router"]

router = APIRouter(dependencies=AUTH, responses=ERRORS)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "zlib.compress(array.tobytes()) of a C-order array (or raw "
        "bytes with X-Array-Encoding: raw); see napari_seem.remote.protocol",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/images", response_model=ImageReply, status_code=201, openapi_extra=_UPLOAD_BODY)
async def upload_image(
    ctx: Context,
    request: Request,
    x_array_dtype: str = Header(description="numpy dtype, e.g. '|u1', '<u2', '<f4'"),
    x_array_shape: str = Header(description="comma-separated sizes, e.g. '10,512,512'"),
    x_array_encoding: str = Header(default="zlib", description="'zlib' or 'raw'"),
    x_array_axes: str | None = Header(default=None, description="letters, e.g. 'zyx'"),
) -> ImageReply:
    engine = ctx.engine
    declared = _declared_bytes(x_array_dtype, x_array_shape)
    # concurrent uploads are refused by their declared sizes before any is decoded
    reserved = declared if 0 < declared <= engine.max_upload_bytes else 0
    with engine.reserve_upload(reserved) as reservation:
        body = await request.body()
        try:
            array = await run_in_threadpool(
                decode_array,
                body,
                dtype=x_array_dtype,
                shape=x_array_shape,
                encoding=x_array_encoding,
                max_bytes=engine.max_upload_bytes,
            )
        except ArrayPayloadError as exc:
            status = 413 if exc.too_large else 422
            raise ApiError(status, "ArrayPayloadError", str(exc)) from None
        image_id = await run_in_threadpool(
            engine.add_image, array, axes=x_array_axes, reservation=reservation
        )
    return ImageReply.model_validate(engine.image_info(image_id), from_attributes=True)


def _declared_bytes(dtype: str, shape: str) -> int:
    """Bytes the upload headers promise (0 when they are malformed: decoding refuses)."""
    try:
        sizes = [int(part) for part in shape.split(",")]
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError, SyntaxError):
        return 0
    return math.prod(sizes) * itemsize if sizes and min(sizes) > 0 else 0


@router.get("/images", response_model=list[ImageReply])
def list_images(ctx: Context) -> list[ImageReply]:
    """Every uploaded image the server holds for clients, oldest first."""
    return [ImageReply.model_validate(i, from_attributes=True) for i in ctx.engine.images()]


@router.get("/images/{image_id}", response_model=ImageReply)
def image_info(ctx: Context, image_id: str) -> ImageReply:
    return ImageReply.model_validate(ctx.engine.image_info(image_id), from_attributes=True)


@router.delete("/images/{image_id}", status_code=204)
def delete_image(ctx: Context, image_id: str) -> None:
    ctx.engine.delete_image(image_id)
