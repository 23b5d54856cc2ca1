"""Batch throughput: whole-image "segment everything" in megapixels/s and peak memory.

For every square image size ``S`` (default 2,000, 8,000 and 20,000 pixels) a uint8 zarr
image is built lazily (chunk by chunk: 1,000-pixel chunks, each a seeded shift of one
rendered tile of bright discs) and segmented with ``napari_seem.batch.segment_image`` (text
search, random-weight tiny model: the speed of the plumbing, not of a trained model), once
with one worker (in-process) and once on a two-worker Dask ``LocalCluster``.

- **Throughput** = pixels of the segmented region / wall time of ``segment_image`` (model
  build, tiles, merge and chunk writes included; building the test image excluded).
- **Peak RSS** = ``getrusage`` peak of a fresh process per measurement. The two workers run
  in that process (``processes=False``), so the figure covers driver and both workers.
- Sizes whose pixels exceed ``--max-megapixels`` (default 64, so 8,000^2 runs whole) are
  segmented on a central region of that many pixels, and the report says so: a full
  20,000^2 run is about 400 MP, several minutes per configuration on a 2-core CPU. Peak
  memory should then match the smaller sizes: it depends on the tile, not on the image.

Run ``python -m benchmarks batch --help``; :func:`run` is the function API.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _report as report

__all__ = ["DEFAULT_SIZES", "add_arguments", "build_image", "main", "render_markdown", "run"]

DEFAULT_SIZES = (2000, 8000, 20000)
QUICK_SIZES = (1000, 2000)
DEFAULT_WORKERS = (1, 2)
DEFAULT_TILE = 2048
DEFAULT_HALO = 64
# the tiny model encodes each tile at this short side (see ModelSpec.short_side)
DEFAULT_SHORT_SIDE = 256
DEFAULT_MAX_MEGAPIXELS = 64.0
CHUNK = 1000
TEXT = "a round cell"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _base_tile(seed: int) -> np.ndarray:
    """One ``CHUNK x CHUNK`` uint8 tile of bright discs on a noisy dark background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(10, 50, (CHUNK, CHUNK)).astype(np.uint8)
    rows, cols = np.ogrid[:CHUNK, :CHUNK]
    for r, c, rad in zip(
        rng.uniform(0, CHUNK, 400),
        rng.uniform(0, CHUNK, 400),
        rng.uniform(6, 20, 400),
        strict=True,
    ):
        r0, r1 = max(int(r - rad), 0), min(int(r + rad) + 1, CHUNK)
        c0, c1 = max(int(c - rad), 0), min(int(c + rad) + 1, CHUNK)
        disc = (rows[r0:r1] - r) ** 2 + (cols[:, c0:c1] - c) ** 2 <= rad**2
        image[r0:r1, c0:c1][disc] = 200
    return image


def build_image(path: Path, size: int, *, seed: int = 0) -> Path:
    """A ``size x size`` uint8 zarr image written chunk by chunk (never whole in memory)."""
    import zarr

    base = _base_tile(seed)
    array = zarr.create_array(
        store=str(path), shape=(size, size), chunks=(CHUNK, CHUNK), dtype="uint8"
    )
    for i, r in enumerate(range(0, size, CHUNK)):
        for j, c in enumerate(range(0, size, CHUNK)):
            block = np.roll(base, (i * 137 + j * 61, j * 211 + i * 29), axis=(0, 1))
            array[r : r + CHUNK, c : c + CHUNK] = block[
                : min(CHUNK, size - r), : min(CHUNK, size - c)
            ]
    return path


