"""Polygons of labels (exact, streamed, seam-joined) and the GeoPackage writer / reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import CRS

from napari_seem.core.geo_gpkg import read_gpkg, write_gpkg
from napari_seem.core.geo_meta import GeoInfo
from napari_seem.core.geo_write import iter_object_polygons, write_features

GEO = GeoInfo(
    crs=CRS.from_epsg(32119).to_wkt(),
    crs_name="EPSG:32119",
    transform=(28.5, 0.0, 630534.0, 0.0, -28.5, 228114.0),
    width=60,
    height=50,
)


def _labels() -> np.ndarray:
    labels = np.zeros((50, 60), np.uint32)
    labels[5:40, 10:20] = 1  # tall: crosses every block row of 8
    labels[30:34, 40:44] = 2
    labels[30:34, 50:54] = 2  # two parts, one object
    labels[45:50, 0:60] = 3  # along the bottom edge
    return labels


def test_objects_are_one_feature_each_with_exact_areas() -> None:
    labels = _labels()
    table = [{"id": 1, "class_name": "lake", "score": 0.5, "bbox": [5, 10, 40, 20]}]
    streamed = list(iter_object_polygons(labels, GEO, table, block_rows=8))
    whole = {f.id: f for f in iter_object_polygons(labels, GEO, block_rows=50)}
    assert sorted(f.id for f in streamed) == [1, 2, 3]
    for feat in streamed:
        pixels = int((labels == feat.id).sum())
        assert feat.pixels == pixels and feat.area == pixels * 28.5**2
        assert feat.geometry.area == pytest.approx(feat.area)
        assert feat.geometry.equals(whole[feat.id].geometry)  # block rows join exactly
    one, two = (next(f for f in streamed if f.id == k) for k in (1, 2))
    assert len(one.geometry.geoms) == 1 and len(two.geometry.geoms) == 2
    assert one.class_name == "lake" and one.score == 0.5
    # object 1's bbox ends at row 40: it is finished before the last block rows are read
    assert [f.id for f in streamed].index(1) < [f.id for f in streamed].index(3)
    assert one.geometry.bounds == pytest.approx(
        (630534.0 + 10 * 28.5, 228114.0 - 40 * 28.5, 630534.0 + 20 * 28.5, 228114.0 - 5 * 28.5)
    )


def test_simplify_tolerance_is_in_map_units() -> None:
    labels = np.zeros((50, 60), np.uint32)
    yy, xx = np.mgrid[:50, :60]
    labels[(yy - 25) ** 2 + (xx - 30) ** 2 < 20**2] = 1  # a disc: staircase outline
    exact = next(iter_object_polygons(labels, GEO))
    coarse = next(iter_object_polygons(labels, GEO, simplify=30.0))
    fine = next(iter_object_polygons(labels, GEO, simplify=1.0))
    count = shapely.get_num_coordinates
    assert count(coarse.geometry) < count(fine.geometry) <= count(exact.geometry)
    assert coarse.area == exact.area  # the attribute: pixels x pixel area
    assert coarse.geometry.hausdorff_distance(exact.geometry) <= 30.0 + 1e-6


def test_geopackage_round_trip(tmp_path: Path) -> None:
    features = list(iter_object_polygons(_labels(), GEO))
    path = write_features(tmp_path / "objects.gpkg", features, GEO)
    layer = read_gpkg(path)
    assert layer.name == "objects" and layer.srs_id == 32119
    assert CRS.from_wkt(layer.crs).to_epsg() == 32119
    assert [r["id"] for r in layer.rows] == [f.id for f in features]
    for geom, feat in zip(layer.geometries, features, strict=True):
        assert geom.equals(feat.geometry)
    empty = write_gpkg(tmp_path / "empty.gpkg", [], [], crs_wkt="", epsg=None)
    assert read_gpkg(empty).geometries == []
    with pytest.raises(ValueError, match="layer name"):
        write_gpkg(tmp_path / "x.gpkg", [], [], crs_wkt="", epsg=None, layer="drop table")
    pyogrio = pytest.importorskip("pyogrio")  # GDAL's reading of the same file
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:32119" and info["geometry_type"] == "MultiPolygon"
    assert info["features"] == 3
