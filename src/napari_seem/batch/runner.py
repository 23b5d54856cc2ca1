"""Whole-image runs: tiles -> model -> seam-aware merge -> chunk-aligned labels on disk.

Frame: the segmented level's ``(row, col)`` pixels (level 0 unless ``level`` is given);
prompts are level-0 pixels and need ``level=0``. The output labels array has the image's
plane axes (``t``/``z``, level-0 plane indices) followed by ``y, x`` at the segmented level,
uint32, chunks ``(1, ..., 1, th, tw)`` equal to the tile cores, so each chunk is written by
exactly one task.

A run goes in *steps* (one step with every selected plane; with ``propagate`` one step per
plane of the propagation axis, since plane ``z + 1`` needs the final labels of plane
``z``). Each step:

1. **tiles** (parallel tasks): read the tile's outer box, run the model, store its local
   labels and object table in the scratch folder (atomically); the manifest records it.
2. **merge** (driver, small memory): read the object tables, match pieces of neighbouring
   tiles in their halo overlap (:mod:`napari_seem.batch.merge`), resolve global ids with a
   union-find. Deterministic, so a resumed run resolves exactly as an uninterrupted one.
3. **chunks** (parallel tasks): map each tile core's local ids to global ids and write the
   chunk; the manifest records it after the write returns.

Peak memory is a few tiles per worker plus the merge tables (one small entry per object),
independent of the image size. A killed run resumes with the same call: finished tiles
and chunks are skipped; a different configuration is refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from napari_seem.batch.merge import Merger, TileStats, match_pair, neighbour_pairs
from napari_seem.batch.store import (
    MANIFEST_NAME,
    WORK_DIR,
    BatchConfigError,
    Manifest,
    atomic_write_bytes,
    config_signature,
    is_zarr_dir,
    read_tile,
    read_tile_meta,
    remove_partials,
    remove_path,
    tile_name,
    write_class_table,
    write_tile,
)
from napari_seem.batch.tasks import ModelSpec, TaskSpec, propagate_tile, segment_tile
from napari_seem.core.modes import EverythingMode
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.tiling import Tile, TileGrid

if TYPE_CHECKING:
    from napari_seem.core.io import ImageSource
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = ["ModelLike", "ProgressCallback", "RunSummary", "segment_image", "segment_region"]

ProgressCallback = Callable[[int, int], None]
ModelLike = "ModelSpec | str | SeemPredictor | Callable[[], SeemPredictor]"
Box = tuple[int, int, int, int]
_LRU_TILES = 8


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes:
        labels: path of the labels array (a zarr array; level 0 of OME-Zarr labels).
        class_table: path of the class-table CSV.
        shape: shape of the labels array (``(*planes, H, W)`` at the segmented level).
        objects: number of label ids.
        tiles: tiles in the run (all planes).
        tiles_skipped: tiles already finished by an earlier, interrupted run.
        seconds: wall time of this call.
        megapixels: pixels segmented in this call (outer boxes of the tiles it ran), / 1e6.
        status: ``"complete"`` or ``"cancelled"`` (resume with the same call).
        workers: how many workers ran tasks.
    """

    labels: str
    class_table: str
    shape: tuple[int, ...]
    objects: int
    tiles: int
    tiles_skipped: int
    seconds: float
    megapixels: float
    status: Literal["complete", "cancelled"]
    workers: int = 1

    @property
    def megapixels_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------- worker side


@dataclass
class _Context:
    """What a task needs on the machine that runs it; the predictor is built on first use."""

    source: ImageSource
    make_predictor: Callable[[], SeemPredictor] | None = None
    predictor_: SeemPredictor | None = None
    encode: Callable[[Tile], EncodedImage] | None = None
    lock: AbstractContextManager[Any] | None = None

    @property
    def predictor(self) -> SeemPredictor:
        if self.predictor_ is None:
            assert self.make_predictor is not None
            self.predictor_ = self.make_predictor()
        return self.predictor_


@dataclass(frozen=True)
class _SourceSpec:
    """How a worker opens the image (a path every worker can read)."""

    path: str
    axes: str
    bands: tuple[int, int, int]
    nodata: float | None
    percentiles: tuple[float, float]

    def open(self) -> ImageSource:
        from napari_seem.core.io import open_image

        return open_image(
            self.path,
            axes=self.axes,
            bands=self.bands,
            nodata=self.nodata,
            percentiles=self.percentiles,
        )


def _worker_context(
    source: _SourceSpec, model: ModelSpec | Callable[[], SeemPredictor]
) -> _Context:
    return _Context(source.open(), model.build if isinstance(model, ModelSpec) else model)


