"""Background jobs of the engine: kinds, state, progress events, cancellation, the job table.

A job kind is a :class:`JobKind` (a ``runner`` and an optional ``check``); the engine gets
its kinds as a plain mapping (:data:`napari_seem.engine.kinds.STANDARD_KINDS` by default)
and keeps them in a :class:`JobTable`. A job's work runs on the engine's single worker
thread; callers poll ``events`` or subscribe a callback (called on the worker thread, so UI
code must hop to its own thread itself).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from napari_seem.core.progress import FINISHED_STATES, Cancelled, check_cancelled
from napari_seem.engine.errors import (
    InvalidRequestError,
    JobResultUnavailableError,
    TooManyJobsError,
    UnknownJobError,
)
from napari_seem.engine.memory import release_memory

if TYPE_CHECKING:
    from napari_seem.engine.facade import Engine
    from napari_seem.engine.sessions import Session

__all__ = [
    "JobCancelled",
    "JobCheck",
    "JobEvent",
    "JobKind",
    "JobPlan",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JobStatus",
    "JobTable",
]

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
    finished_at: float | None = None  # time.monotonic() when it finished

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~napari_seem.core.progress.Cancelled` when someone asked the job
        to stop."""
        check_cancelled(self.cancel, f"job {self.job_id}")

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
                self.finished_at = time.monotonic()
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


@dataclass(frozen=True)
class JobPlan:
    """What a job kind's ``check`` returns: the ``params`` the runner will get (validated,
    normalised) and the ``total`` work units known up front (0 if the runner sets it)."""

    params: Mapping[str, Any]
    total: int = 0


JobRunner = Callable[..., Any]
"""``runner(engine, job, session, **params) -> result | None``, run on the worker thread.

It reports with ``job.emit(done=..., total=...)``, calls ``job.raise_if_cancelled()``
between tiles, takes ``engine.model_lock`` around model use (``engine.encoded`` gives a
tile's features), and may return a result (kept on the job, see
:meth:`~napari_seem.engine.Engine.job_result`; the server sends a
:class:`~napari_seem.core.labels.LabelsCrop` as a binary payload).
"""

JobCheck = Callable[["Engine", "Session", dict[str, Any]], JobPlan]
"""``check(engine, session, params) -> JobPlan``, run in the caller's thread by
:meth:`~napari_seem.engine.Engine.start_job`; raises
:class:`~napari_seem.engine.errors.InvalidRequestError` for bad parameters."""


