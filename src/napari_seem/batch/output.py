"""Where a run writes, and the labels array's life: created, resumed, finished.

The output is a uint32 zarr array ``(*planes, H, W)`` at the segmented level with chunks
equal to the tile cores, a class-table CSV beside it, and (while unfinished) a manifest and a
scratch folder that make the run resumable. With ``labels_name`` the array is level 0 of
OME-Zarr labels ``IMAGE/labels/NAME`` inside the input image, with coarser levels written
when the run finishes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_seem.batch.store import (
    MANIFEST_NAME,
    WORK_DIR,
    BatchConfigError,
    Manifest,
    is_zarr_dir,
    remove_path,
    write_class_table,
)

if TYPE_CHECKING:
    from napari_seem.core.io import ImageSource

__all__ = ["Layout", "Target", "finish_output", "prepare_output", "resolve_target"]


@dataclass(frozen=True)
class Layout:
    """The labels array's geometry.

    Attributes:
        shape: ``(*planes, H, W)`` at the segmented level.
        chunks: ``(1, ..., 1, th, tw)``, the tile cores.
        axes: the array's axis names, e.g. ``"zyx"``.
        level: the segmented pyramid level of the input.
    """

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    axes: str
    level: int


@dataclass
class Target:
    """The run's output paths (and the OME-Zarr image when writing labels into it)."""

    labels: Path  # the level-0 labels array
    root: Path  # where the manifest and scratch live
    csv: Path
    ome: Any = None  # OmeImage when writing OME-Zarr labels
    ome_image: Path | None = None
    name: str | None = None


def resolve_target(out: str | Path | None, labels_name: str | None, source: ImageSource) -> Target:
    """The output of ``out`` or ``labels_name`` (exactly one of them).

    Raises:
        BatchConfigError: neither or both, or ``labels_name`` on an input that is not an
            OME-Zarr image on disk, or a name that is not a plain name.
    """
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
        return Target(root / "0", root, root / "classes.csv", ome, origin, labels_name)
    if out is None:
        raise BatchConfigError("give an output store (--out OUTPUT.zarr) or --labels-name NAME")
    path = Path(out)
    return Target(path, path, path.with_name(path.stem + ".classes.csv"))


def prepare_output(
    target: Target,
    layout: Layout,
    signature: str,
    config: dict[str, Any],
    source: ImageSource,
    *,
    overwrite: bool,
) -> Manifest:
    """Create the output, or reopen an unfinished (or finished) run of the same configuration.

    Args:
        signature: the run's configuration signature (``store.config_signature(config)``).
        config: the run's configuration (stored in the manifest; named in refusals).
        source: the input (its axes go into OME-Zarr label metadata).
        overwrite: delete an existing output (and its class table) first.

    Without ``overwrite`` no existing file is replaced that this run did not create: a
    class table beside a new output (e.g. ``x.classes.csv`` of a finished ``x.zarr`` when
    the output is ``x.tif``) is refused, and so is one beside an unfinished run.

    Raises:
        BatchConfigError: the output exists and is not a napari-seem run, holds a run with
            another configuration, or lost its labels array; or its class-table path
            holds a file of something else.
    """
    manifest_path = target.root / MANIFEST_NAME
    if target.root.exists() or target.root.is_symlink():
        if overwrite:
            remove_path(target.root)
            if target.csv.exists() or target.csv.is_symlink():
                target.csv.unlink()
        else:
            manifest = _reopen(target, signature, config)
            if manifest.data.get("status") != "complete" and not _wrote_csv(target):
                _refuse_foreign_csv(target)
            return manifest
    if not overwrite:
        _refuse_foreign_csv(target)
    fmt: Any = 3
    if target.ome is not None:
        from napari_seem.batch.ome import label_levels, write_label_group

        fmt = target.ome.zarr_format
        assert target.ome_image is not None and target.name is not None
        write_label_group(
            target.ome_image,
            target.name,
            target.ome,
            out_axes=layout.axes,
            image_axes=source.axes,
            level=layout.level,
            levels=label_levels(layout.shape, layout.chunks),
        )
    else:
        target.root.parent.mkdir(parents=True, exist_ok=True)
    _create_labels(
        target.labels,
        layout.shape,
        layout.chunks,
        fmt,
        attributes={"napari_seem": {"complete": False, "axes": layout.axes}},
        dimension_names=list(layout.axes),
    )
    manifest = Manifest.new(manifest_path, signature, config)
    manifest.save()
    return manifest


