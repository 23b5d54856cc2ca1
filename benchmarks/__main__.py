"""``python -m benchmarks <name> [options]``: one subcommand per benchmark."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks import all as all_benchmarks
from benchmarks import batch_throughput, engine_latency, everything_throughput, model_speed

# name -> module with add_arguments(parser) and main(args); the first docstring line is the help
BENCHMARKS = {
    "model-speed": model_speed,
    "engine": engine_latency,
    "batch": batch_throughput,
    "everything": everything_throughput,
    "all": all_benchmarks,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run a napari-seem benchmark."
    )
    commands = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module in BENCHMARKS.items():
        summary = (module.__doc__ or name).strip().splitlines()[0]
        sub = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.main(args))


if __name__ == "__main__":
    sys.exit(main())
