"""Background jobs of the engine: state, progress events and cancellation.

A job's work runs on the engine's worker thread; callers poll ``events`` or subscribe a
callback (called on the worker thread, so UI code must hop to its own thread itself).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from napari_seem.core.progress import FINISHED_STATES, Cancelled

__all__ = ["JobCancelled", "JobEvent", "JobRecord", "JobState"]

JobState = Literal["queued", "running", "done", "cancelled", "failed"]
FINISHED: frozenset[str] = FINISHED_STATES

_log = logging.getLogger(__name__)


#: Raised by :meth:`JobRecord.raise_if_cancelled`; the engine marks the job cancelled. The
#: one :class:`napari_seem.core.progress.Cancelled` (this name is kept for one release).
JobCancelled = Cancelled


@dataclass(frozen=True)
class JobEvent:
    """One progress report of a job.

    Attributes:
        job_id: the job it is about.
        seq: 0, 1, 2, ... in the order the job emitted them.
        state: the job's state when the event was emitted.
        done: work units finished so far (tiles for ``encode_region``).
        total: work units in the whole job.
        error: the failure message when ``state == "failed"``.
        message: the job's latest progress text (e.g. ``"step 40/100 loss 0.312"``).
    """

    job_id: str
    seq: int
    state: JobState
    done: int
    total: int
    error: str | None = None
    message: str | None = None


@dataclass
class JobRecord:
    """Mutable bookkeeping of one job; every access goes through ``lock``.

    A job runner (see :meth:`napari_seem.engine.Engine.register_job_kind`) reports with
    ``emit(done=..., total=..., message=...)``, calls ``raise_if_cancelled()`` between work
    units (tiles) and may leave a ``result`` (e.g. a
    :class:`~napari_seem.core.labels.LabelsCrop`) by returning it.
    """

    job_id: str
    kind: str
    session_id: str
    state: JobState = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    message: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    events: list[JobEvent] = field(default_factory=list)
    subscribers: list[Callable[[JobEvent], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Any = None

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when someone asked the job to stop."""
        if self.cancel.is_set():
            raise JobCancelled(self.job_id)

    def emit(self, **changes: object) -> None:
        """Update state/progress and tell everyone; finished jobs ignore later updates."""
        with self.lock:
            if self.state in FINISHED:
                return
            for name, value in changes.items():
                setattr(self, name, value)
            event = JobEvent(
                self.job_id,
                len(self.events),
                self.state,
                self.done,
                self.total,
                self.error,
                self.message,
            )
            self.events.append(event)
            callbacks = list(self.subscribers)
            if self.state in FINISHED:
                self.finished.set()
        for callback in callbacks:
            _call(callback, event)

    def subscribe(self, callback: Callable[[JobEvent], None]) -> None:
        """Call ``callback`` with every later event; it gets the events so far at once."""
        with self.lock:
            self.subscribers.append(callback)
            past = list(self.events)
        for event in past:
            _call(callback, event)


def _call(callback: Callable[[JobEvent], None], event: JobEvent) -> None:
    # A broken listener must not fail the job or starve the other listeners.
    try:
        callback(event)
    except Exception:
        _log.exception("job event callback %r failed on %s", callback, event)
