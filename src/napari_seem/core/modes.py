"""The modes of "segment everything", shared by every layer that exposes it.

:meth:`napari_seem.predict.predictor.SeemPredictor.segment_everything` takes them:

- ``"auto"`` (the default): ``"points"`` for models that decode visual prompts in windows
  (a ``prompt_window``: seem-lite, the embedded default model), else ``"panoptic"``;
- ``"panoptic"``: non-overlapping instances from the object queries;
- ``"instance"``: the top-k detections of the object queries (may overlap);
- ``"semantic"``: one object per class present;
- ``"points"``: prompt a grid of points and keep the confident, distinct answers
  (:mod:`napari_seem.predict.everything`).

This module imports no torch (the batch CLI, the engine's job checks, the scripting API
and the widgets validate modes before any model exists).
"""

from __future__ import annotations

from typing import Any, Literal, cast

__all__ = [
    "DEFAULT_EVERYTHING_MODE",
    "EVERYTHING_MODES",
    "EverythingMode",
    "check_everything_mode",
    "everything_mode_error",
    "resolve_everything_mode",
]

EverythingMode = Literal["auto", "panoptic", "instance", "semantic", "points"]
#: Every valid mode, the default first.
EVERYTHING_MODES: tuple[str, ...] = ("auto", "panoptic", "instance", "semantic", "points")
DEFAULT_EVERYTHING_MODE: EverythingMode = "auto"


def everything_mode_error(mode: Any) -> str:
    """The message refusing ``mode``: it names every valid mode."""
    valid = ", ".join(repr(m) for m in EVERYTHING_MODES)
    return f"mode must be one of {valid}; got {mode!r}"


def check_everything_mode(mode: Any) -> EverythingMode:
    """``mode`` if valid, else ``ValueError`` with :func:`everything_mode_error`'s message."""
    if not isinstance(mode, str) or mode not in EVERYTHING_MODES:
        raise ValueError(everything_mode_error(mode))
    return cast(EverythingMode, mode)


def resolve_everything_mode(mode: str, predictor: Any) -> str:
    """The concrete mode ``predictor`` runs for ``mode``: ``"auto"`` becomes ``"points"``
    for a model with a ``prompt_window``, else ``"panoptic"`` (the rule of
    ``SeemPredictor.segment_everything``); any other mode is returned unchanged."""
    if mode != "auto":
        return mode
    model = getattr(predictor, "model", None)
    return "points" if getattr(model, "prompt_window", None) else "panoptic"
