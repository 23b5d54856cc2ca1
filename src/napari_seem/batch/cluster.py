"""Running tile tasks in-process or on a Dask distributed cluster.

``scheduler`` values accepted by :func:`napari_seem.batch.segment_image`:

- ``None``: every task runs in this process, one after the other (no dask needed).
- ``"local"``: a :class:`distributed.LocalCluster` with ``workers`` worker processes, one
  thread each, created for the run and closed after it.
- ``"tcp://host:port"``: the scheduler of an existing cluster (``dask scheduler`` +
  ``dask worker`` on other machines). The input image, the output store and the weights
  must be readable (output: writable) at the same path on every worker.
- a :class:`distributed.Client`, or any cluster object with a ``scheduler_address``
  (``LocalCluster``, and dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``...), e.g.::

      from dask_jobqueue import SLURMCluster
      from distributed import Client
      from napari_seem.batch import ModelSpec, segment_image

      cluster = SLURMCluster(cores=8, processes=1, memory="32GB", walltime="02:00:00",
                             job_extra_directives=["--gres=gpu:1"])
      cluster.scale(jobs=4)                  # four GPU nodes, one worker each
      with Client(cluster) as client:
          segment_image("/shared/slide.ome.zarr", "/shared/slide_labels.zarr",
                        vocabulary=["nucleus"], tile=1024, scheduler=client,
                        model=ModelSpec("seem-focalt-v1", checkpoint="/shared/seem.pt",
                                        device="cuda"))

  ``PBSCluster`` takes the same arguments (``resource_spec`` instead of the gres line).

Each worker builds the model once per run: the model spec travels in a
:class:`napari_seem.batch._dask.BatchWorkerPlugin` registered on the client, which builds
the predictor on the worker's first task and keeps it (per worker, under the run's own
plugin name, so two runs with different models on one cluster do not mix). Tasks are
submitted in a bounded window, so a huge grid never floods the scheduler and a cancel takes
effect within a few tiles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["Executor", "LocalExecutor", "open_executor"]


class Executor:
    """Maps a task function over jobs, yielding results as tasks finish."""

    workers: int = 1

    def run(
        self,
        fn: Callable[[Any, Any], Any],
        jobs: Iterable[Any],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[Any]:
        """``fn(context, job)`` for every job; results in completion order. Stops (after
        the running tasks finish) once ``cancel`` is set."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor created (a LocalCluster)."""


class LocalExecutor(Executor):
    """Runs tasks in this process, one at a time, with one context (predictor + source)."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def run(
        self,
        fn: Callable[[Any, Any], Any],
        jobs: Iterable[Any],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[Any]:
        for job in jobs:
            if cancel is not None and cancel.is_set():
                return
            yield fn(self.context, job)


def open_executor(
    scheduler: Any, *, workers: int | None, make_context: Callable[[], Any], local_context: Any
) -> Executor:
    """The executor for a ``scheduler`` value (see the module docstring).

    Args:
        make_context: picklable zero-argument callable building a worker's context.
        local_context: the context for in-process runs (``scheduler=None``).
    """
    if scheduler is None:
        return LocalExecutor(local_context())
    from napari_seem.batch._dask import connect

    return connect(scheduler, workers=workers, make_context=make_context)
