"""A real uvicorn server on 127.0.0.1 in a background thread, for the engine tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
import zarr

from napari_seem.core.progress import FINISHED_STATES, Cancelled, JobFailed, follow_job
from napari_seem.engine.limits import ServerLimits
from napari_seem.remote.server import bind_socket
from napari_seem.remote.serving import uvicorn_config


@contextmanager
def served(
    app: Any, *, start_timeout: float = 30.0, limits: ServerLimits | None = None
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port as ``napari-seem serve`` does (its uvicorn
    settings for ``limits``); yields its base URL, stops it on exit."""
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_for_job(client: Any, job_id: str, timeout: float = 180) -> Any:
    """Poll a job over HTTP until it is done, failed or cancelled; return its status."""
    deadline = time.monotonic() + timeout
    last: list[Any] = []

    def poll(_: float) -> Any:
        status = client.job_status(job_id).result(30)
        last[:] = [status]
        finished = status.state in FINISHED_STATES
        assert finished or time.monotonic() < deadline, f"job {job_id} did not finish: {status}"
        return status

    try:
        return follow_job(poll, cancel_job=lambda: None, interval=0.05, what=f"job {job_id}")
    except (Cancelled, JobFailed):  # the caller reads the final state itself
        return last[0]


def write_zarr(path: Path, image: np.ndarray, chunks: tuple[int, int] = (64, 64)) -> Path:
    """Write ``image`` (any shape and dtype) as a zarr array at ``path``; returns ``path``."""
    arr = zarr.create_array(store=str(path), shape=image.shape, chunks=chunks, dtype=image.dtype)
    arr[...] = image
    return path


def raw_request(url: str, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One HTTP request with ``token`` as bearer (``headers`` in ``kwargs`` are added)."""
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return httpx.request(method, url + path, headers=headers, timeout=60, **kwargs)
