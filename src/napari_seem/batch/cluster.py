"""Choosing where a run's tile tasks run: in this process or on a Dask distributed cluster.

``scheduler`` values accepted by :func:`napari_seem.batch.segment_image`:

- ``None``: every task runs in this process, one after the other (no dask needed).
- ``"local"``: a :class:`distributed.LocalCluster` with ``BatchConfig.workers`` worker
  processes, one thread each, created for the run and closed after it.
- ``"tcp://host:port"``: the scheduler of an existing cluster (``dask scheduler`` +
  ``dask worker`` on other machines). The input image, the output store and the weights
  must be readable (output: writable) at the same path on every worker.
- a :class:`distributed.Client`, or any cluster object with a ``scheduler_address``
  (``LocalCluster``, and dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``...), e.g.::

      from dask_jobqueue import SLURMCluster
      from distributed import Client
      from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image

      cluster = SLURMCluster(cores=8, processes=1, memory="32GB", walltime="02:00:00",
                             job_extra_directives=["--gres=gpu:1"])
      cluster.scale(jobs=4)                  # four GPU nodes, one worker each
      with Client(cluster) as client:
          segment_image("/shared/slide.ome.zarr", "/shared/slide_labels.zarr",
                        Task.from_options(vocabulary=["nucleus"]), BatchConfig(tile=1024),
                        scheduler=client,
                        model=ModelSpec("seem-focalt-v1", checkpoint="/shared/seem.pt",
                                        device="cuda"))

  ``PBSCluster`` takes the same arguments (``resource_spec`` instead of the gres line).

Each worker builds the model once per run: the model spec travels in a
:class:`napari_seem.batch.dask_executor.BatchWorkerPlugin` registered on the client, which builds
the predictor on the worker's first task and keeps it (per worker, under the run's own
plugin name, so two runs with different models on one cluster do not mix). Tasks are
submitted in a bounded window, so a huge grid never floods the scheduler and a cancel takes
effect within a few tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_seem.batch.executor import Executor, LocalExecutor

__all__ = ["open_executor"]


def open_executor(
    scheduler: Any, *, workers: int | None, make_context: Callable[[], Any], local_context: Any
) -> Executor:
    """The executor for a ``scheduler`` value (see the module docstring).

    Args:
        workers: worker processes of ``scheduler="local"`` (default 2).
        make_context: picklable zero-argument callable building a worker's context.
        local_context: builds the context for in-process runs (``scheduler=None``).
    """
    if scheduler is None:
        return LocalExecutor(local_context())
    # distributed loads only when a Dask run starts
    from napari_seem.batch.dask_executor import connect

    return connect(scheduler, workers=workers, make_context=make_context)
