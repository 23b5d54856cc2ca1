"""Engine latency: per-click time in process vs through the server, prefetch, server memory.

On a random-weight model (``seem-tiny-focal`` by default: the figures measure the engine's
plumbing, tiling, caching and transport, not a production model's compute) and a lazily
built zarr image (only a few chunks written; the rest is the fill value), the benchmark
measures:

- **per-click latency with warm features**: the tile under the clicks is encoded first,
  then every click (a click plus an 81-pixel box around it, so that the random model's
  arbitrary mask stays in one tile) is decoder-only; p50 / p95 of ``Engine.predict`` in process vs
  ``SeemClient.predict`` through a real server on 127.0.0.1 (HTTP, JSON, mask payload);
- **first click in a new area**: a click on a tile never encoded (encode + decode) vs a
  click after an ``encode_region`` job prefetched the view around it (through the server;
  the prefetch time itself is not counted: it runs while the user looks);
- **peak RSS of the server process** while it opens, prefetches and clicks around on a
  ``S x S`` image for each size (2,000^2 vs 20,000^2 by default), sampled with psutil every
  20 ms on a fresh server per size: images are read lazily, so it must stay flat.

The server is a ``napari-seem serve`` child process (``--server process``, the default;
its RSS is the child's) or a uvicorn thread in this process (``--server thread``: the smoke
test's fast path; RSS is then this whole process's).

Run ``python -m benchmarks engine --help``; :func:`run` is the function API.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import zarr

from benchmarks._report import (
    Stats,
    header_lines,
    machine_info,
    markdown_table,
    show_report,
    write_report,
)
from napari_seem.core.prompts import Box, ObjectPrompt, Points
from napari_seem.remote.client import SeemClient

__all__ = ["add_arguments", "main", "render_markdown", "run", "write_outputs"]

TOKEN = "benchmark-token"


def make_lazy_zarr(path: Path, size: int, *, chunk: int = 512) -> Path:
    """A ``size x size`` uint8 zarr with a few bright discs written; the rest is absent."""
    arr = zarr.create_array(
        store=str(path), shape=(size, size), chunks=(chunk, chunk), dtype="uint8", fill_value=12
    )
    rows, cols = np.ogrid[-48:48, -48:48]
    disc = np.where(rows**2 + cols**2 <= 40**2, 220, 12).astype(np.uint8)
    for r, c in _areas(size, 4):
        arr[r - 48 : r + 48, c - 48 : c + 48] = disc
    return path


def _areas(size: int, n: int) -> list[tuple[int, int]]:
    """``n`` well separated points inside a ``size`` square (diagonal, away from borders)."""
    return [(int(size * (k + 1) / (n + 1)), int(size * (k + 1) / (n + 1))) for k in range(n)]


def _click(r: float, c: float) -> ObjectPrompt:
    """A click inside a 81-pixel box: the box bounds the answer to one tile, so a random
    model's arbitrary mask cannot grow into (and encode) neighbouring tiles."""
    return ObjectPrompt((Points.click(r, c), Box(r - 40, c - 40, r + 40, c + 40)))


def _clicks(centre: tuple[int, int], n: int) -> list[ObjectPrompt]:
    r, c = centre
    return [_click(r + (k % 5) - 2, c + (k % 3) - 1) for k in range(n)]


class _PeakRss:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._process.memory_info().rss)


@contextlib.contextmanager
def _server(
    mode: str, variant: str, root: Path, tile: int, halo: int, threads: int
) -> Iterator[tuple[SeemClient, int]]:
    """A client of a fresh server and the server's pid."""
    if mode == "process":
        saved = os.environ.get("OMP_NUM_THREADS")
        if threads:  # the child's torch reads it at start
            os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            client = SeemClient.spawn_local(
                variant=variant, allow_roots=[root], tile=tile, halo=halo, device="cpu"
            )
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        assert client.process is not None
        try:
            yield client, client.process.pid
        finally:
            client.close()
        return
    import uvicorn

    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from napari_seem.remote.server import bind_socket, create_app

    engine = Engine(build_seem(variant, device="cpu"), tile=tile, halo=halo)
    app = create_app(engine, token=TOKEN, allowed_roots=[root])
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    client = SeemClient(f"http://127.0.0.1:{sock.getsockname()[1]}", TOKEN)
    try:
        yield client, os.getpid()
    finally:
        client.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
        engine.close()


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    return {**Stats.of(samples).__dict__, "samples_s": [round(s, 6) for s in samples]}