@dataclass(frozen=True)
class JobKind:
    """One kind of background job: its ``runner`` and optional parameter ``check``.

    Without a check, the parameters must bind to the runner's keyword parameters.
    """

    runner: JobRunner
    check: JobCheck | None = None


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job (``error`` is set when ``state == "failed"``; ``message`` is
    the latest progress text; ``info`` is the result of a kind that answers a JSON-ready
    mapping, e.g. ``"fine_tune"``'s weights path, once the job is done)."""

    job_id: str
    kind: str
    session_id: str
    state: JobState
    done: int
    total: int
    error: str | None = None
    has_result: bool = False
    message: str | None = None
    info: Mapping[str, Any] | None = None


class JobTable:
    """The job kinds, jobs and single worker thread of one engine (thread-safe).

    Args:
        kinds: the kinds it runs at first, by name (more with :meth:`register`).
        max_jobs_kept: most jobs remembered; beyond it the oldest finished ones are
            forgotten, and a new job is refused while that many are queued or running.
        finished_ttl_s: seconds a finished job is remembered.
    """

    def __init__(
        self,
        kinds: Mapping[str, JobKind],
        *,
        max_jobs_kept: int = 256,
        finished_ttl_s: float = 3600.0,
    ) -> None:
        self.max_jobs_kept = int(max_jobs_kept)
        self.finished_ttl_s = float(finished_ttl_s)
        self._lock = threading.Lock()  # the jobs and kinds tables
        self._jobs: dict[str, JobRecord] = {}
        self._kinds: dict[str, JobKind] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-seem-job")
        for name, kind in kinds.items():
            self.register(name, kind)

    def register(self, name: str, kind: JobKind, *, replace: bool = False) -> None:
        """Add ``kind`` as ``name`` (see :meth:`napari_seem.engine.Engine.register_job_kind`)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a job kind needs a non-empty name")
        if not callable(kind.runner):
            raise TypeError(f"the runner of job kind {name!r} must be callable")
        with self._lock:
            if name in self._kinds and not replace:
                raise ValueError(f"job kind {name!r} is registered already; pass replace=True")
            self._kinds[name] = kind

    @property
    def kinds(self) -> tuple[str, ...]:
        """The registered job kinds."""
        with self._lock:
            return tuple(self._kinds)

    def start(self, engine: Engine, kind: str, session: Session, params: dict[str, Any]) -> str:
        """Check ``params`` with the kind's check, queue the job, return its id.

        Raises:
            InvalidRequestError: unknown kind or bad parameters.
        """
        with self._lock:
            spec = self._kinds.get(kind)
            known = sorted(self._kinds)
        if spec is None:
            raise InvalidRequestError(f"unknown job kind {kind!r}; the engine runs {known}")
        plan = JobPlan(params) if spec.check is None else spec.check(engine, session, dict(params))
        try:
            inspect.signature(spec.runner).bind(engine, None, session, **plan.params)
        except TypeError as exc:
            raise InvalidRequestError(
                f"job kind {kind!r} does not take the parameters {sorted(plan.params)}: {exc}"
            ) from None
        job = JobRecord(uuid.uuid4().hex, kind, session.session_id, total=int(plan.total))
        with self._lock:
            self._evict(room=1)
            if len(self._jobs) >= self.max_jobs_kept:
                raise TooManyJobsError(
                    f"{len(self._jobs)} jobs are queued or running, the most this server keeps "
                    f"(max_jobs_kept={self.max_jobs_kept}): wait for some to finish or cancel "
                    "them, then start this one again"
                )
            self._jobs[job.job_id] = job
        job.emit()  # the "queued" event
        self._executor.submit(_run, spec, engine, job, session, dict(plan.params))
        return job.job_id

    def get(self, job_id: str) -> JobRecord:
        """The job's record.

        Raises:
            UnknownJobError: the engine never issued ``job_id``.
        """
        with self._lock:
            self._evict()
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(
                f"no job {job_id!r}: use the id start_job returned (jobs are per engine; "
                f"a finished job is forgotten after {self.finished_ttl_s:g} s or when "
                f"{self.max_jobs_kept} newer ones are kept)"
            )
        return job

    def _evict(self, room: int = 0) -> None:
        """Forget finished jobs older than the time to live, then the oldest finished ones
        until ``room`` more fit under ``max_jobs_kept``. Caller holds the lock."""
        now = time.monotonic()
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for job in finished:
            assert job.finished_at is not None
            if now - job.finished_at > self.finished_ttl_s:
                del self._jobs[job.job_id]
        finished = sorted(
            (j for j in self._jobs.values() if j.finished_at is not None),
            key=lambda j: j.finished_at or 0.0,
        )
        excess = len(self._jobs) + room - self.max_jobs_kept
        for job in finished[: max(excess, 0)]:
            del self._jobs[job.job_id]

    @property
    def job_ids(self) -> list[str]:
        """The ids of the jobs remembered, oldest first."""
        with self._lock:
            self._evict()
            return list(self._jobs)

    def status(self, job_id: str) -> JobStatus:
        """The job's current state and progress."""
        job = self.get(job_id)
        with job.lock:
            done = job.state == "done"
            return JobStatus(
                job.job_id,
                job.kind,
                job.session_id,
                job.state,
                job.done,
                job.total,
                job.error,
                done and job.result is not None,
                job.message,
                dict(job.result) if done and isinstance(job.result, Mapping) else None,
            )

    def result(self, job_id: str) -> Any:
        """What the job's runner returned (see :meth:`napari_seem.engine.Engine.job_result`)."""
        job = self.get(job_id)
        with job.lock:
            state, result, done, total, error = (
                job.state,
                job.result,
                job.done,
                job.total,
                job.error,
            )
        if state != "done":
            why = {
                "queued": "is queued",
                "running": f"is running ({done}/{total})",
                "cancelled": "was cancelled: start it again",
                "failed": f"failed ({error})",
            }[state]
            raise JobResultUnavailableError(
                f"job {job_id} {why}; its result is available once its state is 'done'"
            )
        if result is None:
            raise JobResultUnavailableError(
                f"job {job_id} ({job.kind}) finished but its kind stores no result "
                "(encode_region only fills the feature cache)"
            )
        return result

    def busy(self, kinds: tuple[str, ...]) -> list[JobRecord]:
        """The jobs of ``kinds`` that are queued or running."""
        with self._lock:
            return [
                j
                for j in self._jobs.values()
                if j.kind in kinds and j.state in ("queued", "running")
            ]

    def cancel_session(self, session_id: str) -> None:
        """Ask every job of the session to stop."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.session_id == session_id]
        for job in jobs:
            job.cancel.set()

    def close(self) -> None:
        """Cancel every job and wait for the running one; queued ones end ``"cancelled"``."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for job in jobs:
            job.emit(state="cancelled")


def _run(
    spec: JobKind, engine: Engine, job: JobRecord, session: Session, params: dict[str, Any]
) -> None:
    """Run one job on the worker thread and record how it ended."""
    if job.cancel.is_set():
        job.emit(state="cancelled")
        return
    job.emit(state="running")
    ended: str | None = None
    try:
        result = spec.runner(engine, job, session, **params)
    except Cancelled:
        ended = "cancelled"
    except Exception as exc:
        ended = f"{type(exc).__name__}: {exc}"
    if ended is not None:
        del params  # what the runner was given (training images, ...) goes with it
        release_memory()  # the runner's frames and tensors, held by the traceback till now
        if ended == "cancelled":
            job.emit(state="cancelled")
        else:
            job.emit(state="failed", error=ended)
        return
    with job.lock:
        job.result = result
        stopped = job.cancel.is_set() and job.done < job.total
    job.emit(state="cancelled" if stopped else "done")
