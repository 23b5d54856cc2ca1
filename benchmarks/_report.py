"""Helpers shared by the benchmarks: timing samples, machine header, JSON and Markdown.

Timing: :func:`sample` calls a function once or more to warm up, then times it until it has
``repeats`` samples or ``budget_s`` seconds have passed (with at least ``min(3, repeats)``
samples), so slow cases get few samples and fast cases many; every figure reports its
sample count ``n``. :class:`Stats` summarises samples (median, p95, mean, min).

Report: :func:`machine_info` is the header every result file starts with (CPU model, cores,
torch version, threads, date, commit); :func:`write_json` and :func:`markdown_table` write
the results; :func:`show_report` prints a finished report and says where it went.
CLI: :func:`add_out_render_arguments` and :func:`add_no_isolate_argument` are the options
several benchmarks share; :func:`rerender` is their ``--render`` (measure nothing).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MIN_SAMPLES",
    "Samples",
    "Stats",
    "add_no_isolate_argument",
    "add_out_render_arguments",
    "add_sizes_argument",
    "centre_square",
    "header_lines",
    "load_average",
    "machine_info",
    "markdown_table",
    "peak_rss_bytes",
    "rerender",
    "sample",
    "show_report",
    "stderr",
    "write_json",
    "write_report",
]

# Samples taken before the time budget may stop a measurement (fewer only if repeats < 3).
MIN_SAMPLES = 3
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stats:
    """Summary of ``n`` wall-clock samples, in seconds."""

    n: int
    p50_s: float
    p95_s: float
    mean_s: float
    min_s: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples to summarise")
        x = np.asarray(samples, dtype=np.float64)
        # linear interpolation between order statistics: with few samples p95 is near the max
        return cls(
            n=len(x),
            p50_s=float(np.median(x)),
            p95_s=float(np.percentile(x, 95)),
            mean_s=float(x.mean()),
            min_s=float(x.min()),
        )


@dataclass
class Samples:
    """Total seconds per call and, per named stage, the seconds the call reported for it.

    ``load_1m`` is the larger 1-minute load average seen before and after sampling (None
    where unavailable); above the number of threads, other processes competed.
    """

    total: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    load_1m: float | None = None

    def stats(self) -> Stats:
        return Stats.of(self.total)

    def stage_stats(self, name: str) -> Stats:
        return Stats.of(self.stages[name])


def sample(
    fn: Callable[[], Mapping[str, float] | None],
    *,
    repeats: int,
    budget_s: float,
    warmup: int = 1,
) -> Samples:
    """Time ``fn`` after ``warmup`` untimed calls.

    Sampling stops at ``repeats`` samples, or earlier once ``budget_s`` seconds of sampling
    have passed and at least ``min(MIN_SAMPLES, repeats)`` samples exist.

    Args:
        fn: the work; it may return ``{stage: seconds}`` for stages it timed itself
            (e.g. prompt encoding inside a prompt's total), recorded per sample.
        repeats: the most samples to take (>= 1).
        budget_s: seconds of sampling after which to stop (0: stop at the minimum).
        warmup: untimed calls first (first-call allocations, lazy initialisation).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    out = Samples()
    least = min(MIN_SAMPLES, repeats)
    load_before = load_average()
    start = time.perf_counter()
    while len(out.total) < repeats:
        t0 = time.perf_counter()
        stages = fn()
        out.total.append(time.perf_counter() - t0)
        for name, seconds in (stages or {}).items():
            out.stages.setdefault(name, []).append(seconds)
        if len(out.total) >= least and time.perf_counter() - start >= budget_s:
            break
    loads = [load[0] for load in (load_before, load_average()) if load is not None]
    out.load_1m = max(loads) if loads else None
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where unavailable): shows contention."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(*, threads: int) -> dict[str, Any]:
    """The header of a result file: where, when and with what the numbers were taken."""
    import torch

    from napari_seem import __version__

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "napari_seem_version": __version__,
        "commit": _commit(),
    }


def header_lines(machine: Mapping[str, Any]) -> list[str]:
    """Markdown bullet lines describing ``machine`` (from :func:`machine_info`)."""
    commit = f" (commit {machine['commit']})" if machine.get("commit") else ""
    return [
        f"- Date: {machine['date']}",
        f"- CPU: {machine['cpu_model']}, {machine['usable_cores']} usable of "
        f"{machine['logical_cores']} logical cores; torch threads: {machine['torch_threads']}",
        f"- torch {machine['torch_version']}, Python {machine['python_version']}, "
        f"{machine['platform']}",
        f"- napari-seem {machine['napari_seem_version']}{commit}",
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; columns whose first cell reads as a number are right-aligned."""
    align = [
        "---:" if rows and str(rows[0][i])[:1].isdigit() else "---" for i in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (dataclasses allowed) as indented JSON; creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(obj: object) -> object:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)  # type: ignore[call-overload]
        raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

    path.write_text(json.dumps(payload, indent=2, default=default) + "\n", encoding="utf-8")
    return path


def write_report(
    out_dir: Path, stem: str, result: Mapping[str, Any], markdown: str
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (``result``) and ``<stem>.md`` (``markdown``) into ``out_dir``."""
    json_path = write_json(out_dir / f"{stem}.json", result)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path


def stderr(message: str) -> None:
    """Print a progress or outcome line on stderr (flushed): stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def show_report(
    result: Mapping[str, Any],
    written: tuple[Path, Path],
    render: Callable[[Mapping[str, Any]], str],
    say: Callable[[str], None] = stderr,
) -> int:
    """Print ``render(result)``, then say the ``(json, md)`` paths ``written``; returns 0."""
    json_path, md_path = written
    print(render(result))
    say(f"wrote {json_path} and {md_path}")
    return 0


def rerender(
    json_path: Path, out_dir: Path, stem: str, render: Callable[[Mapping[str, Any]], str]
) -> tuple[Mapping[str, Any], Path]:
    """Measure nothing: write ``out_dir/<stem>.md`` from an earlier result file.

    Returns the result read from ``json_path`` and the path of the Markdown written.
    """
    result = json.loads(json_path.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(render(result), encoding="utf-8")
    return result, md_path


def add_out_render_arguments(parser: argparse.ArgumentParser, stem: str, results_dir: Path) -> None:
    """``--out`` (default ``results_dir``) and ``--render JSON`` (an earlier ``<stem>.json``)."""
    parser.add_argument(
        "--out", type=Path, default=results_dir, help="output folder (default %(default)s)"
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help=f"measure nothing: rewrite the Markdown of an earlier {stem}.json into --out",
    )


def add_sizes_argument(
    parser: argparse.ArgumentParser, default: list[int] | None, help: str
) -> None:
    """``--sizes PX [PX ...]``: the square image sizes to measure, in pixels."""
    parser.add_argument("--sizes", nargs="+", type=int, default=default, metavar="PX", help=help)


def add_no_isolate_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--no-isolate`` (sets ``isolate`` False): measure ``what`` in this process."""
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help=f"measure {what}in this process (peak RSS then accumulates)",
    )


def centre_square(size: int, max_megapixels: float) -> tuple[int, int, int, int] | None:
    """The centred square of at most ``max_megapixels`` in a ``size``² image; None if it fits."""
    if size * size <= max_megapixels * 1e6:
        return None
    side = int(math.sqrt(max_megapixels * 1e6))
    start = (size - side) // 2
    return (start, start, start + side, start + side)
