"""Python: ``napari_seem.segment(points=[(x, y)], crs="EPSG:4326")`` on a GeoTIFF scene, and
results as GeoJSON (``labels_geojson``, ``SeemApp.to_geojson``)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.warp
import shapely

import napari_seem
from napari_seem.core.geo_meta import geo_of
from napari_seem.core.geo_write import labels_geojson
from napari_seem.core.io import open_image
from napari_seem.core.prompts import PromptError
from napari_seem.core.variants import seem_lite_shipped
from tests.geo.conftest import EPSG, FALSE_COLOUR, PIXEL

pytestmark = pytest.mark.slow


def _lonlat(path: str, row: float, col: float) -> tuple[float, float]:
    with rasterio.open(path) as ds:
        x, y = rasterio.transform.xy(ds.transform, [row], [col], offset="center")
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", x, y)
    return lon[0], lat[0]


@pytest.fixture(scope="module")
def model() -> str:
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    return "seem-lite"


def test_a_click_in_degrees_is_the_click_in_pixels(landsat_paths: list[str], model: str) -> None:
    row, col = 300.0, 150.0
    lon, lat = _lonlat(landsat_paths[0], row, col)
    kwargs = {"bands": FALSE_COLOUR, "model": model}
    in_pixels = napari_seem.segment(landsat_paths, points=[(row, col)], **kwargs)
    in_degrees = napari_seem.segment(landsat_paths, points=[(lon, lat)], crs="EPSG:4326", **kwargs)
    assert in_pixels[0].area > 0
    assert np.array_equal(in_pixels.to_labels(), in_degrees.to_labels())
    with pytest.raises(PromptError, match="georeferenced"):
        napari_seem.segment(np.zeros((64, 64, 3), np.uint8), points=[(1, 2)], crs="EPSG:4326")


def test_results_as_geojson(landsat_paths: list[str], model: str) -> None:
    found = napari_seem.segment(landsat_paths, text="water", bands=FALSE_COLOUR, model=model)
    geo = geo_of(open_image(landsat_paths))
    assert geo is not None
    labels = found.to_labels()
    fc = labels_geojson(labels, geo, found.class_table())
    assert fc["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{EPSG}"
    ids = sorted(int(i) for i in np.unique(labels) if i)
    assert [f["properties"]["id"] for f in fc["features"]] == ids and ids
    for feature in fc["features"]:
        props = feature["properties"]
        assert props["class"] == "water"
        geom = shapely.geometry.shape(feature["geometry"])
        assert geom.area == pytest.approx((labels == props["id"]).sum() * PIXEL**2)


def test_seem_app_returns_committed_objects_as_geojson(
    landsat_paths: list[str], model: str
) -> None:
    pytest.importorskip("anywidget")
    from napari_seem.jupyter import SeemApp

    app = SeemApp(landsat_paths, model=model, bands=FALSE_COLOUR, vocabulary=["water"])
    try:
        app.canvas.add_prompt({"kind": "point", "row": 300, "col": 150, "positive": True})
        app.canvas.segment()
        app.canvas.commit()
        fc = app.to_geojson(simplify=30.0)
    finally:
        app.canvas.close()
    assert len(fc["features"]) == 1
    (feature,) = fc["features"]
    pixels = int((np.asarray(app.labels) == 1).sum())
    assert pixels > 0 and feature["properties"]["area"] == pixels * PIXEL**2
    x0, y0, x1, y1 = shapely.geometry.shape(feature["geometry"]).bounds
    bx0, by0, bx1, by1 = geo_of(app.canvas.source).bounds  # type: ignore[union-attr]
    assert bx0 <= x0 < x1 <= bx1 and by0 <= y0 < y1 <= by1


def test_interactive_answers_leave_the_nodata_border_out(
    landsat_paths: list[str], model: str
) -> None:
    """A box across the border (the model's mask reaches into it: 130 px when this was
    written) and text grounding: no object pixel on nodata."""
    valid = open_image(landsat_paths, bands=FALSE_COLOUR).read_valid_mask(0, 0, 443, 489)
    kwargs = {"bands": FALSE_COLOUR, "model": model}
    for found in (
        napari_seem.segment(landsat_paths, boxes=[(0, 0, 80, 80)], **kwargs),
        napari_seem.segment(landsat_paths, text="water", **kwargs),
    ):
        labels = found.to_labels()
        assert (labels > 0).sum() > 500
        assert not (labels[~valid] > 0).any()
