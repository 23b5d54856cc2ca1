"""The ``"segment"`` job kind (a ``check`` and a ``runner``; see
:mod:`napari_seem.engine.kinds`).

It segments everything (a vocabulary) or every instance of a phrase over a
level-0 region, with the batch package's seam-aware merge (an object crossing a tile
border gets one id). It runs :func:`napari_seem.batch.segment_image` in the engine's
worker thread on the session's image, plane and level, reusing the session's feature cache
and holding ``engine.model_lock`` for each tile's encode + decode (clicks interleave
between tiles). Parameters:

- ``vocabulary``: class names (a list, or one comma-separated string), or
- ``text``: a phrase (every instance of it); exactly one of the two;
- ``mode`` (vocabulary only): ``"auto"`` (default: ``"points"`` for models that decode
  prompts in windows, such as seem-lite, else ``"panoptic"``), ``"panoptic"``,
  ``"instance"``, ``"semantic"`` or ``"points"`` (prompt a grid of points; see
  ``SeemPredictor.segment_everything``); the job runs and records the concrete mode;
- ``box``: level-0 ``(row0, col0, row1, col1)``, max exclusive; default the whole image;
  every tile whose core meets it is segmented, the answer covers exactly the box;
- ``out``: optional zarr path to write the labels to (over HTTP it must lie inside the
  server's allowed roots, like image paths). An existing ``out`` holding an unfinished run
  of the same configuration is resumed (finished tiles are skipped), one of another
  configuration or anything else is refused, and so is an existing class table
  ``OUT.classes.csv`` beside a new output (e.g. that of a finished ``x.zarr`` when ``out``
  is ``x.tif``): nothing the job did not create is replaced unless ``overwrite`` is true;
- ``overwrite`` (false): replace an existing ``out`` and its class table;
- ``object_mask_threshold`` (0.4), ``overlap_threshold`` (0.8), ``text_threshold``
  (0.05), ``min_area`` (16 pixels of the segmented level): as in
  :func:`~napari_seem.batch.segment_image` / ``SeemPredictor.segment_everything``.

Progress counts the tiles (``total`` = tiles whose core meets the box, on the session's
level); cancel takes effect between tiles (state ``"cancelled"``; with ``out`` the run
resumes when started again).

**Result.** Without ``out``: a :class:`~napari_seem.core.labels.LabelsCrop` over exactly
the box in level-0 pixels (a session on a coarser level is upsampled nearest-neighbour, as
every engine answer), ``offset`` = the box's top-left; its class table has one row per id
present in the crop: ``id`` (the run's global id, not necessarily consecutive),
``class_name``, ``score`` (= ``class_score``), ``area`` and ``bbox``
(``[row_min, col_min, row_max, col_max]`` level-0 image pixels, max exclusive) of the
object's part inside the box, ``pieces`` (tiles it spans) and ``source``
(the concrete mode: ``"panoptic"``, ``"instance"``, ``"semantic"`` or ``"points"``;
``"grounding"`` for a phrase). The labels are
built in a temporary zarr store that is deleted afterwards; a box over
``engine.max_result_pixels`` level-0 pixels is refused (pass ``out``, or run
``napari-seem segment``). With ``out``: an empty (0 x 0) ``LabelsCrop`` at the box's
top-left whose ``output`` says where the labels went: ``labels`` (zarr array path, pixels
of the session's level), ``class_table`` (CSV path), ``objects``, ``shape``, ``level``,
``tiles``, ``tiles_skipped``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.labels import LabelsCrop
from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EVERYTHING_MODES,
    everything_mode_error,
    resolve_everything_mode,
)
from napari_seem.core.progress import Cancelled
from napari_seem.core.tiling import Tile
from napari_seem.engine.errors import InvalidRequestError
from napari_seem.engine.jobs import JobPlan, JobRecord
from napari_seem.engine.sessions import Session, region_tiles

if TYPE_CHECKING:
    from napari_seem.batch.runner import RunSummary
    from napari_seem.core.results import SegmentationResult
    from napari_seem.engine.facade import Engine
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = [
    "DEFAULT_MAX_RESULT_PIXELS",
    "SEGMENT_MODES",
    "SegmentRequest",
    "check_segment",
    "run_segment",
]

SEGMENT_MODES = EVERYTHING_MODES
"""Valid ``mode`` values of a ``segment`` job (the default, ``"auto"``, first)."""
DEFAULT_MAX_RESULT_PIXELS = 8192 * 8192
"""Largest level-0 box a ``segment`` job returns as a labels crop (larger: pass ``out``)."""

_SEGMENT_PARAMS = frozenset(
    {
        "vocabulary",
        "text",
        "mode",
        "box",
        "out",
        "overwrite",
        "object_mask_threshold",
        "overlap_threshold",
        "text_threshold",
        "min_area",
    }
)
_OVERLAP_DEFAULT = 0.8


@dataclass(frozen=True)
class SegmentRequest:
    """A checked ``segment`` job (what :func:`check_segment` hands :func:`run_segment`).

    Attributes:
        vocabulary: class names, or None for a phrase (``text``).
        text: the phrase, or None for a vocabulary.
        mode: the everything mode asked for (``"auto"`` is resolved when the job runs).
        box: level-0 ``(row0, col0, row1, col1)``, max exclusive: what the answer covers.
        region: ``box`` on the session's working level (rounded outwards).
        out: zarr path to write the labels to, or None for a labels crop.
        overwrite: replace an existing ``out`` and its class table.
        object_mask_threshold, overlap_threshold, text_threshold, min_area: as in the
            module docstring.
        tiles: tiles whose core meets the region (what progress counts).
    """

    vocabulary: tuple[str, ...] | None
    text: str | None
    mode: str
    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    out: str | None
    object_mask_threshold: float
    overlap_threshold: float
    text_threshold: float
    min_area: int
    tiles: int
    overwrite: bool = False


# ---------------------------------------------------------------------------- segment


def check_segment(engine: Engine, session: Session, params: dict[str, Any]) -> JobPlan:
    """Validate a ``segment`` job's parameters (module docstring) and count its tiles."""
    unknown = set(params) - _SEGMENT_PARAMS
    if unknown:
        raise InvalidRequestError(
            f"segment takes {sorted(_SEGMENT_PARAMS)}; got unknown {sorted(unknown)}"
        )
    vocabulary = _vocabulary(params.get("vocabulary"))
    text = params.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise InvalidRequestError(f"text must be a non-empty phrase, e.g. 'nucleus'; got {text!r}")
    if (vocabulary is None) == (text is None):
        raise InvalidRequestError(
            "segment needs exactly one of vocabulary (class names, e.g. ['nucleus', 'cell']) "
            "and text (a phrase: every instance of it); got "
            + ("both" if text is not None else "neither")
        )
    mode = params.get("mode", DEFAULT_EVERYTHING_MODE)
    if not isinstance(mode, str) or mode not in SEGMENT_MODES:
        raise InvalidRequestError(everything_mode_error(mode))
    level0, region, tiles = region_tiles(session, params.get("box"))
    overwrite = params.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise InvalidRequestError(f"overwrite must be true or false; got {overwrite!r}")
    out = _out_path(params.get("out"), overwrite=overwrite)
    pixels = (level0[2] - level0[0]) * (level0[3] - level0[1])
    limit = int(getattr(engine, "max_result_pixels", DEFAULT_MAX_RESULT_PIXELS))
    if out is None and pixels > limit:
        raise InvalidRequestError(
            f"the box {level0} has {pixels} level-0 pixels; a segment job returns at most "
            f"{limit} pixels as a labels crop: pass out='.../labels.zarr' (a zarr path the "
            "server may write, inside its allowed roots) to write the labels there, segment "
            "a smaller box=, or run `napari-seem segment IMAGE --out LABELS.zarr` on the image"
        )
    request = SegmentRequest(
        vocabulary=vocabulary,
        text=None if text is None else text.strip(),
        mode=mode,
        box=level0,
        region=region,
        out=out,
        object_mask_threshold=_fraction(params, "object_mask_threshold", 0.4),
        overlap_threshold=_fraction(params, "overlap_threshold", _OVERLAP_DEFAULT),
        text_threshold=_fraction(params, "text_threshold", 0.05),
        min_area=_count(params, "min_area", 16),
        tiles=len(tiles),
        overwrite=overwrite,
    )
    return JobPlan({"request": request}, total=len(tiles))


