"""The ``napari-seem`` command line.

Every subcommand imports what it needs when it runs, so ``napari-seem --help`` is instant
and never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


class CliError(Exception):
    """A user-facing error: printed as ``napari-seem: error: ...`` with exit code 2."""


def _cmd_models(args: argparse.Namespace) -> int:
    from napari_seem import weights

    if args.models_command == "download":
        from tqdm import tqdm

        bars: list[tqdm] = []  # created on the first block, so errors print no empty bar

        def progress(done: int, total: int | None) -> None:
            if not bars:
                bars.append(tqdm(total=total, unit="B", unit_scale=True, desc=args.name))
            bars[0].update(done - bars[0].n)

        try:
            path = weights.download_official(args.name, progress=progress, force=args.force)
        except weights.DownloadError as exc:
            raise CliError(str(exc)) from exc
        finally:
            for bar in bars:
                bar.close()
        print(f"{args.name}: {path}")
        return 0

    from napari_seem.variants import VARIANT_SUMMARIES

    print(f"{'variant':<18} {'backbone':<24} weights")
    for name, summary in VARIANT_SUMMARIES.items():
        if name in weights.OFFICIAL_WEIGHTS:
            cached = weights.cached_path(name)
            where = (
                str(cached) if cached else (f"not downloaded (napari-seem models download {name})")
            )
        else:
            where = summary.weights
        print(f"{name:<18} {summary.backbone:<24} {where}")
    print(f"\ncache: {weights.cache_dir()}  (set NAPARI_SEEM_CACHE to move it)")
    return 0


RANDOM_WEIGHTS_NOTE = (
    "NOTE: the embedded trained model (seem-lite) has not shipped yet. This run uses "
    "{variant!r} with RANDOM weights, so the masks exercise the whole pipeline but say "
    "nothing about segmentation quality. For real masks: --variant seem-focalt-v1 "
    "--checkpoint PATH (or `napari-seem models download seem-focalt-v1`)."
)


def _cmd_demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np
    from scipy import ndimage

    from napari_seem import ObjectPrompt, Points
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.export import write_labels_zarr, write_overlay_png
    from napari_seem.model.build import build_seem
    from napari_seem.model.checkpoint import CheckpointError
    from napari_seem.predictor import SeemPredictor
    from napari_seem.weights import cached_path

    out = Path(args.out)
    labels_path = out / "labels.zarr"
    if labels_path.exists() and not args.overwrite:
        raise CliError(f"{labels_path} exists; pass --overwrite or choose another --out")
    checkpoint = args.checkpoint or (
        cached_path(args.variant) if args.variant.endswith("-v1") else None
    )
    if checkpoint is None and args.variant.endswith("-v1"):
        raise CliError(
            f"{args.variant} needs weights: pass --checkpoint PATH or run "
            f"`napari-seem models download {args.variant}`"
        )
    if checkpoint is None:
        print(RANDOM_WEIGHTS_NOTE.format(variant=args.variant), file=sys.stderr)
    try:
        model = build_seem(args.variant, checkpoint=checkpoint, device=args.device)
    except (CheckpointError, ValueError) as exc:
        raise CliError(str(exc)) from exc

    scene = synthetic_nuclei((384, 512), seed=args.seed)
    predictor = SeemPredictor(model)
    start = time.perf_counter()
    predictor.set_image(scene.image)
    encoded = time.perf_counter()
    # one click at the centre of each of the first nuclei, as a user would click
    ids = np.arange(1, min(args.clicks, int(scene.labels.max())) + 1)
    centres = ndimage.center_of_mass(scene.labels > 0, scene.labels, ids)
    objects = [ObjectPrompt((Points.click(r, c),), label="nucleus") for r, c in centres]
    result = predictor.predict(objects, vocabulary=["nucleus", "background"])
    done = time.perf_counter()
    labels = result.to_labels()
    ious = []
    for obj, i in zip(result, ids, strict=True):
        truth = scene.labels == i
        pred = obj.full(scene.image.shape)
        ious.append((truth & pred).sum() / max((truth | pred).sum(), 1))
    out.mkdir(parents=True, exist_ok=True)
    write_labels_zarr(
        labels_path,
        labels,
        result.class_table(),
        attrs={"model": args.variant, "weights": str(checkpoint) if checkpoint else "random"},
        overwrite=args.overwrite,
    )
    png = write_overlay_png(out / "overlay.png", scene.image, labels)
    print(
        f"{len(result)} clicks on synthetic nuclei with {args.variant}: encode "
        f"{encoded - start:.2f} s, decode {done - encoded:.2f} s, mean IoU vs truth "
        f"{float(np.mean(ious)):.3f}"
    )
    print(f"labels:  {labels_path}  (uint32, class table in attrs['napari_seem'])")
    print(f"overlay: {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-seem",
        description="SEEM promptable segmentation for napari, Jupyter and the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = sub.add_parser("models", help="list model variants and where their weights are")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    download = models_sub.add_parser("download", help="fetch official weights into the cache")
    download.add_argument("name", help="variant, e.g. seem-focalt-v1")
    download.add_argument("--force", action="store_true", help="download again")
    models.set_defaults(func=_cmd_models)

    from napari_seem.variants import DEFAULT_VARIANT

    demo = sub.add_parser(
        "demo", help="segment a sample image by clicking on it; write labels.zarr + overlay.png"
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--variant", default=DEFAULT_VARIANT, help="model variant")
    demo.add_argument("--checkpoint", default=None, help="weights file (.pt/.safetensors)")
    demo.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    demo.add_argument("--clicks", type=int, default=8, help="objects to click (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic image")
    demo.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    demo.set_defaults(func=_cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"napari-seem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-seem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