@dataclass(frozen=True)
class _TileJob:
    key: tuple[int, ...]
    plane: tuple[int, ...]
    tile: Tile
    task: TaskSpec
    level: int
    work: str
    propagate_from: tuple[int, ...] | None = None
    labels_path: str | None = None
    class_names: dict[int, str | None] = field(default_factory=dict)
    read_valid: bool = False


@dataclass(frozen=True)
class _ChunkJob:
    key: tuple[int, ...]
    tile: Tile
    lookup: npt.NDArray[np.uint32]
    work: str
    labels_path: str


def _read(
    ctx: _Context, tile: Tile, plane: tuple[int, ...], level: int, valid: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_] | None]:
    """``(oh, ow, 3)`` uint8 and the valid mask of the tile's outer box at ``level``."""
    source = ctx.source
    box = tile.outer
    if level != 0:
        fy, fx = source.level_factors(level)
        h0, w0 = source.spatial_shape
        box = (
            round(box[0] * fy),
            round(box[1] * fx),
            min(round(box[2] * fy), h0),
            min(round(box[3] * fx), w0),
        )
    rgb = _fit(source.read_rgb(*box, plane=plane, level=level), tile.outer_shape)
    mask = None
    if valid:
        mask = _fit(source.read_valid_mask(*box, plane=plane, level=level), tile.outer_shape)
    return rgb, mask


def _fit(array: npt.NDArray[Any], shape: tuple[int, int]) -> npt.NDArray[Any]:
    """Crop or edge-pad the first two axes to ``shape`` (level rounding at the border)."""
    array = array[: shape[0], : shape[1]]
    pad = [(0, shape[0] - array.shape[0]), (0, shape[1] - array.shape[1])]
    if pad[0][1] or pad[1][1]:
        pad += [(0, 0)] * (array.ndim - 2)
        array = np.pad(array, pad, mode="edge")
    return array


def _run_tile(ctx: _Context, job: _TileJob) -> tuple[tuple[int, ...], float]:
    """Phase 1 on one tile; returns ``(key, megapixels read)``."""
    from napari_seem.batch.merge import tile_stats

    rgb, valid = _read(ctx, job.tile, job.plane, job.level, job.read_valid)
    if job.propagate_from is None:
        with ctx.lock or contextlib.nullcontext():  # one tile's encode + decode at a time
            encoded = ctx.encode(job.tile) if ctx.encode is not None else None
            answer = segment_tile(
                ctx.predictor, rgb, job.task, window=job.tile.outer, valid=valid, encoded=encoded
            )
    else:
        import zarr

        previous_rgb, _ = _read(ctx, job.tile, job.propagate_from, job.level, False)
        labels: Any = zarr.open_array(job.labels_path, mode="r")
        previous = np.asarray(labels[(*job.propagate_from, *job.tile.outer_slices)])
        with ctx.lock or contextlib.nullcontext():
            encoded = ctx.encode(job.tile) if ctx.encode is not None else None
            answer = propagate_tile(
                ctx.predictor,
                previous_rgb,
                previous,
                rgb,
                class_names=job.class_names,
                valid=valid,
                min_area=job.task.min_area,
                encoded=encoded,
            )
    stats = tile_stats(
        job.tile,
        answer.labels,
        key=job.key,
        class_names=answer.class_names,
        scores=answer.scores,
        object_keys=answer.object_keys,
    )
    meta = {
        "class_names": list(stats.class_names),
        "scores": list(stats.scores),
        "object_keys": None if stats.object_keys is None else list(stats.object_keys),
        "core_area": stats.core_area.tolist(),
        "core_bbox": stats.core_bbox.tolist(),
    }
    write_tile(Path(job.work), job.key, answer.labels, meta)
    oh, ow = job.tile.outer_shape
    return job.key, oh * ow / 1e6


def _write_chunk(ctx: _Context | None, job: _ChunkJob) -> tuple[int, ...]:
    """Phase 3 on one tile core: local ids -> global ids, one chunk write."""
    import zarr

    labels, _ = read_tile(Path(job.work), job.key)
    rows, cols = job.tile.core_in_outer
    core = job.lookup[labels[rows, cols]]
    plane = job.key[:-2]
    array: Any = zarr.open_array(job.labels_path, mode="r+")
    array[(*plane, *job.tile.core_slices)] = core
    return job.key


# ---------------------------------------------------------------------------- driver side


def _stats_of(work: Path, key: tuple[int, ...]) -> TileStats:
    meta = read_tile_meta(work, key)
    keys = meta["object_keys"]
    n = len(meta["class_names"])
    return TileStats(
        key,
        np.asarray(meta["core_area"], np.int64).reshape(n),
        np.asarray(meta["core_bbox"], np.int64).reshape(n, 4),
        tuple(meta["class_names"]),
        tuple(float(s) for s in meta["scores"]),
        None if keys is None else tuple(int(k) for k in keys),
    )


