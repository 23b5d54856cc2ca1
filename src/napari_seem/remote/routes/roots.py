"""The paths the engine server may read and write: its allowed roots (403 elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from napari_seem.remote.routes.errors import ApiError

__all__ = ["AllowedRoots"]


def _is_url(text: str) -> bool:
    return "://" in text


class AllowedRoots:
    """Where the server may read images and weights and write outputs.

    Args:
        roots: local directories (resolved once, symlinks included) and URL prefixes such
            as ``s3://bucket/data``.
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        self.dirs = [Path(r).expanduser().resolve() for r in roots if not _is_url(str(r))]
        self.urls = [str(r).rstrip("/") + "/" for r in roots if _is_url(str(r))]

    def check(self, path: str, *, what: str = "image") -> str:
        """The path to open or write (resolved).

        Raises:
            ApiError: 403 ``PathNotAllowed`` when ``path`` is outside every root.
        """
        allowed = ", ".join([*(str(d) for d in self.dirs), *self.urls]) or "none"
        if _is_url(path):
            if any(path.startswith(u) for u in self.urls):
                return path
        else:
            resolved = Path(path).expanduser().resolve()  # symlinks cannot escape a root
            if any(resolved == d or resolved.is_relative_to(d) for d in self.dirs):
                return str(resolved)
        raise ApiError(
            403,
            "PathNotAllowed",
            f"{path!r} is outside the server's allowed roots ({allowed}): put the {what} "
            "under one of them or restart the server with --allow-root DIR",
        )

    def check_weights(self, path: str, work_dir: Path) -> str:
        """A weight file the server may read: inside ``work_dir`` (the engine's, where
        ``fine_tune`` jobs write) or the allowed roots.

        Raises:
            ApiError: 403 ``PathNotAllowed`` elsewhere.
        """
        resolved = Path(path).expanduser().resolve()
        if resolved.is_relative_to(work_dir.resolve()):
            return str(resolved)
        return self.check(path, what="weight file")
