"""How the engine server runs under uvicorn: deadlines on slow clients, ``TCP_NODELAY``.

:func:`uvicorn_config` is the one place ``napari-seem serve`` (and the tests) build the
uvicorn settings from :class:`~napari_seem.engine.limits.ServerLimits`:

- ``timeout_keep_alive``: an idle keep-alive connection closes after
  ``keep_alive_timeout_s``;
- ``h11_max_incomplete_event_size``: request headers larger than ``max_header_bytes`` are
  refused before they are buffered further, with a typed JSON reply like every other
  refusal (431 ``HeadersTooLarge``; any other malformed HTTP: 400 ``BadHttpRequest``, see
  :meth:`HardenedH11Protocol.send_400_response`);
- a header deadline (:class:`HardenedH11Protocol`): a connection that has not sent complete
  request headers ``header_timeout_s`` after it opened (or after the first byte of its next
  request) is closed, however slowly it trickles bytes (uvicorn's keep-alive timer restarts on every
  byte, so it alone does not bound a slow client);
- ``TCP_NODELAY`` on every accepted connection, so a small reply on a reused connection is
  not held back by Nagle's algorithm against the client's delayed ACK (about 40 ms a
  request otherwise).

The body-read deadline (``body_timeout_s``) is ASGI middleware:
:class:`napari_seem.remote.routes.limits.BodyLimit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from napari_seem.engine.limits import ServerLimits

__all__ = ["HardenedH11Protocol", "set_nodelay", "uvicorn_config"]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn on ``TCP_NODELAY`` on the socket under ``transport`` (no-op for non-TCP)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # a socket closed meanwhile
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RecordingConnection(h11.Connection):
    """An ``h11.Connection`` that keeps the protocol error it raised last (``error``), so
    the refusal can say what was wrong (h11's ``error_status_hint``: 431 for headers over
    the size limit)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class HardenedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header deadline, ``TCP_NODELAY`` and typed
    refusals of malformed HTTP.

    The deadline is :attr:`header_timeout_s` (set by :func:`uvicorn_config` on a subclass):
    it runs from the moment the connection opens, and on a kept-alive connection from the
    first byte of the next request (the idle time before it is uvicorn's keep-alive
    timeout), and closes the connection when those request headers are still incomplete.
    """

    header_timeout_s: float = ServerLimits.header_timeout_s
    max_header_bytes: int = ServerLimits.max_header_bytes

    _header_deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = RecordingConnection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)

    def send_400_response(self, msg: str) -> None:
        """Refuse a request h11 could not parse with the server's typed JSON error body
        (``{"error": {"type", "message"}}``) and close the connection: 431
        ``HeadersTooLarge`` for request headers over :attr:`max_header_bytes`, else 400
        ``BadHttpRequest`` (uvicorn's own reply is an untyped plain-text 400)."""
        error = getattr(self.conn, "error", None)
        if int(getattr(error, "error_status_hint", 400)) == 431:
            self._refuse_large_headers()
            return
        self._refuse(
            400,
            "BadHttpRequest",
            f"malformed HTTP request ({error or msg}): send a valid HTTP/1.1 request",
        )

    def _refuse_large_headers(self) -> None:
        self._refuse(
            431,
            "HeadersTooLarge",
            f"the request line and headers are larger than this server's limit of "
            f"{self.max_header_bytes} bytes (serve --max-header-bytes): send fewer or shorter "
            "headers",
        )

    def _refuse(self, status: int, kind: str, message: str) -> None:
        """Write one typed JSON refusal and close (written as bytes: h11 may not be in a
        state that lets it send a response)."""
        body = json.dumps({"error": {"type": kind, "message": message}}).encode()
        reason = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        if not self.transport.is_closing():
            self.transport.write(head.encode("ascii") + body)
            self.transport.close()

    def _headers_too_large(self, data: bytes) -> bool:
        """Whether the request whose headers are arriving (their state IDLE) has more than
        :attr:`max_header_bytes` before its blank line. h11's own limit applies only to an
        incomplete buffer, so headers arriving whole in one read would pass it."""
        pending = self.conn.trailing_data[0] + data
        end = pending.find(b"\r\n\r\n", 0, self.max_header_bytes + 4)
        return (end == -1 and len(pending) > self.max_header_bytes) or end > self.max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)
        self._arm_header_deadline()  # a new connection must send its headers in time

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._header_deadline is None:
                self._arm_header_deadline()  # the first byte of the next request: its deadline
            if self._headers_too_large(data):
                self._disarm_header_deadline()
                self._refuse_large_headers()
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()  # the headers are complete

    def on_response_complete(self) -> None:
        self._disarm_header_deadline()  # idle now: uvicorn's keep-alive timer applies
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        if not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(
                self.header_timeout_s, self._headers_overdue
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        # IDLE: still waiting for (the rest of) the next request's headers
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.warning("closing a connection whose request headers were too slow")
            self.transport.close()


def uvicorn_config(
    app: Any, limits: ServerLimits | None = None, *, log_level: str = "warning"
) -> uvicorn.Config:
    """The uvicorn settings that serve ``app`` within ``limits`` (default ``ServerLimits()``).

    Serve with ``uvicorn.Server(config).run(sockets=[bind_socket(...)])``.
    """
    limits = limits or ServerLimits()
    protocol = type(
        "HardenedH11Protocol",
        (HardenedH11Protocol,),
        {
            "header_timeout_s": float(limits.header_timeout_s),
            "max_header_bytes": int(limits.max_header_bytes),
        },
    )
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        http=protocol,
        timeout_keep_alive=max(1, round(limits.keep_alive_timeout_s)),
        h11_max_incomplete_event_size=int(limits.max_header_bytes),
    )