def _merge_step(
    work: Path,
    tiles: dict[tuple[int, ...], Tile],
    *,
    plane_ndim: int,
    first_id: int,
    min_iou: float,
    min_area: int,
    sliver_area: int,
) -> tuple[dict[tuple[int, ...], npt.NDArray[np.uint32]], list[dict[str, Any]]]:
    merger = Merger(plane_ndim=plane_ndim, min_area=min_area, first_id=first_id)
    stats = {key: _stats_of(work, key) for key in sorted(tiles)}
    for key in sorted(stats):
        merger.add_tile(stats[key])
    cache: OrderedDict[tuple[int, ...], npt.NDArray[np.uint32]] = OrderedDict()

    def labels_of(key: tuple[int, ...]) -> npt.NDArray[np.uint32]:
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = read_tile(work, key)[0]
            if len(cache) > _LRU_TILES:
                cache.popitem(last=False)
        return cache[key]

    for ka, kb in neighbour_pairs(stats, plane_ndim):
        sa, sb = stats[ka], stats[kb]
        if sa.object_keys is not None or sb.object_keys is not None:
            continue  # keyed pieces are joined by key
        if not sa.count or not sb.count:
            continue
        pairs = match_pair(
            tiles[ka],
            labels_of(ka),
            tiles[kb],
            labels_of(kb),
            core_area_a=sa.core_area,
            core_area_b=sb.core_area,
            min_iou=min_iou,
            sliver_area=sliver_area,
        )
        merger.add_matches(ka, kb, pairs)
    result = merger.resolve()
    return result.lookup, result.rows