def measure(
    image: str,
    size: int,
    workers: int,
    *,
    tile: int,
    halo: int,
    short_side: int,
    region: tuple[int, int, int, int] | None,
) -> dict[str, Any]:
    """One run in this process (call it in a fresh process for a clean peak RSS)."""
    from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image

    spec = ModelSpec(
        "seem-tiny-focal",
        device="cpu",
        mask_resize="bilinear",
        threads=1,
        short_side=short_side,
    )
    rss_before = report.peak_rss_bytes()
    with tempfile.TemporaryDirectory(prefix="napari-seem-batch-bench-") as tmp:
        out = Path(tmp) / "labels.zarr"
        task = Task(text=TEXT)
        config = BatchConfig(tile=tile, halo=halo, region=region)
        t0 = time.perf_counter()
        if workers == 1:
            summary = segment_image(image, out, task, config, model=spec)
        else:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=False,
                    dashboard_address=None,
                ) as cluster,
                Client(cluster) as client,
            ):
                summary = segment_image(image, out, task, config, model=spec, scheduler=client)
        wall = time.perf_counter() - t0
    r0, c0, r1, c1 = region or (0, 0, size, size)
    pixels = (r1 - r0) * (c1 - c0)
    return {
        "size": size,
        "workers": workers,
        "region": None if region is None else list(region),
        "megapixels": pixels / 1e6,
        "tiles": summary.tiles,
        "objects": summary.objects,
        "wall_s": wall,
        "megapixels_per_s": pixels / 1e6 / wall,
        "peak_rss_bytes": report.peak_rss_bytes(),
        "rss_before_bytes": rss_before,
        "load_1m": (report.load_average() or [None])[0],
    }


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    workers: Sequence[int] = DEFAULT_WORKERS,
    *,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
    short_side: int = DEFAULT_SHORT_SIDE,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    isolate: bool = True,
    log: Any = report.stderr,
) -> dict[str, Any]:
    """Measure every (size, workers); the JSON-ready result."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    load_at_start = report.load_average()
    rows = []
    builds = []
    with tempfile.TemporaryDirectory(prefix="napari-seem-batch-img-") as tmp:
        for size in sorted(sizes):
            t0 = time.perf_counter()
            image = build_image(Path(tmp) / f"img{size}.zarr", size)
            built = time.perf_counter() - t0
            builds.append({"size": size, "build_s": built})
            say(f"[{size}^2] image built lazily in {built:.1f} s")
            region = report.centre_square(size, max_megapixels)
            for n in workers:
                kwargs = {"tile": tile, "halo": halo, "short_side": short_side, "region": region}
                if isolate:
                    context = multiprocessing.get_context("spawn")
                    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                        row = pool.submit(measure, str(image), size, n, **kwargs).result()
                else:
                    row = measure(str(image), size, n, **kwargs)
                rows.append(row)
                say(
                    f"[{size}^2, {n} worker(s)] {row['megapixels_per_s']:.2f} MP/s, "
                    f"{row['wall_s']:.1f} s, peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB"
                    + (" (central region)" if region else "")
                )
    return {
        "benchmark": "batch",
        "machine": report.machine_info(threads=1),
        "settings": {
            "sizes": sorted(sizes),
            "workers": list(workers),
            "tile": tile,
            "halo": halo,
            "short_side": short_side,
            "max_megapixels": max_megapixels,
            "variant": "seem-tiny-focal",
            "weights": "random",
            "task": f"text: {TEXT!r}",
            "isolated": isolate,
        },
        "wall_s": time.perf_counter() - started,
        "load_average": {"start": load_at_start, "end": report.load_average()},
        "images": builds,
        "runs": rows,
    }


def render_markdown(result: Mapping[str, Any]) -> str:
    settings = result["settings"]
    load = result.get("load_average", {})
    rows = []
    for r in result["runs"]:
        where = (
            "whole image"
            if r["region"] is None
            else (f"central {r['region'][2] - r['region'][0]}^2 region")
        )
        rows.append(
            [
                f"{r['size']:,}^2",
                r["workers"],
                where,
                f"{r['megapixels']:.1f}",
                r["tiles"],
                f"{r['wall_s']:.1f}",
                f"{r['megapixels_per_s']:.2f}",
                f"{r['peak_rss_bytes'] / 2**20:,.0f} MiB",
                "n/a" if r["load_1m"] is None else f"{r['load_1m']:.1f}",
            ]
        )
    lines = [
        "# Batch throughput",
        "",
        *report.header_lines(result["machine"]),
        f"- Task: {settings['task']} with `{settings['variant']}` ({settings['weights']} "
        "weights: plumbing speed, not a trained model's). Tiles "
        f"{settings['tile']} px, halo {settings['halo']}, each tile encoded at "
        f"{settings['short_side']} px; torch 1 thread per worker.",
        "- Images: uint8 zarr, 1,000-pixel chunks, built chunk by chunk (build time excluded).",
        "- 1 worker: in-process. 2 workers: Dask LocalCluster, 2 workers x 1 thread, "
        "`processes=False` (both in the measured process, so peak RSS covers both).",
        f"- Sizes above {settings['max_megapixels']:g} MP are segmented on a central region of "
        "that many pixels (a full 20,000^2 run is ~400 MP: many minutes per configuration "
        "on 2 cores). Peak memory depends on the tile, not on the image size.",
        f"- Total run time {result['wall_s'] / 60:.1f} min; load average at start "
        f"{load.get('start')}, at end {load.get('end')} (above 2, other processes competed "
        "for the 2 cores and the figures are pessimistic).",
        "",
        report.markdown_table(
            [
                "image",
                "workers",
                "segmented",
                "MP",
                "tiles",
                "wall (s)",
                "MP/s",
                "peak RSS",
                "load",
            ],
            rows,
        ),
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``batch.json`` and ``batch.md`` into ``out_dir``."""
    return report.write_report(out_dir, "batch", result, render_markdown(result))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sizes = f"square image sizes (default {list(DEFAULT_SIZES)}; --quick {list(QUICK_SIZES)})"
    report.add_sizes_argument(parser, None, sizes)
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=list(DEFAULT_WORKERS),
        help="worker counts to compare (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only (a few minutes)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile (default %(default)s)")
    parser.add_argument("--halo", type=int, default=DEFAULT_HALO, help="halo (default %(default)s)")
    parser.add_argument(
        "--short-side",
        type=int,
        default=DEFAULT_SHORT_SIDE,
        help="tile encoding size of the tiny model (default %(default)s)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        help="larger images are segmented on a central region this big (default %(default)s)",
    )
    report.add_out_render_arguments(parser, "batch", RESULTS_DIR)
    report.add_no_isolate_argument(parser, "")


def main(args: argparse.Namespace) -> int:
    if args.render is not None:
        report.rerender(args.render, args.out, "batch", render_markdown)
        return 0
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    result = run(
        sizes,
        args.workers,
        tile=args.tile,
        halo=args.halo,
        short_side=args.short_side,
        max_megapixels=args.max_megapixels,
        isolate=args.isolate,
    )
    return report.show_report(result, write_outputs(result, args.out), render_markdown)
