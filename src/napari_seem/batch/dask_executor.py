"""The Dask distributed side of batch runs (imports ``distributed``; loaded only when used)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from distributed import Client, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from napari_seem.batch.executor import TaskFn

__all__ = ["BatchWorkerPlugin", "DaskExecutor", "connect"]


class BatchWorkerPlugin(WorkerPlugin):
    """Holds, per worker, the context (predictor + opened image) of one run.

    The context is built from ``make_context()`` on the worker's first task (the model is
    loaded once per worker), under a lock so a multi-threaded worker builds it once, and is
    keyed by the worker's address because in-process LocalCluster workers may share one
    plugin object.
    """

    def __init__(self, name: str, make_context: Callable[[], Any]) -> None:
        self.name = name
        self.make_context = make_context
        self._contexts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "make_context": self.make_context}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["make_context"])  # type: ignore[misc]

    def teardown(self, worker: Any) -> None:
        with self._lock:
            self._contexts.pop(getattr(worker, "address", ""), None)

    def context(self, worker_address: str) -> Any:
        """This worker's context, built on first use."""
        with self._lock:
            if worker_address not in self._contexts:
                self._contexts[worker_address] = self.make_context()
            return self._contexts[worker_address]


def _on_worker(plugin_name: str, fn: Callable[[Any, Any], Any], job: Any) -> Any:
    worker = get_worker()
    plugin: Any = worker.plugins[plugin_name]
    return fn(plugin.context(worker.address), job)


class DaskExecutor:
    """Submits tasks to a distributed client in a bounded window (2 per worker)."""

    def __init__(
        self,
        client: Client,
        make_context: Callable[[], Any],
        *,
        owned: list[Any] | None = None,
        window_per_worker: int = 2,
    ) -> None:
        self.client = client
        self._owned = owned or []
        self.workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        self.window = max(2, window_per_worker * self.workers)
        self.plugin_name = f"napari-seem-batch-{uuid.uuid4().hex[:12]}"
        client.register_plugin(BatchWorkerPlugin(self.plugin_name, make_context))

    def run(
        self,
        fn: TaskFn,
        jobs: Iterable[Any],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[Any]:
        """See :meth:`napari_seem.batch.executor.Executor.run`."""
        pending = iter(jobs)
        running = as_completed()
        futures: list[Any] = []

        def submit() -> None:
            for job in pending:
                future = self.client.submit(
                    _on_worker,
                    self.plugin_name,
                    fn,
                    job,
                    pure=False,
                    key=f"napari-seem-task-{uuid.uuid4().hex}",
                )
                futures.append(future)
                running.add(future)
                return

        for _ in range(self.window):
            submit()
        try:
            for future in running:
                result = future.result()  # a task's exception is raised here
                yield result
                if cancel is not None and cancel.is_set():
                    break
                submit()
        finally:
            # stop what has not started; running tasks finish their (atomic) writes
            for future in futures:
                if not future.done():
                    future.cancel()
            futures.clear()

    def close(self) -> None:
        """Unregister the run's plugin; close the cluster and client this executor made."""
        with contextlib.suppress(Exception):  # the cluster may be gone already
            self.client.unregister_worker_plugin(self.plugin_name)
        for thing in reversed(self._owned):
            with contextlib.suppress(Exception):
                thing.close()


def connect(
    scheduler: Any, *, workers: int | None, make_context: Callable[[], Any]
) -> DaskExecutor:
    """A :class:`DaskExecutor` for ``"local"``, ``"tcp://..."``, a Client or a cluster."""
    owned: list[Any] = []
    if isinstance(scheduler, Client):
        client = scheduler
    elif isinstance(scheduler, str) and scheduler == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=workers or 2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
        owned = [cluster, client]
    elif isinstance(scheduler, str):
        if "://" not in scheduler:
            raise ValueError(
                f"scheduler {scheduler!r}: use 'local', a scheduler address such as "
                "'tcp://10.0.0.5:8786', a distributed Client or a cluster object"
            )
        client = Client(scheduler, timeout="30s")
        owned = [client]
    elif hasattr(scheduler, "scheduler_address"):
        client = Client(scheduler)
        owned = [client]
    else:
        raise ValueError(
            f"cannot use {type(scheduler).__name__} as a scheduler: pass None, 'local', "
            "'tcp://host:port', a distributed Client or a (dask-jobqueue) cluster"
        )
    return DaskExecutor(client, make_context, owned=owned)
