"""The client's HTTP transport: one ``httpx`` connection, bearer token, typed refusals.

A refusal (HTTP status >= 400) becomes :class:`RemoteError` with the server's
``{"error": {"type", "message"}}`` (:class:`~napari_seem.remote.protocol.ErrorReply`); a
server that cannot be reached becomes :class:`ServerUnavailableError`.

Client side: imports httpx, pydantic and the protocol only (no torch, no server stack).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from napari_seem.remote.protocol import ErrorReply

__all__ = ["RemoteError", "ServerUnavailableError", "ServerWatch", "Transport"]


class RemoteError(Exception):
    """The server refused a request: ``type`` is the error class, ``message`` says why."""

    def __init__(self, type: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.status = status


class ServerUnavailableError(ConnectionError):
    """The server cannot be reached (not started, gone, or the model process died)."""


def remote_error(response: httpx.Response) -> RemoteError:
    """The :class:`RemoteError` of a refusal (an untyped body is kept as text)."""
    try:
        error = ErrorReply.model_validate(response.json()).error
        return RemoteError(error.type, error.message, response.status_code)
    except ValueError:
        text = response.text[:500]
        return RemoteError(
            "HTTPError", f"HTTP {response.status_code}: {text}", response.status_code
        )


class ServerWatch(Protocol):
    """Who looks after the server process behind a :class:`Transport` (a spawned child)."""

    def before_request(self) -> None:
        """Called before every request (e.g. to restart a dead server first)."""

    def unavailable(self, error: ServerUnavailableError) -> ServerUnavailableError:
        """The error to raise when the server did not answer (``error`` or a better one)."""


class Transport:
    """Requests to one server at ``url`` with bearer ``token``; :meth:`connect` moves it.

    Args:
        url: ``http://host:port`` of the server.
        token: the bearer token (``None``: no ``Authorization`` header, ``/health`` only).
        timeout: seconds to wait for one reply.
        watch: told before every request and asked about an unreachable server.
    """

    def __init__(
        self, url: str, token: str | None, timeout: float, watch: ServerWatch | None = None
    ) -> None:
        self.timeout = timeout
        self.watch = watch
        self._lock = threading.Lock()
        self._closed = False
        self.url = url.rstrip("/")
        self.token = token
        self._http = self._client()

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def connect(self, url: str, token: str | None) -> None:
        """Send later requests to ``url`` with ``token`` (a restarted server); requests in
        flight on the old connection fail."""
        with self._lock:
            if self._closed:
                return
            old = self._http
            self.url, self.token = url.rstrip("/"), token
            self._http = self._client()
        old.close()

    def close(self) -> None:
        """Close the connection; later requests fail."""
        with self._lock:
            self._closed = True
            http = self._http
        http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request; the response when its status is below 400.

        Raises:
            RemoteError: the server refused it (its typed error).
            ServerUnavailableError: no reply (chained from the ``httpx`` error).
        """
        if self.watch is not None:
            self.watch.before_request()
        try:
            response = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            error = ServerUnavailableError(
                f"cannot reach the napari-seem server at {self.url} "
                f"({type(exc).__name__}: {exc}): is it running? Start it with "
                "`napari-seem serve` (or SeemClient.spawn_local) and check the URL"
            )
            if self.watch is not None:
                error = self.watch.unavailable(error)
            raise error from exc
        if response.status_code >= 400:
            raise remote_error(response)
        return response

    def call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One JSON call: ``body`` a pydantic model, or raw ``content`` with ``headers``;
        the decoded JSON reply (``None`` for an empty one)."""
        if body is not None:
            content = body.model_dump_json().encode()
            headers = {"Content-Type": "application/json"}
        response = self.request(method, path, content=content, headers=headers, params=params)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
