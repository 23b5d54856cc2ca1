"""What every ``napari-seem`` subcommand shares: the user-facing error and notes."""

from __future__ import annotations

__all__ = ["RANDOM_WEIGHTS_NOTE", "CliError"]


class CliError(Exception):
    """A user-facing error: printed as ``napari-seem: error: ...`` with exit code 2."""


RANDOM_WEIGHTS_NOTE = (
    "NOTE: this run uses {variant!r} with RANDOM weights, so the masks exercise the whole "
    "pipeline but say nothing about segmentation quality. For real masks use the default "
    "--variant seem-lite (trained, shipped in the package), or --variant seem-focalt-v1 "
    "--checkpoint PATH (or `napari-seem models download seem-focalt-v1`)."
)
