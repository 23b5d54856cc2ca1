"""The remote-sensing options of ``napari-seem segment`` (the ``geo`` extra).

- ``INPUT`` may list the band files of one scene, comma-separated
  (``b4.tif,b3.tif,b2.tif``): one multi-band image. With ``--scheduler`` they are written as
  one VRT beside the output (``NAME.scene.vrt``), a path every Dask worker can open.
- ``--out water.gpkg`` (or ``.geojson``, ``.tif``) writes that georeferenced file; the
  resumable labels zarr goes beside it (``water.labels.zarr``). ``--also-write`` adds more
  georeferenced outputs of the same run; ``--simplify`` is the polygon tolerance in map units.
- ``--bands nir,red,green`` picks bands by their descriptions (or file names of a scene).
- ``--prompts clicks.gpkg`` (or a GeoJSON with a ``crs`` member, or any GeoJSON with
  ``--prompts-crs EPSG:4326``) gives points and boxes in map coordinates.

:func:`plan_geo` resolves all of it before the run (one open of the input);
:meth:`GeoPlan.finish` writes the outputs after it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GeoPlan", "add_geo_arguments", "plan_geo"]


def add_geo_arguments(p: argparse.ArgumentParser) -> None:
    """Add the georeferenced input / output options to the ``segment`` parser."""
    geo = p.add_argument_group(
        "remote sensing (pip install napari-seem[geo])",
        "INPUT may be a GeoTIFF / COG, or the band files of one scene comma-separated; "
        "--out NAME.gpkg / .geojson writes polygons, --out NAME.tif a labels COG (the "
        "labels zarr goes to NAME.labels.zarr)",
    )
    geo.add_argument(
        "--also-write",
        action="append",
        default=[],
        metavar="PATH",
        help="another georeferenced output of the run (.tif, .gpkg, .geojson); repeatable",
    )
    geo.add_argument(
        "--simplify",
        type=float,
        default=0.0,
        metavar="TOL",
        help="polygon simplification tolerance in map units, e.g. 15 (m); default 0: exact "
        "pixel outlines",
    )
    geo.add_argument(
        "--prompts-crs",
        default=None,
        metavar="CRS",
        help="the CRS of a --prompts GeoJSON without a 'crs' member, e.g. EPSG:4326 (its "
        "points are then map coordinates, not pixels)",
    )


@dataclass
class GeoPlan:
    """What the geo options resolved to.

    Attributes:
        image: the input as ``segment_image`` takes it (a path, or a list of band files).
        out: the labels zarr store (``args.out`` unless that names a georeferenced file).
        outputs: the georeferenced files to write after the run.
        bands: band indices resolved from names (None: ``--bands`` held indices or nothing).
        prompts: object prompts placed from map coordinates (None: ``--prompts`` as given).
        simplify: polygon tolerance in map units.
    """

    image: Any
    out: str | None
    outputs: list[str] = field(default_factory=list)
    bands: tuple[int, int, int] | None = None
    prompts: list[Any] | None = None
    simplify: float = 0.0

    def finish(self, labels: str) -> None:
        """Write the georeferenced outputs of the finished run's ``labels``."""
        if not self.outputs:
            return
        from napari_seem.batch.geo_output import export_geo
        from napari_seem.batch.store import BatchConfigError
        from napari_seem.cli._common import CliError

        try:
            written = export_geo(labels, self.outputs, simplify=self.simplify)
        except BatchConfigError as exc:
            raise CliError(str(exc)) from exc
        for path in written:
            print(f"georeferenced: {path}")


def _image(text: str) -> Any:
    """A path, or the list of band files of ``a.tif,b.tif`` (when no file has that name)."""
    if "," not in text or Path(text).exists():
        return text
    return [part.strip() for part in text.split(",") if part.strip()]


