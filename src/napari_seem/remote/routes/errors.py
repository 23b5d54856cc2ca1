"""Typed error replies of the engine server: every refusal is ``{"error": {"type", "message"}}``.

:class:`ApiError` is the transport's own refusal; :func:`install_error_handlers` maps it, every
:class:`~napari_seem.engine.EngineError` (by :data:`ENGINE_STATUS`), malformed requests,
unknown routes and bugs to that one :class:`~napari_seem.remote.protocol.ErrorReply` shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from napari_seem.engine import errors as engine_errors
from napari_seem.engine.confined import PathEscapeError
from napari_seem.engine.errors import EngineError
from napari_seem.remote.protocol import ErrorBody, ErrorReply

__all__ = [
    "ENGINE_STATUS",
    "ERRORS",
    "ApiError",
    "error_response",
    "install_error_handlers",
    "refusal",
]

_log = logging.getLogger("napari_seem.remote.server")

#: The status code of each engine error (a subclass takes its first matching base; 400 else).
ENGINE_STATUS: dict[type[EngineError], int] = {
    engine_errors.UnknownSessionError: 404,
    engine_errors.UnknownJobError: 404,
    engine_errors.UnknownImageError: 404,
    engine_errors.PromptOutsideImageError: 422,
    engine_errors.ImageTooLargeError: 413,
    engine_errors.StaleCacheRefusedError: 409,
    engine_errors.JobResultUnavailableError: 409,
    engine_errors.CapacityError: 429,
    PathEscapeError: 403,
    engine_errors.InvalidRequestError: 400,
}


def refusal(description: str) -> dict[str, Any]:
    """One OpenAPI ``responses`` entry: an :class:`ErrorReply` described by ``description``."""
    return {"model": ErrorReply, "description": description}


#: The refusals every authenticated route documents (OpenAPI ``responses``).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: refusal(text)
    for code, text in {
        400: "a request the engine cannot serve as given",
        401: "missing or wrong bearer token",
        403: "a path outside the allowed roots (symlinks inside stores included)",
        404: "unknown session, job or image",
        409: "stale feature cache, or a job result that is not available",
        413: "request body larger than the server's limit, or an image over the budget",
        422: "malformed request, invalid or too large prompt",
        429: "too many sessions or jobs held: close some and retry",
    }.items()
}


class ApiError(Exception):
    """A transport-level refusal: ``status`` with a typed ``{"error": ...}`` body."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


def error_response(status: int, type_: str, message: str, **headers: str) -> JSONResponse:
    """The JSON reply of one refusal (``headers`` added as given)."""
    body = ErrorReply(error=ErrorBody(type=type_, message=message)).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return error_response(exc.status, exc.type, exc.message, **headers)


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((s for t, s in ENGINE_STATUS.items() if isinstance(exc, t)), 400)
    return error_response(status, type(exc).__name__, str(exc))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return error_response(422, "ValidationError", "invalid request: " + "; ".join(parts))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    return error_response(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(
        500,
        "InternalError",
        f"{type(exc).__name__}: {exc} (a bug in the server; the log has the traceback)",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every refusal of ``app`` a typed :class:`ErrorReply` (500 only for bugs)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _bug)
