"""Where the engine server may listen (stdlib only): loopback checks and the listening socket.

``napari-seem serve`` calls :func:`check_bind_host` before it loads the model, so a refused
interface fails fast, then serves on the socket of :func:`bind_socket`.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["MIN_REMOTE_TOKEN_LENGTH", "bind_socket", "check_bind_host", "is_loopback_host"]

MIN_REMOTE_TOKEN_LENGTH = 16
"""Shortest token accepted on a non-loopback interface."""

_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


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
            f"$NAPARI_SEEM_TOKEN (e.g. {_TOKEN_HINT})"
        )
    if len(token) < MIN_REMOTE_TOKEN_LENGTH:
        raise ValueError(
            f"the token is too short for a remote server ({len(token)} characters; at least "
            f"{MIN_REMOTE_TOKEN_LENGTH}): use e.g. {_TOKEN_HINT}"
        )


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port, read it back with
    ``sock.getsockname()[1]``); pass it to ``uvicorn.Server.run(sockets=[sock])``.

    The socket is made with ``IPPROTO_TCP`` (not protocol 0): asyncio turns on
    ``TCP_NODELAY`` only on accepted sockets whose protocol says TCP, and without it every
    small reply on a keep-alive connection waits for the client's delayed ACK (~40 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)  # connections queue here until uvicorn starts accepting
    sock.set_inheritable(True)
    return sock
