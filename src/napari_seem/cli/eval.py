"""``napari-seem eval``: SEEM metrics and classical baselines on labelled images.

The examples and the description shown by ``napari-seem eval --help`` are
:data:`DESCRIPTION` (plain text: argparse prints it as written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = [
    "DESCRIPTION",
    "WeightsUnavailable",
    "add_parser",
    "build_predictor",
    "run_bench",
    "run_eval",
]

DESCRIPTION = """\
Measure SEEM (NoC and IoU after 1/3/5 clicks, text IoU, "everything" F1 and AP50) and two
classical baselines on labelled images. Writes OUT/eval.json and OUT/eval.md and prints the
table.

examples:
  napari-seem eval --dataset bbbc007-heldout
  napari-seem eval --dataset landsat-heldout --max-objects 20
  napari-seem eval --folder my_nuclei/ --class-name nucleus --out out/eval-nuclei
  napari-seem eval --image slide.ome.zarr --labels slide.ome.zarr/labels/nuclei
      --class-name nucleus --variant seem-focalt-v1 --checkpoint seem_focalt_v1.pt
  napari-seem eval --dataset bbbc007-heldout --no-seem      (the baselines only)
"""


class WeightsUnavailable(Exception):
    """The requested model has no trained weights here; the message says how to get them."""


def build_predictor(
    variant: str,
    *,
    checkpoint: str | None = None,
    device: str = "auto",
    allow_random: bool = False,
    refine: str = "auto",
    find_scale: str = "auto",
) -> tuple[SeemPredictor, str]:
    """The predictor to evaluate and how the report names it (variant + weights).

    ``refine`` / ``find_scale``: ``"auto"`` (on for seem-lite, off for the official
    variants), ``"on"`` or ``"off"`` (see :class:`~napari_seem.predict.predictor.SeemPredictor`);
    a setting other than ``"auto"`` is named in the label.

    Raises:
        WeightsUnavailable: no trained weights and ``allow_random`` is False.
        ValueError: unknown variant or unusable checkpoint.
    """
    from napari_seem.core.hub import OFFICIAL_WEIGHTS, cached_path
    from napari_seem.core.variants import VARIANT_SUMMARIES, seem_lite_shipped

    if variant not in VARIANT_SUMMARIES:
        raise ValueError(f"unknown model {variant!r}; known: {', '.join(VARIANT_SUMMARIES)}")
    weights = checkpoint
    if weights is None and variant in OFFICIAL_WEIGHTS:
        cached = cached_path(variant)
        weights = str(cached) if cached else None
    shipped = variant == "seem-lite" and checkpoint is None and seem_lite_shipped()
    if weights is None and not shipped and not allow_random:
        how = (
            "its trained weights are not shipped in this installation yet; pass --checkpoint"
            if variant == "seem-lite"
            else (
                f"run `napari-seem models download {variant}` or pass --checkpoint"
                if variant in OFFICIAL_WEIGHTS
                else "it only has random weights"
            )
        )
        raise WeightsUnavailable(
            f"{variant}: no trained weights ({how}). Random weights say nothing about "
            "quality; add --allow-random-weights to run anyway, or --no-seem for the "
            "baselines only"
        )
    from napari_seem.model.build import build_seem
    from napari_seem.predict.predictor import SeemPredictor

    model = build_seem(
        variant,
        checkpoint=weights,
        device=device,
        shipped_weights=shipped or weights is not None,
    )
    label = f"{variant}, " + (
        f"weights {Path(weights).name}" if weights else "shipped weights" if shipped else "RANDOM"
    )
    switches = {"auto": "auto", "on": True, "off": False}
    for name, value in (("refine", refine), ("find-scale", find_scale)):
        if value not in switches:
            raise ValueError(f"--{name} takes auto, on or off; got {value!r}")
        if value != "auto":
            label += f", {name} {value}"
    predictor = SeemPredictor(
        model,
        refine=switches[refine],  # type: ignore[arg-type]
        find_scale=switches[find_scale],  # type: ignore[arg-type]
    )
    return predictor, label


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``napari-seem``'s subparsers."""
    from napari_seem.evaluation.data import BUILTIN_DATASETS

    p = subparsers.add_parser(
        "eval",
        help="measure SEEM (clicks, text, everything) and classical baselines on labelled images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("data (give one)")
    src.add_argument("--dataset", choices=BUILTIN_DATASETS, help="built-in held-out data")
    src.add_argument("--folder", help="folder of NAME.tif + NAME_labels.tif (or images/, labels/)")
    src.add_argument("--image", help="image: zarr / OME-Zarr / TIFF (with --labels)")
    src.add_argument(
        "--axes",
        default=None,
        help="axis letters of the images from tczyx, e.g. cyx (bands first); needed "
        "when a shape is ambiguous, e.g. (3, H, W); default: metadata, else the shape",
    )
    src.add_argument("--labels", help="instance labels: zarr / OME-Zarr labels / TIFF")
    src.add_argument(
        "--class-name",
        default="object",
        help="class name of every instance of --folder / --image data: the text prompt and "
        "the 'everything' vocabulary (default: object)",
    )
    model = p.add_argument_group("model")
    model.add_argument("--variant", default="seem-lite", help="model variant (default seem-lite)")
    model.add_argument(
        "--model",
        dest="model_alias",
        default=None,
        metavar="VARIANT",
        help="deprecated spelling of --variant",
    )
    model.add_argument("--checkpoint", default=None, help="weights file (.pt / .safetensors)")
    model.add_argument("--device", default="auto", help="cpu, cuda (or gpu), mps or auto")
    model.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="run a model without trained weights (pipeline check; the numbers mean nothing)",
    )
    for flag, what in (
        ("--refine", "click refinement (positive clicks inside, negative outside)"),
        ("--find-scale", "per-object scale selection (zoom views)"),
    ):
        model.add_argument(
            flag,
            choices=("auto", "on", "off"),
            default="auto",
            help=f"{what}: auto (default: on for seem-lite, off for official variants), on, off",
        )
    model.add_argument("--no-seem", action="store_true", help="run only the baselines")
    model.add_argument("--no-baselines", action="store_true", help="run only SEEM")
    run = p.add_argument_group("protocol")
    run.add_argument(
        "--max-objects",
        type=int,
        default=30,
        help="objects clicked per image, spread over the ids; 0 = all (default 30)",
    )
    run.add_argument(
        "--max-clicks", type=int, default=20, help="clicks per object at most (default 20)"
    )
    run.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default="out/eval", help="output folder (default out/eval)")
    p.set_defaults(func=run_eval)

    bench = subparsers.add_parser(
        "bench",
        help="run every benchmark (runs python -m benchmarks all; source checkouts only)",
        description="Run `python -m benchmarks all` with the given options (--quick, "
        "--sections, --note, ...); see `napari-seem bench -- --help`.",
    )
    bench.add_argument("options", nargs=argparse.REMAINDER, help="options of benchmarks all")
    bench.set_defaults(func=run_bench)
    return p


