"""The round trip on the real Landsat scene with the shipped seem-lite: one command segments
"water" and writes a labels COG and a GeoPackage; reading them back gives the scene's CRS and
transform, polygons inside the scene and areas equal to pixel counts x 28.5^2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely

from napari_seem.cli.main import main
from napari_seem.core.geo_gpkg import read_gpkg
from napari_seem.core.variants import seem_lite_shipped
from tests.geo.conftest import EPSG, PIXEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def water(landsat_tif: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``napari-seem segment scene.tif --out water.gpkg --text water`` (and a COG)."""
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    out = tmp_path_factory.mktemp("water")
    argv = [
        "segment",
        str(landsat_tif),
        "--out",
        str(out / "water.gpkg"),
        "--also-write",
        str(out / "water.tif"),
        "--also-write",
        str(out / "water.geojson"),
        "--text",
        "water",
        "--bands",
        "nir,red,green",
        "--variant",
        "seem-lite",
        "--threads",
        "1",
        "--tile",
        "512",
        "--halo",
        "32",
        "--no-progress",
    ]
    assert main(argv) == 0
    return {"dir": out, "argv": argv}


def test_labels_geotiff_has_the_scene_crs_and_transform(
    water: dict[str, Any], landsat_tif: Path
) -> None:
    with rasterio.open(landsat_tif) as scene, rasterio.open(water["dir"] / "water.tif") as ds:
        assert ds.crs == scene.crs and ds.crs.to_epsg() == EPSG
        assert ds.transform == scene.transform
        assert ds.shape == scene.shape and ds.dtypes == ("uint32",)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        labels = ds.read(1)
    assert labels.max() > 0, "seem-lite found no water: the round trip checks nothing"


def test_polygons_lie_in_the_scene_with_areas_of_their_pixels(
    water: dict[str, Any], landsat_tif: Path
) -> None:
    with rasterio.open(water["dir"] / "water.tif") as ds:
        labels = ds.read(1)
    with rasterio.open(landsat_tif) as scene:
        x0, y0, x1, y1 = scene.bounds
        crs = scene.crs
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    pixels = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    layer = read_gpkg(water["dir"] / "water.gpkg")
    assert layer.srs_id == EPSG and rasterio.crs.CRS.from_wkt(layer.crs) == crs
    assert sorted(r["id"] for r in layer.rows) == sorted(pixels)  # one feature per object
    for geom, row in zip(layer.geometries, layer.rows, strict=True):
        gx0, gy0, gx1, gy1 = geom.bounds
        assert x0 <= gx0 < gx1 <= x1 and y0 <= gy0 < gy1 <= y1
        expected = pixels[row["id"]] * PIXEL**2
        assert geom.area == pytest.approx(expected, rel=0.01)
        assert row["area"] == pytest.approx(expected, rel=0.01)
        assert row["class"] == "water" and 0 < row["score"] <= 1
        assert geom.is_valid and geom.geom_type == "MultiPolygon"


def test_gdal_reads_the_geopackage_and_geojson(water: dict[str, Any]) -> None:
    """An independent reader (GDAL/OGR through pyogrio, in the dev extra) agrees."""
    pyogrio = pytest.importorskip("pyogrio")
    ours = read_gpkg(water["dir"] / "water.gpkg")
    for name in ("water.gpkg", "water.geojson"):
        info = pyogrio.read_info(water["dir"] / name)
        assert info["crs"] == f"EPSG:{EPSG}" and info["features"] == len(ours.rows)
        _, _, wkb, fields = pyogrio.raw.read(water["dir"] / name)
        areas = sorted(shapely.from_wkb(w).area for w in wkb)
        assert areas == pytest.approx(sorted(g.area for g in ours.geometries))
        assert set(fields[1]) == {"water"}


def test_geojson_features_are_ready_for_a_geodataframe(water: dict[str, Any]) -> None:
    data = json.loads((water["dir"] / "water.geojson").read_text())
    assert data["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{EPSG}"
    for feature in data["features"]:
        assert set(feature["properties"]) == {"id", "class", "score", "area", "pixels"}
        assert shapely.geometry.shape(feature["geometry"]).area == pytest.approx(
            feature["properties"]["pixels"] * PIXEL**2
        )


def test_rerun_resumes_and_rewrites_the_outputs(water: dict[str, Any]) -> None:
    gpkg = water["dir"] / "water.gpkg"
    gpkg.unlink()
    assert main(water["argv"]) == 0  # the labels zarr is complete: only the outputs are written
    assert read_gpkg(gpkg).rows


def test_objects_across_tile_seams_are_one_feature(landsat_tif: Path, tmp_path: Path) -> None:
    """Tiles of 256 (cores of 192 pixels): forest spans the seams, and each merged object
    is one feature whose outline crosses them."""
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    out = tmp_path / "forest.gpkg"
    argv = ["segment", str(landsat_tif), "--out", str(out), "--also-write", str(tmp_path / "f.tif")]
    argv += ["--text", "forest", "--bands", "3,2,1", "--variant", "seem-lite", "--threads", "1"]
    assert main([*argv, "--tile", "256", "--halo", "32", "--no-progress"]) == 0
    with rasterio.open(tmp_path / "f.tif") as ds:
        labels = ds.read(1)
        transform = ds.transform
    layer = read_gpkg(out)
    ids = sorted(int(i) for i in np.unique(labels) if i)
    assert sorted(r["id"] for r in layer.rows) == ids
    seam_x = transform.c + 192 * transform.a  # the first vertical seam between tile cores
    crossing = [g for g in layer.geometries if g.bounds[0] < seam_x < g.bounds[2]]
    assert crossing, "no object crosses the seam: the test checks nothing"
    for geom, row in zip(layer.geometries, layer.rows, strict=True):
        assert geom.area == pytest.approx((labels == row["id"]).sum() * PIXEL**2, rel=0.01)


def test_an_overview_level_is_georeferenced_on_its_own_grid(
    landsat_tif: Path, tmp_path: Path
) -> None:
    """--level 1 segments the 2x overview; its labels GeoTIFF spans the same scene with the
    overview's pixel size (GDAL's: scene extent / overview size)."""
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    out = tmp_path / "coarse.tif"
    argv = ["segment", str(landsat_tif), "--out", str(out), "--text", "forest", "--level", "1"]
    argv += ["--bands", "3,2,1", "--variant", "seem-lite", "--threads", "1", "--no-progress"]
    assert main([*argv, "--tile", "256", "--halo", "32"]) == 0
    with rasterio.open(out) as ds, rasterio.open(landsat_tif) as scene:
        with rasterio.open(landsat_tif, overview_level=0) as overview:
            assert ds.shape == overview.shape == (222, 245)
            assert ds.transform.almost_equals(overview.transform)
        assert ds.crs == scene.crs
        assert ds.bounds == pytest.approx(tuple(scene.bounds))
        assert ds.read(1).max() > 0
