"""A client of the engine server: every call returns a :class:`~concurrent.futures.Future`.

Calls run on a small thread pool, so UI code never blocks on the model; a refusal comes
back as :class:`RemoteError` raised by ``future.result()``, a server that cannot be
reached as :class:`ServerUnavailableError` (a ``ConnectionError``), which says whether the
model process died.

:meth:`SeemClient.spawn_local` starts ``napari-seem serve`` as a child process on
127.0.0.1 with a free port and a random token, and :meth:`SeemClient.close` stops it.
When that child dies, the failing call raises :class:`ServerUnavailableError` ("the model
process died"); :meth:`SeemClient.restart` (or ``spawn_local(auto_restart=True)``, on the
next call) starts a new one with the same arguments. Its sessions are gone: the caller
opens the image again.

This module imports neither torch nor FastAPI.
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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import httpx
import numpy.typing as npt

from napari_seem.core.labels import LabelsCrop, decode_labels
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.remote.protocol import (
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
    encode_array,
    object_mask_from_reply,
)

__all__ = ["RemoteError", "SeemClient", "ServerUnavailableError"]

T = TypeVar("T")

LISTENING = re.compile(r"napari-seem serve: listening on (\S+) token=(\S+)")
TOKEN_ENV = "NAPARI_SEEM_TOKEN"


class RemoteError(Exception):
    """The server refused a request: ``type`` is the error class, ``message`` says why."""

    def __init__(self, type: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.status = status


class ServerUnavailableError(ConnectionError):
    """The server cannot be reached (not started, gone, or the model process died)."""


class SeemClient:
    """Talks to ``napari-seem serve`` at ``url`` with bearer ``token``.

    Args:
        url: ``http://host:port`` of the server.
        token: the token the server printed (``None`` only for ``/health``).
        timeout: seconds to wait for one reply (predictions on big objects take a while).
        max_workers: threads running calls concurrently.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 600.0,
        max_workers: int = 4,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._timeout = timeout
        self._http = _http_client(self.url, token, timeout)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="seem-client")
        self._process: subprocess.Popen[str] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._closed = False
        self._spawn: dict[str, Any] | None = None  # spawn_local's arguments, for restart()
        self._auto_restart = False
        self._death_reported = False
        self._restart_lock = threading.Lock()

    # ------------------------------------------------------------------ local server

    @classmethod
    def spawn_local(
        cls,
        *,
        variant: str | None = None,
        checkpoint: str | Path | None = None,
        allow_roots: Sequence[str | Path] = (),
        tile: int | None = None,
        halo: int | None = None,
        device: str | None = None,
        timeout: float = 300.0,
        python: str | None = None,
        extra_args: Sequence[str] = (),
        auto_restart: bool = False,
    ) -> SeemClient:
        """Start ``napari-seem serve`` on 127.0.0.1 (free port, random token) and connect.

        Args:
            variant, checkpoint, tile, halo, device: passed to ``serve`` (its defaults
                when ``None``).
            allow_roots: directories whose images the server may open.
            timeout: seconds to wait for the server to load its model and listen.
            python: interpreter to run (default: this one).
            extra_args: more ``serve`` arguments.
            auto_restart: when the server dies, the failing call still raises
                :class:`ServerUnavailableError` (once); the NEXT call first starts a new
                server with the same arguments (see :meth:`restart`: sessions are lost and
                must be opened again; old session ids answer 404).

        Raises:
            ServerUnavailableError: the server exited or did not listen in time; the
                message carries the end of its stderr.
        """
        spawn = {
            "variant": variant,
            "checkpoint": checkpoint,
            "allow_roots": tuple(allow_roots),
            "tile": tile,
            "halo": halo,
            "device": device,
            "timeout": timeout,
            "python": python,
            "extra_args": tuple(extra_args),
        }
        launched = _launch(**spawn)  # type: ignore[arg-type]
        client = cls(launched.url, launched.token)
        client._process = launched.process
        client._stderr = launched.stderr
        client._spawn = spawn
        client._auto_restart = auto_restart
        return client

    def restart(self) -> None:
        """Stop the spawned server (if still running) and start a new one, same arguments.

        Blocks until the new server listens (the model loads again). The new server has a
        new port and token and knows none of the old sessions or jobs: open the image
        again with :meth:`open_session` (old session ids answer 404). Calls in flight on
        the old server fail.

        Raises:
            RuntimeError: this client was not made by :meth:`spawn_local`, or is closed.
            ServerUnavailableError: the new server did not start (as in ``spawn_local``).
        """
        if self._spawn is None:
            raise RuntimeError(
                "restart() needs a client made by SeemClient.spawn_local; this one connects "
                f"to {self.url}: restart that server yourself"
            )
        with self._restart_lock:
            if self._closed:
                raise RuntimeError("this SeemClient is closed: create a new one")
            self._relaunch()

    def _relaunch(self) -> None:
        assert self._spawn is not None
        if self._process is not None:
            _stop(self._process)
        launched = _launch(**self._spawn)
        old = self._http
        self.url, self.token = launched.url, launched.token
        self._http = _http_client(self.url, self.token, self._timeout)
        self._process = launched.process
        self._stderr = launched.stderr
        self._death_reported = False
        old.close()

    def _restart_if_dead(self) -> None:
        """The ``auto_restart`` hook: respawn once the death has been reported."""
        with self._restart_lock:
            if self._closed or not self._death_reported:
                return
            if self._process is not None and self._process.poll() is None:
                self._death_reported = False  # someone restarted it meanwhile
                return
            self._relaunch()

    @property
    def process(self) -> subprocess.Popen[str] | None:
        """The spawned server process, or ``None`` when connected by URL."""
        return self._process

    def close(self) -> None:
        """Stop the spawned server (if any), the thread pool and the connection."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        with self._restart_lock:  # waits for a restart in progress, then stops its server
            if self._process is not None:
                _stop(self._process)

    def __enter__(self) -> SeemClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def health(self) -> Future[HealthReply]:
        return self._submit(lambda: HealthReply.model_validate(self._call("GET", "/health")))

    def info(self) -> Future[InfoReply]:
        return self._submit(lambda: InfoReply.model_validate(self._call("GET", "/info")))

    def open_session(
        self,
        path: str | Path | None = None,
        *,
        image_id: str | None = None,
        bands: tuple[int, int, int] | None = None,
        plane: Sequence[int] = (),
        level: int = 0,
    ) -> Future[SessionReply]:
        """Open an image the SERVER can read (inside its allowed roots) or an uploaded one.

        Args:
            path: the image's path on the server; give it or ``image_id``.
            image_id: an id from :meth:`upload_image`.
            bands: channel indices for R, G, B of a multi-band image.
            plane: one index per plane axis of a stack, e.g. ``[z]``.
            level: pyramid level to infer on (coarser = faster); masks stay level-0.
        """
        body = OpenSessionRequest(
            path=None if path is None else str(path),
            image_id=image_id,
            bands=bands,
            plane=list(plane),
            level=level,
        )
        return self._submit(
            lambda: SessionReply.model_validate(self._call("POST", "/sessions", body))
        )

    def upload_image(self, array: npt.ArrayLike, *, axes: str | None = None) -> Future[str]:
        """Send a small in-memory image (e.g. a napari layer's data) to the server.

        ``array`` is 2-D to 5-D bool / integer / float (``(y, x)``, ``(y, x, c)``,
        ``(z, y, x)``, ``(z, y, x, c)``, ...; ``axes`` letters as
        :func:`napari_seem.core.io.open_image` takes them). The future gives the image id for
        ``open_session(image_id=...)``. The request body is limited by the server
        (``BodyTooLarge``) and so is the memory it keeps (``ImageTooLargeError``): save a
        large image as zarr inside an allowed root and open it by path instead.
        """
        content, headers = encode_array(array, axes=axes)

        def call() -> str:
            reply = self._call("POST", "/images", content=content, headers=headers)
            return ImageReply.model_validate(reply).image_id

        return self._submit(call)

    def image_info(self, image_id: str) -> Future[ImageReply]:
        return self._submit(
            lambda: ImageReply.model_validate(self._call("GET", f"/images/{image_id}"))
        )

    def delete_image(self, image_id: str) -> Future[None]:
        """Let the server forget an uploaded image (open sessions on it keep working)."""
        return self._submit(lambda: self._none(self._call("DELETE", f"/images/{image_id}")))

    def session_info(self, session_id: str) -> Future[SessionReply]:
        return self._submit(
            lambda: SessionReply.model_validate(self._call("GET", f"/sessions/{session_id}"))
        )

    def close_session(self, session_id: str) -> Future[None]:
        return self._submit(lambda: self._none(self._call("DELETE", f"/sessions/{session_id}")))

    def predict(
        self, session_id: str, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> Future[ObjectMask]:
        """One object's mask (a level-0 crop with its offset), like :meth:`Engine.predict`."""
        body = PredictRequest(prompt=prompt.to_dict(), object_id=object_id)

        def call() -> ObjectMask:
            reply = self._call("POST", f"/sessions/{session_id}/predict", body)
            return object_mask_from_reply(ObjectMaskReply.model_validate(reply))

        return self._submit(call)

    def ground(
        self,
        session_id: str,
        text: str,
        box: tuple[int, int, int, int] | None = None,
        *,
        score_threshold: float = 0.05,
        max_instances: int | None = None,
    ) -> Future[list[ObjectMask]]:
        """Every instance of ``text`` in the tiles meeting level-0 ``box`` (default the
        whole image; a region of more than the server's ``max_tiles`` tiles is refused),
        best first, like :meth:`Engine.ground`."""
        body = GroundRequest(
            text=text, box=box, score_threshold=score_threshold, max_instances=max_instances
        )
        return self._submit(lambda: self._objects(f"/sessions/{session_id}/ground", body))

    def refer(
        self,
        session_id: str,
        example_session_id: str,
        example_prompt: ObjectPrompt,
        box: tuple[int, int, int, int] | None = None,
    ) -> Future[list[ObjectMask]]:
        """What ``example_prompt`` (level-0 pixels of the example session's image) marks,
        found on ``session_id`` within level-0 ``box``, best first, like
        :meth:`Engine.refer`."""
        body = ReferRequest(
            example_session_id=example_session_id, example=example_prompt.to_dict(), box=box
        )
        return self._submit(lambda: self._objects(f"/sessions/{session_id}/refer", body))

    def _objects(self, path: str, body: Any) -> list[ObjectMask]:
        reply = ObjectsReply.model_validate(self._call("POST", path, body))
        return [object_mask_from_reply(obj) for obj in reply.objects]

    def start_job(
        self,
        session_id: str,
        *,
        box: tuple[int, int, int, int] | None = None,
        kind: str = "encode_region",
        params: dict[str, Any] | None = None,
    ) -> Future[JobStatusReply]:
        """Start a job of ``kind`` (default ``encode_region`` over ``box``, default the whole
        image) with kind-specific ``params``."""
        body = JobRequest(kind=kind, box=box, params=dict(params or {}))
        return self._submit(
            lambda: JobStatusReply.model_validate(
                self._call("POST", f"/sessions/{session_id}/jobs", body)
            )
        )

    def job_result(self, job_id: str) -> Future[LabelsCrop]:
        """The labels a finished job left (RemoteError 409 while it is not done)."""

        def call() -> LabelsCrop:
            response = self._request("GET", f"/jobs/{job_id}/result")
            try:
                return decode_labels(response.content)
            except ValueError as exc:
                raise RemoteError("BadPayload", f"the job result is unreadable: {exc}") from exc

        return self._submit(call)

    def job_status(self, job_id: str) -> Future[JobStatusReply]:
        return self._submit(
            lambda: JobStatusReply.model_validate(self._call("GET", f"/jobs/{job_id}"))
        )

    def job_events(self, job_id: str, since: int = 0) -> Future[list[JobEventReply]]:
        def call() -> list[JobEventReply]:
            reply = self._call("GET", f"/jobs/{job_id}/events", params={"since": since})
            return [JobEventReply.model_validate(e) for e in reply]

        return self._submit(call)

    def cancel_job(self, job_id: str) -> Future[JobStatusReply]:
        return self._submit(
            lambda: JobStatusReply.model_validate(self._call("POST", f"/jobs/{job_id}/cancel"))
        )

    # ------------------------------------------------------------------ weights

    def start_fine_tune(
        self,
        session_id: str,
        data: Sequence[dict[str, Any]],
        *,
        class_name: str | dict[int, str] = "object",
        steps: int = 100,
        **options: Any,
    ) -> Future[JobStatusReply]:
        """Start a ``fine_tune`` job (see :mod:`napari_seem.engine.kinds.fine_tune`).

        ``data`` lists ``{"image": SESSION_OR_IMAGE_ID, "labels": LABELS_IMAGE_ID}`` (upload
        labels with :meth:`upload_image`); ``options`` are further job parameters
        (``tasks``, ``crops_per_image``, ``checkpoint``, ...). Progress: ``job_status`` /
        ``job_events`` (``message`` carries the loss); once done, ``job_status(...).info``
        names the ``weights`` file the model now runs with.
        """
        names: Any = class_name
        if isinstance(class_name, dict):
            names = {str(k): v for k, v in class_name.items()}
        params = {"data": list(data), "class_name": names, "steps": steps, **options}
        if "tasks" in params:
            params["tasks"] = list(params["tasks"])
        return self.start_job(session_id, kind="fine_tune", params=params)

    def weights(self) -> Future[WeightsReply]:
        """The weights the model runs with (base, or the fine-tuned file in use)."""
        return self._submit(lambda: WeightsReply.model_validate(self._call("GET", "/weights")))

    def use_weights(self, path: str | Path | None) -> Future[WeightsReply]:
        """Switch the server's model to a weight file the SERVER can read (a fine_tune
        job's ``weights``, or a file inside its allowed roots); ``None``: the base weights.
        Every session's feature cache starts afresh."""
        body = UseWeightsRequest(path=None if path is None else str(path))
        return self._submit(
            lambda: WeightsReply.model_validate(self._call("POST", "/weights", body))
        )

    def use_base_weights(self) -> Future[WeightsReply]:
        """Switch the server's model back to its base weights."""
        return self.use_weights(None)

    def download_weights(self, destination: str | Path) -> Future[Path]:
        """Save the weight file the server's model runs with to ``destination`` on THIS
        machine (RemoteError ``NoWeightFile`` on the base weights)."""
        target = Path(destination).expanduser()

        def call() -> Path:
            response = self._request("GET", "/weights/file")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(response.content)
            partial.replace(target)
            return target

        return self._submit(call)

    # ------------------------------------------------------------------ plumbing

    def _submit(self, fn: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("this SeemClient is closed: create a new one")
        return self._pool.submit(fn)

    @staticmethod
    def _none(_: Any) -> None:
        return None

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One JSON call: ``body`` a pydantic model, or raw ``content`` with ``headers``."""
        if body is not None:
            content = body.model_dump_json().encode()
            headers = {"Content-Type": "application/json"}
        response = self._request(method, path, content=content, headers=headers, params=params)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if self._auto_restart and self._death_reported:
            self._restart_if_dead()
        try:
            response = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code >= 400:
            raise _remote_error(response)
        return response

    def _unavailable(self, exc: Exception) -> ServerUnavailableError:
        process = self._process
        if process is not None:
            code = process.poll()
            if code is None:  # a dying process may need a moment to be reaped
                try:
                    code = process.wait(0.5)
                except subprocess.TimeoutExpired:
                    code = None
            if code is not None:
                self._death_reported = True
                restart = (
                    "the next call starts a new one (auto_restart)"
                    if self._auto_restart
                    else "restart it with client.restart() (or a new SeemClient.spawn_local)"
                )
                return ServerUnavailableError(
                    f"the model process died (exit code {code}); its work and sessions are "
                    f"lost: {restart}, then open the image again. Its last stderr:\n"
                    f"{_tail(self._stderr)}"
                )
        return ServerUnavailableError(
            f"cannot reach the napari-seem server at {self.url} ({type(exc).__name__}: {exc}): "
            "is it running? Start it with `napari-seem serve` (or SeemClient.spawn_local) and "
            "check the URL"
        )


class _Launched(NamedTuple):
    process: subprocess.Popen[str]
    url: str
    token: str
    stderr: collections.deque[str]


def _launch(
    *,
    variant: str | None,
    checkpoint: str | Path | None,
    allow_roots: Sequence[str | Path],
    tile: int | None,
    halo: int | None,
    device: str | None,
    timeout: float,
    python: str | None,
    extra_args: Sequence[str],
) -> _Launched:
    """Start ``napari-seem serve`` on 127.0.0.1 and wait until it listens."""
    token = secrets.token_urlsafe(24)
    cmd = [python or sys.executable, "-m", "napari_seem.cli", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", "0"]
    for flag, value in (
        ("--variant", variant),
        ("--checkpoint", checkpoint),
        ("--tile", tile),
        ("--halo", halo),
        ("--device", device),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    for root in allow_roots:
        cmd += ["--allow-root", str(root)]
    cmd += list(extra_args)
    env = {**os.environ, TOKEN_ENV: token, "PYTHONUNBUFFERED": "1"}  # token not in `ps`
    process = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout: collections.deque[str] = collections.deque(maxlen=200)
    stderr: collections.deque[str] = collections.deque(maxlen=200)
    found: list[tuple[str, str]] = []
    ready = threading.Event()

    def on_stdout(line: str) -> None:
        match = LISTENING.search(line)
        if match and not found:
            found.append((match.group(1), match.group(2)))
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

    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None:
            time.sleep(0.2)  # let the drain threads collect the last lines
            raise ServerUnavailableError(
                f"napari-seem serve exited with code {process.returncode} before listening "
                f"(command: {' '.join(cmd)}). Its stderr:\n{_tail(stderr)}"
            )
        if time.monotonic() > deadline:
            _stop(process)
            raise ServerUnavailableError(
                f"napari-seem serve did not report listening within {timeout:.0f} s "
                f"(loading a large model can be slow: raise timeout=). Its stderr:\n"
                f"{_tail(stderr)}"
            )
    url, _ = found[0]
    return _Launched(process, url, token, stderr)


def _http_client(url: str, token: str | None, timeout: float) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def _remote_error(response: httpx.Response) -> RemoteError:
    try:
        error = ErrorReply.model_validate(response.json()).error
        return RemoteError(error.type, error.message, response.status_code)
    except ValueError:
        text = response.text[:500]
        return RemoteError(
            "HTTPError", f"HTTP {response.status_code}: {text}", response.status_code
        )


def _drain(
    pipe: IO[str], lines: collections.deque[str], hook: Callable[[str], None] | None
) -> None:
    try:
        for line in pipe:
            lines.append(line.rstrip("\n"))
            if hook is not None:
                hook(line)
    except (OSError, ValueError):  # the pipe was closed under us
        pass


def _tail(lines: collections.deque[str], n: int = 40) -> str:
    text = "\n".join(list(lines)[-n:])
    return text or "(empty)"


def _stop(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
