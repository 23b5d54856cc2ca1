"""The scene's real nodata border (about 30 pixels of -99999 around the image) never becomes
part of an object, in the labels or in the polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import zarr

from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image
from napari_seem.batch.geo_output import export_geo
from napari_seem.core.geo_gpkg import read_gpkg
from napari_seem.core.io import open_image
from napari_seem.core.prompts import Box, ObjectPrompt
from napari_seem.core.variants import seem_lite_shipped
from tests.geo.conftest import FALSE_COLOUR

pytestmark = pytest.mark.slow

# boxes straddling the border: half nodata, half land (top-left and bottom-right corners)
BOXES = (Box(0, 0, 80, 80), Box(380, 400, 442, 488))


def test_boxes_across_the_nodata_border_stop_at_it(
    landsat_paths: list[str], tmp_path: Path
) -> None:
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    source = open_image(landsat_paths, bands=FALSE_COLOUR)
    valid = source.read_valid_mask(0, 0, 443, 489)
    assert 0.1 < (~valid).mean() < 0.3  # the real border: about 15 % of the scene
    task = Task(prompts=tuple(ObjectPrompt((b,)) for b in BOXES))
    spec = ModelSpec("seem-lite", threads=1)
    config = BatchConfig(bands=FALSE_COLOUR, tile=512, halo=32)

    # the same false-colour pixels as a plain uint8 array (nodata drawn black, no mask):
    # the model's objects do reach into the border, so the check below can fail
    plain = segment_image(
        source.read_rgb(0, 0, 443, 489),
        tmp_path / "plain.zarr",
        task,
        BatchConfig(tile=512, halo=32),
        model=spec,
    )
    plain_labels = np.asarray(zarr.open_array(plain.labels)[:])
    assert (plain_labels[~valid] > 0).sum() > 100

    summary = segment_image(landsat_paths, tmp_path / "geo.zarr", task, config, model=spec)
    labels = np.asarray(zarr.open_array(summary.labels)[:])
    assert summary.objects == 2 and (labels > 0).sum() > 1000
    assert not (labels[~valid] > 0).any()

    gpkg, tif = export_geo(summary.labels, [tmp_path / "boxes.gpkg", tmp_path / "boxes.tif"])
    with rasterio.open(tif) as ds:
        assert not (ds.read(1)[~valid] > 0).any()
        transform = ds.transform
    border = shapely.union_all(
        [
            shapely.geometry.shape(g)
            for g, _ in rasterio.features.shapes(
                (~valid).astype(np.uint8), mask=~valid, transform=transform
            )
        ]
    )
    for geom in read_gpkg(gpkg).geometries:
        assert geom.intersection(border).area == pytest.approx(0.0, abs=1e-6)
