"""Routes about the server and its model: ``/health``, ``/info`` and ``/weights``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from napari_seem.remote.protocol import HealthReply, InfoReply, UseWeightsRequest, WeightsReply
from napari_seem.remote.routes.deps import AUTH, Context
from napari_seem.remote.routes.errors import ERRORS, ApiError, refusal

__all__ = ["public", "router"]

#: Routes that need no token.
public = APIRouter()
#: Routes that need the bearer token.
router = APIRouter(dependencies=AUTH, responses=ERRORS)

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@public.get("/health", response_model=HealthReply)
def health(ctx: Context) -> HealthReply:
    return HealthReply(version=ctx.version)


@router.get("/info", response_model=InfoReply)
def info(ctx: Context) -> InfoReply:
    engine = ctx.engine
    model = engine.predictor.model
    return InfoReply(
        model=str(getattr(model, "name", type(model).__name__)),
        device=str(getattr(model, "device", "unknown")),
        checkpoint=engine.checkpoint_id,
        version=ctx.version,
        tile=engine.tile,
        halo=engine.halo,
    )


@router.get("/weights", response_model=WeightsReply)
def weights(ctx: Context) -> WeightsReply:
    return WeightsReply.model_validate(ctx.engine.weights_info(), from_attributes=True)


@router.post("/weights", response_model=WeightsReply, responses={403: refusal("path not allowed")})
def use_weights(ctx: Context, body: UseWeightsRequest) -> WeightsReply:
    engine = ctx.engine
    path = None if body.path is None else ctx.roots.check_weights(body.path, engine.work_dir)
    return WeightsReply.model_validate(engine.use_weights(path), from_attributes=True)


@router.get(
    "/weights/file",
    responses={
        409: refusal("the base weights are in use"),
        200: {"description": "the weight file in use (.safetensors)", "content": _BINARY},
    },
    response_class=Response,
)
def weights_file(ctx: Context) -> Response:
    info = ctx.engine.weights_info()
    if info.path is None:
        raise ApiError(
            409,
            "NoWeightFile",
            "the model runs its base weights, which have no file to send: fine-tune "
            "first (the fine_tune job) or switch to a weight file with POST /weights",
        )
    path = Path(info.path)
    if not path.is_file():
        raise ApiError(409, "NoWeightFile", f"cannot read the weight file in use: {path} is gone")
    # streamed from disk in chunks: constant memory however many clients download at once
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=path.name,
        content_disposition_type="attachment",
    )