def _tile_spots(size: int, tile: int, halo: int, n: int) -> list[tuple[int, int]]:
    """Centres of ``n`` distinct tile cores, each at least one tile from the others: a
    click there (with its box) decodes that one tile only."""
    core = tile - 2 * halo
    across = size // core  # whole cores only
    cells = [(i, j) for i in range(0, across, 2) for j in range(0, across, 2)]
    if len(cells) < n:
        raise ValueError(f"a {size}^2 image has {len(cells)} separate tiles; {n} needed")
    return [(i * core + core // 2, j * core + core // 2) for i, j in cells[:n]]


def _core_box(spot: tuple[int, int], tile: int, halo: int) -> tuple[int, int, int, int]:
    """The core of the tile whose centre is ``spot`` (an encode_region box of one tile)."""
    half = (tile - 2 * halo) // 2
    return (spot[0] - half, spot[1] - half, spot[0] + half, spot[1] + half)


def _view(centre: tuple[int, int], half: int, size: int) -> tuple[int, int, int, int]:
    r, c = centre
    return (max(r - half, 0), max(c - half, 0), min(r + half, size), min(c + half, size))


def _wait_job(client: SeemClient, job_id: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while client.job_status(job_id).result(60).state not in ("done", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
        time.sleep(0.01)


def run(
    *,
    variant: str = "seem-tiny-focal",
    sizes: Sequence[int] = (2_000, 20_000),
    clicks: int = 30,
    areas: int = 3,
    tile: int = 512,
    halo: int = 64,
    server: str = "process",
    threads: int = 1,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Measure everything (module docstring); returns the result dict written as JSON."""
    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem

    say = log or (lambda _: None)
    if threads:
        torch.set_num_threads(threads)
    result: dict[str, Any] = {
        "benchmark": "engine",
        "machine": machine_info(threads=threads),
        "config": {
            "variant": variant,
            "tile": tile,
            "halo": halo,
            "clicks": clicks,
            "areas": areas,
            "sizes": list(sizes),
            "server": server,
        },
    }
    with tempfile.TemporaryDirectory(prefix="napari-seem-bench-") as tmp:
        root = Path(tmp)
        small = min(sizes)
        path = make_lazy_zarr(root / f"image-{small}.zarr", small)
        spots = _tile_spots(small, tile, halo, 2 * areas + 1)
        prompts = _clicks(spots[0], clicks)

        say(f"in-process clicks on {small}^2 ...")
        with Engine(build_seem(variant, device="cpu"), tile=tile, halo=halo) as engine:
            sid = engine.open_session(path)
            engine.predict(sid, prompts[0])  # encodes the tile: later clicks are warm
            local = [_timed(lambda p=p: engine.predict(sid, p)) for p in prompts]
        result["click_warm"] = {"in_process": _stats(local)}

        say(f"server clicks, first clicks and memory on {small}^2 ...")
        with _server(server, variant, root, tile, halo, threads) as (client, pid):
            sid = client.open_session(path).result(600).session_id
            client.predict(sid, prompts[0]).result(600)
            remote = [_timed(lambda p=p: client.predict(sid, p).result(600)) for p in prompts]
            result["click_warm"]["through_server"] = _stats(remote)
            cold, warm = [], []
            for k, spot in enumerate(spots[1:]):  # tiles never encoded before
                prompt = _click(*spot)
                if k % 2 == 0:
                    cold.append(_timed(lambda p=prompt: client.predict(sid, p).result(600)))
                else:
                    job = client.start_job(sid, box=_core_box(spot, tile, halo)).result(60)
                    _wait_job(client, job.job_id)
                    warm.append(_timed(lambda p=prompt: client.predict(sid, p).result(600)))
            result["first_click"] = {"no_prefetch": _stats(cold), "after_prefetch": _stats(warm)}

        memory = []
        for size in sizes:
            say(f"server peak RSS on {size}^2 ...")
            image = make_lazy_zarr(root / f"mem-{size}.zarr", size)
            with _server(server, variant, root, tile, halo, threads) as (client, pid):
                baseline = psutil.Process(pid).memory_info().rss
                with _PeakRss(pid) as peak:
                    sid = client.open_session(image).result(600).session_id
                    for spot in _areas(size, areas):
                        job = client.start_job(sid, box=_view(spot, tile, size)).result(60)
                        _wait_job(client, job.job_id)
                        for prompt in _clicks(spot, 5):
                            client.predict(sid, prompt).result(600)
                memory.append(
                    {
                        "size": size,
                        "pixels": size * size,
                        "idle_rss_bytes": baseline,
                        "peak_rss_bytes": peak.peak,
                    }
                )
        result["server_memory"] = memory
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _mib(n: int) -> str:
    return f"{n / 1024**2:.0f}"


def render_markdown(result: Mapping[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Engine latency",
        "",
        *header_lines(result["machine"]),
        f"- Model: `{cfg['variant']}` (random weights: plumbing, not model compute); tile "
        f"{cfg['tile']}, halo {cfg['halo']}; server: {cfg['server']}",
        "",
        "## Per click, warm features",
        "",
        markdown_table(
            ["path", "n", "p50 ms", "p95 ms", "min ms"],
            [
                [name, s["n"], _ms(s["p50_s"]), _ms(s["p95_s"]), _ms(s["min_s"])]
                for name, s in result["click_warm"].items()
            ],
        ),
        "",
        "## First click in a new area (through the server)",
        "",
        markdown_table(
            ["case", "n", "p50 ms", "p95 ms"],
            [
                [name, s["n"], _ms(s["p50_s"]), _ms(s["p95_s"])]
                for name, s in result["first_click"].items()
            ],
        ),
        "",
        "## Server peak RSS (open, prefetch and click in several areas)",
        "",
        markdown_table(
            ["image", "idle MiB", "peak MiB"],
            [
                [f"{m['size']:,}^2", _mib(m["idle_rss_bytes"]), _mib(m["peak_rss_bytes"])]
                for m in result["server_memory"]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    return write_report(out_dir, "engine", result, render_markdown(result))


#: The options of :func:`add_arguments` that are :func:`run`'s keyword arguments (same names).
RUN_OPTIONS = ("variant", "sizes", "clicks", "areas", "tile", "halo", "server", "threads")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", default="seem-tiny-focal")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--clicks", type=int, default=30, help="warm clicks per path")
    parser.add_argument("--areas", type=int, default=3, help="new areas per first-click case")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results", help="folder"
    )


def main(args: argparse.Namespace) -> int:
    result = run(**{name: getattr(args, name) for name in RUN_OPTIONS})
    return show_report(result, write_outputs(result, args.out), render_markdown, say=print)
