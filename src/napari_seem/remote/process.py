"""A local ``napari-seem serve`` child process: spawn it, watch it, restart it.

:func:`launch` starts ``napari-seem serve`` on 127.0.0.1 with a free port and a random
token (passed in the environment, never on the command line) and waits for the line it
prints once it listens. :class:`LocalServer` keeps that child for a client: it says when
the child died (:meth:`LocalServer.unavailable`), restarts it with the same options
(:meth:`LocalServer.restart`, or on the next request with ``auto_restart``) and stops it.

Client side: stdlib only (no torch, no server stack).
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from napari_seem.remote.transport import ServerUnavailableError

__all__ = ["LISTENING", "TOKEN_ENV", "Launched", "LocalServer", "ServeOptions", "launch", "stop"]

LISTENING = re.compile(r"napari-seem serve: listening on (\S+)(?: token=(\S+))?")
"""The line ``napari-seem serve`` prints once it listens: its URL, and its token only when
it generated one (a child of :func:`launch` gets its token in :data:`TOKEN_ENV`, so its
line carries none)."""
TOKEN_ENV = "NAPARI_SEEM_TOKEN"
"""The environment variable the child reads its token from."""

Lines = collections.deque[str]


@dataclass(frozen=True)
class ServeOptions:
    """The arguments of one ``napari-seem serve`` child (``None``: the command's default).

    Attributes:
        variant, checkpoint, tile, halo, device: passed to ``serve``.
        allow_roots: directories whose images the server may open.
        timeout: seconds to wait for the server to load its model and listen.
        python: interpreter to run (default: this one).
        extra_args: more ``serve`` arguments.
    """

    variant: str | None = None
    checkpoint: str | Path | None = None
    allow_roots: tuple[str | Path, ...] = ()
    tile: int | None = None
    halo: int | None = None
    device: str | None = None
    timeout: float = 300.0
    python: str | None = None
    extra_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        """The command line of the child (the token travels in :data:`TOKEN_ENV`)."""
        cmd = [self.python or sys.executable, "-m", "napari_seem.cli", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", "0"]
        for flag, value in (
            ("--variant", self.variant),
            ("--checkpoint", self.checkpoint),
            ("--tile", self.tile),
            ("--halo", self.halo),
            ("--device", self.device),
        ):
            if value is not None:
                cmd += [flag, str(value)]
        for root in self.allow_roots:
            cmd += ["--allow-root", str(root)]
        return cmd + list(self.extra_args)


class Launched(NamedTuple):
    """A child that listens: its process, URL, token and the end of its stderr."""

    process: subprocess.Popen[str]
    url: str
    token: str
    stderr: Lines


def launch(options: ServeOptions) -> Launched:
    """Start ``napari-seem serve`` on 127.0.0.1 and wait until it listens.

    Raises:
        ServerUnavailableError: the child exited or did not listen within
            ``options.timeout``; the message carries the end of its stderr.
    """
    token = secrets.token_urlsafe(24)
    cmd = options.command()
    env = {**os.environ, TOKEN_ENV: token, "PYTHONUNBUFFERED": "1"}  # token not in `ps`
    process = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout: Lines = collections.deque(maxlen=200)
    stderr: Lines = collections.deque(maxlen=200)
    found: list[str] = []
    ready = threading.Event()

    def on_stdout(line: str) -> None:
        match = LISTENING.search(line)
        if match and not found:
            found.append(match.group(1))
            ready.set()

    # Both pipes are drained for the child's whole life, so it never blocks on a full pipe.
    for pipe, lines, hook in (
        (process.stdout, stdout, on_stdout),
        (process.stderr, stderr, None),
    ):
        assert pipe is not None
        threading.Thread(
            target=_drain, args=(pipe, lines, hook), daemon=True, name="seem-serve-pipe"
        ).start()

    deadline = time.monotonic() + options.timeout
    while not ready.wait(0.1):
        if process.poll() is not None:
            time.sleep(0.2)  # let the drain threads collect the last lines
            raise ServerUnavailableError(
                f"napari-seem serve exited with code {process.returncode} before listening "
                f"(command: {' '.join(cmd)}). Its stderr:\n{tail(stderr)}"
            )
        if time.monotonic() > deadline:
            stop(process)
            raise ServerUnavailableError(
                f"napari-seem serve did not report listening within {options.timeout:.0f} s "
                f"(loading a large model can be slow: raise timeout=). Its stderr:\n"
                f"{tail(stderr)}"
            )
    return Launched(process, found[0], token, stderr)


def _drain(pipe: IO[str], lines: Lines, hook: Callable[[str], None] | None) -> None:
    try:
        for line in pipe:
            lines.append(line.rstrip("\n"))
            if hook is not None:
                hook(line)
    except (OSError, ValueError):  # the pipe was closed under us
        pass


def tail(lines: Sequence[str], n: int = 40) -> str:
    """The last ``n`` lines as one text (``"(empty)"`` when there are none)."""
    text = "\n".join(list(lines)[-n:])
    return text or "(empty)"


def stop(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Terminate ``process`` (kill it after ``timeout`` seconds) and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class LocalServer:
    """A spawned ``napari-seem serve`` child kept for one client (a :class:`ServerWatch`).

    Args:
        options: how to start (and restart) the child.
        auto_restart: when the child dies, the failing request still raises (once); the
            NEXT request first starts a new child with the same options.

    Attributes:
        on_restart: called with the new ``(url, token)`` each time a new child listens.
    """

    def __init__(self, options: ServeOptions, *, auto_restart: bool = False) -> None:
        self.options = options
        self.auto_restart = auto_restart
        self.on_restart: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._death_reported = False
        self._child = launch(options)

    @property
    def process(self) -> subprocess.Popen[str]:
        """The current child process."""
        return self._child.process

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the current child."""
        return self._child.url

    @property
    def token(self) -> str:
        """The bearer token of the current child."""
        return self._child.token

    def restart(self) -> None:
        """Stop the child (if still running) and start a new one with the same options.

        Blocks until the new child listens, then calls :attr:`on_restart`.

        Raises:
            RuntimeError: the server was closed.
            ServerUnavailableError: the new child did not start.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this SeemClient is closed: create a new one")
            self._relaunch()

    def _relaunch(self) -> None:
        stop(self._child.process)
        self._child = launch(self.options)
        self._death_reported = False
        if self.on_restart is not None:
            self.on_restart(self._child.url, self._child.token)

    def before_request(self) -> None:
        """With ``auto_restart``: start a new child once a death has been reported."""
        if not (self.auto_restart and self._death_reported):
            return
        with self._lock:
            if self._closed or not self._death_reported:
                return
            if self._child.process.poll() is None:
                self._death_reported = False  # someone restarted it meanwhile
                return
            self._relaunch()

    def unavailable(self, error: ServerUnavailableError) -> ServerUnavailableError:
        """``error``, or "the model process died" (with its stderr) when the child exited."""
        process = self._child.process
        code = process.poll()
        if code is None:  # a dying process may need a moment to be reaped
            try:
                code = process.wait(0.5)
            except subprocess.TimeoutExpired:
                return error
        self._death_reported = True
        restart = (
            "the next call starts a new one (auto_restart)"
            if self.auto_restart
            else "restart it with client.restart() (or a new SeemClient.spawn_local)"
        )
        return ServerUnavailableError(
            f"the model process died (exit code {code}); its work and sessions are "
            f"lost: {restart}, then open the image again. Its last stderr:\n"
            f"{tail(self._child.stderr)}"
        )

    def close(self) -> None:
        """Stop the child (after a restart in progress); later restarts are refused."""
        with self._lock:
            self._closed = True
            stop(self._child.process)