def _vocabulary(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise InvalidRequestError(
            f"vocabulary must be a list of class names (strings); got {value!r}"
        )
    names = tuple(v.strip() for v in items)
    if not names or not all(names):
        raise InvalidRequestError(
            f"vocabulary must list at least one non-empty class name, e.g. ['nucleus', "
            f"'cell']; got {value!r}"
        )
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"vocabulary repeats a class name: {list(names)}")
    return names


def _fraction(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0.0 <= value <= 1.0)
    ):
        raise InvalidRequestError(f"{name} must be a number between 0 and 1; got {value!r}")
    return float(value)


def _count(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


def _out_path(value: Any, *, overwrite: bool = False) -> str | None:
    """``out`` as a local path; refuses URLs, and (without ``overwrite``) existing things
    that are not a napari-seem run and a class table the job would replace."""
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value).strip():
        raise InvalidRequestError(f"out must be a zarr path, e.g. 'labels.zarr'; got {value!r}")
    if "://" in str(value):
        raise InvalidRequestError(
            f"out={value!r}: the segment job writes to a local (or mounted) folder only; "
            "give a file system path"
        )
    from napari_seem.batch.store import MANIFEST_NAME

    path = Path(value).expanduser()
    if overwrite:
        return str(path)
    exists = path.exists() or path.is_symlink()
    if exists and not (path / MANIFEST_NAME).is_file():
        raise InvalidRequestError(
            f"out={str(value)!r} exists and is not a napari-seem labels run; the segment job "
            "never overwrites what it did not create: choose a new path, or pass "
            "overwrite=true to replace it (an unfinished run of the same job is resumed)"
        )
    csv = path.with_name(path.stem + ".classes.csv")
    if not exists and (csv.exists() or csv.is_symlink()):
        raise InvalidRequestError(
            f"the class table of out={str(value)!r} would go to {str(csv)!r}, which exists "
            "(e.g. the class table of another run with the same name): the segment job "
            "never overwrites what it did not create: choose another out name, or pass "
            "overwrite=true to replace it"
        )
    return str(path)


