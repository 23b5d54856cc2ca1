"""Scripting API: ``segment``, ``segment_everything`` and ``fine_tune`` in one call each.

>>> import napari_seem
>>> result = napari_seem.segment(image, points=[(120, 80)])  # doctest: +SKIP
>>> labels = result.to_labels()  # doctest: +SKIP

Coordinates are level-0 ``(row, col)`` pixels of the image, origin top-left, pixel centres at
integers (as everywhere in napari-seem). Images may be numpy, zarr, dask arrays or paths of
zarr / OME-Zarr / TIFF images (anything :func:`napari_seem.core.io.open_image` opens); a stack
needs ``plane=(z,)``, a multi-band image ``bands=(r, g, b)`` and channels last.

Both functions run on the same engine as napari: an in-process
:class:`~napari_seem.engine.Engine` by default (built once per variant and kept, see
:func:`clear_model_cache`), or the model process behind a
:class:`~napari_seem.remote.client.SeemClient` when one is passed as ``model``. The model
side is :mod:`napari_seem.app` (one backend protocol for the API, napari and Jupyter).

This module imports no torch at import time: the in-process engine is built on first use.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from napari_seem.app.arguments import (
    build_object,
    new_object_id,
    object_list,
    texts_of,
    vocabulary_of,
)
from napari_seem.app.backend import ModelBackend
from napari_seem.app.images import Backend, ImageHandle, ProgressCallback, overview_rgb
from napari_seem.app.models import (
    VARIANT_ENV,
    cached_backend,
    clear_model_cache,
    default_variant,
)
from napari_seem.core.modes import EVERYTHING_MODES, EverythingMode, everything_mode_error
from napari_seem.core.progress import Cancelled  # the one cancelled exception
from napari_seem.core.prompts import ObjectPrompt, PromptError, ReferringExample
from napari_seem.core.results import ObjectMask, SegmentationResult

__all__ = [
    "VARIANT_ENV",
    "Backend",
    "Cancelled",
    "ImageHandle",
    "ProgressCallback",
    "build_object",
    "clear_model_cache",
    "default_variant",
    "fine_tune",
    "get_backend",
    "new_object_id",
    "overview_rgb",
    "segment",
    "segment_everything",
]


# ----------------------------------------------------------------------------- models


def get_backend(model: Any = None, *, device: str = "auto") -> Backend:
    """The engine behind ``model``.

    Args:
        model: ``None`` (the default variant, see :func:`default_variant`), a variant name
            (``"seem-focalt-v1"``; official variants need their weights downloaded with
            ``napari-seem models download NAME``), a checkpoint path (its variant is
            recognised from the keys), a :class:`~napari_seem.predict.predictor.SeemPredictor`, an
            :class:`~napari_seem.engine.Engine`, a
            :class:`~napari_seem.remote.client.SeemClient`, or a :class:`Backend`.
            Engines built from ``None``, names and paths are cached (see
            :func:`clear_model_cache`); objects you pass are used as they are.
        device: torch device for engines built here (``"auto"`` picks CUDA / MPS / CPU).
    """
    if isinstance(model, Backend):
        return model
    if model is None or isinstance(model, str | os.PathLike):
        name = default_variant() if model is None else os.fspath(model)
        return cached_backend(name, device)
    from napari_seem.remote.client import SeemClient  # torch-free

    if isinstance(model, SeemClient):
        return Backend(client=model)
    if "torch" in sys.modules:  # an Engine or a SeemPredictor exists only once torch is loaded
        from napari_seem.engine import Engine
        from napari_seem.predict.predictor import SeemPredictor

        if isinstance(model, Engine):
            return Backend(engine=model)
        if isinstance(model, SeemPredictor):
            return Backend(engine=Engine(model))
    if isinstance(model, ModelBackend):
        return Backend(model=model)
    raise TypeError(
        f"model must be None, a variant name, a checkpoint path, a SeemPredictor, an Engine "
        f"or a SeemClient; got {type(model).__name__}"
    )


# ----------------------------------------------------------------------------- fine-tuning


def fine_tune(
    images: Any,
    labels: Any,
    class_names: str | Sequence[str] | dict[int, str] = "object",
    *,
    steps: int = 100,
    base: str = "seem-lite",
    checkpoint: str | Path | None = None,
    out: str | Path = "seem-finetuned.safetensors",
    progress: bool = True,
    callback: Callable[[int, float], bool | None] | None = None,
    **options: Any,
) -> Path:
    """Fine-tune a model on your labelled images; returns the written weight file.

    A thin wrapper of :func:`napari_seem.train.fine_tune` (see it for every option).

    Args:
        images: one image ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB), any numeric dtype; or a
            list of such images, or a ``(Z, H, W)`` stack.
        labels: ``(H, W)`` integer instance labels per image (0 = unlabelled, each other
            value one object), e.g. a napari Labels layer's data or ``SeemApp.labels``.
            Unlabelled pixels are not taught as background when ``tasks=("spatial",)``.
        class_names: one name for every object, one per id (``names[i]`` for id ``i + 1``)
            or ``{id: name}``.
        steps: optimizer steps (a CPU runs a few per second for seem-lite).
        base: the variant to start from (``seem-lite``: its shipped weights).
        checkpoint: weights to start from instead (an earlier fine-tune for seem-lite; the
            official file for official variants).
        out: the ``.safetensors`` file to write (the trained parts, a few MB).
        progress: show a progress bar.
        callback: ``callback(step, loss)`` after every step; return True to stop.
        **options: :class:`~napari_seem.train.loop.TrainConfig` fields, e.g.
            ``tasks=("spatial",)`` (only some objects labelled: train clicks only),
            ``crops_per_image=8``, ``num_threads=4``.

    Use the result with ``napari_seem.segment(..., model=path)``, a predictor from
    :func:`napari_seem.train.load_finetuned`, or switch a running app with
    ``app.use_weights(path)``.
    """
    from napari_seem.train.api import fine_tune as run

    return run(
        images,
        labels,
        class_names,
        base=base,
        checkpoint=checkpoint,
        out=out,
        progress=progress,
        callback=callback,
        steps=steps,
        **options,
    )


# ----------------------------------------------------------------------------- public API


def segment(
    image: Any,
    *,
    points: npt.ArrayLike | None = None,
    point_labels: npt.ArrayLike | None = None,
    boxes: npt.ArrayLike | None = None,
    scribbles: Sequence[npt.ArrayLike] | None = None,
    scribble_labels: npt.ArrayLike | None = None,
    masks: npt.ArrayLike | Sequence[npt.ArrayLike] | None = None,
    text: str | Sequence[str] | None = None,
    example: ReferringExample | None = None,
    objects: Sequence[ObjectPrompt] | ObjectPrompt | None = None,
    model: Any = None,
    plane: Sequence[int] = (),
    bands: Sequence[int] | None = None,
    grounding_threshold: float = 0.05,
    crs: str | None = None,
) -> SegmentationResult:
    """Segment objects on one image plane from prompts.

    Args:
        image: numpy / zarr / dask array (``(H, W)``, ``(H, W, C)`` or a stack) or a path.
        points: ``(N, 2)`` clicks, level-0 ``(row, col)``; with ``point_labels`` ``(N,)``
            of 1 (positive, default) or 0 (negative).
        boxes: ``(N, 4)`` boxes ``(row0, col0, row1, col1)`` (pixel-centre corners).
        scribbles: a list of ``(K, 2)`` polylines (brush width 3), with optional
            ``scribble_labels`` ``(len,)`` of 1 / 0.
        masks: an ``(H, W)`` bool mask, or a list of them, marking the object.
        text: with visual prompts, a phrase composed with them ("nucleus" + a click picks
            the nucleus under the click); alone, a phrase or list of phrases to ground:
            every instance of each comes back.
        example: a :class:`ReferringExample` (prompts on another image, with its pixels):
            the matching object on this image is returned.
        objects: explicit :class:`ObjectPrompt` s (one mask each), for full control.
        model: see :func:`get_backend` (default: the cached default model).
        plane: the plane of a stack, ``(z,)`` or ``(t, z)``.
        bands: three channel indices used as R, G, B of a multi-band image.
        grounding_threshold: text grounding keeps further instances whose share of the
            phrase's score is at least this.
        crs: ``points`` (``(x, y)``) and ``boxes`` (``(xmin, ymin, xmax, ymax)``) are map
            coordinates in this CRS (e.g. ``"EPSG:4326"``: longitude, latitude), placed on a
            georeferenced image (GeoTIFF / COG; the ``geo`` extra).

    All visual keyword prompts describe ONE object, except several ``boxes`` given alone
    (one object per box). Results come in the order objects, phrases, example.

    Returns:
        A :class:`SegmentationResult` in level-0 pixels of the plane (``to_labels()``).

    Raises:
        PromptError: a malformed prompt, a prompt outside the image, or no prompt at all.
    """
    backend = get_backend(model)
    handle = backend.open(image, bands=bands, plane=plane)
    try:
        if crs is not None:
            points, boxes = _map_prompts(handle.source, points, boxes, crs)
        shape = handle.image_shape
        visual_given = any(v is not None for v in (points, boxes, scribbles, masks))
        composed = texts_of(text) if visual_given else []
        if len(composed) > 1:
            raise PromptError(
                "one phrase composes with visual prompts (they describe one object); "
                f"got {len(composed)}: pass a single string"
            )
        kw_objects = build_object(
            shape,
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            scribbles=scribbles,
            scribble_labels=scribble_labels,
            masks=masks,
            text=composed[0] if composed else None,
        )
        given = [] if objects is None else object_list(objects, shape)
        grounding = [] if visual_given else texts_of(text)
        if example is not None and not isinstance(example, ReferringExample):
            raise PromptError(
                f"example must be a ReferringExample; got {type(example).__name__}: build one "
                "with ReferringExample.from_image(other_image, Points.click(row, col))"
            )
        if not (kw_objects or given or grounding or example is not None):
            raise PromptError(
                "no prompt given: pass points=, boxes=, scribbles=, masks=, text= or example= "
                "(or use segment_everything(image, vocabulary=[...]) for the whole image)"
            )
        found: list[ObjectMask] = [
            backend.predict(handle, obj, object_id=None) for obj in (*kw_objects, *given)
        ]
        if grounding:
            found += backend.ground(handle, grounding, threshold=grounding_threshold)
        if example is not None:
            found += backend.refer(handle, example)
        from napari_seem.core.geo_nodata import drop_nodata

        found = drop_nodata(found, handle.source, handle.plane)  # nodata is never an object
        return SegmentationResult(shape, tuple(found), plane=handle.plane)
    finally:
        backend.close(handle)


def _map_prompts(source: Any, points: Any, boxes: Any, crs: str) -> tuple[Any, Any]:
    """``points`` / ``boxes`` in map coordinates -> level-0 pixels (see ``segment(crs=)``)."""
    from napari_seem.core.geo_meta import GeoExtraMissing
    from napari_seem.core.geo_prompts import prompts_to_pixels

    try:
        return prompts_to_pixels(source, points, boxes, crs)
    except (ValueError, GeoExtraMissing) as exc:
        raise PromptError(str(exc)) from None


def segment_everything(
    image: Any,
    *,
    vocabulary: Sequence[str] | str,
    mode: EverythingMode = "auto",
    model: Any = None,
    plane: Sequence[int] = (),
    bands: Sequence[int] | None = None,
    object_mask_threshold: float = 0.4,
    overlap_threshold: float = 0.8,
    min_area: int = 1,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> SegmentationResult:
    """Every object of the vocabulary's classes on one image plane (generic segmentation).

    Args:
        image: as in :func:`segment`.
        vocabulary: class names (open vocabulary), a list or a comma-separated string.
        mode: ``"auto"`` (the default: ``"points"`` for models that decode prompts in
            windows, such as the embedded seem-lite, else ``"panoptic"``), ``"panoptic"``
            (non-overlapping instances), ``"instance"`` (detections; where they overlap
            the higher score wins), ``"semantic"`` (one object per class and tile, merged
            across tile seams) or ``"points"`` (prompt a grid of points and keep the
            confident, distinct answers, see :mod:`napari_seem.predict.everything`).
        object_mask_threshold, overlap_threshold, min_area: see
            :meth:`napari_seem.predict.predictor.SeemPredictor.segment_everything`.
        progress: called as ``progress(done_tiles, total_tiles)``.
        cancel: set it (from another thread, or from ``progress``) to stop before the
            next tile.

    It runs as the engine's ``"segment"`` job, in process or in the model server behind a
    :class:`~napari_seem.remote.client.SeemClient`: tiles with a halo, seam-aware merging
    (an object crossing a tile border is one object), level-0 crops.

    Returns:
        A :class:`SegmentationResult` with class names; ``class_table()`` lists them.

    Raises:
        PromptError: an empty or repeated vocabulary, or a bad mode.
        Cancelled: ``cancel`` was set.
    """
    names = vocabulary_of(vocabulary)
    if not isinstance(mode, str) or mode not in EVERYTHING_MODES:
        raise PromptError(everything_mode_error(mode))
    backend = get_backend(model)
    handle = backend.open(image, bands=bands, plane=plane)
    try:
        return backend.everything(
            handle,
            names,
            mode=mode,
            object_mask_threshold=object_mask_threshold,
            overlap_threshold=overlap_threshold,
            min_area=min_area,
            progress=progress,
            cancel=cancel,
        )
    finally:
        backend.close(handle)
