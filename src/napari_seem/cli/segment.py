"""``napari-seem segment``: whole-image segmentation from the command line.

Examples::

    napari-seem segment slide.ome.zarr --out slide_labels.zarr --vocabulary "nucleus, cell"
    napari-seem segment scene.tif --out roofs.zarr --text "building roof" --bands 3,2,1
    napari-seem segment slide.ome.zarr --labels-name nuclei --vocabulary nucleus --level 1
    napari-seem segment stack.zarr --out cells.zarr --vocabulary cell --propagate z
    napari-seem segment slide.ome.zarr --out nuclei.zarr --vocabulary nucleus --mode points
    napari-seem segment big.zarr --out big_labels.zarr --prompts clicks.csv \
        --scheduler local --workers 4
    napari-seem segment big.zarr --out big_labels.zarr --vocabulary nucleus \
        --scheduler tcp://10.0.0.5:8786
    napari-seem segment scene.tif --out water.gpkg --text water --bands nir,red,green

Rerunning an interrupted command resumes it. Everything that can be checked is checked
before any tile runs; a bad argument exits with code 2 and a message saying what to do.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run_segment"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``segment`` subcommand to ``napari-seem``'s subparsers."""
    from napari_seem.cli.geo_flags import add_geo_arguments
    from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE, EVERYTHING_MODES
    from napari_seem.core.variants import DEFAULT_VARIANT

    p = subparsers.add_parser(
        "segment",
        help="segment a whole image or stack tile by tile into a labels zarr (resumable)",
        description=(
            "Segment a huge image tile by tile: every object of a vocabulary (--vocabulary), "
            "every instance of a phrase (--text) or the objects of a prompts file (--prompts). "
            "Objects crossing tile seams get one id. Writes uint32 labels + a class table; "
            "rerun the same command to resume an interrupted run."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        help="image: zarr / OME-Zarr directory, TIFF / GeoTIFF, PNG or JPEG file (or the band "
        "files of one scene, comma-separated)",
    )
    where = p.add_argument_group("output")
    where.add_argument(
        "--out",
        default=None,
        help="output zarr store (labels array); for a georeferenced input also NAME.gpkg / "
        ".geojson (polygons) or NAME.tif (labels COG)",
    )
    where.add_argument(
        "--labels-name",
        default=None,
        help="write OME-Zarr labels INPUT/labels/NAME (multiscale) instead of --out",
    )
    where.add_argument("--overwrite", action="store_true", help="replace an existing output")
    what = p.add_argument_group("what to segment (exactly one)")
    what.add_argument("--vocabulary", default=None, help='class names, e.g. "nucleus, cell"')
    what.add_argument("--text", default=None, help="a referring phrase: every instance of it")
    what.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="points/boxes in level-0 pixels, .csv or .geojson (see the docs for columns)",
    )
    what.add_argument(
        "--mode",
        default=DEFAULT_EVERYTHING_MODE,
        choices=EVERYTHING_MODES,
        help="with --vocabulary: auto (default: points for models that decode prompts in "
        "windows, such as seem-lite, else panoptic), panoptic, instance, semantic, or points "
        "(prompt a grid of points)",
    )
    how = p.add_argument_group("tiling and image")
    how.add_argument("--tile", type=int, default=1024, help="model tile size (default 1024)")
    how.add_argument("--halo", type=int, default=64, help="tile overlap per side (default 64)")
    how.add_argument("--level", type=int, default=0, help="pyramid level to segment (default 0)")
    how.add_argument(
        "--axes",
        default=None,
        help="axis letters of the input from tczyx, e.g. zyx (a stack) or cyx (bands first); "
        "default: the file's metadata, else inferred from the shape (printed). Needed when "
        "the shape is ambiguous, e.g. (3, H, W)",
    )
    how.add_argument("--bands", default=None, help="three channel indices for R,G,B: 3,2,1")
    how.add_argument("--planes", default="all", help="'all' (default) or indices: 0,3,5")
    how.add_argument(
        "--propagate",
        default=None,
        choices=("z", "t"),
        help="segment the first plane, then follow each object through z or t",
    )
    how.add_argument("--min-area", type=int, default=16, help="drop smaller objects (pixels)")
    model = p.add_argument_group("model")
    model.add_argument("--variant", default=DEFAULT_VARIANT, help="model variant")
    model.add_argument("--checkpoint", default=None, help="weights file (.pt/.safetensors)")
    model.add_argument("--device", default="auto", help="cpu, cuda (or gpu), mps or auto")
    model.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: torch's; with --scheduler local, the "
        "cores divided among the workers)",
    )
    run = p.add_argument_group("execution")
    run.add_argument(
        "--scheduler",
        default=None,
        help="'local' (a LocalCluster) or tcp://host:port (an existing Dask cluster); "
        "default: in this process",
    )
    run.add_argument("--workers", type=int, default=None, help="workers of --scheduler local")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_geo_arguments(p)
    p.set_defaults(func=run_segment)
    return p


