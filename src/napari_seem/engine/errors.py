"""Typed errors of the engine: each says what went wrong and what to do about it.

They cross the process boundary as typed error replies (the transport maps the class name
and message), so every message is written for the person who sent the request.
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "EngineError",
    "ImageTooLargeError",
    "InvalidRequestError",
    "JobResultUnavailableError",
    "PromptOutsideImageError",
    "StaleCacheRefusedError",
    "TooManyJobsError",
    "TooManySessionsError",
    "UnknownImageError",
    "UnknownJobError",
    "UnknownSessionError",
]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class UnknownSessionError(EngineError, KeyError):
    """A session id that is not open (never opened, or closed)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownJobError(EngineError, KeyError):
    """A job id the engine never issued."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptOutsideImageError(EngineError, ValueError):
    """A visual prompt that does not lie inside the session's image."""


class InvalidRequestError(EngineError, ValueError):
    """A request the engine cannot serve as given (bad parameters, unsupported kind)."""


class UnknownImageError(EngineError, KeyError):
    """An uploaded-image id the engine does not hold (never uploaded, or deleted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ImageTooLargeError(EngineError, ValueError):
    """An in-memory image over the engine's upload budget."""


class StaleCacheRefusedError(EngineError, RuntimeError):
    """A disk feature cache made for another model, tiling or image: refused, not used."""


class JobResultUnavailableError(EngineError, RuntimeError):
    """A job that has no result (yet): still running, failed, cancelled, or a kind that
    stores none."""


class CapacityError(EngineError, RuntimeError):
    """The engine holds as much of something as its limits allow (HTTP 429): free some
    (close a session, wait for a job) and try again."""


class TooManySessionsError(CapacityError):
    """``max_sessions`` sessions are open already."""


class TooManyJobsError(CapacityError):
    """``max_jobs_kept`` jobs are queued or running already."""
