"""What every router of the engine server shares: its context and the bearer-token check.

``create_app`` stores one :class:`ServerContext` on ``app.state``; a route asks for it with
a :data:`Context` parameter, and an authenticated router lists :data:`AUTH` as its
dependencies.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from napari_seem.remote.routes.errors import ApiError
from napari_seem.remote.routes.gate import UNAUTHORIZED_MESSAGE
from napari_seem.remote.routes.limits import PromptLimits
from napari_seem.remote.routes.roots import AllowedRoots

if TYPE_CHECKING:
    from napari_seem.engine import Engine

__all__ = ["AUTH", "Context", "ServerContext", "authorize", "context", "install_context"]


@dataclass(frozen=True)
class ServerContext:
    """One app's engine and settings.

    Attributes:
        engine: the engine served (the app does not close it).
        token: the bearer token every request but ``/health`` must carry.
        roots: where requests may point the server (images, outputs, weight files).
        version: the napari-seem version ``/health`` and ``/info`` report.
        prompts: how large one object prompt may be.
    """

    engine: Engine
    token: str
    roots: AllowedRoots
    version: str
    prompts: PromptLimits


def install_context(app: FastAPI, ctx: ServerContext) -> None:
    """Give the routes of ``app`` their context."""
    app.state.seem = ctx


async def context(request: Request) -> ServerContext:
    """The :class:`ServerContext` of the app serving ``request``."""
    return cast(ServerContext, request.app.state.seem)


#: A route parameter receiving the app's :class:`ServerContext`.
Context = Annotated[ServerContext, Depends(context)]

_bearer = HTTPBearer(
    auto_error=False,
    description="the token of napari-seem serve (printed when it generated one); the "
    "scheme is case-insensitive ('bearer' works too)",
)


def authorize(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse a request without the app's bearer token (``Bearer`` in any case, RFC 7235;
    :class:`~napari_seem.remote.routes.gate.TokenGate` has checked it already, before the
    body was read).

    Raises:
        ApiError: 401 ``Unauthorized``.
    """
    given = "" if credentials is None else credentials.credentials
    if not secrets.compare_digest(given.encode(), ctx.token.encode()):
        raise ApiError(401, "Unauthorized", UNAUTHORIZED_MESSAGE)


#: The dependencies of an authenticated router.
AUTH = [Depends(authorize)]
