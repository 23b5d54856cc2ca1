"""``napari-seem serve`` flags for :class:`~napari_seem.engine.limits.ServerLimits` (stdlib).

One flag per field, named after it (``max_mask_pixels`` -> ``--max-mask-pixels``), with the
field's documented meaning and default as its help, so a field added to ``ServerLimits`` is a
flag at once.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from typing import Any

from napari_seem.engine.limits import ServerLimits

__all__ = ["add_limit_flags", "field_docs", "flag_name", "limits_from_args"]

_FIELD_LINE = re.compile(r"^(\s+)([a-z_][a-z0-9_]*): (.*)$")


def field_docs() -> dict[str, str]:
    """Each field's description, from the ``Attributes`` of the ``ServerLimits`` docstring."""
    docs: dict[str, str] = {}
    name, indent = None, 0
    for line in (ServerLimits.__doc__ or "").splitlines():
        match = _FIELD_LINE.match(line)
        if match and (name is None or len(match.group(1)) <= indent):
            name, indent = match.group(2), len(match.group(1))
            docs[name] = match.group(3).strip()
        elif name is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            docs[name] += " " + line.strip()
        else:
            name = None
    return docs


def flag_name(field: str) -> str:
    """The command-line flag of a ``ServerLimits`` field."""
    return "--" + field.replace("_", "-")


def _positive(kind: type) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            least = "at least 1" if kind is int else "positive"
            raise argparse.ArgumentTypeError(f"{text!r} must be {least}")
        return value

    return parse


def _shown(name: str, value: int | float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        fits = isinstance(value, int) and value >= size and value % size == 0
        if "bytes" in name and fits:
            return f"{value} = {value // size} {unit}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``ServerLimits`` field to ``parser`` (default: the field's)."""
    docs = field_docs()
    group = parser.add_argument_group(
        "limits", "what one client can make the server allocate, hold or run (ServerLimits)"
    )
    defaults = ServerLimits()
    for f in fields(ServerLimits):
        default = getattr(defaults, f.name)
        kind = float if isinstance(default, float) else int
        text = docs.get(f.name, f.name.replace("_", " ")).replace("``", "").rstrip(".")
        text = text.replace("%", "%%")
        group.add_argument(
            flag_name(f.name),
            dest=f"limit_{f.name}",
            type=_positive(kind),
            default=None,
            metavar="S" if kind is float else "N",
            help=f"{text} (default {_shown(f.name, default)})",
        )


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """The ``ServerLimits`` of parsed ``args`` (a flag not given keeps the field's default)."""
    given = {
        f.name: getattr(args, f"limit_{f.name}")
        for f in fields(ServerLimits)
        if getattr(args, f"limit_{f.name}", None) is not None
    }
    return ServerLimits(**given)
