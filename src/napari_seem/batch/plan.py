"""Every check of a batch run, before anything is written: the run's plan.

:func:`plan_run` opens the input, checks the task against it, lays out the tile grid, the
planes and the steps, picks the output and computes the run's configuration signature (what
the labels depend on: an unfinished output resumes only with the same signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_seem.batch.config import BatchConfig, Task
from napari_seem.batch.models import ModelLike, ModelParts, model_parts
from napari_seem.batch.output import Layout, Target, resolve_target
from napari_seem.batch.planes import Plane, parse_planes, plan_steps
from napari_seem.batch.store import BatchConfigError, config_signature
from napari_seem.batch.tasks import TaskSpec
from napari_seem.core.tiling import Tile, TileGrid

if TYPE_CHECKING:
    from napari_seem.core.io import ImageSource

__all__ = ["RunPlan", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    """A checked run.

    Attributes:
        source: the opened input.
        task: the per-tile task (with the configuration's thresholds).
        model: the model's parts (see :func:`~napari_seem.batch.models.model_parts`).
        tiles: the grid tiles the run segments on every plane (all, or those meeting
            ``region``), boxes in pixels of the segmented level.
        planes: the selected planes.
        steps: the planes of each step (see :mod:`napari_seem.batch.planes`).
        target: where the output goes.
        layout: the labels array's geometry.
        signature_config: what the labels depend on (stored in the manifest).
        signature: its hash.
    """

    source: ImageSource
    task: TaskSpec
    model: ModelParts
    tiles: list[Tile]
    planes: list[Plane]
    steps: list[list[Plane]]
    target: Target
    layout: Layout
    signature_config: dict[str, Any]
    signature: str

    @property
    def total_tiles(self) -> int:
        """Tiles of the whole run (all planes)."""
        return len(self.tiles) * len(self.planes)


def _open(image: Any, config: BatchConfig) -> ImageSource:
    from napari_seem.core.io import ImageSourceError, open_image

    if hasattr(image, "read_rgb"):  # already an ImageSource
        return image
    try:
        return open_image(
            image, axes=config.axes, bands=config.bands, level=config.level, nodata=config.nodata
        )
    except ImageSourceError as exc:
        raise BatchConfigError(f"cannot open the input image: {exc}") from exc


def _select_tiles(grid: TileGrid, region: Any, height: int, width: int) -> list[Tile]:
    if region is None:
        return list(grid)
    r0, c0, r1, c1 = (int(v) for v in region)
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise BatchConfigError(f"region {region} is empty or outside {height} x {width}")
    return grid.tiles_touching((r0, c0, r1, c1))


def plan_run(
    image: Any,
    out: str | Path | None,
    task: Task,
    config: BatchConfig,
    model: ModelLike,
    scheduler: Any,
) -> RunPlan:
    """Check a run and lay it out (arguments: see :func:`~napari_seem.batch.segment_image`).

    Raises:
        BatchConfigError: with a message saying what to change.
    """
    spec = config.tile_task(task)
    source = _open(image, config)
    level = config.level
    if spec.kind == "prompts" and level != 0:
        raise BatchConfigError("prompts are level-0 pixels: run them with level 0")
    if config.propagate is not None and spec.kind == "prompts":
        raise BatchConfigError("propagate starts from vocabulary or text on the first plane")
    parts = model_parts(model, scheduler, config.workers)
    lev = source.levels[level]
    height = lev.shape[source.axes.index("y")]
    width = lev.shape[source.axes.index("x")]
    grid = TileGrid.for_model((height, width), model_input=config.tile, halo=config.halo)
    th, tw = grid.tile_size  # type: ignore[misc]
    planes = parse_planes(config.planes, source.plane_shape, source.plane_axes)
    steps = plan_steps(planes, config.propagate, source.plane_axes)
    for prompt in spec.prompts:
        try:
            prompt.check_fits((height, width))
        except ValueError as exc:
            raise BatchConfigError(f"a prompt lies outside the image: {exc}") from exc
    tiles = _select_tiles(grid, config.region, height, width)
    target = resolve_target(out, config.labels_name, source)
    layout = Layout(
        (*source.plane_shape, height, width),
        (*(1 for _ in source.plane_shape), th, tw),
        source.plane_axes + "yx",
        level,
    )
    signature_config = {
        "input": source.fingerprint(level=level),
        "task": spec.identity(),
        "model": parts.identity,
        "tile": config.tile,
        "halo": config.halo,
        "level": level,
        "planes": [list(p) for p in planes],
        "propagate": config.propagate,
        "region": None if config.region is None else list(config.region),
        "min_iou": config.min_iou,
        "min_area": config.min_area,
        "sliver_area": config.sliver,
        "shape": list(layout.shape),
        "chunks": list(layout.chunks),
    }
    return RunPlan(
        source,
        spec,
        parts,
        tiles,
        planes,
        steps,
        target,
        layout,
        signature_config,
        config_signature(signature_config),
    )
