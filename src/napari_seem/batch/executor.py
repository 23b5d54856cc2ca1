"""How a batch run maps a task function over jobs: the protocol, and the in-process executor.

An executor runs ``fn(context, job)`` for every job and yields the results as tasks finish;
the context (predictor + opened image) is built once per worker. The Dask implementation is
:class:`napari_seem.batch.dask_executor.DaskExecutor`; :func:`napari_seem.batch.cluster.
open_executor` picks one for a ``scheduler`` value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "TaskFn"]

#: ``fn(context, job) -> result``: one task of a run (module-level, so Dask can pickle it).
TaskFn = Callable[[Any, Any], Any]


class Executor(Protocol):
    """Maps a task function over jobs, yielding results as tasks finish."""

    #: how many workers run tasks (1 in process)
    workers: int

    def run(
        self, fn: TaskFn, jobs: Iterable[Any], *, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        """``fn(context, job)`` for every job; results in completion order. Stops (after
        the running tasks finish) once ``cancel`` is set."""
        ...

    def close(self) -> None:
        """Release what the executor created (a LocalCluster, the worker plugin)."""
        ...


class LocalExecutor:
    """Runs tasks in this process, one at a time, with one context (predictor + source)."""

    workers = 1

    def __init__(self, context: Any) -> None:
        self.context = context

    def run(
        self, fn: TaskFn, jobs: Iterable[Any], *, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        """See :meth:`Executor.run`; checks ``cancel`` before every job."""
        for job in jobs:
            if cancel is not None and cancel.is_set():
                return
            yield fn(self.context, job)

    def close(self) -> None:
        """Nothing to release in process."""
