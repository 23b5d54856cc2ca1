"""Tier T2: the engine. Sessions over large images, tiled prediction, background jobs.

No transport code here: the server (T3) maps one request to one :class:`Engine` method
and every :class:`EngineError` to a typed error reply.
"""

from napari_seem.engine.core import Engine, JobStatus, SessionInfo
from napari_seem.engine.errors import (
    EngineError,
    InvalidRequestError,
    PromptOutsideImageError,
    UnknownJobError,
    UnknownSessionError,
)
from napari_seem.engine.jobs import JobEvent, JobState

__all__ = [
    "Engine",
    "EngineError",
    "InvalidRequestError",
    "JobEvent",
    "JobState",
    "JobStatus",
    "PromptOutsideImageError",
    "SessionInfo",
    "UnknownJobError",
    "UnknownSessionError",
]