def _wrote_csv(target: Target) -> bool:
    """The run's labels say it finished and wrote its class table to ``target.csv`` (an
    interrupted finish: the attributes are written before the CSV)."""
    import zarr

    try:
        attrs: Any = zarr.open_array(str(target.labels), mode="r").attrs.get("napari_seem")
    except Exception:  # unreadable labels: _reopen's checks speak for them
        return False
    if not isinstance(attrs, dict):
        return False
    return bool(attrs.get("complete")) and attrs.get("class_table_csv") == target.csv.name


def _refuse_foreign_csv(target: Target) -> None:
    """Refuse a class-table path that holds a file this run did not write."""
    if target.csv.exists() or target.csv.is_symlink():
        raise BatchConfigError(
            f"{target.csv} exists and was not written by this run (the class table of the "
            f"output {target.root.name} goes there; it may belong to another run, e.g. a "
            "finished x.zarr when the output is x.tif): the run never replaces it; choose "
            "another output name, move the file away, or pass --overwrite "
            "(overwrite=True) to replace it"
        )


def _reopen(target: Target, signature: str, config: dict[str, Any]) -> Manifest:
    """The manifest of an existing output, if it holds a run of this configuration."""
    manifest = Manifest.load(target.root / MANIFEST_NAME) if target.root.is_dir() else None
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


def _create_labels(
    path: Path,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    fmt: Any,
    *,
    attributes: dict[str, Any] | None = None,
    dimension_names: list[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """An empty uint32 labels array (zarr v2 with "/" chunk keys, or v3 with axis names)."""
    import zarr

    kwargs: dict[str, Any] = {}
    if fmt == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    elif dimension_names is not None:
        kwargs["dimension_names"] = dimension_names
    if attributes is not None:
        kwargs["attributes"] = attributes
    if overwrite:
        kwargs["overwrite"] = True
    return zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=chunks,
        dtype="uint32",
        fill_value=0,
        zarr_format=fmt,
        **kwargs,
    )


def finish_output(
    target: Target,
    layout: Layout,
    manifest: Manifest,
    table: list[dict[str, Any]],
    source: ImageSource,
    *,
    keep_work: bool,
) -> None:
    """Mark the labels complete: OME-Zarr levels, class table (attributes and CSV), manifest.

    Args:
        table: the class-table rows of every object, by id.
        source: the input (its level factors go into the attributes).
        keep_work: keep the scratch folder (debugging).
    """
    import zarr

    if target.ome is not None:
        _pyramid(target, manifest, layout.shape, layout.chunks)
    from napari_seem.core.geo_meta import geo_of

    fy, fx = source.level_factors(layout.level)
    array = zarr.open_array(str(target.labels), mode="r+")
    geo = geo_of(source)  # georeferenced input: its CRS / transform at the segmented level
    array.attrs["napari_seem"] = {
        "complete": True,
        "axes": layout.axes,
        "level": layout.level,
        "scale_to_level0": [fy, fx],
        "classes": table,
        "class_table_csv": target.csv.name,
        "config": manifest.data.get("config"),
        **({} if geo is None else {"geo": _level_geo(geo, layout.shape)}),
    }
    write_class_table(target.csv, table)
    manifest.set(status="complete", objects=len(table))
    manifest.save()
    if not keep_work:
        remove_path(target.root / WORK_DIR)


def _level_geo(geo: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """The input's georeferencing on the labels' grid (an overview's pixels span the scene,
    as GDAL georeferences overviews)."""
    height, width = shape[-2:]
    return dict(geo.at_level(geo.height / height, geo.width / width, height, width).to_dict())


def _pyramid(
    target: Target, manifest: Manifest, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> None:
    """Levels 1.. of OME-Zarr labels, each chunk from a 2x region of the level above."""
    import zarr

    from napari_seem.batch.ome import label_levels

    fmt: Any = target.ome.zarr_format
    previous: Any = zarr.open_array(str(target.root / "0"), mode="r")
    current_shape = shape
    th, tw = chunks[-2], chunks[-1]
    for k in range(1, label_levels(shape, chunks)):
        current_shape = (*shape[:-2], -(-current_shape[-2] // 2), -(-current_shape[-1] // 2))
        name = f"level{k}"
        path = target.root / str(k)
        if not manifest.is_done("pyramid", name) or not is_zarr_dir(path):
            array = _create_labels(path, current_shape, chunks, fmt, overwrite=True)
            for plane in np.ndindex(*shape[:-2]):
                for r in range(0, current_shape[-2], th):
                    for c in range(0, current_shape[-1], tw):
                        block = previous[
                            (*plane, slice(2 * r, 2 * (r + th)), slice(2 * c, 2 * (c + tw)))
                        ]
                        array[(*plane, slice(r, r + th), slice(c, c + tw))] = block[::2, ::2]
            manifest.mark("pyramid", name)
        previous = zarr.open_array(str(path), mode="r")