def plan_geo(args: argparse.Namespace) -> GeoPlan:
    """Resolve the geo options of ``args`` (raises ``CliError`` with what to do)."""
    from napari_seem.batch.geo_output import is_geo_output, labels_store_for
    from napari_seem.cli._common import CliError

    plan = GeoPlan(_image(args.input), args.out, simplify=float(args.simplify))
    if plan.simplify < 0:
        raise CliError("--simplify is a tolerance in map units: give 0 or more")
    if args.out is not None and is_geo_output(args.out):
        plan.outputs.append(args.out)
        plan.out = str(labels_store_for(args.out))
    for extra in args.also_write:
        if not is_geo_output(extra):
            raise CliError(f"--also-write {extra}: give a .tif, .gpkg or .geojson path")
        plan.outputs.append(extra)
    if isinstance(plan.image, list) and args.scheduler is not None and plan.out is not None:
        plan.image = _scene_vrt(plan.image, Path(plan.out))
    named_bands = args.bands is not None and not _all_ints(args.bands)
    map_prompts = args.prompts is not None and _map_prompts(args.prompts, args.prompts_crs)
    if args.prompts_crs is not None and args.prompts is None:
        raise CliError("--prompts-crs names the CRS of a --prompts file: add --prompts FILE")
    if not (plan.outputs or named_bands or map_prompts):
        return plan
    source = _open(plan.image, args.axes)
    try:
        geo = getattr(source, "geo", None)
        if plan.outputs and geo is None:
            raise CliError(
                f"{args.input}: not a georeferenced raster (no CRS / transform), so GeoTIFF "
                "/ GeoPackage outputs have no map; use --out NAME.zarr"
            )
        if named_bands:
            plan.bands = _named_bands(args.bands, source)
        if map_prompts:
            plan.prompts = _read_map_prompts(args.prompts, geo, args.prompts_crs)
    finally:
        source.close()
    return plan


def _scene_vrt(paths: list[str], out: Path) -> str:
    """The band files as one VRT beside the output store (Dask workers open one path)."""
    from napari_seem.cli._common import CliError
    from napari_seem.core.geo_raster import write_scene_vrt
    from napari_seem.core.image_source import ImageSourceError

    out.parent.mkdir(parents=True, exist_ok=True)
    target = out.with_name(f"{out.name.removesuffix('.zarr')}.scene.vrt")
    try:
        written = write_scene_vrt(paths, target)
    except ImageSourceError as exc:
        raise CliError(str(exc)) from exc
    print(f"band files as one raster for the workers: {written}", file=sys.stderr)
    return str(written)


def _all_ints(text: str) -> bool:
    return all(v.strip().lstrip("-").isdigit() for v in text.split(",") if v.strip())


def _map_prompts(path: str, crs: str | None) -> bool:
    from napari_seem.batch.prompts_file import is_map_prompts

    return is_map_prompts(path, crs)


def _open(image: Any, axes: str | None) -> Any:
    from napari_seem.cli._common import CliError
    from napari_seem.core.image_open import open_image
    from napari_seem.core.image_source import ImageSourceError

    try:
        return open_image(image, axes=axes)
    except ImageSourceError as exc:
        raise CliError(str(exc)) from exc


def _named_bands(text: str, source: Any) -> tuple[int, int, int]:
    from napari_seem.cli._common import CliError
    from napari_seem.core.geo_meta import geo_of, resolve_bands

    geo = geo_of(source)
    if geo is None:
        raise CliError(f"--bands {text!r}: band names need a georeferenced raster; give indices")
    try:
        bands = resolve_bands(text, geo.descriptions)
    except ValueError as exc:
        raise CliError(f"--bands: {exc}") from exc
    assert bands is not None
    print(f"bands {text} -> {bands[0]},{bands[1]},{bands[2]}", file=sys.stderr)
    return bands


def _read_map_prompts(path: str, geo: Any, crs: str | None) -> list[Any]:
    from napari_seem.batch.prompts_file import read_prompts
    from napari_seem.batch.store import BatchConfigError
    from napari_seem.cli._common import CliError

    try:
        return read_prompts(path, geo=geo, crs=crs)
    except BatchConfigError as exc:
        raise CliError(str(exc)) from exc
