"""The paths the engine server may read and write: its allowed roots (403 elsewhere).

Roots are local directories only. A URL (``s3://...``) is neither accepted as a root nor
opened: the engine reads local paths, so a URL root could never work. A path a client
sends is checked as text first (no NUL byte, no over-long name: 400 ``InvalidPath``), then
resolved completely (``..`` and symlinks) before it is compared with the roots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_seem.engine.confined import check_links, confine
from napari_seem.remote.routes.errors import ApiError

__all__ = ["MAX_NAME_CHARS", "MAX_PATH_CHARS", "AllowedRoots", "is_url"]

MAX_PATH_CHARS = 4096
"""Longest path a client may send (Linux ``PATH_MAX``)."""
MAX_NAME_CHARS = 255
"""Longest single file or folder name in a path (Linux ``NAME_MAX``)."""


def is_url(text: str) -> bool:
    """Whether ``text`` looks like a URL (``scheme://...``) rather than a local path."""
    return "://" in text


def _invalid(path: str, why: str) -> ApiError:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return ApiError(400, "InvalidPath", f"{shown!r} is not a usable path: {why}")


def _check_text(path: str) -> None:
    if "\x00" in path:
        raise _invalid(path, "it contains a NUL byte; send the path as plain text")
    if len(path) > MAX_PATH_CHARS:
        raise _invalid(path, f"it has {len(path)} characters; at most {MAX_PATH_CHARS}")
    longest = max((len(part) for part in path.split(os.sep)), default=0)
    if longest > MAX_NAME_CHARS:
        raise _invalid(path, f"one of its names has {longest} characters; at most {MAX_NAME_CHARS}")


def _resolve(path: str) -> Path:
    _check_text(path)
    try:
        return Path(path).expanduser().resolve()  # symlinks and '..' cannot escape a root
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. a symlink loop
        raise _invalid(path, f"it cannot be resolved ({type(exc).__name__}: {exc})") from None


class AllowedRoots:
    """Where the server may read images and weights and write outputs.

    Args:
        roots: local directories (resolved once, symlinks included).

    Raises:
        ValueError: a root is a URL (not supported: the server opens local paths only).
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        urls = [str(r) for r in roots if is_url(str(r))]
        if urls:
            raise ValueError(
                f"URL roots are not supported ({', '.join(urls)}): the server opens local "
                "paths only; mount the bucket (e.g. with s3fs or rclone mount) and allow "
                "the mounted directory"
            )
        self.dirs = [Path(r).expanduser().resolve() for r in roots]

    def check(self, path: str, *, what: str = "image") -> str:
        """The path to open or write (resolved).

        Raises:
            ApiError: 403 ``PathNotAllowed`` when ``path`` is outside every root (a URL
                always is), 400 ``InvalidPath`` for a path that is not usable as text.
        """
        allowed = ", ".join(str(d) for d in self.dirs) or "none"
        if is_url(path):
            raise ApiError(
                403,
                "PathNotAllowed",
                f"{path[:200]!r} is a URL: the server opens local paths only (allowed roots: "
                f"{allowed}); copy or mount the {what} under one of them",
            )
        resolved = _resolve(path)
        if any(resolved == d or resolved.is_relative_to(d) for d in self.dirs):
            return str(resolved)
        raise ApiError(
            403,
            "PathNotAllowed",
            f"{path!r} is outside the server's allowed roots ({allowed}): put the {what} "
            "under one of them or restart the server with --allow-root DIR",
        )

    def check_output(self, path: str, *, what: str = "output path") -> str:
        """A path a job writes (resolved): inside a root and never a root itself.

        A ``segment`` job writes ``OUT`` and its class table ``OUT.classes.csv`` beside it,
        in ``OUT``'s parent folder; with ``out`` equal to a root that table would land
        outside the roots (and ``overwrite`` would replace the root), so a root is refused.

        An existing output (a run to resume, or one ``overwrite`` replaces) is written
        through: every symlink inside it, and a class table that is a symlink, must stay
        inside the roots too.

        Raises:
            ApiError: 403 ``PathNotAllowed`` outside every root or for a root itself, 400
                ``InvalidPath``.
            PathEscapeError: a symlink inside the existing output, or its class table,
                leads outside the roots (403).
        """
        resolved = self.check(path, what=what)
        if Path(resolved) in self.dirs:
            raise ApiError(
                403,
                "PathNotAllowed",
                f"{path!r} is one of the server's allowed roots itself: a job writes its "
                f"output and a class table beside it (that is, in the root's parent, outside "
                f"the roots); give a new path inside the root, e.g. "
                f"{str(Path(resolved) / 'labels.zarr')!r}",
            )
        target = Path(resolved)
        if target.is_dir():
            check_links(target, self.dirs)  # a resumed run is written through its links
        table = target.with_name(target.stem + ".classes.csv")
        if table.is_symlink():
            confine(table, self.dirs, what="the class table")
        return resolved

    def check_weights(self, path: str, work_dir: Path) -> str:
        """A weight file the server may read: inside ``work_dir`` (the engine's, where
        ``fine_tune`` jobs write) or the allowed roots.

        Raises:
            ApiError: 403 ``PathNotAllowed`` elsewhere, 400 ``InvalidPath``.
        """
        if is_url(path):
            return self.check(path, what="weight file")
        resolved = _resolve(path)
        if resolved.is_relative_to(work_dir.resolve()):
            return str(resolved)
        return self.check(path, what="weight file")
