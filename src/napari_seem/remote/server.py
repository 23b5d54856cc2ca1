"""The engine over HTTP (tier T3): one endpoint per :class:`~napari_seem.engine.Engine` method.

The transport knows nothing of SEEM: it validates requests with the models of
:mod:`napari_seem.remote.protocol`, calls the engine, and maps every
:class:`~napari_seem.engine.errors.EngineError` to a typed error reply
``{"error": {"type", "message"}}``.

Endpoints (all but ``/health`` and ``/openapi.json`` need ``Authorization: Bearer
<token>``; the scheme is case-insensitive, so ``bearer <token>`` works too; a request
without the token is refused from its headers, before its body is read):

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

The routes live in :mod:`napari_seem.remote.routes`, one router per resource; this module
assembles them (:func:`create_app`).

Status codes: 400 a path that is not usable (NUL byte, over-long name: ``InvalidPath``) or
an image that cannot be read (``UnreadableImage``), 408 a body that did not arrive within
``body_timeout_s`` (``BodyTimeout``), 401 bad/missing token, 403 path outside the allowed
roots (a URL always is: the server opens local paths only), 404 unknown
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

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from napari_seem.engine.limits import ServerLimits
from napari_seem.remote.exposure import (
    MIN_REMOTE_TOKEN_LENGTH,
    bind_socket,
    check_bind_host,
    is_loopback_host,
)
from napari_seem.remote.routes import images, info, jobs, sessions
from napari_seem.remote.routes.deps import ServerContext, install_context
from napari_seem.remote.routes.errors import ApiError, install_error_handlers
from napari_seem.remote.routes.gate import TokenGate
from napari_seem.remote.routes.limits import BodyLimit, PromptLimits
from napari_seem.remote.routes.roots import AllowedRoots

if TYPE_CHECKING:
    from napari_seem.engine import Engine

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_VISUAL_PROMPTS",
    "MIN_REMOTE_TOKEN_LENGTH",
    "ApiError",
    "ServerLimits",
    "bind_socket",
    "check_bind_host",
    "create_app",
    "is_loopback_host",
]

DEFAULT_MAX_BODY_BYTES = ServerLimits.max_body_bytes
"""Largest request body the server reads (bigger: 413 ``BodyTooLarge``)."""
DEFAULT_MAX_VISUAL_PROMPTS = ServerLimits.max_visual_prompts
"""Most visual prompts in one object prompt (more: 422 ``PromptTooLarge``)."""
DEFAULT_MAX_POINTS = ServerLimits.max_points
"""Most points + vertices over one object's visual prompts (more: 422 ``PromptTooLarge``)."""


def create_app(
    engine: Engine,
    *,
    token: str,
    allowed_roots: Sequence[str | Path],
    version: str | None = None,
    limits: ServerLimits | None = None,
    max_body_bytes: int | None = None,
    max_visual_prompts: int | None = None,
    max_points: int | None = None,
) -> FastAPI:
    """The HTTP app serving ``engine``.

    Args:
        engine: the engine to serve; the app does not close it.
        token: the bearer token every request but ``/health`` and ``/openapi.json`` must
            carry (checked from the headers, before any body byte is read).
        allowed_roots: local directories whose images ``POST /sessions`` may open;
            everything else is refused with 403 (URLs are not supported: ``ValueError``).
        version: reported by ``/health`` and ``/info``; default the installed version.
        limits: the transport and prompt limits (default ``ServerLimits()``); serve with
            :func:`napari_seem.remote.serving.uvicorn_config` for its connection limits.
        max_body_bytes: overrides ``limits.max_body_bytes`` (largest body read; 413).
        max_visual_prompts: overrides ``limits.max_visual_prompts`` (more: 422).
        max_points: overrides ``limits.max_points`` (more: 422).

    The interactive ``/docs`` page is off (it would load Swagger UI from a CDN); the
    schema is at ``/openapi.json``.
    """
    if not token:
        raise ValueError("create_app needs a non-empty token")
    limits = limits or ServerLimits()
    overrides = {
        "max_body_bytes": max_body_bytes,
        "max_visual_prompts": max_visual_prompts,
        "max_points": max_points,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if any(v < 1 for v in given.values()):
        raise ValueError(f"create_app's limits must be positive; got {given}")
    limits = replace(limits, **given)
    if version is None:
        from napari_seem.core.version import __version__

        version = __version__
    app = FastAPI(
        title="napari-seem engine",
        version=version,
        description="SEEM promptable segmentation of large images; see "
        "napari_seem.remote.protocol for the mask payload.",
        docs_url=None,
        redoc_url=None,
    )
    install_context(
        app,
        ServerContext(
            engine=engine,
            token=token,
            roots=AllowedRoots(allowed_roots),
            version=version,
            prompts=PromptLimits(
                max_visual_prompts=limits.max_visual_prompts,
                max_points=limits.max_points,
                max_mask_pixels=limits.max_mask_pixels,
                max_scribble_width=limits.max_scribble_width,
            ),
        ),
    )
    # Starlette runs the middleware added last first: the token gate sees a request
    # before the body limit reads a byte of it.
    app.add_middleware(BodyLimit, limit=int(limits.max_body_bytes), timeout_s=limits.body_timeout_s)
    app.add_middleware(TokenGate, token=token)
    install_error_handlers(app)
    for router in (info.public, info.router, images.router, sessions.router, jobs.router):
        app.include_router(router)
    return app
