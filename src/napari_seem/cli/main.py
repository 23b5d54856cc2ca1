"""The ``napari-seem`` command line.

Every subcommand imports what it needs when it runs, so ``napari-seem --help`` is instant
and never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from napari_seem.cli._common import (
    RANDOM_WEIGHTS_NOTE,
    CliError,
    check_device,
    missing_extra_message,
    random_weights,
    resumable,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["build_parser", "commit_in_order", "main"]


def _cmd_models(args: argparse.Namespace) -> int:
    from napari_seem.core import hub as weights

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

    from napari_seem.core.variants import VARIANT_SUMMARIES, seem_lite_shipped

    rows = []
    for name, summary in VARIANT_SUMMARIES.items():
        if name in weights.OFFICIAL_WEIGHTS:
            cached = weights.cached_path(name)
            fetch = f"not downloaded (napari-seem models download {name})"
            where = str(cached) if cached else fetch
        elif name == "seem-lite" and not seem_lite_shipped():
            where = "missing from this installation (reinstall the package)"
        else:
            where = summary.weights
        rows.append((name, summary.backbone, where))
    widths = [max(len(r[i]) for r in [("variant", "backbone", ""), *rows]) for i in (0, 1)]
    for name, backbone, where in [("variant", "backbone", "weights"), *rows]:
        print(f"{name:<{widths[0]}}  {backbone:<{widths[1]}}  {where}")
    print(f"\ncache: {weights.cache_dir()}  (set NAPARI_SEEM_CACHE to move it)")
    return 0


def commit_in_order(
    masks: Sequence[npt.NDArray[np.bool_]],
    rows: Sequence[dict[str, Any]],
    *,
    paint_over: bool = False,
) -> tuple[npt.NDArray[np.uint32], list[dict[str, Any]]]:
    """Commit objects one after another into a label image, as a user commits clicks.

    Args:
        masks: one ``(H, W)`` bool mask per object, in commit order (image pixels).
        rows: the class-table row of each mask (``id`` = its label value, ``class_name``,
            scores...); ``area`` and ``bbox`` are replaced by what the array holds.
        paint_over: a later object takes the pixels of earlier ones; by default it only
            fills pixels no earlier object holds (a commit never overwrites an earlier one).

    Returns:
        The ``(H, W)`` uint32 labels (0 = background) and the class table of the ids that
        kept at least one pixel, whose ``area`` is the pixel count of that id in the array
        and ``bbox`` its ``[row_min, col_min, row_max, col_max]`` (max exclusive).
    """
    import numpy as np

    if not masks:
        return np.zeros((0, 0), np.uint32), []
    labels = np.zeros(masks[0].shape, np.uint32)
    for mask, row in zip(masks, rows, strict=True):
        paint = mask if paint_over else mask & (labels == 0)
        labels[paint] = int(row["id"])
    table = []
    for row in rows:
        where = np.nonzero(labels == int(row["id"]))
        if where[0].size == 0:
            continue
        bbox = [int(where[0].min()), int(where[1].min())]
        bbox += [int(where[0].max()) + 1, int(where[1].max()) + 1]
        table.append({**row, "area": int(where[0].size), "bbox": bbox})
    return labels, table


def _cmd_demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np
    from scipy import ndimage

    from napari_seem.core.export import write_labels_zarr, write_overlay_png
    from napari_seem.core.hub import cached_path
    from napari_seem.core.prompts import ObjectPrompt
    from napari_seem.core.visual import Points
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.model.build import build_seem
    from napari_seem.model.checkpoint import CheckpointError
    from napari_seem.predict.predictor import SeemPredictor

    out = Path(args.out)
    labels_path = out / "labels.zarr"
    if labels_path.exists() and not args.overwrite:
        raise CliError(f"{labels_path} exists; pass --overwrite or choose another --out")
    device = check_device(args.device)
    checkpoint = args.checkpoint or (
        cached_path(args.variant) if args.variant.endswith("-v1") else None
    )
    if checkpoint is None and args.variant.endswith("-v1"):
        raise CliError(
            f"{args.variant} needs weights: pass --checkpoint PATH or run "
            f"`napari-seem models download {args.variant}`"
        )
    random = random_weights(args.variant, checkpoint)
    if random:
        print(RANDOM_WEIGHTS_NOTE.format(variant=args.variant), file=sys.stderr)
    try:
        model = build_seem(args.variant, checkpoint=checkpoint, device=device)
    except (CheckpointError, ValueError) as exc:
        raise CliError(str(exc)) from exc

    scene = synthetic_nuclei((384, 512), seed=args.seed)
    predictor = SeemPredictor(model)
    start = time.perf_counter()
    predictor.set_image(scene.image)
    encoded = time.perf_counter()
    # one click at the centre of each of the first nuclei, as a user would click; the
    # vocabulary names the class of each clicked object ("background" is never a class)
    ids = np.arange(1, min(args.clicks, int(scene.labels.max())) + 1)
    centres = ndimage.center_of_mass(scene.labels > 0, scene.labels, ids)
    objects = [ObjectPrompt((Points.click(r, c),), label="nucleus") for r, c in centres]
    result = predictor.predict(objects, vocabulary=["nucleus"])
    done = time.perf_counter()
    masks = [obj.full(scene.image.shape) for obj in result]
    labels, table = commit_in_order(masks, result.class_table(), paint_over=args.paint_over)
    ious = []
    for pred, i in zip(masks, ids, strict=True):
        truth = scene.labels == i
        ious.append((truth & pred).sum() / max((truth | pred).sum(), 1))
    out.mkdir(parents=True, exist_ok=True)
    write_labels_zarr(
        labels_path,
        labels,
        table,
        attrs={
            "model": args.variant,
            "weights": str(checkpoint) if checkpoint else ("random" if random else "shipped"),
        },
        overwrite=args.overwrite,
    )
    png = write_overlay_png(out / "overlay.png", scene.image, labels)
    print(
        f"{len(result)} clicks on synthetic nuclei with {args.variant}: encode "
        f"{encoded - start:.2f} s, decode {done - encoded:.2f} s, mean IoU vs truth "
        f"{float(np.mean(ious)):.3f}"
    )
    print(f"{'id':>3}  {'class':<10} {'score':>5}  {'pixels':>6}")
    for row in table:
        name = row["class_name"] or "-"
        print(f"{row['id']:>3}  {name:<10} {row['score']:>5.2f}  {row['area']:>6}")
    print(f"labels:  {labels_path}  (uint32, class table in attrs['napari_seem'])")
    print(f"overlay: {png}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _write_token_file(path: str, token: str) -> None:
    """Write ``token`` to ``path``, readable by its owner only."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import os
    import secrets
    from pathlib import Path

    import uvicorn

    from napari_seem.engine import Engine, InvalidRequestError
    from napari_seem.model.build import build_seem
    from napari_seem.model.checkpoint import CheckpointError
    from napari_seem.remote.limit_flags import limits_from_args
    from napari_seem.remote.server import bind_socket, check_bind_host, create_app
    from napari_seem.remote.serving import uvicorn_config

    given = args.token or os.environ.get("NAPARI_SEEM_TOKEN") or None
    try:  # before loading the model: a refused host fails fast
        check_bind_host(args.host, allow_remote=args.allow_remote, token=given)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    token = given or secrets.token_urlsafe(24)
    urls = [r for r in args.allow_root if "://" in r]
    if urls:
        raise CliError(
            f"--allow-root takes local directories; URLs are not supported ({', '.join(urls)}): "
            "mount the bucket (e.g. s3fs, rclone mount) and allow the mounted directory"
        )
    roots = [str(Path(r).expanduser().resolve()) for r in args.allow_root] or [str(Path.cwd())]
    try:
        limits = limits_from_args(args)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_NOTE.format(variant=args.variant), file=sys.stderr)
    try:
        model = build_seem(args.variant, checkpoint=args.checkpoint, device=args.device)
        engine = Engine(
            model,
            tile=args.tile,
            halo=args.halo,
            cache_dir=args.cache_dir,
            work_dir=args.weights_dir,
            limits=limits,
        )
    except (CheckpointError, InvalidRequestError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    app = create_app(engine, token=token, allowed_roots=roots, limits=limits)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        engine.close()
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    if args.token_file:
        _write_token_file(args.token_file, token)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"allowed roots: {', '.join(roots)}", file=sys.stderr, flush=True)
    # One line a parent process parses (SeemClient.spawn_local): keep its format stable.
    # The token is shown only when it was generated here (nobody else knows it then) and
    # no --token-file receives it; a given token is never echoed.
    shown = f" token={token}" if given is None and not args.token_file else ""
    print(f"napari-seem serve: listening on http://{host}:{port}{shown}", flush=True)
    logging.basicConfig(level=logging.WARNING)
    try:
        uvicorn.Server(uvicorn_config(app, limits, log_level=args.log_level)).run(sockets=[sock])
    finally:
        sock.close()
        engine.close()
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

    from napari_seem.core.variants import DEFAULT_VARIANT

    demo = sub.add_parser(
        "demo", help="segment a sample image by clicking on it; write labels.zarr + overlay.png"
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--variant", default=DEFAULT_VARIANT, help="model variant")
    demo.add_argument("--checkpoint", default=None, help="weights file (.pt/.safetensors)")
    demo.add_argument("--device", default="auto", help="cpu, cuda (or gpu), mps or auto")
    demo.add_argument("--clicks", type=int, default=8, help="objects to click (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic image")
    demo.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    demo.add_argument(
        "--paint-over",
        action="store_true",
        help="a later object takes the pixels of earlier ones (default: it keeps off them)",
    )
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser(
        "serve",
        help="run the model as an HTTP server (napari / Jupyter connect to it)",
        description="Serve the engine over HTTP. Prints 'napari-seem serve: listening on "
        "http://HOST:PORT' once the model is loaded, followed by ' token=TOKEN' when the "
        "token was generated (not given, no --token-file). Clients send 'Authorization: "
        "Bearer TOKEN' (the scheme in any case: 'bearer' works too).",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface (default 127.0.0.1); a non-loopback one needs --allow-remote",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (e.g. 0.0.0.0); needs an explicit --token or "
        "$NAPARI_SEEM_TOKEN of at least 16 characters. The token travels in clear text: "
        "prefer an SSH tunnel or a TLS proxy",
    )
    serve.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    serve.add_argument(
        "--token",
        default=None,
        help="bearer token clients must send (default: $NAPARI_SEEM_TOKEN, else generated "
        "and printed once); a given token is never printed",
    )
    serve.add_argument("--variant", default=DEFAULT_VARIANT, help="model variant")
    serve.add_argument("--checkpoint", default=None, help="weights file (.pt/.safetensors)")
    serve.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="local directory whose images clients may open (and where jobs may write); "
        "repeatable (default: the current directory). URLs are not supported: mount a "
        "bucket and allow the mount",
    )
    serve.add_argument("--tile", type=int, default=512, help="model tile size (default 512)")
    serve.add_argument("--halo", type=int, default=64, help="tile context pixels (default 64)")
    serve.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    serve.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="folder for disk feature caches (one zarr store per image, level and plane; a "
        "store made for another model or tiling is refused); default: memory only",
    )
    serve.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder where fine_tune jobs write weight files (clients may switch to any file "
        "in it); default: weights/ under --cache-dir, else a new temporary folder",
    )
    serve.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="write the token to PATH (mode 0600) instead of printing a generated one",
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    from napari_seem.remote.limit_flags import add_limit_flags

    add_limit_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    from napari_seem.cli.segment import add_parser as add_segment_parser

    add_segment_parser(sub)

    from napari_seem.cli.train import add_parser as add_train_parser

    add_train_parser(sub)

    from napari_seem.cli.eval import add_parser as add_eval_parser

    add_eval_parser(sub)

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
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc.name)
        if message is None:
            raise
        print(f"napari-seem: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `napari-seem models | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        again = "; run the same command again to resume" if resumable(args) else ""
        print(f"napari-seem: interrupted{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
