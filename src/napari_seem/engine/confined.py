"""Open zarr stores so that no read leaves the allowed roots, symlinks inside them included.

Checking only the top path of a store lets a store inside a root whose chunk folder (or any
key) is a symlink to somewhere else be read. :class:`ConfinedStore` is a read-only zarr
``LocalStore`` that resolves the real path of every key it reads or tests and refuses one
that lies outside its roots (:class:`PathEscapeError`); :func:`open_confined` opens a zarr
or OME-Zarr directory through it, ready for :func:`napari_seem.core.io.open_image`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from zarr.storage import LocalStore

from napari_seem.engine.errors import EngineError

__all__ = ["ConfinedStore", "PathEscapeError", "check_links", "confine", "open_confined"]


class PathEscapeError(EngineError, PermissionError):
    """A store key (or the store) whose real path lies outside the allowed roots (HTTP 403)."""


def confine(path: Path, roots: Sequence[Path], *, what: str) -> None:
    """Refuse ``path`` when its real path (symlinks resolved) is outside every one of the
    already resolved ``roots``.

    Raises:
        PathEscapeError: it is; the message names the path, where it leads and the roots.
    """
    real = path.resolve()
    if not any(real == r or real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        raise PathEscapeError(
            f"{what} {str(path)!r} resolves to {str(real)!r}, outside the allowed roots "
            f"({allowed}): a store may not link outside them; copy the data under a root"
        )


class ConfinedStore(LocalStore):
    """A read-only local zarr store whose every key must resolve inside ``roots``.

    Args:
        root: the store's directory.
        roots: directories every key's real path (symlinks resolved) must lie in.
    """

    def __init__(self, root: Path | str, *, roots: Sequence[Path | str]) -> None:
        super().__init__(Path(root), read_only=True)
        self.roots = tuple(Path(r).resolve() for r in roots)
        self.confine(Path(root), what="the store")

    def confine(self, path: Path, *, what: str) -> None:
        """Refuse ``path`` when its real path is outside every root (:func:`confine`)."""
        confine(path, self.roots, what=what)

    def _key(self, key: str) -> None:
        self.confine(Path(self.root) / key, what=f"the store key {key!r} at")

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        """A key's bytes, once its real path is inside the roots."""
        self._key(key)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]
    ) -> list[Any]:
        """Parts of keys' bytes, once every key's real path is inside the roots."""
        ranges = list(key_ranges)
        for key, _ in ranges:
            self._key(key)
        return await super().get_partial_values(prototype, ranges)

    async def exists(self, key: str) -> bool:
        """Whether the key exists (refused when it links outside the roots)."""
        self._key(key)
        return await super().exists(key)


def check_links(path: Path | str, roots: Sequence[Path | str]) -> None:
    """Refuse a store directory holding any symlink whose real path is outside ``roots``.

    Walks the directory once without following links (only symlinks can point outside: a
    regular file or folder under a folder inside a root is inside it), so opening the store
    afterwards by its path reads only what lies inside the roots.

    Raises:
        PathEscapeError: the directory or one of its symlinks resolves outside.
    """
    import os

    real_roots = tuple(Path(r).resolve() for r in roots)
    top = Path(path)
    confine(top, real_roots, what="the store")
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in (*dirs, *files):
            entry = Path(folder) / name
            if entry.is_symlink():
                confine(entry, real_roots, what="the store entry")


def open_confined(path: Path | str, roots: Sequence[Path | str]) -> Any:
    """The zarr array or group at ``path``, every read confined to ``roots``.

    Raises:
        PathEscapeError: the store, or a key read while opening it, resolves outside.
        FileNotFoundError: no zarr store at ``path``.
    """
    import zarr

    store = ConfinedStore(path, roots=roots)
    try:
        return zarr.open(store=store, mode="r")
    except PathEscapeError:
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, PathEscapeError):
            raise cause from None
        raise
