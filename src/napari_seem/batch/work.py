"""The worker side of a batch run: the two kinds of task and what they run with.

A task runs ``fn(context, job)`` on whichever machine the executor picked:

- :func:`run_tile` (phase 1): read a tile's outer box, run the model, store its local labels
  and object table in the run's scratch folder (atomically);
- :func:`write_chunk` (phase 3): map a tile core's local ids to global ids and write the chunk.

Frame: a tile's boxes are pixels of the segmented level; the labels chunk of a tile is its
core, ``(1, ..., 1, th, tw)`` of the ``(*planes, H, W)`` uint32 labels array.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_seem.batch.store import read_tile, write_tile
from napari_seem.batch.tasks import ModelSpec, TaskSpec, propagate_tile, segment_tile
from napari_seem.core.tiling import Tile

if TYPE_CHECKING:
    from napari_seem.core.io import ImageSource
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = [
    "ChunkJob",
    "Context",
    "SourceSpec",
    "TileJob",
    "run_tile",
    "worker_context",
    "write_chunk",
]


@dataclass
class Context:
    """What a task needs on the machine that runs it; the predictor is built on first use.

    Attributes:
        source: the opened image.
        make_predictor: builds the predictor (once, on the first tile).
        encode: ``encode(tile)`` returns cached features of a tile (in-process runs only).
        lock: held around each tile's ``encode`` and decode (in-process runs only).
    """

    source: ImageSource
    make_predictor: Callable[[], SeemPredictor] | None = None
    encode: Callable[[Tile], EncodedImage] | None = None
    lock: AbstractContextManager[Any] | None = None
    built: SeemPredictor | None = None

    @property
    def predictor(self) -> SeemPredictor:
        """The predictor, built on first use."""
        if self.built is None:
            assert self.make_predictor is not None
            self.built = self.make_predictor()
        return self.built


@dataclass(frozen=True)
class SourceSpec:
    """How a worker opens the image (a path every worker can read)."""

    path: str
    axes: str
    bands: tuple[int, int, int]
    nodata: float | None
    percentiles: tuple[float, float]

    def open(self) -> ImageSource:
        """Open the image as the driver opened it."""
        from napari_seem.core.io import open_image

        return open_image(
            self.path,
            axes=self.axes,
            bands=self.bands,
            nodata=self.nodata,
            percentiles=self.percentiles,
        )


def worker_context(source: SourceSpec, model: ModelSpec | Callable[[], SeemPredictor]) -> Context:
    """A Dask worker's context (built once per worker by the run's worker plugin)."""
    return Context(source.open(), model.build if isinstance(model, ModelSpec) else model)


@dataclass(frozen=True)
class TileJob:
    """Phase 1 on one tile of one plane.

    Attributes:
        key: ``(*plane, ti, tj)``, the tile's name in the manifest and the scratch folder.
        plane: the plane segmented.
        tile: the tile (boxes at the segmented level).
        task: what to segment.
        level: the segmented pyramid level.
        work: the scratch folder.
        propagate_from: the previous plane of a propagation step (None: segment ``task``).
        labels_path: the labels array (read for the previous plane's final ids).
        class_names: global id -> class name of the previous plane's objects.
        read_valid: read the nodata mask too.
    """

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
class ChunkJob:
    """Phase 3 on one tile core: ``lookup`` maps the tile's local ids to global ids."""

    key: tuple[int, ...]
    tile: Tile
    lookup: npt.NDArray[np.uint32]
    work: str
    labels_path: str


def _read(
    ctx: Context, tile: Tile, plane: tuple[int, ...], level: int, valid: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_] | None]:
    """``(oh, ow, 3)`` uint8 and the ``(oh, ow)`` valid mask of the tile's outer box."""
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


def run_tile(ctx: Context, job: TileJob) -> tuple[tuple[int, ...], float]:
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


def write_chunk(ctx: Context | None, job: ChunkJob) -> tuple[int, ...]:
    """Phase 3 on one tile core: local ids -> global ids, one chunk write; returns the key."""
    import zarr

    labels, _ = read_tile(Path(job.work), job.key)
    rows, cols = job.tile.core_in_outer
    core = job.lookup[labels[rows, cols]]
    plane = job.key[:-2]
    array: Any = zarr.open_array(job.labels_path, mode="r+")
    array[(*plane, *job.tile.core_slices)] = core
    return job.key
