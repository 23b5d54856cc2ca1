"""``napari-seem train``: fine-tune on labelled images, or rebuild the shipped seem-lite.

Examples::

    napari-seem train --tiff-folder data/ --class-name nucleus --steps 300 --out my.safetensors
    napari-seem train --zarr labelled.zarr --class-name cell --resume-dir runs/cells
    napari-seem train --ome-zarr image.ome.zarr --class-name nucleus --tasks spatial
    napari-seem train --tiff-folder rasters/ --axes cyx --class-name building
    napari-seem train --recipe seem-lite --resume-dir out/seem-lite-train

The parser is built without importing torch; the work imports it when it runs.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune a model on labelled images (or rebuild the shipped seem-lite)",
        description="Train the SEEM decoder on images with instance labels and class names. "
        "Writes a .safetensors file with the trained parts; load it with "
        "`--variant seem-lite --checkpoint FILE` or napari_seem.train.load_finetuned.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiff-folder", help="folder of NAME.tif + NAME_labels.tif pairs")
    src.add_argument("--zarr", help="zarr group with 'image' and 'labels' arrays")
    src.add_argument("--ome-zarr", help="OME-Zarr image with a labels/ group")
    src.add_argument(
        "--recipe", choices=["seem-lite"], help="rebuild the shipped seem-lite weights"
    )
    p.add_argument(
        "--axes",
        default=None,
        help="axis letters of the images from tczyx, e.g. cyx (bands first) or zyx (planes); "
        "labels have the same axes without c. Default: (H, W), (H, W, C) or a stack of "
        "planes matching the labels",
    )
    p.add_argument("--class-name", default="object", help="class of every labelled object")
    p.add_argument("--labels-suffix", default="_labels", help="TIFF label suffix (_labels)")
    p.add_argument("--base", default="seem-lite", help="variant to start from (seem-lite)")
    p.add_argument("--checkpoint", default=None, help="base weights (official variants)")
    p.add_argument(
        "--out", default=None, help="output .safetensors (default ./seem-finetuned.safetensors)"
    )
    p.add_argument("--resume-dir", default=None, help="resumable checkpoints (last.pt) here")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 300)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--crop", type=int, default=None, help="crop side, multiple of 32 (256)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--tasks",
        default=None,
        help="comma list of object,grounding,spatial (default all; 'spatial' when only "
        "some objects are labelled)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", help="cpu, cuda (or gpu), mps or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Body of ``napari-seem train``."""
    from pathlib import Path

    from napari_seem.cli._common import check_device

    device = check_device(args.device)
    if args.recipe == "seem-lite":
        from napari_seem.train.recipe import default_out_dir, run_seem_lite_recipe

        path = run_seem_lite_recipe(
            args.resume_dir or default_out_dir(),
            export_to=args.out,
            steps=args.steps,
            device=device,
            progress=not args.no_progress,
        )
        print(f"weights: {path}")
        return 0

    items = _items(args)
    print(_how_read(items, args.axes), flush=True)
    options: dict[str, Any] = {"device": device}
    for name in ("steps", "batch_size", "crop", "lr", "seed"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.tasks:
        options["tasks"] = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if args.threads:
        options["num_threads"] = args.threads
    out = Path(args.out or "seem-finetuned.safetensors")
    from napari_seem.train.api import fine_tune  # torch: only once the inputs are valid

    path = fine_tune(
        items,
        base=args.base,
        checkpoint=args.checkpoint,
        out=out,
        resume_dir=args.resume_dir,
        progress=not args.no_progress,
        **options,
    )
    print(f"{len(items)} images -> weights: {path}")
    return 0


def _items(args: argparse.Namespace) -> list[Any]:
    """The labelled images of ``--tiff-folder`` / ``--zarr`` / ``--ome-zarr`` (``--axes``).

    Raises:
        CliError: the inputs cannot be used (the loader's message; a shape mismatch also
            says that ``--axes`` names the image's axes).
    """
    from napari_seem.cli._common import CliError
    from napari_seem.train import data as tdata

    options: dict[str, Any] = {"axes": args.axes} if args.axes else {}
    try:
        if args.tiff_folder:
            return tdata.from_tiff_folder(
                args.tiff_folder, args.class_name, labels_suffix=args.labels_suffix, **options
            )
        if args.zarr:
            return tdata.from_zarr(args.zarr, args.class_name, **options)
        return tdata.from_ome_zarr(args.ome_zarr, args.class_name, **options)
    except tdata.TrainingDataError as exc:
        hint = ""
        if args.axes is None and "does not match the image shape" in str(exc):
            hint = "; if the image's axes are not (H, W[, C]), name them with --axes (e.g. cyx)"
        raise CliError(f"{exc}{hint}") from exc


def _how_read(items: list[Any], axes: str | None) -> str:
    """One line saying how the images were read, e.g. ``3 training images (64 x 64, 3
    channels; axes 'cyx' as given)``."""
    shapes = sorted({tuple(item.image.shape) for item in items})
    described = []
    for shape in shapes[:3]:
        colour = "grey" if len(shape) == 2 else f"{shape[2]} channels"
        described.append(f"{shape[0]} x {shape[1]}, {colour}")
    more = f", +{len(shapes) - 3} more sizes" if len(shapes) > 3 else ""
    how = f"axes {axes!r} as given" if axes else "(H, W[, C]) assumed; --axes changes it"
    return f"{len(items)} training images ({'; '.join(described)}{more}; {how})"
