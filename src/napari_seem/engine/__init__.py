"""Tier T2: the engine. Sessions over large images, tiled prediction, background jobs.

No transport code here: the server (T3) maps one request to one :class:`Engine` method
and every :class:`EngineError` to a typed error reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_seem.core.labels import LabelsCrop
from napari_seem.engine import errors
from napari_seem.engine.errors import *  # noqa: F403 (every engine error: errors.__all__)
from napari_seem.engine.jobs import (
    JobCancelled,
    JobEvent,
    JobKind,
    JobPlan,
    JobRecord,
    JobState,
    JobStatus,
)

if TYPE_CHECKING:
    from napari_seem.engine.facade import Engine
    from napari_seem.engine.sessions import ImageInfo, Session, SessionInfo

_SESSION_NAMES = ("ImageInfo", "Session", "SessionInfo")


def __getattr__(name: str) -> Any:
    # the engine needs torch; the client (napari side) must not pay for it
    if name == "Engine":
        from napari_seem.engine.facade import Engine

        return Engine
    if name in _SESSION_NAMES:
        from napari_seem.engine import sessions

        return getattr(sessions, name)
    raise AttributeError(f"module 'napari_seem.engine' has no attribute {name!r}")


__all__ = [
    *errors.__all__,
    "Engine",
    "ImageInfo",
    "JobCancelled",
    "JobEvent",
    "JobKind",
    "JobPlan",
    "JobRecord",
    "JobState",
    "JobStatus",
    "LabelsCrop",
    "Session",
    "SessionInfo",
]