class _OverlapPredictor:
    """The engine's predictor for a ``segment`` job with another panoptic
    ``overlap_threshold``.

    It has exactly the members the batch runner uses on a segment job's predictor: ``model``
    and ``short_side`` (the run's signature), ``set_encoded`` / ``set_image``,
    ``segment_everything`` (with this job's ``overlap_threshold``) and ``ground``.
    """

    def __init__(self, predictor: SeemPredictor, overlap_threshold: float) -> None:
        self.predictor = predictor
        self.overlap_threshold = overlap_threshold

    @property
    def model(self) -> Any:
        """The predictor's model."""
        return self.predictor.model

    @property
    def short_side(self) -> Any:
        """The predictor's resize rule (part of the run's signature)."""
        return self.predictor.short_side

    def set_encoded(self, encoded: EncodedImage) -> None:
        """Make ``encoded`` (a tile's cached features) the current image."""
        self.predictor.set_encoded(encoded)

    def set_image(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Encode ``(h, w, 3)`` uint8 ``rgb`` as the current image."""
        self.predictor.set_image(rgb)

    def ground(self, texts: Sequence[str], **kwargs: Any) -> SegmentationResult:
        """The predictor's grounding, unchanged."""
        return self.predictor.ground(texts, **kwargs)

    def segment_everything(self, vocabulary: Sequence[str], **kwargs: Any) -> SegmentationResult:
        """The predictor's everything mode, with this job's ``overlap_threshold``."""
        kwargs.setdefault("overlap_threshold", self.overlap_threshold)
        return self.predictor.segment_everything(vocabulary, **kwargs)


def run_segment(
    engine: Engine, job: JobRecord, session: Session, *, request: SegmentRequest
) -> LabelsCrop:
    """Segment the region with :func:`~napari_seem.batch.segment_image` (module docstring)."""
    from napari_seem.batch.store import BatchConfigError

    predictor: Any = engine.predictor
    # "auto" -> what the model runs
    request = replace(request, mode=resolve_everything_mode(request.mode, predictor))
    if request.overlap_threshold != _OVERLAP_DEFAULT:
        predictor = _OverlapPredictor(predictor, request.overlap_threshold)
    with contextlib.ExitStack() as stack:
        if request.out is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="napari-seem-job-"))
            target = Path(scratch) / "labels.zarr"
        else:
            target = Path(request.out)
        try:
            summary = _segment_region(engine, job, session, target, predictor, request)
        except BatchConfigError as exc:
            raise InvalidRequestError(str(exc)) from None
        except Exception:
            if job.cancel.is_set():  # e.g. the session was closed under the run
                raise Cancelled(f"job {job.job_id} was cancelled") from None
            raise
        if summary.status == "cancelled" or job.cancel.is_set():
            raise Cancelled(f"job {job.job_id} was cancelled")
        if request.out is not None:
            return _written(summary, session, request.box)
        source = "grounding" if request.text is not None else request.mode
        return _crop(summary.labels, session, request.box, request.region, source)