def _bands(text: str | None) -> tuple[int, int, int] | None:
    from napari_seem.cli._common import CliError

    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CliError(f"--bands {text!r}: give three integers such as 3,2,1") from None
    if len(values) != 3:
        raise CliError(f"--bands {text!r}: give exactly three channel indices, e.g. 3,2,1")
    return (values[0], values[1], values[2])


def _axes(path: Any, axes: str | None) -> tuple[str, str]:
    """The axes of the input (``axes`` or read / inferred) and the line saying how it is
    read (printed once every check has passed and the run starts).

    Raises:
        CliError: the shape is ambiguous and ``axes`` is None, or ``axes`` does not fit.
    """
    from napari_seem.cli._common import CliError
    from napari_seem.core.image_open import describe_axes, open_image
    from napari_seem.core.image_source import ImageSourceError

    try:
        source = open_image(path, axes=axes, strict_axes=True)
    except ImageSourceError as exc:
        raise CliError(str(exc)) from exc
    try:
        return source.axes, describe_axes(source)
    finally:
        source.close()


def run_segment(args: argparse.Namespace) -> int:
    """The body of ``napari-seem segment``."""
    from napari_seem.batch import BatchConfig, BatchConfigError, ModelSpec, Task, segment_image
    from napari_seem.cli._common import (
        RANDOM_WEIGHTS_NOTE,
        CliError,
        check_device,
        random_weights,
    )
    from napari_seem.core.progress import Progress

    if args.workers is not None and args.scheduler != "local":
        raise CliError("--workers sizes a --scheduler local cluster; add --scheduler local")
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be at least 1")
    checkpoint = args.checkpoint
    if checkpoint is None and args.variant.endswith("-v1"):
        from napari_seem.core.hub import cached_path

        found = cached_path(args.variant)
        if found is None:
            raise CliError(
                f"{args.variant} needs weights: pass --checkpoint PATH or run "
                f"`napari-seem models download {args.variant}`"
            )
        checkpoint = str(found)
    if args.threads is not None and args.threads < 1:
        raise CliError("--threads must be at least 1")
    device = check_device(args.device)
    spec = ModelSpec(args.variant, checkpoint=checkpoint, device=device, threads=args.threads)
    bar: Any = None

    def reporter(progress: Progress) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(
                total=progress.total,
                initial=progress.done,
                unit="step",
                desc="segment",
                smoothing=0.1,
            )
        bar.update(progress.done - bar.n)

    from napari_seem.cli.geo_flags import plan_geo

    geo = plan_geo(args)  # band files, band names, map prompts, georeferenced outputs
    bands = geo.bands or _bands(args.bands)
    axes, how_read = _axes(geo.image, args.axes)
    random = random_weights(args.variant, checkpoint)

    def on_start() -> None:
        print(how_read, file=sys.stderr)
        if random:
            print(RANDOM_WEIGHTS_NOTE.format(variant=args.variant), file=sys.stderr)

    try:
        task = Task.from_options(
            vocabulary=args.vocabulary,
            text=args.text,
            prompts=args.prompts if geo.prompts is None else geo.prompts,
            mode=args.mode,
        )
        config = BatchConfig(
            tile=args.tile,
            halo=args.halo,
            level=args.level,
            axes=axes,
            bands=bands,
            planes=args.planes,
            propagate=args.propagate,
            labels_name=args.labels_name,
            min_area=args.min_area,
            workers=args.workers,
            overwrite=args.overwrite,
        )
        summary = segment_image(
            geo.image,
            geo.out,
            task,
            config,
            model=spec,
            scheduler=args.scheduler,
            reporter=reporter,
            on_start=on_start,
        )
    except BatchConfigError as exc:
        raise CliError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    if summary.status == "complete":
        geo.finish(summary.labels)
    if summary.tiles_skipped == summary.tiles and summary.megapixels == 0:
        print(f"already complete: {summary.labels} ({summary.objects} objects)")
        return 0
    rate = summary.megapixels_per_s
    shown = f"{rate:.2g}" if rate < 100 else f"{rate:.0f}"  # two significant digits
    print(
        f"{summary.objects} objects in {summary.tiles} tiles "
        f"({summary.tiles_skipped} resumed), {summary.seconds:.1f} s, {shown} MP/s"
    )
    print(f"labels: {summary.labels}  (uint32, shape {summary.shape})")
    print(f"class table: {summary.class_table}")
    return 0
