"""Server load: N clients clicking at once vs one client; latency and server memory.

A ``napari-seem serve`` child on 127.0.0.1 (``seem-tiny-focal`` random weights by default:
the figures measure the transport and the engine's plumbing, not a production model), one
``S x S`` zarr image and, per client, one session on it. Each client is a thread with its own
:class:`~napari_seem.remote.client.SeemClient` that clicks (a click plus a small box) at
random places of its image for ``--seconds`` seconds, at one of two paces (``--pace``):

- ``human`` (default): a person's pace. Each client clicks about once per ``--interval``
  seconds (1.0), each gap drawn uniformly from ``interval * (1 +- jitter)`` (``--jitter``
  0.5, so 0.5-1.5 s), on a schedule that does not wait for the server unless an answer is
  still pending (a person waits for the mask before the next click; the click then follows
  the answer at once). Clients start at random offsets within one interval.
- ``closed``: every client clicks again the moment its answer arrives (a closed loop; with
  a serial model this measures queueing: 8 clients make each wait about 8 answers).

After a warm-up (an ``encode_region`` job over each session's whole image, then a few clicks) the
benchmark records:

- p50 / p95 of one click's round trip, per phase (1 client, then ``--clients`` clients);
- the server's RSS at the start and end of each phase, every 10 s within it, and its peak
  (``VmHWM``), so that growth under load shows as an end-minus-start difference and as a
  trend (a leak keeps rising; the first allocations of a phase level off).

Run ``python -m benchmarks.server_load [--clients 8] [--seconds 60]``; it prints one JSON
object (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_seem.core.progress import follow_job
from napari_seem.core.prompts import Box, ObjectPrompt, Points
from napari_seem.remote.client import SeemClient

__all__ = ["main", "run_phase"]


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_image(path: Path, size: int) -> Path:
    """A ``size x size`` uint8 zarr of noise with bright discs (``(row, col)`` pixels)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (size, size), dtype=np.uint8)
    rows, cols = np.ogrid[:size, :size]
    for r, c in rng.integers(20, size - 20, (40, 2)):
        image[(rows - r) ** 2 + (cols - c) ** 2 < 144] = 220
    arr = zarr.create_array(store=str(path), shape=image.shape, chunks=(256, 256), dtype="u1")
    arr[...] = image
    return path


def _click(rng: np.random.Generator, size: int) -> ObjectPrompt:
    r, c = (float(v) for v in rng.integers(40, size - 40, 2))
    return ObjectPrompt((Points.click(r, c), Box(r - 40, c - 40, r + 40, c + 40)))


def _follow(client: SeemClient, job_id: str) -> None:
    def poll(_: float) -> Any:
        return client.job_status(job_id).result(120)

    follow_job(poll, cancel_job=lambda: None, interval=0.2, what="the warm-up encode")


def click_gaps(
    rng: np.random.Generator, pace: str, interval: float, jitter: float
) -> tuple[float, float]:
    """A client's first offset and its next gap (seconds) at ``pace`` (module docstring)."""
    if pace == "closed":
        return 0.0, 0.0
    low, high = interval * (1.0 - jitter), interval * (1.0 + jitter)
    return float(rng.uniform(0.0, interval)), float(rng.uniform(low, high))


def run_phase(
    url: str,
    token: str,
    image: Path,
    *,
    clients: int,
    seconds: float,
    warmup: int,
    pid: int,
    pace: str = "human",
    interval: float = 1.0,
    jitter: float = 0.5,
) -> dict[str, Any]:
    """``clients`` threads clicking for ``seconds`` at ``pace``; latencies (ms) and server
    RSS (MiB)."""
    size = int(zarr.open_array(str(image), mode="r").shape[0])
    sessions = []
    for _ in range(clients):
        client = SeemClient(url, token, timeout=120)
        sid = client.open_session(image).result(120).session_id
        sessions.append((client, sid))
    for i, (client, sid) in enumerate(sessions):  # warm-up: encode each session's tiles
        job_id = client.start_job(sid).result(120).job_id  # encode_region, whole image
        _follow(client, job_id)
        rng = np.random.default_rng(1000 + i)
        for _ in range(warmup):
            client.predict(sid, _click(rng, size)).result(300)
    latencies: list[list[float]] = [[] for _ in sessions]
    errors: list[str] = []
    rss_start = _status_mb(pid, "VmRSS")
    stop_at = time.monotonic() + seconds

    def clicker(i: int) -> None:
        client, sid = sessions[i]
        rng = np.random.default_rng(i)
        due = time.monotonic() + click_gaps(rng, pace, interval, jitter)[0]
        while True:
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() >= stop_at:
                break
            due += click_gaps(rng, pace, interval, jitter)[1]  # the next click's schedule
            start = time.perf_counter()
            try:
                client.predict(sid, _click(rng, size)).result(120)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            latencies[i].append((time.perf_counter() - start) * 1000)

    samples: list[float] = []  # the server's RSS every 10 s of the phase (MiB)

    def sample() -> None:
        while time.monotonic() < stop_at:
            samples.append(_status_mb(pid, "VmRSS"))
            time.sleep(min(10.0, max(stop_at - time.monotonic(), 0.0)))

    threads = [threading.Thread(target=clicker, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=sample))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rss_end = _status_mb(pid, "VmRSS")
    for client, sid in sessions:
        client.close_session(sid).result(60)
        client.close()
    every = [t for per in latencies for t in per]
    return {
        "clients": clients,
        "pace": pace
        if pace == "closed"
        else f"human: one click per {interval:g} s +- {jitter * 100:.0f}% per client",
        "seconds": seconds,
        "clicks": len(every),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": statistics.median(every) if every else None,
        "p95_ms": float(np.percentile(every, 95)) if every else None,
        "clicks_per_s": len(every) / seconds,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
        "rss_every_10s_mb": [round(v, 1) for v in (*samples, rss_end)],
        "peak_rss_mb": _status_mb(pid, "VmHWM"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="clients at once (default 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase (default 60)")
    parser.add_argument("--size", type=int, default=1024, help="image side (default 1024)")
    parser.add_argument("--warmup", type=int, default=6, help="clicks per client first")
    parser.add_argument("--variant", default="seem-tiny-focal", help="model variant")
    parser.add_argument(
        "--pace", choices=["human", "closed"], default="human", help="click pace (docstring)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="human: mean seconds per click")
    parser.add_argument("--jitter", type=float, default=0.5, help="human: gap spread (0..1)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(Path(tmp) / "load.zarr", args.size)
        server = SeemClient.spawn_local(
            variant=args.variant, allow_roots=[tmp], tile=256, halo=32, device="cpu"
        )
        try:
            assert server.process is not None
            pid = server.process.pid
            assert server.token is not None
            common = {
                "seconds": args.seconds,
                "warmup": args.warmup,
                "pid": pid,
                "pace": args.pace,
                "interval": args.interval,
                "jitter": args.jitter,
            }
            one = run_phase(server.url, server.token, image, clients=1, **common)
            many = run_phase(server.url, server.token, image, clients=args.clients, **common)
        finally:
            server.close()
    report = {
        "variant": args.variant,
        "image": [args.size, args.size],
        "one_client": one,
        "many_clients": many,
        "p95_ratio": (many["p95_ms"] / one["p95_ms"]) if one["p95_ms"] else None,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
