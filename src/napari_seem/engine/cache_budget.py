"""One memory bound over the feature caches of every session of an engine.

Each session's :class:`~napari_seem.predict.feature_cache.FeatureCache` keeps its own
least-recently-used budget; :class:`CacheBudget` adds the bound over all of them: after a
session caches a tile, the in-memory features of the least recently used other sessions
are dropped (their disk layers are kept) until the total fits. It uses the caches' public
``memory_bytes`` and ``clear_memory`` only.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = ["CacheBudget", "MemoryCache"]


class MemoryCache(Protocol):
    """What the budget needs of a feature cache."""

    @property
    def memory_bytes(self) -> int: ...

    def clear_memory(self) -> None: ...


class CacheBudget:
    """Least-recently-used trimming of session caches over ``total_bytes``.

    Args:
        total_bytes: most bytes of features held in memory by all sessions together.
        caches: called for the current ``{session_id: cache}`` of the open sessions.
    """

    def __init__(
        self, total_bytes: int, caches: Callable[[], Iterable[tuple[str, MemoryCache]]]
    ) -> None:
        self.total_bytes = int(total_bytes)
        self._caches = caches
        self._clock = itertools.count()
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def touch(self, session_id: str) -> None:
        """Mark the session as used now."""
        with self._lock:
            self._used[session_id] = next(self._clock)

    def forget(self, session_id: str) -> None:
        """The session closed."""
        with self._lock:
            self._used.pop(session_id, None)

    def trim(self, keep: str) -> int:
        """Drop the in-memory features of least recently used sessions other than ``keep``
        until the total fits; returns how many caches were cleared."""
        caches = dict(self._caches())
        total = sum(c.memory_bytes for c in caches.values())
        if total <= self.total_bytes:
            return 0
        with self._lock:
            order = sorted((s for s in caches if s != keep), key=lambda s: self._used.get(s, -1))
        cleared = 0
        for session_id in order:
            if total <= self.total_bytes:
                break
            cache = caches[session_id]
            size = cache.memory_bytes
            if size:
                cache.clear_memory()
                total -= size
                cleared += 1
        return cleared
