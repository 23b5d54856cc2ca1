"""napari: a GeoTIFF opens on the map (scale / translate in map units, CRS in the metadata);
georeferenced labels save as a GeoTIFF and as polygons. No viewer is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from napari_seem._napari.reader import get_reader
from napari_seem._napari.writer import write_labels_polygons, write_labels_tiff
from napari_seem.core.geo_gpkg import read_gpkg
from tests.geo.conftest import EPSG, PIXEL

napari = pytest.importorskip("napari")


def test_geotiff_layers_sit_on_the_map(landsat_tif: Path) -> None:
    reader = get_reader(str(landsat_tif))
    assert reader is not None
    ((data, meta, kind),) = reader(str(landsat_tif))
    assert kind == "image" and meta["channel_axis"] == 2 and meta["multiscale"]
    assert [tuple(level.shape) for level in data][:1] == [(443, 489, 6)]
    assert meta["name"][3].endswith("[nir]")
    assert meta["metadata"][0]["crs"] == f"EPSG:{EPSG}"
    assert meta["metadata"][0]["napari_seem"] == {"path": str(landsat_tif), "channel": 0}
    assert meta["scale"] == (PIXEL, PIXEL)
    layer = napari.layers.Image(data[0][..., 3], scale=meta["scale"], translate=meta["translate"])
    with rasterio.open(landsat_tif) as ds:
        for row, col in [(0, 0), (100, 250), (442, 488)]:
            x, y = ds.xy(row, col)  # the pixel centre on the map
            world = layer.data_to_world((row, col))
            assert tuple(world) == pytest.approx((-y, x))
        band = ds.read(4, window=rasterio.windows.Window(40, 30, 50, 20))
    assert np.array_equal(np.asarray(data[0][30:50, 40:90, 3]), band)  # lazy, by window


def test_plain_tiffs_are_left_to_napari(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    assert get_reader(str(tmp_path / "plain.tif")) is None


def test_georeferenced_labels_save_as_geotiff_and_geopackage(
    landsat_tif: Path, tmp_path: Path
) -> None:
    ((_, meta, _),) = get_reader(str(landsat_tif))(str(landsat_tif))  # type: ignore[misc]
    labels = np.zeros((443, 489), np.uint32)
    labels[100:140, 200:260] = 1
    labels[300:310, 50:55] = 2
    layer_meta = {
        "name": "water",
        "metadata": meta["metadata"][0],
        "features": {"index": [1, 2], "class_name": ["water", "forest"], "score": [0.9, 0.4]},
    }
    (tif,) = write_labels_tiff(str(tmp_path / "water.tif"), labels, layer_meta)
    with rasterio.open(tif) as ds, rasterio.open(landsat_tif) as scene:
        assert ds.crs == scene.crs and ds.transform == scene.transform
        assert np.array_equal(ds.read(1), labels)
    (gpkg,) = write_labels_polygons(str(tmp_path / "water.gpkg"), labels, layer_meta)
    layer = read_gpkg(gpkg)
    assert [(r["id"], r["class"], r["pixels"]) for r in layer.rows] == [
        (1, "water", 2400),
        (2, "forest", 50),
    ]
    assert layer.geometries[0].area == pytest.approx(2400 * PIXEL**2)
    with pytest.raises(ValueError, match="no georeferencing"):
        write_labels_polygons(str(tmp_path / "x.gpkg"), labels, {"name": "x", "metadata": {}})


def test_a_written_labels_geotiff_reopens_as_labels(landsat_tif: Path, tmp_path: Path) -> None:
    ((_, meta, _),) = get_reader(str(landsat_tif))(str(landsat_tif))  # type: ignore[misc]
    labels = np.zeros((443, 489), np.uint32)
    labels[10:20, 10:20] = 7
    (tif,) = write_labels_tiff(str(tmp_path / "l.tif"), labels, {"metadata": meta["metadata"][0]})
    ((data, lmeta, kind),) = get_reader(tif)(tif)  # type: ignore[misc]
    assert kind == "labels" and lmeta["scale"] == (PIXEL, PIXEL)
    assert np.array_equal(np.asarray(data), labels)


def test_target_labels_of_a_geotiff_carry_its_georeferencing(landsat_tif: Path) -> None:
    """The widget's target labels over a GeoTIFF band keep ``metadata["geo"]``, so the writer
    can save what was segmented in napari as a GeoTIFF."""
    from napari.components import ViewerModel

    from napari_seem._napari.layers import new_target_labels

    ((data, meta, _),) = get_reader(str(landsat_tif))(str(landsat_tif))  # type: ignore[misc]
    viewer = ViewerModel()
    image = viewer.add_image(
        data[0][..., 3],
        scale=meta["scale"],
        translate=meta["translate"],
        metadata=meta["metadata"][3],
    )
    labels = new_target_labels(viewer, image, "target")
    assert labels.data.shape == (443, 489)
    assert labels.metadata["crs"] == f"EPSG:{EPSG}"
    assert labels.metadata["geo"] == meta["metadata"][3]["geo"]
    for pixel in [(0, 0), (100, 250), (442, 488)]:  # labels sit on the image, on the map
        assert tuple(labels.data_to_world(pixel)) == pytest.approx(
            tuple(image.data_to_world(pixel))
        )
