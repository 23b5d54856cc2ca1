"""The engine over HTTP (tier T3): one endpoint per :class:`~napari_seem.engine.Engine` method.

The transport knows nothing of SEEM: it validates requests with the models of
:mod:`napari_seem.remote.protocol`, calls the engine, and maps every
:class:`~napari_seem.engine.errors.EngineError` to a typed error reply
``{"error": {"type", "message"}}``.

Endpoints (all but ``/health`` need ``Authorization: Bearer <token>``):

- ``GET /health``: liveness, no auth.
- ``GET /info``: model, device, checkpoint, version, tile and halo.
- ``POST /images``: upload a small in-memory image (binary body, see
  :mod:`napari_seem.remote.protocol`) -> its id; ``GET`` / ``DELETE /images/{id}``.
- ``POST /sessions``: open an image by path (inside an allowed root; 403 otherwise) or by
  uploaded ``image_id``, optionally on a coarser pyramid ``level``.
- ``GET /sessions/{id}``, ``DELETE /sessions/{id}``: session info; close.
- ``POST /sessions/{id}/predict``: one object prompt -> :class:`ObjectMaskReply`.
- ``POST /sessions/{id}/ground``: every instance of a phrase in a box -> ``ObjectsReply``.
- ``POST /sessions/{id}/refer``: what an example on another session marks -> ``ObjectsReply``.
- ``POST /sessions/{id}/jobs``: start a registered job kind (202), e.g. ``encode_region`` or
  ``segment``; a job parameter ``out`` is a path the server writes, so it must lie inside
  the allowed roots like image paths (403 otherwise).
- ``GET /jobs/{id}``, ``GET /jobs/{id}/events?since=N``, ``POST /jobs/{id}/cancel``,
  ``GET /jobs/{id}/result`` (binary labels payload, :mod:`napari_seem.core.labels`, or
  JSON for a kind answering a mapping, e.g. ``fine_tune``; its status carries it as
  ``info`` too). A ``fine_tune`` job's ``checkpoint`` is a path the server reads: inside the
  allowed roots or the engine's work dir (403 otherwise).
- ``GET /weights``: the weights in use; ``POST /weights`` ``{"path": FILE | null}``: switch
  to a fine-tuned weight file (inside the allowed roots or the engine's work dir, where
  ``fine_tune`` jobs write) or back to the base weights (null); ``GET /weights/file``: the
  weight file in use (409 on the base weights), e.g. to save it on the client's machine.

Status codes: 401 bad/missing token, 403 path outside the allowed roots, 404 unknown
session / job / image / route, 400 a request the engine cannot serve, 409 a stale disk
feature cache or a job result that is not there (yet), 413 a body larger than
``max_body_bytes`` (``BodyTooLarge``) or an upload over the engine's image budget, 422
a malformed body (bad JSON included) or a prompt that is invalid (non-finite
coordinates), outside the image or too large (``PromptTooLarge``: more than
``max_visual_prompts`` visual prompts or ``max_points`` points / vertices in one
object), 500 only for bugs (still a typed reply).

**Exposure.** The server is meant for 127.0.0.1; ``napari-seem serve`` refuses any other
interface unless given ``--allow-remote`` and an explicit token (see
:func:`check_bind_host`). The bearer token travels in clear text over plain HTTP: put a
TLS proxy in front of a server reachable from other machines.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from napari_seem.core.labels import LABELS_MEDIA_TYPE, LabelsCrop
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.engine.core import Engine, ImageInfo, JobStatus, SessionInfo
from napari_seem.engine.errors import (
    EngineError,
    ImageTooLargeError,
    InvalidRequestError,
    JobResultUnavailableError,
    PromptOutsideImageError,
    StaleCacheRefusedError,
    UnknownImageError,
    UnknownJobError,
    UnknownSessionError,
)
from napari_seem.engine.weights import WeightsInfo
from napari_seem.remote.protocol import (
    ArrayPayloadError,
    ErrorReply,
    GroundRequest,
    HealthReply,
    ImageReply,
    InfoReply,
    JobEventReply,
    JobRequest,
    JobStatusReply,
    ObjectMaskReply,
    ObjectsReply,
    OpenSessionRequest,
    PredictRequest,
    ReferRequest,
    SessionReply,
    UseWeightsRequest,
    WeightsReply,
    decode_array,
    object_mask_to_reply,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_VISUAL_PROMPTS",
    "MIN_REMOTE_TOKEN_LENGTH",
    "ApiError",
    "bind_socket",
    "check_bind_host",
    "create_app",
    "is_loopback_host",
]

DEFAULT_MAX_BODY_BYTES = 16 * 1024**2
"""Largest request body the server reads (bigger: 413 ``BodyTooLarge``)."""
DEFAULT_MAX_VISUAL_PROMPTS = 64
"""Most visual prompts in one object prompt (more: 422 ``PromptTooLarge``)."""
DEFAULT_MAX_POINTS = 10_000
"""Most points + vertices over one object's visual prompts (more: 422 ``PromptTooLarge``)."""
MIN_REMOTE_TOKEN_LENGTH = 16
"""Shortest token accepted on a non-loopback interface."""