def run_bench(args: argparse.Namespace) -> int:
    """``napari-seem bench``: a thin wrapper that runs ``python -m benchmarks all OPTIONS``.

    The benchmarks live beside the package in a source checkout (an installed wheel does not
    contain them), so this runs them as a child process of the current interpreter in the
    working folder; the package itself never imports them. Returns the child's exit status.
    """
    import subprocess

    from napari_seem.cli._common import CliError

    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        raise CliError(
            "napari-seem bench runs from a source checkout (the benchmarks/ folder is not "
            "installed with the package): cd into the repository and run it there"
        )
    options = [o for o in args.options if o != "--"]
    return subprocess.call([sys.executable, "-m", "benchmarks", "all", *options])


def _variant(args: argparse.Namespace) -> str:
    """``--variant``, or the deprecated ``--model`` (with a note); both at once must agree."""
    from napari_seem.cli._common import CliError

    if args.model_alias is None:
        return str(args.variant)
    print("napari-seem eval: --model is deprecated; use --variant", file=sys.stderr)
    if args.variant not in ("seem-lite", args.model_alias):
        raise CliError(f"--model {args.model_alias} and --variant {args.variant} disagree")
    return str(args.model_alias)


def run_eval(args: argparse.Namespace) -> int:
    from napari_seem.cli._common import CliError, check_device
    from napari_seem.evaluation.data import EvalDataError, load_source
    from napari_seem.evaluation.runner import evaluate, render_markdown, write_report

    variant = _variant(args)
    device = check_device(args.device) if not args.no_seem else args.device
    if args.no_seem and args.no_baselines:
        raise CliError("--no-seem and --no-baselines together leave nothing to run")
    if args.max_objects < 0:
        raise CliError(f"--max-objects must be 0 (all) or positive, got {args.max_objects}")
    if args.max_clicks < 5:
        raise CliError(
            f"--max-clicks must be at least 5 (IoU after 5 clicks), got {args.max_clicks}"
        )
    try:
        items = load_source(
            dataset=args.dataset,
            folder=args.folder,
            image=args.image,
            labels=args.labels,
            class_name=args.class_name,
            axes=args.axes,
        )
    except EvalDataError as exc:
        raise CliError(str(exc)) from exc
    predictor = None
    label = None
    if not args.no_seem:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        try:
            predictor, label = build_predictor(
                variant,
                checkpoint=args.checkpoint,
                device=device,
                allow_random=args.allow_random_weights,
                refine=args.refine,
                find_scale=args.find_scale,
            )
        except WeightsUnavailable as exc:
            raise CliError(str(exc)) from exc
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot load {variant}: {exc}") from exc
    name = args.dataset or args.folder or f"{args.image} + {args.labels}"
    result = evaluate(
        items,
        dataset=name,
        predictor=predictor,
        model=label,
        seem_skipped="--no-seem" if args.no_seem else None,
        baselines=not args.no_baselines,
        max_objects=args.max_objects or None,
        max_clicks=args.max_clicks,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    json_path, md_path = write_report(result, Path(args.out))
    print(render_markdown(result))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
