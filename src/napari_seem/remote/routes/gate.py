"""The bearer-token check in front of the whole app, before any body byte is read.

:class:`TokenGate` is ASGI middleware: a request without the right token is answered 401
(``Connection: close``) from its headers alone, so a client without the token cannot make
the server buffer a body or hold a request open. The routes keep their
:data:`~napari_seem.remote.routes.deps.AUTH` dependency too (it documents the scheme in the
OpenAPI schema and checks again).

The header is ``Authorization: Bearer <token>``; the scheme is case-insensitive (RFC 7235),
so ``bearer <token>`` is accepted too.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from napari_seem.remote.routes.errors import error_response

__all__ = ["PUBLIC_PATHS", "UNAUTHORIZED_MESSAGE", "TokenGate", "bearer_token"]

#: Paths served without a token: liveness and the API schema.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})

UNAUTHORIZED_MESSAGE = (
    "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
    "printed by `napari-seem serve` (or the one it was started with)"
)


def bearer_token(header: bytes | None) -> str | None:
    """The token of an ``Authorization`` header value, ``None`` unless it is ``Bearer X``
    (scheme in any case)."""
    if not header:
        return None
    try:
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenGate:
    """ASGI middleware: refuse a request without bearer ``token`` before reading its body.

    Args:
        app: the app behind the gate.
        token: the token every request but :data:`PUBLIC_PATHS` must carry.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        given = bearer_token(headers.get(b"authorization"))
        if given is not None and secrets.compare_digest(given.encode(), self._token):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "Unauthorized",
            UNAUTHORIZED_MESSAGE,
            **{"WWW-Authenticate": "Bearer", "Connection": "close"},
        )
        await response(scope, receive, send)
