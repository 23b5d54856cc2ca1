"""Bring results of worker threads back to the Qt GUI thread.

``MainThread.later(fn)`` may be called from any thread; ``fn`` then runs on the GUI thread
(a queued Qt signal). ``when_done(future, callback)`` calls ``callback(future)`` on the GUI
thread once the future finishes. Nothing here ever waits, so the event loop keeps turning
while the model works.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from qtpy.QtCore import QObject, Signal

__all__ = ["MainThread"]

T = TypeVar("T")


class MainThread(QObject):
    """Runs callables on the thread that created it (create it on the GUI thread)."""

    _call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._call.connect(self._run)

    def _run(self, fn: Callable[[], Any]) -> None:
        fn()

    def later(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the GUI thread soon (thread-safe)."""
        self._call.emit(fn)

    def when_done(self, future: Future[T], callback: Callable[[Future[T]], Any]) -> None:
        """Call ``callback(future)`` on the GUI thread when ``future`` finishes."""
        future.add_done_callback(lambda f: self.later(lambda: callback(f)))
