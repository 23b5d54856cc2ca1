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

The routes live in :mod:`napari_seem.remote.routes`, one router per resource; this module
assembles them (:func:`create_app`).

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

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from napari_seem.remote.exposure import (
    MIN_REMOTE_TOKEN_LENGTH,
    bind_socket,
    check_bind_host,
    is_loopback_host,
)
from napari_seem.remote.routes import images, info, jobs, sessions
from napari_seem.remote.routes.deps import ServerContext, install_context
from napari_seem.remote.routes.errors import ApiError, install_error_handlers
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
    app = FastAPI(
        title="napari-seem engine",
        version=version,
        description="SEEM promptable segmentation of large images; see "
        "napari_seem.remote.protocol for the mask payload.",
    )
    install_context(
        app,
        ServerContext(
            engine=engine,
            token=token,
            roots=AllowedRoots(allowed_roots),
            version=version,
            prompts=PromptLimits(max_visual_prompts=max_visual_prompts, max_points=max_points),
        ),
    )
    app.add_middleware(BodyLimit, limit=int(max_body_bytes))
    install_error_handlers(app)
    for router in (info.public, info.router, images.router, sessions.router, jobs.router):
        app.include_router(router)
    return app
