"""The one model backend of the apps: a :class:`ModelBackend` protocol over sessions.

Two implementations share it:

- :class:`LocalBackend` over an in-process :class:`~napari_seem.engine.Engine`;
- :class:`RemoteBackend` over a :class:`~napari_seem.remote.client.SeemClient` (a local
  model process or a ``napari-seem serve`` server).

The scripting API (:mod:`napari_seem.api`), the napari widget and the Jupyter widget all
talk to a model through this protocol. Every method blocks (UIs call it from a worker
thread). Coordinates are level-0 ``(row, col)`` pixels of the session's plane; boxes are
``(row0, col0, row1, col1)``, max exclusive. Jobs are followed only through
:func:`napari_seem.core.progress.follow_job`; progress goes to a
:data:`~napari_seem.core.progress.Reporter`; a cancel ends in
:class:`~napari_seem.core.progress.Cancelled`.

This module imports neither torch nor an HTTP stack: the engine and the client are passed in.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from napari_seem.core.labels import LabelsCrop
from napari_seem.core.progress import (
    Cancelled,
    JobFailed,
    JobLike,
    Progress,
    Reporter,
    follow_job,
)
from napari_seem.core.prompts import ObjectPrompt, PromptError
from napari_seem.core.results import ObjectMask

if TYPE_CHECKING:
    from napari_seem.engine import Engine
    from napari_seem.remote.client import SeemClient

__all__ = [
    "NO_REMOTE",
    "Answer",
    "Box",
    "JobKindMissing",
    "LocalBackend",
    "ModelBackend",
    "RemoteBackend",
    "follow",
    "predict_answer",
]

#: Level-0 ``(row0, col0, row1, col1)``, max exclusive.
Box = tuple[int, int, int, int]

NO_REMOTE = (
    "{task} through a model server needs a server that offers it (this one does not): use "
    "the in-process engine (model=None or a variant name) or update the server"
)


@dataclass(frozen=True)
class Answer:
    """One ``predict`` answered with its limit: the mask and whether it was cut.

    Attributes:
        mask: the object as a level-0 crop with its offset.
        truncated: the object reached beyond ``max_tiles`` decoded tiles and was cut there.
        max_tiles: the tile limit of the answer (``None`` when the model did not say).
    """

    mask: ObjectMask
    truncated: bool = False
    max_tiles: int | None = None

    @property
    def notice(self) -> str | None:
        """What to tell the user about a cut object (``None`` when it was not cut)."""
        if not self.truncated:
            return None
        limit = f"{self.max_tiles} tiles" if self.max_tiles else "the tile limit"
        return (
            f"The object reaches beyond {limit} and was cut there: prompt a smaller object "
            "(a box around it), or start the model with a larger max_tiles "
            "(napari-seem serve --max-tiles)."
        )


def predict_answer(
    model: Any,
    session_id: str,
    prompt: ObjectPrompt,
    *,
    object_id: str | None = None,
    vocabulary: Sequence[str] | None = None,
) -> Answer:
    """``model.predict`` with its ``truncated`` flag, for any :class:`ModelBackend` (one
    without ``predict_answer`` answers ``truncated=False``). ``vocabulary`` names a
    text-less object by its best class (a backend without it leaves the object unnamed)."""
    answer = getattr(model, "predict_answer", None)
    if answer is None:
        return Answer(model.predict(session_id, prompt, object_id=object_id))
    if vocabulary is None:
        return answer(session_id, prompt, object_id=object_id)
    return answer(session_id, prompt, object_id=object_id, vocabulary=vocabulary)


class JobKindMissing(PromptError):
    """The model server is older than a job kind (e.g. ``"segment"``)."""


@runtime_checkable
class ModelBackend(Protocol):
    """What the apps need of a model: sessions, prompts, the ``segment`` job, weights."""

    @property
    def name(self) -> str:
        """Human text naming the model (``"in-process seem-lite"``, ``"server URL"``)."""
        ...

    def open_image(
        self,
        image: Any,
        *,
        bands: tuple[int, int, int] | None = None,
        plane: tuple[int, ...] = (),
        axes: str | None = None,
    ) -> str:
        """Open ``image`` (an array, or a path the model side can read) on ``plane``;
        returns the session id. ``axes`` names an in-memory array's axes (``"zyx"``...)."""
        ...

    def close_session(self, session_id: str) -> None:
        """Close a session (closing twice, or after a restart, is harmless)."""
        ...

    def predict(
        self, session_id: str, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        """One object's mask (level-0 crop + offset); ``object_id`` keeps round memory."""
        ...

    def forget_object(self, session_id: str, object_id: str) -> None:
        """Drop the round memory of ``object_id`` (where the model keeps one)."""
        ...

    def ground(
        self, session_id: str, text: str, *, box: Box | None = None, threshold: float = 0.05
    ) -> list[ObjectMask]:
        """Every instance of ``text`` within ``box`` (default: the whole plane), best first."""
        ...

    def refer(
        self,
        session_id: str,
        example_session_id: str,
        example: ObjectPrompt,
        *,
        box: Box | None = None,
    ) -> list[ObjectMask]:
        """What ``example`` marks on the example session, found on ``session_id``."""
        ...

    def segment(
        self,
        session_id: str,
        params: dict[str, Any],
        *,
        box: Box | None = None,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> LabelsCrop:
        """Run the ``"segment"`` job (whole-plane generic segmentation) to its end.

        ``reporter`` counts tiles; ``cancel`` stops the job before its next tile.

        Raises:
            Cancelled: the job was cancelled (message ``"... cancelled after N tiles"``).
            JobKindMissing: a server without the ``"segment"`` job.
        """
        ...

    def prefetch(self, session_id: str, box: Box) -> str:
        """Start encoding the tiles of ``box`` (an ``encode_region`` job); its job id."""
        ...

    def cancel_job(self, job_id: str) -> None:
        """Ask a job to stop."""
        ...

    def use_weights(self, path: str | Path | None) -> str:
        """Run fine-tuned weights from ``path`` (``None``: the base weights); the id in use."""
        ...


def follow(
    poll: Callable[[float], JobLike],
    cancel_job: Callable[[], Any],
    *,
    reporter: Reporter | None,
    cancel: threading.Event | None,
    what: str,
    unit: str,
    where: str,
    interval: float = 0.1,
) -> JobLike:
    """:func:`follow_job` with the apps' conventions.

    The last figures are reported once more when the job is done (a bar ends full), a
    cancel says how far it came (``"<what> cancelled after <done> <unit>"``) and a failure
    where it happened (``JobFailed("<what> failed <where>: <error>")``).
    """
    last: list[JobLike] = []
    shown: list[tuple[int, int]] = []

    def polled(wait: float) -> JobLike:
        status = poll(wait)
        last[:] = [status]
        return status

    def seen(progress: Progress) -> None:
        shown[:] = [(progress.done, progress.total)]
        if reporter is not None:
            reporter(progress)

    try:
        status = follow_job(
            polled,
            cancel_job=cancel_job,
            reporter=seen,
            cancel=cancel,
            interval=interval,
            what=what,
        )
    except Cancelled:
        done = last[0].done if last else 0
        raise Cancelled(f"{what} cancelled after {done} {unit}") from None
    except JobFailed:
        error = getattr(last[0], "error", None) if last else None
        raise JobFailed(f"{what} failed {where}: {error or 'no reason given'}") from None
    figures = (int(status.done), int(status.total))
    if reporter is not None and (not shown or shown[0] != figures):
        reporter(Progress(*figures, str(getattr(status, "message", None) or "")))
    return status


class LocalBackend:
    """:class:`ModelBackend` over an in-process :class:`~napari_seem.engine.Engine`.

    Engine refusals (:class:`~napari_seem.engine.errors.EngineError`) of opening,
    predicting, starting a job and switching weights surface as :class:`PromptError`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def name(self) -> str:
        return f"in-process {self.engine.predictor.model.name}"

    def open_image(
        self,
        image: Any,
        *,
        bands: tuple[int, int, int] | None = None,
        plane: tuple[int, ...] = (),
        axes: str | None = None,
    ) -> str:
        with _engine_errors():
            if axes is not None:
                image_id = self.engine.add_image(image, axes=axes)
                return self.engine.open_session(image_id=image_id, bands=bands, plane=plane)
            return self.engine.open_session(image, bands=bands, plane=plane)

    def close_session(self, session_id: str) -> None:
        with contextlib.suppress(Exception):  # closing twice is harmless
            self.engine.close_session(session_id)

    def predict(
        self, session_id: str, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        with _engine_errors():
            return self.engine.predict(session_id, prompt, object_id=object_id)

    def predict_answer(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Answer:
        """:meth:`predict` with the engine's ``truncated`` flag (no warning: the UI says it);
        ``vocabulary`` names a text-less object by its best class."""
        with _engine_errors():
            got = self.engine.predict_answer(
                session_id, prompt, object_id=object_id, vocabulary=vocabulary
            )
        return Answer(got.mask, bool(got.truncated), int(got.max_tiles))

    def forget_object(self, session_id: str, object_id: str) -> None:
        with contextlib.suppress(Exception):
            self.engine.forget_object(session_id, object_id)

    def ground(
        self, session_id: str, text: str, *, box: Box | None = None, threshold: float = 0.05
    ) -> list[ObjectMask]:
        return list(self.engine.ground(session_id, text, box=box, score_threshold=threshold))

    def refer(
        self,
        session_id: str,
        example_session_id: str,
        example: ObjectPrompt,
        *,
        box: Box | None = None,
    ) -> list[ObjectMask]:
        return list(self.engine.refer(session_id, example_session_id, example, box=box))

    def segment(
        self,
        session_id: str,
        params: dict[str, Any],
        *,
        box: Box | None = None,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> LabelsCrop:
        engine = self.engine
        extra = {} if box is None else {"box": box}
        with _engine_errors():
            job_id = engine.start_job("segment", session_id, **params, **extra)

        def on_event(event: Any) -> None:
            # on the engine's worker thread, between tiles: a cancel set by the reporter
            # itself stops the job before its next tile
            if reporter is not None and event.state in ("queued", "running"):
                reporter(Progress(int(event.done), int(event.total)))
            if cancel is not None and cancel.is_set():
                engine.cancel_job(job_id)

        engine.subscribe(job_id, on_event)
        follow(
            lambda wait: engine.wait_job(job_id, timeout=wait),
            lambda: engine.cancel_job(job_id),
            reporter=None,
            cancel=cancel,
            what="segment everything",
            unit="tiles",
            where="in the engine",
        )
        result = engine.job_result(job_id)
        assert isinstance(result, LabelsCrop)
        return result

    def prefetch(self, session_id: str, box: Box) -> str:
        return self.engine.start_job("encode_region", session_id, box=box)

    def cancel_job(self, job_id: str) -> None:
        self.engine.cancel_job(job_id)

    def use_weights(self, path: str | Path | None) -> str:
        with _engine_errors():
            return str(self.engine.use_weights(path).checkpoint)

    def close(self) -> None:
        self.engine.close()


class RemoteBackend:
    """:class:`ModelBackend` over a :class:`~napari_seem.remote.client.SeemClient`.

    A path is opened by the server itself (it must lie inside its allowed roots); an
    in-memory array is uploaded once per :meth:`open_image` call. Server refusals stay
    :class:`~napari_seem.remote.client.RemoteError`.
    """

    def __init__(self, client: SeemClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return f"server {self.client.url}"

    def open_image(
        self,
        image: Any,
        *,
        bands: tuple[int, int, int] | None = None,
        plane: tuple[int, ...] = (),
        axes: str | None = None,
    ) -> str:
        if isinstance(image, str | os.PathLike):
            reply = self.client.open_session(Path(image), bands=bands, plane=plane).result()
            return str(reply.session_id)
        image_id = self.upload(image, axes=axes)
        return self.open_upload(image_id, bands=bands, plane=plane)

    def upload(self, array: Any, *, axes: str | None = None) -> str:
        """Send an in-memory array to the server; its image id."""
        return str(self.client.upload_image(np.asarray(array), axes=axes).result())

    def open_upload(
        self, image_id: str, *, bands: tuple[int, int, int] | None = None, plane: Sequence[int] = ()
    ) -> str:
        """Open an uploaded image on ``plane``; the session id."""
        reply = self.client.open_session(image_id=image_id, bands=bands, plane=list(plane))
        return str(reply.result().session_id)

    def close_session(self, session_id: str) -> None:
        with contextlib.suppress(Exception):  # closing twice or after a restart is harmless
            self.client.close_session(session_id).result()

    def predict(
        self, session_id: str, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        return self.client.predict(session_id, prompt, object_id=object_id).result()

    def predict_answer(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Answer:
        """:meth:`predict` with the server's ``truncated`` flag (no warning: the UI says it);
        ``vocabulary`` names a text-less object by its best class."""
        from napari_seem.remote.protocol import object_mask_from_reply

        reply = self.client.predict_reply(
            session_id, prompt, object_id=object_id, vocabulary=vocabulary
        ).result()
        return Answer(object_mask_from_reply(reply), bool(reply.truncated), reply.max_tiles)

    def forget_object(self, session_id: str, object_id: str) -> None:
        """Nothing: the server forgets an object's memory with its session."""

    def ground(
        self, session_id: str, text: str, *, box: Box | None = None, threshold: float = 0.05
    ) -> list[ObjectMask]:
        return list(self.client.ground(session_id, text, box, score_threshold=threshold).result())

    def refer(
        self,
        session_id: str,
        example_session_id: str,
        example: ObjectPrompt,
        *,
        box: Box | None = None,
    ) -> list[ObjectMask]:
        return list(self.client.refer(session_id, example_session_id, example, box).result())

    def segment(
        self,
        session_id: str,
        params: dict[str, Any],
        *,
        box: Box | None = None,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> LabelsCrop:
        job_id = self.start_job(session_id, "segment", params, box=box)
        self.follow(job_id, reporter=reporter, cancel=cancel, what="segment everything")
        return self.client.job_result(job_id).result()

    def start_job(
        self, session_id: str, kind: str, params: dict[str, Any], *, box: Box | None = None
    ) -> str:
        """Start a job of ``kind``; its id.

        Raises:
            JobKindMissing: the server does not know ``kind``.
        """
        from napari_seem.remote.client import RemoteError

        try:
            started = self.client.start_job(session_id, kind=kind, box=box, params=params)
            return str(started.result().job_id)
        except RemoteError as exc:
            if "unknown job kind" in exc.message:
                task = "segment everything" if kind == "segment" else kind
                raise JobKindMissing(NO_REMOTE.format(task=task)) from None
            raise

    def follow(
        self,
        job_id: str,
        *,
        reporter: Reporter | None,
        cancel: threading.Event | None,
        what: str,
        unit: str = "tiles",
        interval: float = 0.1,
    ) -> JobLike:
        """Follow a server job to its end (see :func:`follow`); its final status."""
        return follow(
            lambda _wait: self.client.job_status(job_id).result(),
            lambda: self.client.cancel_job(job_id).result(),
            reporter=reporter,
            cancel=cancel,
            what=what,
            unit=unit,
            where="in the model process",
            interval=interval,
        )

    def prefetch(self, session_id: str, box: Box) -> str:
        return str(self.client.start_job(session_id, box=box).result().job_id)

    def cancel_job(self, job_id: str) -> None:
        self.client.cancel_job(job_id).result()

    def use_weights(self, path: str | Path | None) -> str:
        return str(self.client.use_weights(path).result().checkpoint)

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def _engine_errors() -> Any:
    """Engine refusals as :class:`PromptError` (the scripting API's error type)."""
    from napari_seem.engine.errors import EngineError

    try:
        yield
    except EngineError as exc:
        raise PromptError(str(exc)) from None
