"""Whole-image runs: tiles -> model -> seam-aware merge -> chunk-aligned labels on disk.

Frame: the segmented level's ``(row, col)`` pixels (level 0 unless ``BatchConfig.level`` is
given); prompts are level-0 pixels and need ``level=0``. The output labels array has the
image's plane axes (``t``/``z``, level-0 plane indices) followed by ``y, x`` at the segmented
level, uint32, chunks ``(1, ..., 1, th, tw)`` equal to the tile cores, so each chunk is
written by exactly one task.

A run goes in *steps* (:mod:`napari_seem.batch.planes`). Each step:

1. **tiles** (parallel tasks, :func:`napari_seem.batch.work.run_tile`): read the tile's
   outer box, run the model, store its local labels and object table in the scratch folder
   (atomically); the manifest records it.
2. **merge** (driver, small memory, :mod:`napari_seem.batch.resolve`): match pieces of
   neighbouring tiles in their halo overlap and resolve global ids.
3. **chunks** (parallel tasks, :func:`napari_seem.batch.work.write_chunk`): map each tile
   core's local ids to global ids and write the chunk; the manifest records it after the
   write returns.

Peak memory is a few tiles per worker plus the merge tables (one small entry per object),
independent of the image size. A killed run resumes with the same call: finished tiles
and chunks are skipped; a different configuration is refused.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from napari_seem.batch.cluster import open_executor
from napari_seem.batch.config import BatchConfig, Task
from napari_seem.batch.executor import Executor
from napari_seem.batch.models import ModelLike
from napari_seem.batch.output import finish_output, prepare_output
from napari_seem.batch.plan import RunPlan, plan_run
from napari_seem.batch.planes import previous_plane
from napari_seem.batch.resolve import Rows, combine_rows, merge_step
from napari_seem.batch.store import (
    WORK_DIR,
    BatchConfigError,
    Manifest,
    atomic_write_bytes,
    remove_partials,
    tile_name,
)
from napari_seem.batch.work import (
    ChunkJob,
    Context,
    SourceSpec,
    TileJob,
    run_tile,
    worker_context,
    write_chunk,
)
from napari_seem.core.progress import Reporter, report

__all__ = ["RunSummary", "segment_image"]

_DEFAULT_CONFIG = BatchConfig()


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
        """Segmented megapixels per second of this call."""
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0


def segment_image(
    image: Any,
    out: str | Path | None,
    task: Task,
    config: BatchConfig = _DEFAULT_CONFIG,
    *,
    model: ModelLike = None,
    scheduler: Any = None,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Segment a whole image (or stack) tile by tile into a uint32 labels array on disk.

    Args:
        image: a path (zarr, OME-Zarr, TIFF), anything :func:`napari_seem.core.io.open_image`
            takes, or an opened :class:`~napari_seem.core.io.ImageSource`; Dask schedulers
            need a path every worker can read.
        out: the output zarr store (a uint32 array at its root; the class table goes to
            ``OUT.classes.csv`` beside it and into the array's ``napari_seem`` attribute);
            None with ``config.labels_name`` (OME-Zarr labels inside the input).
        task: what to segment (:class:`~napari_seem.batch.config.Task`).
        config: tiling, levels, planes, thresholds, resume / overwrite
            (:class:`~napari_seem.batch.config.BatchConfig`; its defaults are the CLI's).
        model: a variant name, a :class:`~napari_seem.batch.tasks.ModelSpec`, a picklable
            zero-argument predictor factory, or (in-process runs only) a built
            ``SeemPredictor`` or a :class:`~napari_seem.batch.models.SharedPredictor`
            (with the engine's feature cache and model lock). Default: the default variant
            with random weights (say so to your users).
        scheduler: None (in this process), ``"local"``, ``"tcp://host:port"``, a
            ``distributed.Client`` or a cluster object (dask-jobqueue); see
            :mod:`napari_seem.batch.cluster`.
        reporter: told ``Progress(done, total, message)`` once before the first tile and
            after each tile and chunk (``done`` counts earlier runs' work too; ``total`` is
            twice the tiles: each is segmented, then written).
        cancel: set it to stop after the running tiles; the run resumes later.
        on_start: called once every check has passed, before the first tile runs.

    Returns:
        A :class:`RunSummary` (``status="cancelled"`` when ``cancel`` stopped it).

    Raises:
        BatchConfigError: bad arguments, unreadable input, output exists (see
            ``BatchConfig.overwrite``), or an unfinished run with a different configuration.
    """
    started = time.perf_counter()
    plan = plan_run(image, out, task, config, model, scheduler)
    target = plan.target
    manifest = prepare_output(
        target,
        plan.layout,
        plan.signature,
        plan.signature_config,
        plan.source,
        overwrite=config.overwrite,
    )
    if manifest.status == "complete":
        return _summary(plan, started, int(manifest.data.get("objects", 0)), plan.total_tiles)
    (target.root / WORK_DIR).mkdir(parents=True, exist_ok=True)
    remove_partials(target.root)
    make_context = _worker_contexts(plan, scheduler)
    if on_start is not None:
        on_start()
    executor = open_executor(
        scheduler,
        workers=config.workers,
        make_context=make_context,
        local_context=lambda: Context(
            plan.source, plan.model.local, encode=plan.model.encode, lock=plan.model.lock
        ),
    )
    run = _Run(plan, config, manifest, executor, reporter, cancel)
    try:
        rows = run.steps()
    finally:
        executor.close()
    skipped = run.skipped
    if rows is None:
        return _summary(plan, started, 0, skipped, run.megapixels, "cancelled", executor.workers)
    table = combine_rows(rows)
    finish_output(target, plan.layout, manifest, table, plan.source, keep_work=config.keep_work)
    workers = executor.workers
    return _summary(plan, started, len(table), skipped, run.megapixels, "complete", workers)


