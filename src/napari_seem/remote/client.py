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

The HTTP plumbing lives in :mod:`napari_seem.remote.transport`, the child process in
:mod:`napari_seem.remote.process`. This module imports neither torch nor FastAPI.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy.typing as npt
from pydantic import BaseModel

from napari_seem.core.labels import LabelsCrop, decode_labels
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.remote.process import LocalServer, ServeOptions
from napari_seem.remote.protocol import (
    GroundRequest,
    HealthReply,
    ImageReply,
    InfoReply,
    JobEventReply,
    JobRequest,
    JobStatusReply,
    ObjectsReply,
    OpenSessionRequest,
    PredictReply,
    PredictRequest,
    ReferRequest,
    SessionReply,
    UseWeightsRequest,
    WeightsReply,
    encode_array,
    object_mask_from_reply,
)
from napari_seem.remote.transport import RemoteError, ServerUnavailableError, Transport

__all__ = ["RemoteError", "SeemClient", "ServerUnavailableError"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


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
        self._transport = Transport(url, token, timeout)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="seem-client")
        self._server: LocalServer | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``http://host:port`` of the server (a restarted child has a new port)."""
        return self._transport.url

    @property
    def token(self) -> str | None:
        """The bearer token sent with every call (a restarted child has a new one)."""
        return self._transport.token

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
        options = ServeOptions(
            variant=variant,
            checkpoint=checkpoint,
            allow_roots=tuple(allow_roots),
            tile=tile,
            halo=halo,
            device=device,
            timeout=timeout,
            python=python,
            extra_args=tuple(extra_args),
        )
        server = LocalServer(options, auto_restart=auto_restart)
        client = cls(server.url, server.token)
        client._adopt(server)
        return client

    def _adopt(self, server: LocalServer) -> None:
        """Keep ``server`` as this client's child: follow its restarts, explain its death."""
        self._server = server
        self._transport.watch = server
        server.on_restart = self._transport.connect

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
        if self._server is None:
            raise RuntimeError(
                "restart() needs a client made by SeemClient.spawn_local; this one connects "
                f"to {self.url}: restart that server yourself"
            )
        if self._closed:
            raise RuntimeError("this SeemClient is closed: create a new one")
        self._server.restart()

    @property
    def auto_restart(self) -> bool:
        """Whether the next call after the spawned server died starts a new one (see
        :meth:`spawn_local`); always ``False`` for a client connected by URL."""
        return self._server is not None and self._server.auto_restart

    @auto_restart.setter
    def auto_restart(self, value: bool) -> None:
        if self._server is None:
            if value:
                raise RuntimeError("auto_restart needs a client made by SeemClient.spawn_local")
            return
        self._server.auto_restart = bool(value)

    @property
    def process(self) -> subprocess.Popen[str] | None:
        """The spawned server process, or ``None`` when connected by URL."""
        return None if self._server is None else self._server.process

    def close(self) -> None:
        """Stop the spawned server (if any), the thread pool and the connection."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._transport.close()
        if self._server is not None:  # waits for a restart in progress, then stops it
            self._server.close()

    def __enter__(self) -> SeemClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def health(self) -> Future[HealthReply]:
        return self._reply(HealthReply, "GET", "/health")

    def info(self) -> Future[InfoReply]:
        return self._reply(InfoReply, "GET", "/info")

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
        return self._reply(SessionReply, "POST", "/sessions", body)

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
            reply = self._transport.call("POST", "/images", content=content, headers=headers)
            return ImageReply.model_validate(reply).image_id

        return self._submit(call)

    def image_info(self, image_id: str) -> Future[ImageReply]:
        return self._reply(ImageReply, "GET", f"/images/{image_id}")

    def delete_image(self, image_id: str) -> Future[None]:
        """Let the server forget an uploaded image (open sessions on it keep working)."""
        return self._nothing("DELETE", f"/images/{image_id}")

    def session_info(self, session_id: str) -> Future[SessionReply]:
        return self._reply(SessionReply, "GET", f"/sessions/{session_id}")

    def close_session(self, session_id: str) -> Future[None]:
        return self._nothing("DELETE", f"/sessions/{session_id}")

    def predict(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Future[ObjectMask]:
        """One object's mask (a level-0 crop with its offset), like :meth:`Engine.predict`.

        An object cut at the server's ``max_tiles`` limit warns (``RuntimeWarning``), as
        in process; :meth:`predict_reply` gives the reply with its ``truncated`` flag.
        ``vocabulary`` names a text-less object by its best class.
        """

        body = _predict_body(prompt, object_id, vocabulary)

        def call() -> ObjectMask:
            raw = self._transport.call("POST", f"/sessions/{session_id}/predict", body)
            reply = PredictReply.model_validate(raw)
            if reply.truncated:
                warnings.warn(
                    f"the object reaches beyond {reply.max_tiles} tiles and was cut; prompt "
                    "a smaller object or start the server with a larger max_tiles",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return object_mask_from_reply(reply)

        return self._submit(call)

    def predict_reply(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Future[PredictReply]:
        """The server's whole predict reply: the mask payload and ``truncated`` (the object
        was cut at ``max_tiles`` tiles); :func:`~napari_seem.remote.protocol.object_mask_from_reply`
        turns it into an :class:`ObjectMask`."""
        body = _predict_body(prompt, object_id, vocabulary)
        return self._reply(PredictReply, "POST", f"/sessions/{session_id}/predict", body)

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

    def _objects(self, path: str, body: BaseModel) -> list[ObjectMask]:
        reply = ObjectsReply.model_validate(self._transport.call("POST", path, body))
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
        return self._reply(JobStatusReply, "POST", f"/sessions/{session_id}/jobs", body)

    def job_result(self, job_id: str) -> Future[LabelsCrop]:
        """The labels a finished job left (RemoteError 409 while it is not done)."""

        def call() -> LabelsCrop:
            response = self._transport.request("GET", f"/jobs/{job_id}/result")
            try:
                return decode_labels(response.content)
            except ValueError as exc:
                raise RemoteError("BadPayload", f"the job result is unreadable: {exc}") from exc

        return self._submit(call)

    def job_status(self, job_id: str) -> Future[JobStatusReply]:
        return self._reply(JobStatusReply, "GET", f"/jobs/{job_id}")

    def job_events(self, job_id: str, since: int = 0) -> Future[list[JobEventReply]]:
        def call() -> list[JobEventReply]:
            reply = self._transport.call("GET", f"/jobs/{job_id}/events", params={"since": since})
            return [JobEventReply.model_validate(e) for e in reply]

        return self._submit(call)

    def cancel_job(self, job_id: str) -> Future[JobStatusReply]:
        return self._reply(JobStatusReply, "POST", f"/jobs/{job_id}/cancel")

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
        return self._reply(WeightsReply, "GET", "/weights")

    def use_weights(self, path: str | Path | None) -> Future[WeightsReply]:
        """Switch the server's model to a weight file the SERVER can read (a fine_tune
        job's ``weights``, or a file inside its allowed roots); ``None``: the base weights.
        Every session's feature cache starts afresh."""
        body = UseWeightsRequest(path=None if path is None else str(path))
        return self._reply(WeightsReply, "POST", "/weights", body)

    def use_base_weights(self) -> Future[WeightsReply]:
        """Switch the server's model back to its base weights."""
        return self.use_weights(None)

    def download_weights(self, destination: str | Path) -> Future[Path]:
        """Save the weight file the server's model runs with to ``destination`` on THIS
        machine (RemoteError ``NoWeightFile`` on the base weights)."""
        target = Path(destination).expanduser()

        def call() -> Path:
            response = self._transport.request("GET", "/weights/file")
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

    def _reply(
        self, model: type[M], method: str, path: str, body: BaseModel | None = None
    ) -> Future[M]:
        """One call whose JSON reply ``model`` validates."""
        return self._submit(lambda: model.model_validate(self._transport.call(method, path, body)))

    def _nothing(self, method: str, path: str) -> Future[None]:
        """One call answered with no content (204)."""

        def call() -> None:
            self._transport.call(method, path)

        return self._submit(call)


def _predict_body(
    prompt: ObjectPrompt, object_id: str | None, vocabulary: Sequence[str] | None
) -> PredictRequest:
    names = None if vocabulary is None else list(vocabulary)
    return PredictRequest(prompt=prompt.to_dict(), object_id=object_id, vocabulary=names)