def _segment_region(
    engine: Engine,
    job: JobRecord,
    session: Session,
    target: Path,
    predictor: Any,
    request: SegmentRequest,
) -> RunSummary:
    """One :func:`~napari_seem.batch.segment_image` run of ``request`` (its mode resolved)
    into the zarr ``target``, on the engine's predictor, feature cache and model lock;
    progress is reported to ``job`` in tiles."""
    from napari_seem.batch import BatchConfig, SharedPredictor, Task, segment_image
    from napari_seem.core.progress import Progress

    tiles = request.tiles
    shown = -1

    def reporter(progress: Progress) -> None:
        # the runner counts tiles, then chunk writes: report tiles only
        nonlocal shown
        if min(progress.done, tiles) != shown:
            shown = min(progress.done, tiles)
            job.emit(done=shown, total=tiles)

    def encode(tile: Tile) -> Any:
        return engine.encoded(session, tile)  # the runner holds engine.model_lock

    plane = session.plane
    task = Task.from_options(
        vocabulary=list(request.vocabulary) if request.vocabulary else None,
        text=request.text,
        mode=request.mode,  # type: ignore[arg-type]
    )
    config = BatchConfig(
        tile=engine.tile,
        halo=engine.halo,
        level=session.frame.level,
        planes=(plane,) if plane else "all",
        region=request.region,
        object_mask_threshold=request.object_mask_threshold,
        text_threshold=request.text_threshold,
        min_area=request.min_area,
        overwrite=request.overwrite,
    )
    return segment_image(
        session.source,
        target,
        task,
        config,
        model=SharedPredictor(predictor, encode=encode, lock=engine.model_lock),
        reporter=reporter,
        cancel=job.cancel,
    )


def _written(summary: RunSummary, session: Session, box: tuple[int, int, int, int]) -> LabelsCrop:
    """The answer of a run written to ``out``: an empty crop at the box's top-left whose
    ``output`` says where the labels went."""
    return LabelsCrop(
        np.zeros((0, 0), np.uint32),
        box[:2],
        session.frame.image_shape,
        plane=session.plane,
        output={
            "labels": summary.labels,
            "class_table": summary.class_table,
            "objects": summary.objects,
            "shape": list(summary.shape),
            "level": session.frame.level,
            "tiles": summary.tiles,
            "tiles_skipped": summary.tiles_skipped,
        },
    )


def _crop(
    path: str,
    session: Session,
    box: tuple[int, int, int, int],
    region: tuple[int, int, int, int],
    source: str,
) -> LabelsCrop:
    """The level-0 labels over ``box`` from the run's zarr array, with a class table."""
    import zarr
    from scipy import ndimage

    array: Any = zarr.open_array(path, mode="r")
    table = {int(row["id"]): row for row in array.attrs["napari_seem"]["classes"]}
    lr0, lc0, lr1, lc1 = region
    level = np.asarray(array[(*session.plane, slice(lr0, lr1), slice(lc0, lc1))], np.uint32)
    labels = _to_level0(level, session, box, region)
    r0, c0 = box[0], box[1]
    rows = []
    if labels.size:
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        slices = ndimage.find_objects(labels)
        for gid, area in zip(ids.tolist(), areas.tolist(), strict=True):
            found = slices[gid - 1]
            assert found is not None
            row = table.get(gid, {})
            score = float(row.get("score", 0.0))
            rows.append(
                {
                    "id": gid,
                    "class_name": row.get("class_name"),
                    "score": score,
                    "class_score": score if row.get("class_name") is not None else None,
                    "area": int(area),
                    "bbox": [
                        r0 + found[0].start,
                        c0 + found[1].start,
                        r0 + found[0].stop,
                        c0 + found[1].stop,
                    ],
                    "pieces": int(row.get("pieces", 1)),
                    "source": source,
                }
            )
    return LabelsCrop(labels, (r0, c0), session.frame.image_shape, tuple(rows), session.plane)


def _to_level0(
    level: npt.NDArray[np.uint32],
    session: Session,
    box: tuple[int, int, int, int],
    region: tuple[int, int, int, int],
) -> npt.NDArray[np.uint32]:
    """Labels read over the level window ``region`` -> level-0 ``box`` pixels (nearest:
    level-0 pixel ``r`` takes level pixel ``floor((r + 0.5) / factor)``)."""
    frame = session.frame
    if frame.is_identity:
        return level
    index = []
    for axis in (0, 1):
        start, stop = box[axis], box[axis + 2]
        source = np.floor((np.arange(start, stop) + 0.5) / frame.factors[axis]).astype(np.int64)
        index.append(np.clip(source - region[axis], 0, level.shape[axis] - 1))
    return np.ascontiguousarray(level[np.ix_(index[0], index[1])])
