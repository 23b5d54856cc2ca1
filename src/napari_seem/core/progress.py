"""The one progress / cancel abstraction of napari-seem (stdlib only).

Every long piece of work (a whole-image batch run, a training run, an engine job, a job
followed over HTTP, a napari or Jupyter button) speaks the same three things:

- :class:`Progress`: an immutable record ``(done, total, message, values)``;
- a :data:`Reporter`: ``reporter(progress)``, a callable the *caller* passes in (it may be
  called from a worker thread; UI code hops to its own thread itself);
- :class:`Cancelled`: the one exception that says "stopped because someone asked"; the cancel
  signal itself is a plain :class:`threading.Event` that the caller owns and sets.

:func:`follow_job` is the one loop that follows a job to its end (in process or over HTTP):
it reports progress, forwards a cancel request once, and turns the job's final state into a
return value, :class:`Cancelled` or :class:`JobFailed`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "FINISHED_STATES",
    "Cancelled",
    "JobFailed",
    "JobLike",
    "Progress",
    "Reporter",
    "check_cancelled",
    "follow_job",
    "pair_reporter",
    "report",
]

#: States in which a job has stopped for good.
FINISHED_STATES: frozenset[str] = frozenset({"done", "cancelled", "failed"})


@dataclass(frozen=True)
class Progress:
    """How far one piece of work has come.

    Attributes:
        done: work units finished so far (tiles, chunks, optimizer steps, bytes, planes).
        total: work units of the whole piece of work (0 when not known yet).
        message: short human text about the latest unit (e.g. ``"step 40/100 loss 0.312"``).
        values: named numbers about the latest unit (e.g. ``{"loss": 0.312}``).
    """

    done: int
    total: int
    message: str = ""
    values: Mapping[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """``done / total`` clipped to 0..1 (0 when the total is unknown)."""
        return 0.0 if self.total <= 0 else min(max(self.done / self.total, 0.0), 1.0)


#: ``reporter(progress)``: told about every step of a piece of work; may run on a worker thread.
Reporter = Callable[[Progress], None]


class Cancelled(Exception):
    """The work stopped because the caller asked it to (its cancel event, or a cancelled job).

    Work done before the cancel is kept where it was written (resumable batch runs, committed
    labels); nothing half-written is left behind as a result.
    """


class JobFailed(RuntimeError):
    """A followed job ended in the ``failed`` state; the message says why."""


def check_cancelled(cancel: threading.Event | None, what: str = "the work") -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set (call it between work units)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} was cancelled")


def report(
    reporter: Reporter | None, done: int, total: int, message: str = "", **values: float
) -> None:
    """Call ``reporter`` with a :class:`Progress` (nothing when ``reporter`` is None)."""
    if reporter is not None:
        reporter(Progress(int(done), int(total), message, dict(values)))


def pair_reporter(callback: Callable[[int, int], Any] | None) -> Reporter | None:
    """A :data:`Reporter` over a public ``callback(done, total)`` (the scripting API's shape)."""
    if callback is None:
        return None

    def reporter(progress: Progress) -> None:
        callback(progress.done, progress.total)

    return reporter


class JobLike(Protocol):
    """What :func:`follow_job` reads of a job status (engine or HTTP reply)."""

    @property
    def state(self) -> str: ...

    @property
    def done(self) -> int: ...

    @property
    def total(self) -> int: ...


S = TypeVar("S", bound=JobLike)


def follow_job(
    poll: Callable[[float], S],
    *,
    cancel_job: Callable[[], Any],
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    interval: float = 0.1,
    what: str = "the job",
) -> S:
    """Follow a job to its end and return its final status.

    Args:
        poll: ``poll(wait_seconds)`` returns the job's current status; it may block up to
            ``wait_seconds`` for a change (the engine's ``wait_job``) or return at once (an
            HTTP status request; this loop then sleeps ``interval`` itself).
        cancel_job: asks the job to stop; called once, when ``cancel`` is first seen set.
        reporter: told ``Progress(done, total, message)`` whenever the figures change.
        cancel: the caller's cancel signal.
        interval: seconds between polls.
        what: names the job in error messages (``"segment everything"``).

    Raises:
        Cancelled: the job ended cancelled (asked by this caller or by anyone else).
        JobFailed: the job ended failed; the message carries the job's error.
    """
    shown: tuple[int, int, str] | None = None
    asked = False
    while True:
        if cancel is not None and cancel.is_set() and not asked:
            cancel_job()
            asked = True
        started = time.monotonic()
        status = poll(interval)
        message = str(getattr(status, "message", None) or "")
        figures = (int(status.done), int(status.total), message)
        if reporter is not None and figures != shown and status.state not in FINISHED_STATES:
            shown = figures
            reporter(Progress(*figures))
        if status.state == "done":
            return status
        if status.state == "cancelled":
            raise Cancelled(f"{what} was cancelled after {status.done} of {status.total}")
        if status.state == "failed":
            raise JobFailed(f"{what} failed: {getattr(status, 'error', None) or 'no reason given'}")
        left = interval - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)
