"""The ``model`` of a batch run: what each worker builds, and what the run's signature records.

``segment_image(model=...)`` takes a variant name, a :class:`~napari_seem.batch.tasks.ModelSpec`,
a picklable zero-argument predictor factory, a built ``SeemPredictor`` (in-process runs only) or
a :class:`SharedPredictor`: a built predictor shared with an engine, with the engine's feature
cache and model lock. :func:`model_parts` turns any of them into the pieces the runner needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from napari_seem.batch.store import BatchConfigError
from napari_seem.batch.tasks import ModelSpec

if TYPE_CHECKING:
    from napari_seem.core.tiling import Tile
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = ["ModelLike", "ModelParts", "SharedPredictor", "model_parts"]

#: What ``segment_image(model=...)`` accepts (None: the default variant, random weights).
ModelLike = Any


@dataclass(frozen=True)
class SharedPredictor:
    """A built predictor that the caller shares with others (the engine's); in-process only.

    Attributes:
        predictor: the ``SeemPredictor`` (or anything with its calls).
        encode: ``encode(tile) -> EncodedImage`` returns cached features of a tile of
            ``TileGrid.for_model`` on the segmented level's pixels (the engine's feature cache,
            read as :meth:`~napari_seem.core.io.ImageSource.read_level_rgb` reads them); None
            encodes every tile.
        lock: held around each tile's model use (``encode`` and decoding), e.g. the engine's
            ``model_lock``, so interactive requests never see two tiles at once.
    """

    predictor: Any
    encode: Callable[[Tile], EncodedImage] | None = None
    lock: AbstractContextManager[Any] | None = None


@dataclass(frozen=True)
class ModelParts:
    """The runner's view of a ``model`` argument.

    Attributes:
        identity: what the labels depend on (enters the run signature).
        local: builds (or returns) the predictor for in-process runs.
        worker: picklable spec or factory for Dask workers; None for a built predictor.
        encode: the tile feature hook of a :class:`SharedPredictor`.
        lock: the model lock of a :class:`SharedPredictor`.
    """

    identity: dict[str, Any]
    local: Callable[[], SeemPredictor]
    worker: ModelSpec | Callable[[], SeemPredictor] | None
    encode: Callable[[Tile], EncodedImage] | None = None
    lock: AbstractContextManager[Any] | None = None


def model_parts(model: ModelLike, scheduler: Any, workers: int | None) -> ModelParts:
    """Split a ``model`` argument (module docstring) for a run on ``scheduler``.

    Raises:
        BatchConfigError: a built predictor with a Dask scheduler, or not a model at all.
    """
    if scheduler == "local" and isinstance(model, ModelSpec) and model.threads is None:
        # one machine's cores shared by the workers: oversubscribed torch threads crawl
        model = replace(model, threads=max(1, (os.cpu_count() or 1) // (workers or 2)))
    if model is None or isinstance(model, str):
        model = ModelSpec(model) if model else ModelSpec()
    if isinstance(model, ModelSpec):
        return ModelParts(model.identity(), model.build, model)
    if isinstance(model, SharedPredictor):
        parts = _built(model.predictor, scheduler)
        return replace(parts, encode=model.encode, lock=model.lock)
    if callable(model) and not hasattr(model, "segment_everything"):
        name = getattr(model, "__qualname__", type(model).__name__)
        return ModelParts({"factory": name}, model, model)
    if hasattr(model, "segment_everything"):
        return _built(model, scheduler)
    raise BatchConfigError(
        f"model={model!r}: pass a variant name, a ModelSpec, a SeemPredictor or a factory"
    )


def _built(predictor: Any, scheduler: Any) -> ModelParts:
    """An already built predictor: usable in this process only."""
    if scheduler is not None:
        raise BatchConfigError(
            "a built SeemPredictor cannot travel to Dask workers: pass a ModelSpec or a "
            "picklable factory as model= with a scheduler"
        )
    inner = predictor.model
    report = getattr(inner, "load_report", None)
    identity = {
        "variant": getattr(inner, "name", "?"),
        "checkpoint": "random" if report is None else str(getattr(report, "source", "?")),
        "short_side": getattr(predictor, "short_side", None),
    }
    return ModelParts(identity, lambda: predictor, None)
