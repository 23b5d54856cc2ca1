"""The ``napari-seem`` command line: one module per command, shared bits in ``_common``.

:func:`main` parses and runs a command; every subcommand imports what it needs when it runs,
so ``napari-seem --help`` is instant and never imports torch.
"""

from __future__ import annotations

from napari_seem.cli._common import CliError
from napari_seem.cli.main import build_parser, main

__all__ = ["CliError", "build_parser", "main"]
