"""Whole-image "segment everything" through the engine: in process vs the model process.

The same engine ``segment`` job (text search for every instance of a phrase, random-weight
``seem-tiny-focal``: plumbing speed, not a trained model's) on the same lazily built zarr
images as :mod:`benchmarks.batch_throughput`, run two ways:

- **in process**: an :class:`~napari_seem.engine.Engine` in a fresh process, job started
  with ``Engine.start_job``; peak RSS is that process's;
- **model process**: a ``napari-seem serve`` child, job started through
  :class:`~napari_seem.remote.client.SeemClient` (HTTP on 127.0.0.1); peak RSS is the
  server's, sampled every 20 ms.

Labels are written to a zarr store (``out=``). Sizes above ``max_megapixels`` are
segmented on a central region (the row says so). Throughput = region pixels / job time.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._report import centre_square

__all__ = ["TEXT", "measure", "run"]

TEXT = "a round cell"


def measure(
    image: str,
    size: int,
    path: str,
    *,
    variant: str,
    tile: int,
    halo: int,
    box: tuple[int, int, int, int],
    threads: int,
) -> dict[str, Any]:
    """One job, ``path`` ``"in_process"`` or ``"model_process"`` (call in a fresh process)."""
    import torch

    from benchmarks.engine_latency import _PeakRss, _server, _wait_job

    torch.set_num_threads(threads)
    root = Path(image).parent
    out = str(root / f"labels-{size}-{path}.zarr")
    params: dict[str, Any] = {"text": TEXT, "box": list(box), "out": out}
    if path == "in_process":
        from napari_seem.engine import Engine
        from napari_seem.model.build import build_seem

        with Engine(build_seem(variant, device="cpu"), tile=tile, halo=halo) as engine:
            sid = engine.open_session(image)
            with _PeakRss(os.getpid()) as peak:
                t0 = time.perf_counter()
                job = engine.start_job("segment", sid, **params)
                status = engine.wait_job(job, timeout=1800)
                wall = time.perf_counter() - t0
            state = status.state
            error = getattr(status, "error", None)
    else:
        with _server("process", variant, root, tile, halo, threads) as (client, pid):
            sid = client.open_session(image).result(600).session_id
            with _PeakRss(pid) as peak:
                t0 = time.perf_counter()
                started = client.start_job(sid, kind="segment", params=params).result(600)
                _wait_job(client, started.job_id, timeout=1800)
                wall = time.perf_counter() - t0
            reply = client.job_status(started.job_id).result(60)
            state = reply.state
            error = getattr(reply, "error", None)
    if state != "done":
        raise RuntimeError(f"the segment job ended {state}: {error}")
    pixels = (box[2] - box[0]) * (box[3] - box[1])
    return {
        "size": size,
        "path": path,
        "region": None if box == (0, 0, size, size) else list(box),
        "megapixels": pixels / 1e6,
        "wall_s": wall,
        "megapixels_per_s": pixels / 1e6 / wall,
        "peak_rss_bytes": peak.peak,
    }


def run(
    sizes: Sequence[int] = (2000, 8000, 20000),
    *,
    variant: str = "seem-tiny-focal",
    tile: int = 1024,
    halo: int = 64,
    max_megapixels: float = 16.0,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (size, path); a failed measurement becomes a row with ``error``."""
    from benchmarks.batch_throughput import build_image

    say = log or (lambda _m: None)
    rows = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="napari-seem-whole-") as tmp:
        for size in sorted(sizes):
            image = build_image(Path(tmp) / f"img{size}.zarr", size)
            box = centre_square(size, max_megapixels) or (0, 0, size, size)
            for path in ("in_process", "model_process"):
                try:
                    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                        row = pool.submit(
                            measure,
                            str(image),
                            size,
                            path,
                            variant=variant,
                            tile=tile,
                            halo=halo,
                            box=box,
                            threads=threads,
                        ).result()
                    say(
                        f"[{size}^2 {path}] {row['megapixels_per_s']:.2f} MP/s, "
                        f"peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB"
                    )
                except Exception as exc:  # reported in the table, not fatal
                    row = {"size": size, "path": path, "error": f"{type(exc).__name__}: {exc}"}
                    say(f"[{size}^2 {path}] failed: {row['error']}")
                rows.append(row)
    return rows
