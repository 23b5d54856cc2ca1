"""Prompts in map coordinates land on the pixels the same prompts in pixels name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import shapely
import zarr
from pyproj import CRS

from napari_seem.batch import BatchConfig, BatchConfigError, ModelSpec, Task, segment_image
from napari_seem.batch.prompts_file import read_prompts
from napari_seem.core.geo_gpkg import write_gpkg
from napari_seem.core.geo_meta import geo_of
from napari_seem.core.geo_prompts import map_box_to_pixels, map_points_to_pixels
from napari_seem.core.io import open_image
from napari_seem.core.prompts import Box, Points
from tests.geo.conftest import FALSE_COLOUR

# pixels of the scene (row, col), pixel centres, inside the training columns
CLICKS = [(300.0, 150.0), (120.0, 80.0), (215.0, 201.0)]


def _lonlat(paths: list[str], rows: list[float], cols: list[float]) -> list[tuple[float, float]]:
    """Pixel centres -> EPSG:4326 (lon, lat) through GDAL's own transforms (rasterio), not
    through the code under test."""
    with rasterio.open(paths[0]) as ds:
        xs, ys = rasterio.transform.xy(ds.transform, rows, cols, offset="center")
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", xs, ys)
    return list(zip(lon, lat, strict=True))


def test_epsg4326_points_land_on_the_same_pixels(landsat_paths: list[str]) -> None:
    geo = geo_of(open_image(landsat_paths))
    assert geo is not None
    rows, cols = [r for r, _ in CLICKS], [c for _, c in CLICKS]
    lonlat = _lonlat(landsat_paths, rows, cols)
    assert all(-80 < lon < -77 and 34 < lat < 37 for lon, lat in lonlat)  # North Carolina
    got = map_points_to_pixels(lonlat, geo, "EPSG:4326")
    assert got == pytest.approx(np.array(CLICKS), abs=1e-6)
    # in the raster's own CRS (no crs given) the map coordinates are the transform's
    with rasterio.open(landsat_paths[0]) as ds:
        xs, ys = rasterio.transform.xy(ds.transform, rows, cols, offset="center")
        got_rows, got_cols = rasterio.transform.rowcol(ds.transform, xs, ys)
        assert list(map(int, got_rows)) == rows and list(map(int, got_cols)) == cols
    assert map_points_to_pixels(np.c_[xs, ys], geo) == pytest.approx(np.array(CLICKS))


def test_a_box_in_degrees_bounds_its_pixel_box(landsat_paths: list[str]) -> None:
    geo = geo_of(open_image(landsat_paths))
    assert geo is not None
    (lon0, lat0), (lon1, lat1) = _lonlat(landsat_paths, [250.0, 200.0], [100.0, 160.0])
    r0, c0, r1, c1 = map_box_to_pixels((lon0, lat0, lon1, lat1), geo, "EPSG:4326")
    # the reprojected rectangle is a little rotated: its pixel box holds both corners
    assert r0 <= 200 + 1e-6 and r1 >= 250 - 1e-6 and c0 <= 100 + 1e-6 and c1 >= 160 - 1e-6
    assert r1 - r0 < 52 and c1 - c0 < 62


def _files(paths: list[str], tmp_path: Path) -> dict[str, Path]:
    """The same prompts as pixel GeoJSON, EPSG:4326 GeoJSON (crs member) and GeoPackage."""
    rows, cols = [r for r, _ in CLICKS], [c for _, c in CLICKS]
    lonlat = _lonlat(paths, rows, cols)
    box_ll = _lonlat(paths, [40.0, 90.0], [300.0, 380.0])
    pixel_features = [
        {
            "type": "Feature",
            "properties": {"label": "lake"},
            "geometry": {"type": "Point", "coordinates": [c, r]},
        }
        for r, c in CLICKS
    ]
    map_features = [
        {
            "type": "Feature",
            "properties": {"label": "lake"},
            "geometry": {"type": "Point", "coordinates": list(p)},
        }
        for p in lonlat
    ]
    pixel = tmp_path / "pixels.geojson"
    pixel.write_text(json.dumps({"type": "FeatureCollection", "features": pixel_features}))
    named = tmp_path / "lonlat.geojson"
    named.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}},
                "features": map_features,
            }
        )
    )
    bare = tmp_path / "bare.geojson"  # RFC 7946 GeoJSON: no crs member (--prompts-crs)
    bare.write_text(json.dumps({"type": "FeatureCollection", "features": map_features}))
    gpkg = tmp_path / "prompts.gpkg"
    (lon0, lat0), (lon1, lat1) = box_ll
    geoms = [shapely.Point(p) for p in lonlat] + [shapely.box(lon0, lat1, lon1, lat0)]
    rows_attr = [{"label": "lake"}] * len(lonlat) + [{"label": "field"}]
    write_gpkg(
        gpkg,
        geoms,
        rows_attr,
        crs_wkt=CRS.from_epsg(4326).to_wkt("WKT1_GDAL"),
        epsg=4326,
        geometry_type="GEOMETRY",
    )
    return {"pixel": pixel, "named": named, "bare": bare, "gpkg": gpkg}


def test_prompt_files_in_map_coordinates(landsat_paths: list[str], tmp_path: Path) -> None:
    geo = geo_of(open_image(landsat_paths))
    files = _files(landsat_paths, tmp_path)
    expected = read_prompts(files["pixel"])
    for objects in (
        read_prompts(files["named"], geo=geo),
        read_prompts(files["bare"], geo=geo, crs="EPSG:4326"),
        read_prompts(files["gpkg"], geo=geo)[:3],
    ):
        assert len(objects) == len(expected) == 3
        for got, want in zip(objects, expected, strict=True):
            assert isinstance(got.visual[0], Points) and got.label == "lake"
            assert got.visual[0].coords == pytest.approx(want.visual[0].coords, abs=1e-6)
    box = read_prompts(files["gpkg"], geo=geo)[3].visual[0]
    assert isinstance(box, Box)
    assert (box.row_min, box.col_min, box.row_max, box.col_max) == pytest.approx(
        (40, 300, 90, 380), abs=1.5
    )
    # without the scene's georeferencing, map coordinates are refused with what to do
    with pytest.raises(BatchConfigError, match="georeferenced image"):
        read_prompts(files["named"])
    # a bare GeoJSON without crs stays pixels (the format as it was): (row, col) = (lat, lon)
    lon, lat = _lonlat(landsat_paths, [300.0], [150.0])[0]
    assert read_prompts(files["bare"])[0].visual[0].coords[0] == pytest.approx([lat, lon])


@pytest.mark.slow
def test_segmenting_from_degrees_equals_segmenting_from_pixels(
    landsat_paths: list[str], tmp_path: Path
) -> None:
    """End to end with the shipped model: identical labels from both prompt files."""
    geo = geo_of(open_image(landsat_paths))
    files = _files(landsat_paths, tmp_path)
    spec = ModelSpec("seem-lite", threads=1)
    config = BatchConfig(bands=FALSE_COLOUR, tile=512, halo=32)
    out = {}
    for name, prompts in (
        ("pixel", read_prompts(files["pixel"])),
        ("named", read_prompts(files["named"], geo=geo)),
    ):
        summary = segment_image(
            landsat_paths, tmp_path / f"{name}.zarr", Task(prompts=prompts), config, model=spec
        )
        out[name] = np.asarray(zarr.open_array(summary.labels)[:])
    assert len(np.unique(out["pixel"])) >= 3  # background and at least two objects
    assert np.array_equal(out["pixel"], out["named"])
