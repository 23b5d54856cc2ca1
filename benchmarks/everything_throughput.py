"""Segment everything with the default model: MP/s and F1 against its floor and a peer.

``python -m benchmarks everything`` measures, in one run, on a ``size x size`` slide of
tiled copies of a labelled BBBC007 nuclei image (:mod:`benchmarks.nuclei_mosaic`; default
2,048^2, about 3,000 nuclei):

- **seem-lite, shipped weights, default settings**: the command a user runs,
  ``napari-seem segment SLIDE.zarr --out OUT.zarr --vocabulary nucleus`` (tile 1024, halo
  64, mode auto = points, encoded at the model's native scale), in a fresh process; then
  the same with ``--scheduler local --workers 1`` and ``--workers 2`` (Dask). MP/s = slide
  pixels / wall time of the whole command (start-up and model load included); F1 at IoU
  0.5 against the tiled truth; peak RSS of the command's process tree (sampled every
  0.1 s, Dask workers included);
- **encoding alone** (the floor of any SEEM-style method): the same tiles read and encoded
  by the same predictor at the same scale, nothing decoded, in a fresh process;
- **Otsu + distance-transform watershed** (the classical peer) on the same slide;
- optionally a profile of one interior tile (:mod:`benchmarks.everything_profile`).

Writes ``results/everything.json`` and ``results/everything.md`` and re-renders
``benchmarks/RESULTS.md`` (its default-model section comes first). Larger slides
(``--sizes 2048 8192``, or 20000 for the memory-flat check: peak RSS should not grow with
the slide) take hours on a 2-core CPU at this model's speed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _report as report
from benchmarks import nuclei_mosaic as mosaic_mod

__all__ = ["add_arguments", "encode_floor", "main", "render_section", "run", "run_command"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VOCABULARY = "nucleus"
DEFAULT_SIZES = (2048,)
# (label, extra CLI arguments): the user's command first
CONFIGS: dict[str, list[str]] = {
    "default (in process)": [],
    "Dask, 1 worker": ["--scheduler", "local", "--workers", "1"],
    "Dask, 2 workers": ["--scheduler", "local", "--workers", "2"],
}
_SUMMARY = re.compile(r"(\d+) objects in (\d+) tiles .*?, ([\d.]+) s, ([\d.e+-]+) MP/s")
Log = Callable[[str], None]


class _TreeRss:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        with contextlib.suppress(psutil.Error):
            for proc in [self._root, *self._root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        self.peak = max(self.peak, total)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> _TreeRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_command(args: Sequence[str], *, timeout: float = 7200) -> dict[str, Any]:
    """Run ``napari-seem segment ARGS`` in a fresh process; wall time, peak RSS, its summary."""
    import resource

    command = [sys.executable, "-m", "napari_seem.cli", "segment", *args, "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _TreeRss(proc.pid) as rss:
        stdout, stderr = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"napari-seem segment exited {proc.returncode}: {stderr[-800:]}")
    found = _SUMMARY.search(stdout)
    if found is None:
        raise RuntimeError(f"no summary line in the output of napari-seem segment: {stdout!r}")
    return {
        "command": "napari-seem segment " + " ".join(args),
        "wall_s": wall,
        "cpu_s": cpu,
        "objects": int(found.group(1)),
        "tiles": int(found.group(2)),
        "reported_s": float(found.group(3)),
        "reported_mp_per_s": float(found.group(4)),
        "peak_rss_bytes": rss.peak,
        "stdout": stdout.strip().splitlines(),
    }


def encode_floor(image: str, *, tile: int, halo: int) -> dict[str, Any]:
    """Read and encode every tile of the default grid as the segment path does; no decoding.

    Call it in a fresh process (torch threads and memory as the command's). The predictor,
    its scale and the per-tile encode call are the batch path's own
    (:class:`~napari_seem.batch.tasks.ModelSpec`, :func:`~napari_seem.batch.tasks.encode_tile`).
    """
    import torch

    from napari_seem.batch.tasks import ModelSpec, TaskSpec, encode_tile
    from napari_seem.core.io import open_image
    from napari_seem.core.tiling import TileGrid

    t_build = time.perf_counter()
    predictor = ModelSpec(device="cpu").build()
    build_s = time.perf_counter() - t_build
    task = TaskSpec("everything", vocabulary=(VOCABULARY,))
    source = open_image(image)
    grid = TileGrid.for_model(source.spatial_shape, model_input=tile, halo=halo)
    read_s = encode_s = encode_cpu = 0.0
    model_pixels = 0
    for t in grid:
        t0 = time.perf_counter()
        rgb = source.read_rgb(*t.outer)
        t1 = time.perf_counter()
        c1 = time.process_time()
        encoded = encode_tile(predictor, rgb, task)
        encode_s += time.perf_counter() - t1
        encode_cpu += time.process_time() - c1
        read_s += t1 - t0
        h, w = encoded.frame.padded_hw
        model_pixels += h * w
    h0, w0 = source.spatial_shape
    return {
        "tiles": len(grid),
        "build_s": build_s,
        "read_s": read_s,
        "encode_s": encode_s,
        "cpu_s": encode_cpu,
        "model_megapixels": model_pixels / 1e6,
        "megapixels_per_s": h0 * w0 / 1e6 / encode_s,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_bytes": report.peak_rss_bytes(),
    }


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args, **kwargs).result()


@contextlib.contextmanager
def _slide(size: int, name: str, folder: Path) -> Iterator[mosaic_mod.Mosaic]:
    yield mosaic_mod.build_mosaic(folder / f"slide{size}.zarr", size, name)


def _measure_size(
    size: int,
    configs: Sequence[str],
    *,
    image_name: str,
    profile: bool,
    floor: bool,
    say: Log,
    saved: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Every measurement of one slide size; ``saved(partial)`` after each one."""
    out: dict[str, Any] = {"size": size, "megapixels": size * size / 1e6, "rows": []}
    with tempfile.TemporaryDirectory(prefix="napari-seem-everything-") as tmp:
        folder = Path(tmp)
        with _slide(size, image_name, folder) as slide:
            out["objects"] = slide.objects
            say(f"[{size}^2] slide of {image_name!r}: {out['objects']} nuclei")
            steps: list[tuple[str, Callable[[], None]]] = [
                (label, functools.partial(_command_row, out, slide, folder, label, say))
                for label in configs
            ]
            if floor:
                steps.insert(1, ("floor", functools.partial(_floor_row, out, slide, say)))
            steps.insert(
                2 if floor else 1, ("peer", functools.partial(_peer_row, out, slide, folder, say))
            )
            if profile:
                steps.append(("profile", functools.partial(_profile_row, out, slide, say)))
            for _, step in steps:
                step()
                saved(out)
    return out


def _command_row(
    out: dict[str, Any], slide: mosaic_mod.Mosaic, folder: Path, label: str, say: Log
) -> None:
    target = folder / f"labels-{len(out['rows'])}.zarr"
    args = [str(slide.path), "--out", str(target), "--vocabulary", VOCABULARY, *CONFIGS[label]]
    row = run_command(args)
    row.update(config=label, load_1m=(report.load_average() or [None])[0])
    row["megapixels_per_s"] = out["megapixels"] / row["wall_s"]
    row["quality"] = mosaic_mod.score_labels(slide, target)
    out["rows"].append(row)
    q, mib = row["quality"]["f1"], row["peak_rss_bytes"] / 2**20
    say(
        f"[{slide.size}^2 {label}] {row['megapixels_per_s']:.3g} MP/s, "
        f"{row['wall_s']:.0f} s ({row['cpu_s']:.0f} CPU s), F1 {q:.3f}, peak RSS {mib:.0f} MiB"
    )


def _floor_row(out: dict[str, Any], slide: mosaic_mod.Mosaic, say: Log) -> None:
    out["floor"] = _in_child(encode_floor, str(slide.path), tile=1024, halo=64)
    out["floor"]["load_1m"] = (report.load_average() or [None])[0]
    say(f"[{slide.size}^2 encode only] {out['floor']['megapixels_per_s']:.3g} MP/s")


def _peer_row(out: dict[str, Any], slide: mosaic_mod.Mosaic, folder: Path, say: Log) -> None:
    c0 = time.process_time()
    peer = mosaic_mod.watershed_slide(slide, folder / "watershed.zarr")
    peer["cpu_s"] = time.process_time() - c0
    peer["quality"] = mosaic_mod.score_labels(slide, peer["labels"])
    peer["megapixels_per_s"] = out["megapixels"] / peer["wall_s"]
    out["watershed"] = peer
    say(
        f"[{slide.size}^2 watershed] {peer['megapixels_per_s']:.3g} MP/s, F1 "
        f"{peer['quality']['f1']:.3f}"
    )


def _profile_row(out: dict[str, Any], slide: mosaic_mod.Mosaic, say: Log) -> None:
    from benchmarks.everything_profile import profile_tile

    out["profile"] = _in_child(profile_tile, str(slide.path))
    say(f"[{slide.size}^2 profile] {out['profile']['total_s']:.1f} s for one tile")


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    configs: Sequence[str] = tuple(CONFIGS),
    image_name: str = mosaic_mod.DEFAULT_IMAGE,
    profile: bool = True,
    floor: bool = True,
    note: str | None = None,
    log: Log | None = report.stderr,
    on_partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every measurement of the module docstring; the JSON-ready result.

    ``on_partial`` gets the result so far after every measurement (the command writes it:
    a long run that is stopped keeps what it measured).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    say = log or (lambda _m: None)
    started = time.perf_counter()
    load_at_start = report.load_average()
    import torch

    results: list[dict[str, Any]] = []

    def result() -> dict[str, Any]:
        return {
            "benchmark": "everything",
            "machine": report.machine_info(threads=torch.get_num_threads()),
            "note": note,
            "settings": {
                "model": "seem-lite",
                "weights": "shipped (trained)",
                "vocabulary": VOCABULARY,
                "image": image_name,
                "tile": 1024,
                "halo": 64,
                "mode": "auto (points)",
            },
            "wall_s": time.perf_counter() - started,
            "load_average": {"start": load_at_start, "end": report.load_average()},
            "sizes": results,
        }

    for i, size in enumerate(sizes):
        part: dict[str, Any] = {}
        results.append(part)

        def saved(partial: dict[str, Any], part: dict[str, Any] = part) -> None:
            part.update(partial)
            if on_partial is not None:
                on_partial(result())

        saved(
            _measure_size(
                size,
                configs,
                image_name=image_name,
                profile=profile and i == 0,
                floor=floor,
                say=say,
                saved=saved,
            )
        )
    return result()


def _sig(value: float) -> str:
    """Two significant digits (``0.036``, ``1.2``, ``15``)."""
    return f"{value:.2g}" if value < 100 else f"{value:,.0f}"


def _mib(n: float) -> str:
    return "n/a" if n != n else f"{n / 2**20:,.0f} MiB"  # NaN: not recorded


def _s(seconds: float, digits: int = 0) -> str:
    return "n/a" if seconds != seconds else f"{seconds:.{digits}f}"


def _rows(size: Mapping[str, Any]) -> list[list[object]]:
    side = f"{size['size']:,}^2"
    seem = ("shipped (trained)", "native (2.25x)")
    rows: list[list[object]] = []
    for r in size["rows"]:
        q = r["quality"]
        rows.append(
            [
                side,
                f"seem-lite `segment`, {r['config']}",
                *seem,
                _s(r["wall_s"]),
                _s(r["cpu_s"]),
                _sig(r["megapixels_per_s"]),
                f"{q['f1']:.3f}",
                f"{q['precision']:.2f} / {q['recall']:.2f}",
                r["objects"],
                _mib(r["peak_rss_bytes"]),
                _load(r),
            ]
        )
    if "floor" in size:
        f = size["floor"]
        rows.append(
            [
                side,
                "seem-lite, encoding alone (floor)",
                *seem,
                _s(f["encode_s"]),
                _s(f["cpu_s"]),
                _sig(f["megapixels_per_s"]),
                "n/a",
                "n/a",
                "n/a",
                _mib(f["peak_rss_bytes"]),
                _load(f),
            ]
        )
    if "watershed" in size:
        w = size["watershed"]
        q = w["quality"]
        rows.append(
            [
                side,
                "Otsu + distance watershed",
                "none (classical)",
                "1x",
                _s(w["wall_s"], 1),
                _s(w["cpu_s"], 1),
                _sig(w["megapixels_per_s"]),
                f"{q['f1']:.3f}",
                f"{q['precision']:.2f} / {q['recall']:.2f}",
                q["predicted"],
                "n/a",
                "n/a",
            ]
        )
    return rows


def _load(row: Mapping[str, Any]) -> str:
    value = row.get("load_1m")
    return "n/a" if value is None else f"{value:.1f}"


def render_section(result: Mapping[str, Any]) -> list[str]:
    """The default-model section of ``RESULTS.md`` (Markdown lines)."""
    from benchmarks.everything_profile import render_profile

    s = result["settings"]
    load = result["load_average"]
    lines = [
        "## Segment everything with the default model (seem-lite, shipped weights)",
        "",
        *report.header_lines(result["machine"]),
        f"- Slide: tiled copies of BBBC007 `{s['image']}` (a training image of seem-lite; "
        "tiled labels are the truth; F1 on the held-out images is in the quality section).",
        f"- Command: `napari-seem segment SLIDE.zarr --out OUT.zarr --vocabulary "
        f"{s['vocabulary']}` at its defaults: tile {s['tile']}, halo {s['halo']}, mode "
        f"{s['mode']}, torch threads = cores (Dask: 1 per worker), tiles encoded at the "
        "model's native scale (2.25x: a 1,024-px tile is a 2,304-px model input).",
        "- MP/s = slide pixels / wall time of the whole command (process start and model "
        "load included). CPU (s): user + system time of the command's processes (Dask "
        "workers included), a figure that load from other processes inflates less than the "
        "wall time. Peak RSS: the command's process tree. Load: 1-minute load average after "
        "the row (2 cores: above 2, other processes competed).",
        f"- Run time {result['wall_s'] / 60:.1f} min; load average (1/5/15 min) at start "
        f"{load['start']}, at end {load['end']}.",
    ]
    if result.get("note"):
        lines.append(f"- Note: {result['note']}")
    if result.get("transcribed"):
        lines.append(f"- Recorded from: {result['transcribed']}.")
    lines.append("")
    table: list[list[object]] = []
    for size in result["sizes"]:
        table += _rows(size)
    lines += [
        report.markdown_table(
            [
                "slide",
                "what",
                "weights",
                "scale",
                "wall (s)",
                "CPU (s)",
                "MP/s",
                "F1@0.5",
                "P / R",
                "objects",
                "peak RSS",
                "load",
            ],
            table,
        ),
        "",
    ]
    for size in result["sizes"]:
        if "profile" in size:
            lines += render_profile(size["profile"])
    return lines


def render_markdown(result: Mapping[str, Any]) -> str:
    return "\n".join(["# Segment everything throughput", "", *render_section(result)[2:]]) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    report.add_sizes_argument(parser, list(DEFAULT_SIZES), "slide sides (default %(default)s)")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="which command configurations (default: all)",
    )
    parser.add_argument("--image", default=mosaic_mod.DEFAULT_IMAGE, help="BBBC007 image tiled")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the one-tile profile"
    )
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip encoding alone"
    )
    parser.add_argument("--note", default=None, help="a line for the header (machine load)")
    parser.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="RESULTS.md to re-render (default benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--attach-profile",
        type=Path,
        default=None,
        metavar="JSON",
        help="with --render: show this profile_tile JSON (a separate run) as the profile",
    )
    report.add_out_render_arguments(parser, "everything", RESULTS_DIR)


def main(args: argparse.Namespace) -> int:
    from benchmarks import all as all_benchmarks

    if args.render is not None:
        import json

        result = dict(json.loads(args.render.read_text(encoding="utf-8")))
        if args.note:
            result["note"] = args.note
        if args.attach_profile is not None:  # a profile measured by a separate run
            result["sizes"][0]["profile"] = json.loads(args.attach_profile.read_text("utf-8"))
        report.write_report(args.out, "everything", result, render_markdown(result))
    else:
        result = run(
            args.sizes,
            configs=args.configs,
            image_name=args.image,
            profile=args.profile,
            floor=args.floor,
            note=args.note,
        )
        report.write_report(args.out, "everything", result, render_markdown(result))
    md = all_benchmarks.rerender_results(args.out, args.results_md)
    report.stderr(f"wrote {args.out / 'everything.json'} and {md}")
    print(render_markdown(result))
    return 0