def _combine_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join rows of one id from several steps (a propagated object on many planes)."""
    by_id: dict[int, dict[str, Any]] = {}
    for row in rows:
        old = by_id.get(row["id"])
        if old is None:
            by_id[row["id"]] = dict(row)
            continue
        area = old["area"] + row["area"]
        old["score"] = (old["score"] * old["area"] + row["score"] * row["area"]) / area
        old["area"] = area
        a, b = old["bbox"], row["bbox"]
        old["bbox"] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
        old["pieces"] += row["pieces"]
        if "planes" in old:
            old["planes"] = [
                min(old["planes"][0], row["planes"][0]),
                max(old["planes"][1], row["planes"][1]),
            ]
    return [by_id[k] for k in sorted(by_id)]


def _parse_planes(
    planes: Any, plane_shape: tuple[int, ...], plane_axes: str
) -> list[tuple[int, ...]]:
    if not plane_shape:
        if planes not in (None, "all", (), []):
            raise BatchConfigError(f"planes={planes!r}: this is a 2-D image without planes")
        return [()]
    if planes is None or planes == "all":
        return [tuple(int(i) for i in index) for index in np.ndindex(*plane_shape)]
    if isinstance(planes, str):
        try:
            planes = [int(p) for p in planes.split(",") if p.strip()]
        except ValueError:
            raise BatchConfigError(
                f"planes={planes!r}: give 'all' or plane indices such as '0,3,5'"
            ) from None
    out = []
    for p in planes:
        index = (int(p),) if isinstance(p, int | np.integer) else tuple(int(i) for i in p)
        if len(index) != len(plane_shape) or any(
            not 0 <= i < n for i, n in zip(index, plane_shape, strict=False)
        ):
            raise BatchConfigError(
                f"plane {index} does not index the plane axes {plane_axes!r} of sizes "
                f"{plane_shape}; use 0..{plane_shape[0] - 1}"
                + (" per axis (tuples for several plane axes)" if len(plane_shape) > 1 else "")
            )
        out.append(index)
    if not out:
        raise BatchConfigError("planes is empty: give 'all' or at least one plane index")
    return sorted(set(out))


def _steps(
    planes: list[tuple[int, ...]], propagate: str | None, plane_axes: str
) -> list[list[tuple[int, ...]]]:
    if propagate is None:
        return [planes]
    if propagate not in plane_axes or len(propagate) != 1:
        raise BatchConfigError(
            f"propagate={propagate!r}: the image's plane axes are {plane_axes!r}; propagate "
            "along one of them (z or t)"
        )
    axis = plane_axes.index(propagate)
    positions = sorted({p[axis] for p in planes})
    return [[p for p in planes if p[axis] == pos] for pos in positions]


def _previous_plane(
    plane: tuple[int, ...], done_steps: list[list[tuple[int, ...]]], axis: int
) -> tuple[int, ...] | None:
    """The plane of the last finished step on the same chain (other axes equal)."""
    for step in reversed(done_steps):
        for p in step:
            if all(p[i] == plane[i] for i in range(len(plane)) if i != axis):
                return p
    return None


def _task_spec(
    vocabulary: Sequence[str] | str | None,
    text: str | None,
    prompts: Sequence[ObjectPrompt] | str | Path | None,
    mode: str,
    object_mask_threshold: float,
    text_threshold: float,
    min_area: int,
) -> TaskSpec:
    given = [
        name for name, v in (("vocabulary", vocabulary), ("text", text), ("prompts", prompts)) if v
    ]
    if len(given) != 1:
        raise BatchConfigError(
            "give exactly one of vocabulary (class names), text (a phrase) or prompts "
            f"(points/boxes); got {given or 'none'}"
        )
    names: tuple[str, ...] = ()
    if vocabulary:
        items = vocabulary.split(",") if isinstance(vocabulary, str) else list(vocabulary)
        names = tuple(v.strip() for v in items if v.strip())
        if not names or len(set(names)) != len(names):
            raise BatchConfigError(
                f"vocabulary {vocabulary!r}: give distinct, non-empty class names, e.g. "
                "'nucleus, cell'"
            )
    parsed: tuple[ObjectPrompt, ...] = ()
    if prompts:
        if isinstance(prompts, str | Path):
            from napari_seem.batch.prompts_file import read_prompts

            parsed = tuple(read_prompts(prompts))
        else:
            parsed = tuple(prompts)
    kind = "everything" if names else "text" if text else "prompts"
    try:
        return TaskSpec(
            kind,  # type: ignore[arg-type]
            vocabulary=names,
            mode=mode,  # type: ignore[arg-type]
            text=text.strip() if text else None,
            prompts=parsed,
            object_mask_threshold=object_mask_threshold,
            text_threshold=text_threshold,
            min_area=min_area,
        )
    except ValueError as exc:
        raise BatchConfigError(str(exc)) from exc


def _model_parts(
    model: Any, scheduler: Any
) -> tuple[
    dict[str, Any], Callable[[], SeemPredictor], ModelSpec | Callable[[], SeemPredictor] | None
]:
    """(identity for the signature, local factory, picklable spec for workers or None)."""
    if model is None or isinstance(model, str):
        model = ModelSpec(model) if model else ModelSpec()
    if isinstance(model, ModelSpec):
        return model.identity(), model.build, model
    if callable(model) and not hasattr(model, "segment_everything"):
        name = getattr(model, "__qualname__", type(model).__name__)
        return {"factory": name}, model, model
    if hasattr(model, "segment_everything"):  # an already built predictor: this process only
        if scheduler is not None:
            raise BatchConfigError(
                "a built SeemPredictor cannot travel to Dask workers: pass a ModelSpec or a "
                "picklable factory as model= with a scheduler"
            )
        inner = model.model
        report = getattr(inner, "load_report", None)
        identity = {
            "variant": getattr(inner, "name", "?"),
            "checkpoint": "random" if report is None else str(getattr(report, "source", "?")),
            "short_side": getattr(model, "short_side", None),
        }
        return identity, (lambda: model), None
    raise BatchConfigError(
        f"model={model!r}: pass a variant name, a ModelSpec, a SeemPredictor or a factory"
    )


@dataclass
class _Target:
    labels: Path  # the level-0 labels array
    root: Path  # where the manifest and scratch live
    csv: Path
    ome: Any = None  # OmeImage when writing OME-Zarr labels
    ome_image: Path | None = None
    name: str | None = None


def _target(out: str | Path | None, labels_name: str | None, source: ImageSource) -> _Target:
    if labels_name is not None:
        from napari_seem.batch.ome import read_ome_image

        origin = Path(source.config.origin)
        ome = read_ome_image(origin) if source.config.kind == "ome-zarr" else None
        if ome is None:
            raise BatchConfigError(
                f"labels_name={labels_name!r} writes OME-Zarr labels into the input image, "
                "but the input is not an OME-Zarr image on disk: pass --out OUTPUT.zarr instead"
            )
        if out is not None:
            raise BatchConfigError("give either an output store (--out) or --labels-name, not both")
        if not labels_name or "/" in labels_name or labels_name.startswith("."):
            raise BatchConfigError(f"labels name {labels_name!r}: use a plain name such as 'cells'")
        root = origin / "labels" / labels_name
        return _Target(root / "0", root, root / "classes.csv", ome, origin, labels_name)
    if out is None:
        raise BatchConfigError("give an output store (--out OUTPUT.zarr) or --labels-name NAME")
    path = Path(out)
    return _Target(path, path, path.with_name(path.stem + ".classes.csv"))


def segment_image(
    image: Any,
    out: str | Path | None = None,
    *,
    vocabulary: Sequence[str] | str | None = None,
    text: str | None = None,
    prompts: Sequence[ObjectPrompt] | str | Path | None = None,
    mode: EverythingMode = "auto",
    tile: int = 1024,
    halo: int = 64,
    level: int = 0,
    bands: Sequence[int] | None = None,
    axes: str | None = None,
    nodata: float | None = None,
    planes: Any = "all",
    propagate: str | None = None,
    labels_name: str | None = None,
    region: Box | None = None,
    model: Any = None,
    scheduler: Any = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    encode: Callable[[Tile], EncodedImage] | None = None,
    lock: AbstractContextManager[Any] | None = None,
    object_mask_threshold: float = 0.4,
    text_threshold: float = 0.05,
    min_iou: float = 0.5,
    min_area: int = 16,
    sliver_area: int | None = None,
    keep_work: bool = False,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Segment a whole image (or stack) tile by tile into a uint32 labels array on disk.

    Args:
        image: a path (zarr, OME-Zarr, TIFF) or anything :func:`napari_seem.core.io.open_image`
            takes; Dask schedulers need a path every worker can read.
        out: the output zarr store (a uint32 array at its root; the class table goes to
            ``OUT.classes.csv`` beside it and into the array's ``napari_seem`` attribute).
        vocabulary: class names (list or ``"nucleus, cell"``): segment everything.
        text: a referring phrase: every instance of it.
        prompts: object prompts (level-0), or a CSV / GeoJSON file of points and boxes
            (:mod:`napari_seem.batch.prompts_file`); object ``i`` (1-based) gets id ``i``.
        mode: with ``vocabulary``: ``"auto"`` (the default: ``"points"`` for models that
            decode prompts in windows, such as seem-lite, else ``"panoptic"``),
            ``"panoptic"``, ``"instance"``, ``"semantic"`` or ``"points"`` (prompt a grid of
            points; see ``SeemPredictor.segment_everything``).
        tile: outer tile size = model input in pixels; the core is ``tile - 2 * halo``
            and is also the output chunk size.
        halo: context pixels on each side of a core; seams are matched in the halos.
        level: image pyramid level to segment (coarser = faster); labels are at that level.
        bands: three channel indices for R, G, B of a multi-band image.
        axes, nodata: passed to :func:`~napari_seem.core.io.open_image`.
        planes: ``"all"``, ``"0,3,5"`` or a list of plane indices (tuples for ``t`` + ``z``).
        propagate: ``"z"`` or ``"t"``: segment the first selected plane, then each object
            on plane ``p`` is the referring example on the next plane (ids are kept).
        labels_name: write OME-Zarr labels ``IMAGE/labels/NAME`` (with multiscale levels)
            into an OME-Zarr input instead of ``out``.
        region: only tiles whose core meets this ``(r0, c0, r1, c1)`` box (max exclusive,
            segmented-level pixels); the rest of the output stays 0.
        model: a variant name, a :class:`ModelSpec`, a picklable zero-argument predictor
            factory, or (in-process runs only) a built ``SeemPredictor``. Default: the
            default variant with random weights (say so to your users).
        scheduler: None (in this process), ``"local"``, ``"tcp://host:port"``, a
            ``distributed.Client`` or a cluster object (dask-jobqueue); see
            :mod:`napari_seem.batch.cluster`.
        workers: worker processes of ``scheduler="local"`` (default 2).
        overwrite: delete an existing output first; without it an existing output is
            resumed if it holds an unfinished run of the same configuration, else refused.
        progress: ``progress(done, total)`` after each tile and chunk (done counts earlier
            runs' work too).
        cancel: set it to stop after the running tiles; the run resumes later.
        encode: ``encode(tile) -> EncodedImage`` to reuse cached features (the engine's
            feature cache: tiles of ``TileGrid.for_model`` on the segmented level's pixels,
            read as :meth:`~napari_seem.core.io.ImageSource.read_level_rgb` reads them).
            In-process runs only.
        lock: held around each tile's model use (``encode`` and decoding), e.g. the
            engine's ``model_lock`` when the predictor is shared; in-process runs only.
        object_mask_threshold: panoptic class-probability threshold.
        text_threshold: grounding share for further instances per tile.
        min_iou: least IoU in the halo overlap for pieces to be one object.
        min_area: objects smaller than this (pixels written) are dropped.
        sliver_area: pieces up to this core area join the neighbour's object they lie on
            (default ``halo * halo // 4``).
        keep_work: keep the per-tile scratch files after success (debugging).
        on_start: called once every check has passed, before the first tile runs.

    Returns:
        A :class:`RunSummary` (``status="cancelled"`` when ``cancel`` stopped it).

    Raises:
        BatchConfigError: bad arguments, unreadable input, output exists (see
            ``overwrite``), or an unfinished run with a different configuration.
    """
    started = time.perf_counter()
    from napari_seem.core.io import ImageSourceError, open_image

    task = _task_spec(
        vocabulary, text, prompts, mode, object_mask_threshold, text_threshold, min_area
    )
    if tile <= 2 * halo or halo < 0:
        raise BatchConfigError(f"tile ({tile}) must exceed 2 * halo ({2 * halo}); halo >= 0")
    try:
        source = (
            image
            if hasattr(image, "read_rgb")
            else open_image(image, axes=axes, bands=bands, level=level, nodata=nodata)
        )
    except ImageSourceError as exc:
        raise BatchConfigError(f"cannot open the input image: {exc}") from exc
    if task.kind == "prompts" and level != 0:
        raise BatchConfigError("prompts are level-0 pixels: run them with level 0")
    if propagate is not None and task.kind == "prompts":
        raise BatchConfigError("propagate starts from vocabulary or text on the first plane")
    if scheduler == "local" and isinstance(model, ModelSpec) and model.threads is None:
        import os
        from dataclasses import replace

        # one machine's cores shared by the workers: oversubscribed torch threads crawl
        model = replace(model, threads=max(1, (os.cpu_count() or 1) // (workers or 2)))
    identity, local_factory, worker_model = _model_parts(model, scheduler)
    lev = source.levels[level]
    ay, ax = source.axes.index("y"), source.axes.index("x")
    height, width = lev.shape[ay], lev.shape[ax]
    grid = TileGrid.for_model((height, width), model_input=tile, halo=halo)
    th, tw = grid.tile_size  # type: ignore[misc]
    plane_list = _parse_planes(planes, source.plane_shape, source.plane_axes)
    steps = _steps(plane_list, propagate, source.plane_axes)
    if task.kind == "prompts":
        for prompt in task.prompts:
            try:
                prompt.check_fits((height, width))
            except ValueError as exc:
                raise BatchConfigError(f"a prompt lies outside the image: {exc}") from exc
    grid_tiles = list(grid)
    if region is not None:
        r0, c0, r1, c1 = (int(v) for v in region)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise BatchConfigError(f"region {region} is empty or outside {height} x {width}")
        grid_tiles = grid.tiles_touching((r0, c0, r1, c1))
    target = _target(out, labels_name, source)
    sliver = halo * halo // 4 if sliver_area is None else int(sliver_area)
    out_axes = source.plane_axes + "yx"
    shape = (*source.plane_shape, height, width)
    chunks = (*(1 for _ in source.plane_shape), th, tw)
    config = {
        "input": source.fingerprint(level=level),
        "task": task.identity(),
        "model": identity,
        "tile": tile,
        "halo": halo,
        "level": level,
        "planes": [list(p) for p in plane_list],
        "propagate": propagate,
        "region": None if region is None else list(region),
        "min_iou": min_iou,
        "min_area": min_area,
        "sliver_area": sliver,
        "shape": list(shape),
        "chunks": list(chunks),
    }
    signature = config_signature(config)
    manifest = _prepare(
        target, signature, config, shape, chunks, out_axes, source, level, overwrite
    )
    work = target.root / WORK_DIR
    if manifest.status == "complete":
        return _finished(target, manifest, started, len(grid_tiles) * len(plane_list), shape)
    work.mkdir(parents=True, exist_ok=True)
    remove_partials(target.root)

    source_spec = None
    if scheduler is not None:
        if source.config.origin.startswith("<"):
            raise BatchConfigError(
                "a Dask scheduler needs the input as a path that every worker can read "
                "(zarr, OME-Zarr or TIFF); save the array first"
            )
        source_spec = _SourceSpec(
            source.config.origin,
            source.axes,
            source.bands,
            source.config.nodata,
            source.config.percentiles,
        )
    from napari_seem.batch.cluster import open_executor

    if on_start is not None:
        on_start()
    executor = open_executor(
        scheduler,
        workers=workers,
        make_context=functools.partial(_worker_context, source_spec, worker_model)
        if source_spec is not None and worker_model is not None
        else (lambda: None),
        local_context=lambda: _Context(source, local_factory, encode=encode, lock=lock),
    )
    read_valid = source.config.nodata is not None or source.dtype.kind == "f"
    total_tiles = len(grid_tiles) * len(plane_list)
    total = 2 * total_tiles
    done = manifest.done_count("tiles") + manifest.done_count("chunks")
    skipped = manifest.done_count("tiles")
    megapixels = 0.0
    if progress is not None:
        progress(done, total)
    plane_ndim = len(source.plane_shape)
    axis = source.plane_axes.index(propagate) if propagate else -1
    all_rows: list[dict[str, Any]] = []
    next_id = 1
    cancelled = False
    labels_path = str(target.labels)
    try:
        for index, step in enumerate(steps):
            tiles = {(*p, *t.index): (p, t) for p in step for t in grid_tiles}
            step_name = f"step{index}"
            rows_file = work / f"{step_name}.rows.json"
            if manifest.is_done("steps", step_name) and rows_file.exists():
                rows = json.loads(rows_file.read_text(encoding="utf-8"))
                all_rows.extend(rows)
                next_id = max([next_id - 1, *(r["id"] for r in rows)]) + 1
                continue
            class_names = {int(r["id"]): r["class_name"] for r in all_rows}
            jobs = []
            for key, (p, t) in sorted(tiles.items()):
                if manifest.is_done("tiles", tile_name(key)):
                    continue
                prev = _previous_plane(p, steps[:index], axis) if propagate else None
                jobs.append(
                    _TileJob(
                        key,
                        p,
                        t,
                        task,
                        level,
                        str(work),
                        prev,
                        labels_path,
                        class_names if prev is not None else {},
                        read_valid,
                    )
                )
            for key, mp in executor.run(_run_tile, jobs, cancel=cancel):
                manifest.mark("tiles", tile_name(key))
                megapixels += mp
                done += 1
                if progress is not None:
                    progress(done, total)
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            lookup, rows = _merge_step(
                work,
                {k: t for k, (_, t) in tiles.items()},
                plane_ndim=plane_ndim,
                first_id=next_id,
                min_iou=min_iou,
                min_area=min_area,
                sliver_area=sliver,
            )
            chunk_jobs = [
                _ChunkJob(key, t, lookup[key], str(work), labels_path)
                for key, (_, t) in sorted(tiles.items())
                if not manifest.is_done("chunks", tile_name(key))
            ]
            for key in executor.run(_write_chunk, chunk_jobs, cancel=cancel):
                manifest.mark("chunks", tile_name(key))
                done += 1
                if progress is not None:
                    progress(done, total)
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            atomic_write_bytes(rows_file, json.dumps(rows).encode())
            manifest.mark("steps", step_name)
            all_rows.extend(rows)
            if rows:
                next_id = max(next_id, max(r["id"] for r in rows) + 1)
    finally:
        executor.close()
    if cancelled:
        return RunSummary(
            str(target.labels),
            str(target.csv),
            shape,
            0,
            total_tiles,
            skipped,
            time.perf_counter() - started,
            megapixels,
            "cancelled",
            executor.workers,
        )
    table = _combine_rows(all_rows)
    _finish(target, manifest, table, source, level, shape, chunks, out_axes, keep_work)
    return RunSummary(
        str(target.labels),
        str(target.csv),
        shape,
        len(table),
        total_tiles,
        skipped,
        time.perf_counter() - started,
        megapixels,
        "complete",
        executor.workers,
    )


def _prepare(
    target: _Target,
    signature: str,
    config: dict[str, Any],
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    out_axes: str,
    source: ImageSource,
    level: int,
    overwrite: bool,
) -> Manifest:
    """Create the output, or reopen an unfinished run of the same configuration."""
    import zarr

    manifest_path = target.root / MANIFEST_NAME
    if target.root.exists() or target.root.is_symlink():
        if overwrite:
            remove_path(target.root)
            if target.csv.exists():
                target.csv.unlink()
        else:
            manifest = Manifest.load(manifest_path) if target.root.is_dir() else None
            if manifest is None:
                raise BatchConfigError(
                    f"{target.root} exists and is not a napari-seem run; pass --overwrite "
                    "(overwrite=True) to replace it or choose another output"
                )
            if manifest.signature != signature:
                old = manifest.data.get("config", {})
                diff = sorted(
                    k
                    for k in set(old) | set(config)
                    if old.get(k) != json.loads(json.dumps(config.get(k), default=str))
                )
                raise BatchConfigError(
                    f"{target.root} holds a run with a different configuration (differs in: "
                    f"{', '.join(diff) or 'details'}); rerun with the same options to resume "
                    "it, or pass --overwrite (overwrite=True) to start afresh"
                )
            if not is_zarr_dir(target.labels):
                raise BatchConfigError(
                    f"{target.labels} is missing from an unfinished run; pass --overwrite"
                )
            return manifest
    fmt: Any = 3
    if target.ome is not None:
        from napari_seem.batch.ome import label_levels, write_label_group

        fmt = target.ome.zarr_format
        assert target.ome_image is not None and target.name is not None
        write_label_group(
            target.ome_image,
            target.name,
            target.ome,
            out_axes=out_axes,
            image_axes=source.axes,
            level=level,
            levels=label_levels(shape, chunks),
        )
    else:
        target.root.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if fmt == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = list(out_axes)
    zarr.create_array(
        store=str(target.labels),
        shape=shape,
        chunks=chunks,
        dtype="uint32",
        fill_value=0,
        zarr_format=fmt,
        attributes={"napari_seem": {"complete": False, "axes": out_axes}},
        **kwargs,
    )
    manifest = Manifest.new(manifest_path, signature, config)
    manifest.save()
    return manifest


def _finish(
    target: _Target,
    manifest: Manifest,
    table: list[dict[str, Any]],
    source: ImageSource,
    level: int,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    out_axes: str,
    keep_work: bool,
) -> None:
    import zarr

    if target.ome is not None:
        _pyramid(target, manifest, shape, chunks)
    fy, fx = source.level_factors(level)
    array = zarr.open_array(str(target.labels), mode="r+")
    array.attrs["napari_seem"] = {
        "complete": True,
        "axes": out_axes,
        "level": level,
        "scale_to_level0": [fy, fx],
        "classes": table,
        "class_table_csv": target.csv.name,
        "config": manifest.data.get("config"),
    }
    write_class_table(target.csv, table)
    manifest.set(status="complete", objects=len(table))
    manifest.save()
    if not keep_work:
        remove_path(target.root / WORK_DIR)


def _pyramid(
    target: _Target, manifest: Manifest, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> None:
    """Levels 1.. of OME-Zarr labels, each chunk from a 2x region of the level above."""
    import zarr

    from napari_seem.batch.ome import label_levels

    fmt: Any = target.ome.zarr_format
    previous: Any = zarr.open_array(str(target.root / "0"), mode="r")
    current_shape = shape
    for k in range(1, label_levels(shape, chunks)):
        current_shape = (*shape[:-2], -(-current_shape[-2] // 2), -(-current_shape[-1] // 2))
        name = f"level{k}"
        path = target.root / str(k)
        if not manifest.is_done("pyramid", name) or not is_zarr_dir(path):
            kwargs: dict[str, Any] = {}
            if fmt == 2:
                kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
            array: Any = zarr.create_array(
                store=str(path),
                shape=current_shape,
                chunks=chunks,
                dtype="uint32",
                fill_value=0,
                zarr_format=fmt,
                overwrite=True,
                **kwargs,
            )
            th, tw = chunks[-2], chunks[-1]
            for plane in np.ndindex(*shape[:-2]):
                for r in range(0, current_shape[-2], th):
                    for c in range(0, current_shape[-1], tw):
                        block = previous[
                            (*plane, slice(2 * r, 2 * (r + th)), slice(2 * c, 2 * (c + tw)))
                        ]
                        array[(*plane, slice(r, r + th), slice(c, c + tw))] = block[::2, ::2]
            manifest.mark("pyramid", name)
        previous = zarr.open_array(str(path), mode="r")


def _finished(
    target: _Target, manifest: Manifest, started: float, tiles: int, shape: tuple[int, ...]
) -> RunSummary:
    return RunSummary(
        str(target.labels),
        str(target.csv),
        shape,
        int(manifest.data.get("objects", 0)),
        tiles,
        tiles,
        time.perf_counter() - started,
        0.0,
        "complete",
        0,
    )


def segment_region(
    predictor: SeemPredictor,
    image: Any,
    out: str | Path,
    *,
    box: Box | None = None,
    vocabulary: Sequence[str] | str | None = None,
    text: str | None = None,
    prompts: Sequence[ObjectPrompt] | None = None,
    mode: EverythingMode = "auto",
    tile: int = 512,
    halo: int = 64,
    plane: tuple[int, ...] = (),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    encode: Callable[[Tile], EncodedImage] | None = None,
    overwrite: bool = False,
    lock: AbstractContextManager[Any] | None = None,
) -> RunSummary:
    """The engine-job entry point: segment a region with an already built predictor.

    Runs in the calling thread (no Dask); ``progress(done, total)`` after every tile and
    chunk; ``cancel`` is honoured between tiles (the output then resumes with the same
    call); ``encode(tile)`` returns the tile's features from the engine's feature cache
    (the grid is ``TileGrid.for_model(shape, model_input=tile, halo=halo)``, level 0, as
    the engine's). ``image`` may be an already opened :class:`~napari_seem.core.io.ImageSource`.
    ``lock`` (e.g. ``engine.model_lock``) is held around each tile's encode and decode, so
    a predictor shared with interactive requests never sees two tiles at once; ``encode``
    is then called with it held.
    """
    return segment_image(
        image,
        out,
        vocabulary=vocabulary,
        text=text,
        prompts=prompts,
        mode=mode,
        tile=tile,
        halo=halo,
        planes=[plane] if plane else "all",
        region=box,
        model=predictor,
        progress=progress,
        cancel=cancel,
        encode=encode,
        overwrite=overwrite,
        lock=lock,
    )
