"""Routes of sessions (one image open for prompting): open, info, close, predict, ground, refer.

Prompts and masks are in level-0 ``(row, col)`` pixels of the session's image; a mask travels
as the packed-bit payload of :mod:`napari_seem.remote.protocol`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from napari_seem.engine import EngineError
from napari_seem.engine.confined import check_links
from napari_seem.remote.protocol import (
    GroundRequest,
    ObjectsReply,
    OpenSessionRequest,
    PredictReply,
    PredictRequest,
    ReferRequest,
    SessionReply,
    object_mask_to_reply,
)
from napari_seem.remote.routes.deps import AUTH, Context
from napari_seem.remote.routes.errors import ERRORS, ApiError, refusal

__all__ = ["router"]

router = APIRouter(dependencies=AUTH, responses=ERRORS)


@router.post(
    "/sessions",
    response_model=SessionReply,
    status_code=201,
    responses={403: refusal("path not allowed"), 400: refusal("the image cannot be read")},
)
def open_session(ctx: Context, body: OpenSessionRequest) -> SessionReply:
    engine = ctx.engine
    source = None if body.path is None else ctx.roots.check(body.path)
    if source is not None and Path(source).is_dir():
        check_links(source, ctx.roots.dirs)  # a store's symlinks must stay inside the roots
    try:
        session_id = engine.open_session(
            source,
            image_id=body.image_id,
            bands=body.bands,
            level=body.level,
            plane=tuple(body.plane),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, EngineError):
            raise
        # the file the client named cannot be read as an image (bad metadata, e.g. a
        # multiscales dataset path with '..', a truncated store): the client's input
        raise ApiError(
            400,
            "UnreadableImage",
            f"cannot open {body.path or body.image_id!r} as an image: "
            f"{type(exc).__name__}: {exc}; check that it is a readable zarr / OME-Zarr / "
            "TIFF image with valid metadata",
        ) from None
    return SessionReply.model_validate(engine.session_info(session_id), from_attributes=True)


@router.get("/sessions/{session_id}", response_model=SessionReply)
def session_info(ctx: Context, session_id: str) -> SessionReply:
    return SessionReply.model_validate(ctx.engine.session_info(session_id), from_attributes=True)


@router.delete("/sessions/{session_id}", status_code=204)
def close_session(ctx: Context, session_id: str) -> None:
    ctx.engine.close_session(session_id)


@router.post("/sessions/{session_id}/predict", response_model=PredictReply)
def predict(ctx: Context, session_id: str, body: PredictRequest) -> PredictReply:
    shape = ctx.engine.session_info(session_id).image_shape
    prompt = ctx.prompts.parse(body.prompt, image_shape=shape)
    answer = ctx.engine.predict_answer(
        session_id, prompt, object_id=body.object_id, vocabulary=body.vocabulary
    )
    reply = object_mask_to_reply(answer.mask).model_dump()
    return PredictReply(**reply, truncated=answer.truncated, max_tiles=answer.max_tiles)


@router.post("/sessions/{session_id}/ground", response_model=ObjectsReply)
def ground(ctx: Context, session_id: str, body: GroundRequest) -> ObjectsReply:
    found = ctx.engine.ground(
        session_id,
        body.text,
        box=body.box,
        score_threshold=body.score_threshold,
        max_instances=body.max_instances,
    )
    return ObjectsReply(objects=[object_mask_to_reply(obj) for obj in found])


@router.post("/sessions/{session_id}/refer", response_model=ObjectsReply)
def refer(ctx: Context, session_id: str, body: ReferRequest) -> ObjectsReply:
    ctx.engine.session_info(session_id)  # 404 for an unknown target before any decoding
    shape = ctx.engine.session_info(body.example_session_id).image_shape
    example = ctx.prompts.parse(body.example, image_shape=shape)
    found = ctx.engine.refer(session_id, body.example_session_id, example, box=body.box)
    return ObjectsReply(objects=[object_mask_to_reply(obj) for obj in found])