_log = logging.getLogger(__name__)

_ENGINE_STATUS: dict[type[EngineError], int] = {
    UnknownSessionError: 404,
    UnknownJobError: 404,
    UnknownImageError: 404,
    PromptOutsideImageError: 422,
    ImageTooLargeError: 413,
    StaleCacheRefusedError: 409,
    JobResultUnavailableError: 409,
    InvalidRequestError: 400,
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorReply, "description": text}
    for code, text in {
        400: "a request the engine cannot serve as given",
        401: "missing or wrong bearer token",
        404: "unknown session, job or image",
        409: "stale feature cache, or a job result that is not available",
        413: "request body larger than the server's limit, or an image over the budget",
        422: "malformed request, invalid or too large prompt",
    }.items()
}


class ApiError(Exception):
    """A transport-level refusal: ``status`` with a typed ``{"error": ...}`` body."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


def _reply(status: int, type_: str, message: str, **headers: str) -> JSONResponse:
    body = {"error": {"type": type_, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers or None)


class _BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked
    body is counted as it arrives (and buffered, at most ``limit`` bytes) and refused
    once it exceeds the limit, before the app sees it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                too_large = False  # the server rejects a malformed header itself
            if too_large:
                await self._refuse(scope, receive, send, int(declared))
                return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send, None)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        got = "more" if size is None else f"{size} bytes"
        response = _reply(
            413,
            "BodyTooLarge",
            f"the request body ({got}) exceeds the server's limit of {self.limit} bytes: "
            "send fewer prompt points; upload only small images (save a large one as zarr "
            "inside an allowed root and open it by path)",
            Connection="close",
        )
        await response(scope, receive, send)


def _count_points(prompt: ObjectPrompt) -> int:
    """Points + vertices over the visual prompts (a box counts 2, a mask 1)."""
    total = 0
    for visual in prompt.visual:
        coords = getattr(visual, "coords", getattr(visual, "vertices", None))
        total += 2 if visual.kind == "box" else 1 if coords is None else len(coords)
    return total


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names a loopback interface only (``localhost``, 127.x, ``::1``).

    Wildcards (``0.0.0.0``, ``::``), other addresses and other host names are not.
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind_host(host: str, *, allow_remote: bool, token: str | None) -> None:
    """Refuse to serve on a non-loopback ``host`` unless asked to and protected.

    Args:
        host: the interface to bind.
        allow_remote: the operator's explicit consent (``serve --allow-remote``).
        token: the token given explicitly (``--token`` or ``$NAPARI_SEEM_TOKEN``); a
            generated one is ``None`` here, as nobody could have shared it safely.

    Raises:
        ValueError: with what to do, when ``host`` is not loopback and consent or a
            strong enough token is missing.
    """
    if is_loopback_host(host):
        return
    if not allow_remote:
        raise ValueError(
            f"refusing to listen on {host!r}, which is not a loopback interface: anyone who "
            "can reach it could run the model and read images under the allowed roots. Use "
            "--host 127.0.0.1 (and an SSH tunnel), or pass --allow-remote with --token "
            "(or $NAPARI_SEEM_TOKEN) to expose it deliberately"
        )
    if not token:
        raise ValueError(
            f"--allow-remote on {host!r} needs an explicit token: pass --token TOKEN or set "
            "$NAPARI_SEEM_TOKEN (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))')"
        )
    if len(token) < MIN_REMOTE_TOKEN_LENGTH:
        raise ValueError(
            f"the token is too short for a remote server ({len(token)} characters; at least "
            f"{MIN_REMOTE_TOKEN_LENGTH}): use e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'"
        )


def _session_reply(info: SessionInfo) -> SessionReply:
    return SessionReply(
        session_id=info.session_id,
        image_shape=info.image_shape,
        grid_shape=info.grid_shape,
        tile_size=info.tile_size,
        halo=info.halo,
        level=info.level,
        level_shape=info.level_shape,
    )


def _job_reply(status: JobStatus) -> JobStatusReply:
    return JobStatusReply(
        job_id=status.job_id,
        kind=status.kind,
        session_id=status.session_id,
        state=status.state,
        done=status.done,
        total=status.total,
        error=status.error,
        has_result=status.has_result,
        message=status.message,
        info=None if status.info is None else dict(status.info),
    )


def _weights_reply(info: WeightsInfo) -> WeightsReply:
    return WeightsReply(
        variant=info.variant,
        checkpoint=info.checkpoint,
        path=info.path,
        base=info.base,
        fine_tuned=info.fine_tuned,
    )


def _image_reply(info: ImageInfo) -> ImageReply:
    return ImageReply(
        image_id=info.image_id,
        shape=list(info.shape),
        dtype=info.dtype,
        axes=info.axes,
        nbytes=info.nbytes,
    )


def _is_url(text: str) -> bool:
    return "://" in text


class _Roots:
    """Where the server may read images: local directories and URL prefixes."""

    def __init__(self, roots: Sequence[str | Path]) -> None:
        self.dirs = [Path(r).expanduser().resolve() for r in roots if not _is_url(str(r))]
        self.urls = [str(r).rstrip("/") + "/" for r in roots if _is_url(str(r))]

    def check(self, path: str, *, what: str = "image") -> str:
        """The path to open or write (resolved), or :class:`ApiError` 403 when it is not
        allowed."""
        allowed = ", ".join([*(str(d) for d in self.dirs), *self.urls]) or "none"
        if _is_url(path):
            if any(path.startswith(u) for u in self.urls):
                return path
        else:
            resolved = Path(path).expanduser().resolve()  # symlinks cannot escape a root
            if any(resolved == d or resolved.is_relative_to(d) for d in self.dirs):
                return str(resolved)
        raise ApiError(
            403,
            "PathNotAllowed",
            f"{path!r} is outside the server's allowed roots ({allowed}): put the {what} "
            "under one of them or restart the server with --allow-root DIR",
        )


def create_app(
    engine: Engine,
    *,
    token: str,
    allowed_roots: Sequence[str | Path],
    version: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_visual_prompts: int = DEFAULT_MAX_VISUAL_PROMPTS,
    max_points: int = DEFAULT_MAX_POINTS,
) -> FastAPI:
    """The HTTP app serving ``engine``.

    Args:
        engine: the engine to serve; the app does not close it.
        token: the bearer token every request but ``/health`` must carry.
        allowed_roots: directories (and URL prefixes such as ``s3://bucket/data``) whose
            images ``POST /sessions`` may open; everything else is refused with 403.
        version: reported by ``/health`` and ``/info``; default the installed version.
        max_body_bytes: largest request body read; a larger one is refused with 413.
        max_visual_prompts: most visual prompts in one object prompt (more: 422).
        max_points: most points + vertices over one object's visual prompts (more: 422).
    """
    if not token:
        raise ValueError("create_app needs a non-empty token")
    if min(max_body_bytes, max_visual_prompts, max_points) < 1:
        raise ValueError("create_app's limits must be positive")
    if version is None:
        from napari_seem.core.version import __version__

        version = __version__
    served_version: str = version
    roots = _Roots(allowed_roots)
    bearer = HTTPBearer(auto_error=False, description="the token printed by napari-seem serve")

    def authorize(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = "" if credentials is None else credentials.credentials
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise ApiError(
                401,
                "Unauthorized",
                "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                "printed by `napari-seem serve`",
            )

    app = FastAPI(
        title="napari-seem engine",
        version=served_version,
        description="SEEM promptable segmentation of large images; see "
        "napari_seem.remote.protocol for the mask payload.",
    )
    auth = [Depends(authorize)]
    app.add_middleware(_BodyLimit, limit=int(max_body_bytes))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return _reply(exc.status, exc.type, exc.message, **headers)

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError) -> JSONResponse:
        status = next((s for t, s in _ENGINE_STATUS.items() if isinstance(exc, t)), 400)
        return _reply(status, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return _reply(422, "ValidationError", "invalid request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return _reply(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _reply(
            500,
            "InternalError",
            f"{type(exc).__name__}: {exc} (a bug in the server; the log has the traceback)",
        )

    @app.get("/health", response_model=HealthReply)
    def health() -> HealthReply:
        return HealthReply(version=served_version)

    @app.get("/info", response_model=InfoReply, dependencies=auth, responses=_ERRORS)
    def info() -> InfoReply:
        model = engine.predictor.model
        return InfoReply(
            model=str(getattr(model, "name", type(model).__name__)),
            device=str(getattr(model, "device", "unknown")),
            checkpoint=engine.checkpoint_id,
            version=served_version,
            tile=engine.tile,
            halo=engine.halo,
        )

    @app.post(
        "/sessions",
        response_model=SessionReply,
        status_code=201,
        dependencies=auth,
        responses={**_ERRORS, 403: {"model": ErrorReply, "description": "path not allowed"}},
    )
    def open_session(body: OpenSessionRequest) -> SessionReply:
        source = None if body.path is None else roots.check(body.path)
        session_id = engine.open_session(
            source,
            image_id=body.image_id,
            bands=body.bands,
            level=body.level,
            plane=tuple(body.plane),
        )
        return _session_reply(engine.session_info(session_id))

    @app.post(
        "/images",
        response_model=ImageReply,
        status_code=201,
        dependencies=auth,
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "zlib.compress(array.tobytes()) of a C-order array (or raw "
                "bytes with X-Array-Encoding: raw); see napari_seem.remote.protocol",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def upload_image(
        request: Request,
        x_array_dtype: str = Header(description="numpy dtype, e.g. '|u1', '<u2', '<f4'"),
        x_array_shape: str = Header(description="comma-separated sizes, e.g. '10,512,512'"),
        x_array_encoding: str = Header(default="zlib", description="'zlib' or 'raw'"),
        x_array_axes: str | None = Header(default=None, description="letters, e.g. 'zyx'"),
    ) -> ImageReply:
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
        image_id = await run_in_threadpool(engine.add_image, array, axes=x_array_axes)
        return _image_reply(engine.image_info(image_id))

    @app.get("/images/{image_id}", response_model=ImageReply, dependencies=auth, responses=_ERRORS)
    def image_info(image_id: str) -> ImageReply:
        return _image_reply(engine.image_info(image_id))

    @app.delete("/images/{image_id}", status_code=204, dependencies=auth, responses=_ERRORS)
    def delete_image(image_id: str) -> None:
        engine.delete_image(image_id)

    @app.get(
        "/sessions/{session_id}", response_model=SessionReply, dependencies=auth, responses=_ERRORS
    )
    def session_info(session_id: str) -> SessionReply:
        return _session_reply(engine.session_info(session_id))

    @app.delete("/sessions/{session_id}", status_code=204, dependencies=auth, responses=_ERRORS)
    def close_session(session_id: str) -> None:
        engine.close_session(session_id)

    def parse_prompt(data: dict[str, Any]) -> ObjectPrompt:
        visual = data.get("visual")
        if isinstance(visual, list) and len(visual) > max_visual_prompts:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"the prompt has {len(visual)} visual prompts; at most {max_visual_prompts} "
                "per object: merge clicks into one points prompt",
            )
        try:
            prompt = ObjectPrompt.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:  # PromptError is a ValueError
            raise ApiError(422, "PromptError", f"invalid prompt: {exc}") from None
        points = _count_points(prompt)
        if points > max_points:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"the prompt has {points} points and vertices; at most {max_points} per "
                "object: simplify the scribbles or polygons",
            )
        return prompt

    @app.post(
        "/sessions/{session_id}/predict",
        response_model=ObjectMaskReply,
        dependencies=auth,
        responses=_ERRORS,
    )
    def predict(session_id: str, body: PredictRequest) -> ObjectMaskReply:
        prompt = parse_prompt(body.prompt)
        return object_mask_to_reply(engine.predict(session_id, prompt, object_id=body.object_id))

    @app.post(
        "/sessions/{session_id}/ground",
        response_model=ObjectsReply,
        dependencies=auth,
        responses=_ERRORS,
    )
    def ground(session_id: str, body: GroundRequest) -> ObjectsReply:
        found = engine.ground(
            session_id,
            body.text,
            box=body.box,
            score_threshold=body.score_threshold,
            max_instances=body.max_instances,
        )
        return ObjectsReply(objects=[object_mask_to_reply(obj) for obj in found])

    @app.post(
        "/sessions/{session_id}/refer",
        response_model=ObjectsReply,
        dependencies=auth,
        responses=_ERRORS,
    )
    def refer(session_id: str, body: ReferRequest) -> ObjectsReply:
        example = parse_prompt(body.example)
        found = engine.refer(session_id, body.example_session_id, example, box=body.box)
        return ObjectsReply(objects=[object_mask_to_reply(obj) for obj in found])

    def weights_path(path: str) -> str:
        """A weight file the server may read: inside its work dir or the allowed roots."""
        resolved = Path(path).expanduser().resolve()
        work = engine.work_dir.resolve()
        if resolved.is_relative_to(work):
            return str(resolved)
        return roots.check(path, what="weight file")

    @app.post(
        "/sessions/{session_id}/jobs",
        response_model=JobStatusReply,
        status_code=202,
        dependencies=auth,
        responses={**_ERRORS, 403: {"model": ErrorReply, "description": "out path not allowed"}},
    )
    def start_job(session_id: str, body: JobRequest) -> JobStatusReply:
        params = dict(body.params)
        if body.box is not None:
            if "box" in params and list(params["box"]) != list(body.box):
                raise ApiError(
                    422, "ValidationError", "box and params.box differ: give the box once"
                )
            params["box"] = body.box
        if isinstance(params.get("out"), str):  # a path the server writes: same roots
            params["out"] = roots.check(params["out"], what="output path")
        if body.kind == "fine_tune" and isinstance(params.get("checkpoint"), str):
            params["checkpoint"] = weights_path(params["checkpoint"])
        job_id = engine.start_job(body.kind, session_id, **params)
        return _job_reply(engine.job_status(job_id))

    @app.get("/jobs/{job_id}", response_model=JobStatusReply, dependencies=auth, responses=_ERRORS)
    def job_status(job_id: str) -> JobStatusReply:
        return _job_reply(engine.job_status(job_id))

    @app.get(
        "/jobs/{job_id}/events",
        response_model=list[JobEventReply],
        dependencies=auth,
        responses=_ERRORS,
    )
    def job_events(job_id: str, since: int = 0) -> list[JobEventReply]:
        return [
            JobEventReply(
                job_id=e.job_id,
                seq=e.seq,
                state=e.state,
                done=e.done,
                total=e.total,
                error=e.error,
                message=e.message,
            )
            for e in engine.events(job_id, since=max(since, 0))
        ]

    @app.post(
        "/jobs/{job_id}/cancel",
        response_model=JobStatusReply,
        dependencies=auth,
        responses=_ERRORS,
    )
    def cancel_job(job_id: str) -> JobStatusReply:
        engine.cancel_job(job_id)
        return _job_reply(engine.job_status(job_id))

    @app.get(
        "/jobs/{job_id}/result",
        dependencies=auth,
        responses={
            **_ERRORS,
            409: {"model": ErrorReply, "description": "the job has no result (yet)"},
            200: {
                "description": "the labels payload (napari_seem.core.labels)",
                "content": {LABELS_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            },
        },
        response_class=Response,
    )
    def job_result(job_id: str) -> Response:
        result = engine.job_result(job_id)
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

    @app.get("/weights", response_model=WeightsReply, dependencies=auth, responses=_ERRORS)
    def weights() -> WeightsReply:
        return _weights_reply(engine.weights_info())

    @app.post(
        "/weights",
        response_model=WeightsReply,
        dependencies=auth,
        responses={**_ERRORS, 403: {"model": ErrorReply, "description": "path not allowed"}},
    )
    def use_weights(body: UseWeightsRequest) -> WeightsReply:
        path = None if body.path is None else weights_path(body.path)
        return _weights_reply(engine.use_weights(path))

    @app.get(
        "/weights/file",
        dependencies=auth,
        responses={
            **_ERRORS,
            409: {"model": ErrorReply, "description": "the base weights are in use"},
            200: {
                "description": "the weight file in use (.safetensors)",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        },
        response_class=Response,
    )
    def weights_file() -> Response:
        info = engine.weights_info()
        if info.path is None:
            raise ApiError(
                409,
                "NoWeightFile",
                "the model runs its base weights, which have no file to send: fine-tune "
                "first (the fine_tune job) or switch to a weight file with POST /weights",
            )
        try:
            content = Path(info.path).read_bytes()
        except OSError as exc:
            raise ApiError(
                409, "NoWeightFile", f"cannot read the weight file in use: {exc}"
            ) from None
        name = Path(info.path).name
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return app


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port, read it back with
    ``sock.getsockname()[1]``); pass it to ``uvicorn.Server.run(sockets=[sock])``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)  # connections queue here until uvicorn starts accepting
    sock.set_inheritable(True)
    return sock
