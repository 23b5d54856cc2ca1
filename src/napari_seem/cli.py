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