def _worker_contexts(plan: RunPlan, scheduler: Any) -> Callable[[], Any]:
    """The picklable context builder of Dask workers (a no-op builder in process)."""
    if scheduler is None:
        return lambda: None
    source = plan.source
    if source.config.origin.startswith("<"):
        raise BatchConfigError(
            "a Dask scheduler needs the input as a path that every worker can read "
            "(zarr, OME-Zarr or TIFF); save the array first"
        )
    spec = SourceSpec(
        source.config.origin,
        source.axes,
        source.bands,
        source.config.nodata,
        source.config.percentiles,
    )
    if plan.model.worker is None:
        return lambda: None
    return functools.partial(worker_context, spec, plan.model.worker)


def _summary(
    plan: RunPlan,
    started: float,
    objects: int,
    skipped: int,
    megapixels: float = 0.0,
    status: Literal["complete", "cancelled"] = "complete",
    workers: int = 0,
) -> RunSummary:
    return RunSummary(
        str(plan.target.labels),
        str(plan.target.csv),
        plan.layout.shape,
        objects,
        plan.total_tiles,
        skipped,
        time.perf_counter() - started,
        megapixels,
        status,
        workers,
    )


class _Run:
    """The steps of one call: runs what the manifest does not record as done yet."""

    def __init__(
        self,
        plan: RunPlan,
        config: BatchConfig,
        manifest: Manifest,
        executor: Executor,
        reporter: Reporter | None,
        cancel: threading.Event | None,
    ) -> None:
        self.plan = plan
        self.config = config
        self.manifest = manifest
        self.executor = executor
        self.reporter = reporter
        self.cancel = cancel
        self.work = plan.target.root / WORK_DIR
        self.total = 2 * plan.total_tiles  # every tile is segmented, then written
        self.done = manifest.done_count("tiles") + manifest.done_count("chunks")
        self.skipped = manifest.done_count("tiles")  # finished by an earlier call
        self.megapixels = 0.0
        source = plan.source
        self.read_valid = source.config.nodata is not None or source.dtype.kind == "f"
        self.axis = source.plane_axes.index(config.propagate) if config.propagate else -1

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _tick(self, message: str) -> None:
        self.done += 1
        report(self.reporter, self.done, self.total, message)

    def steps(self) -> Rows | None:
        """Every step in order; the class-table rows of all of them, or None if cancelled."""
        report(self.reporter, self.done, self.total, "starting")
        all_rows: Rows = []
        next_id = 1
        for index in range(len(self.plan.steps)):
            rows = self._step(index, all_rows, next_id)
            if rows is None:
                return None
            all_rows.extend(rows)
            if rows:
                next_id = max(next_id, max(r["id"] for r in rows) + 1)
        return all_rows

    def _step(self, index: int, earlier: Rows, next_id: int) -> Rows | None:
        """One step (tiles, merge, chunks); its rows, or None if cancelled."""
        plan, manifest = self.plan, self.manifest
        step = plan.steps[index]
        tiles = {(*p, *t.index): (p, t) for p in step for t in plan.tiles}
        step_name = f"step{index}"
        rows_file = self.work / f"{step_name}.rows.json"
        if manifest.is_done("steps", step_name) and rows_file.exists():
            rows: Rows = json.loads(rows_file.read_text(encoding="utf-8"))
            return rows
        class_names = {int(r["id"]): r["class_name"] for r in earlier}
        jobs = []
        for key, (p, t) in sorted(tiles.items()):
            if manifest.is_done("tiles", tile_name(key)):
                continue
            prev = previous_plane(p, plan.steps[:index], self.axis) if self.axis >= 0 else None
            jobs.append(
                TileJob(
                    key,
                    p,
                    t,
                    plan.task,
                    plan.layout.level,
                    str(self.work),
                    prev,
                    str(plan.target.labels),
                    class_names if prev is not None else {},
                    self.read_valid,
                )
            )
        for key, megapixels in self.executor.run(run_tile, jobs, cancel=self.cancel):
            manifest.mark("tiles", tile_name(key))
            self.megapixels += megapixels
            self._tick("segmented a tile")
        if self._cancelled():
            return None
        lookup, rows = merge_step(
            self.work,
            {k: t for k, (_, t) in tiles.items()},
            plane_ndim=len(plan.source.plane_shape),
            first_id=next_id,
            min_iou=self.config.min_iou,
            min_area=self.config.min_area,
            sliver_area=self.config.sliver,
        )
        chunk_jobs = [
            ChunkJob(key, t, lookup[key], str(self.work), str(plan.target.labels))
            for key, (_, t) in sorted(tiles.items())
            if not manifest.is_done("chunks", tile_name(key))
        ]
        for key in self.executor.run(write_chunk, chunk_jobs, cancel=self.cancel):
            manifest.mark("chunks", tile_name(key))
            self._tick("wrote a chunk")
        if self._cancelled():
            return None
        atomic_write_bytes(rows_file, json.dumps(rows).encode())
        manifest.mark("steps", step_name)
        return rows
