"""Routes of background jobs: start one on a session, follow it, cancel it, fetch its result.

A job's result travels as the binary labels payload of :mod:`napari_seem.core.labels`, or as
JSON for a kind answering a mapping (``fine_tune``).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from napari_seem.core.labels import LABELS_MEDIA_TYPE, LabelsCrop
from napari_seem.remote.protocol import JobEventReply, JobRequest, JobStatusReply
from napari_seem.remote.routes.deps import AUTH, Context, ServerContext
from napari_seem.remote.routes.errors import ERRORS, ApiError, refusal

__all__ = ["router"]

router = APIRouter(dependencies=AUTH, responses=ERRORS)

_LABELS = {LABELS_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}


def _status(ctx: ServerContext, job_id: str) -> JobStatusReply:
    return JobStatusReply.model_validate(ctx.engine.job_status(job_id), from_attributes=True)


@router.post(
    "/sessions/{session_id}/jobs",
    response_model=JobStatusReply,
    status_code=202,
    responses={403: refusal("out path not allowed")},
)
def start_job(ctx: Context, session_id: str, body: JobRequest) -> JobStatusReply:
    params = dict(body.params)
    if body.box is not None:
        if "box" in params and list(params["box"]) != list(body.box):
            raise ApiError(422, "ValidationError", "box and params.box differ: give the box once")
        params["box"] = body.box
    if isinstance(params.get("out"), str):  # a path the server writes: same roots
        params["out"] = ctx.roots.check_output(params["out"])
    if body.kind == "fine_tune" and isinstance(params.get("checkpoint"), str):
        params["checkpoint"] = ctx.roots.check_weights(params["checkpoint"], ctx.engine.work_dir)
    job_id = ctx.engine.start_job(body.kind, session_id, **params)
    return _status(ctx, job_id)


@router.get("/jobs/{job_id}", response_model=JobStatusReply)
def job_status(ctx: Context, job_id: str) -> JobStatusReply:
    return _status(ctx, job_id)


@router.get("/jobs/{job_id}/events", response_model=list[JobEventReply])
def job_events(ctx: Context, job_id: str, since: int = 0) -> list[JobEventReply]:
    return [
        JobEventReply.model_validate(event, from_attributes=True)
        for event in ctx.engine.events(job_id, since=max(since, 0))
    ]


@router.post("/jobs/{job_id}/cancel", response_model=JobStatusReply)
def cancel_job(ctx: Context, job_id: str) -> JobStatusReply:
    ctx.engine.cancel_job(job_id)
    return _status(ctx, job_id)


@router.get(
    "/jobs/{job_id}/result",
    responses={
        409: refusal("the job has no result (yet)"),
        200: {"description": "the labels payload (napari_seem.core.labels)", "content": _LABELS},
    },
    response_class=Response,
)
def job_result(ctx: Context, job_id: str) -> Response:
    result = ctx.engine.job_result(job_id)
    if isinstance(result, Mapping):
        return JSONResponse(dict(result))
    if not isinstance(result, LabelsCrop):
        raise ApiError(
            409,
            "JobResultUnavailableError",
            f"job {job_id} left a {type(result).__name__}, which has no wire form: a "
            "runner served over HTTP must return a LabelsCrop",
        )
    return Response(result.to_bytes(), media_type=LABELS_MEDIA_TYPE)
