"""Reader (zarr / OME-Zarr, lazy multiscale) and writers (OME-Zarr labels, TIFF) round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_seem._napari.ome_zarr import ngff_multiscales, write_ome_labels
from napari_seem._napari.reader import get_reader
from napari_seem._napari.writer import write_labels_tiff, write_labels_zarr


def _pyramid(path: Path, levels: int = 3) -> np.ndarray:
    import zarr

    rng = np.random.default_rng(0)
    base = rng.integers(0, 4000, size=(2, 256, 256), dtype=np.uint16)  # (c, y, x)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for level in range(levels):
        data = base[:, :: 2**level, :: 2**level]
        arr = group.create_array(str(level), shape=data.shape, chunks=(1, 64, 64), dtype="uint16")
        arr[:] = data
    group.attrs["multiscales"] = ngff_multiscales("cyx", levels)
    return base


def test_reader_opens_ome_zarr_multiscale_lazily(tmp_path: Path) -> None:
    import dask.array as da

    base = _pyramid(tmp_path / "scene.zarr")
    reader = get_reader(str(tmp_path / "scene.zarr"))
    assert reader is not None
    ((data, meta, kind),) = reader(str(tmp_path / "scene.zarr"))
    assert kind == "image" and meta["multiscale"] is True and meta["channel_axis"] == 0
    assert [lvl.shape for lvl in data] == [(2, 256, 256), (2, 128, 128), (2, 64, 64)]
    assert all(isinstance(lvl, da.Array) for lvl in data)  # nothing loaded yet
    np.testing.assert_array_equal(np.asarray(data[0][1, :5, :5]), base[1, :5, :5])
    assert meta["metadata"][1]["napari_seem"] == {
        "path": str(tmp_path / "scene.zarr"),
        "channel": 1,
    }


def test_reader_declines_other_paths(tmp_path: Path) -> None:
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None


def test_labels_zarr_round_trip_with_class_table(tmp_path: Path) -> None:
    labels = np.zeros((3, 64, 80), np.uint32)
    labels[1, 10:20, 5:9] = 4
    features = pd.DataFrame(
        {"index": [0, 4], "class_name": ["background", "cell"], "score": [np.nan, 0.7]}
    )
    out = tmp_path / "seg.zarr"
    (written,) = write_labels_zarr(str(out), labels, {"name": "SEEM labels", "features": features})
    assert written == str(out)
    ((data, meta, kind),) = get_reader(str(out))(str(out))  # type: ignore[misc]
    assert kind == "labels" and meta["name"] == "SEEM labels"
    np.testing.assert_array_equal(np.asarray(data), labels)
    table = meta["features"]
    assert list(table["class_name"]) == ["background", "cell"]
    assert list(table["index"]) == [0, 4] and table["score"][1] == pytest.approx(0.7)
    with pytest.raises(FileExistsError):
        write_ome_labels(out, labels)


def test_labels_tiff_round_trip(tmp_path: Path) -> None:
    import tifffile

    labels = np.zeros((64, 64), np.int32)
    labels[3:9, 3:9] = 2
    meta: dict[str, Any] = {"name": "x", "features": {"index": [2], "class_name": ["nucleus"]}}
    (path,) = write_labels_tiff(str(tmp_path / "seg.tif"), labels, meta)
    with tifffile.TiffFile(path) as tif:
        back = tif.asarray()
        description = json.loads(tif.pages[0].description)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    assert description["napari_seem"]["classes"] == [{"index": 2, "class_name": "nucleus"}]


@pytest.mark.qt
def test_viewer_open_and_save_through_npe2(make_napari_viewer: Any, tmp_path: Path) -> None:
    """napari's File > Open and File > Save layers reach the plugin's reader and writer."""
    _pyramid(tmp_path / "scene.zarr")
    viewer = make_napari_viewer(show=False)
    layers = viewer.open(str(tmp_path / "scene.zarr"), plugin="napari-seem")
    assert [layer.name for layer in layers] == ["scene [0]", "scene [1]"]
    assert layers[0].multiscale
    labels = viewer.add_labels(np.zeros((256, 256), np.uint32), name="seg")
    labels.data[5:9, 5:9] = 1
    saved = labels.save(str(tmp_path / "seg.zarr"), plugin="napari-seem")
    assert saved == [str(tmp_path / "seg.zarr")]
    (back,) = viewer.open(str(tmp_path / "seg.zarr"), plugin="napari-seem")
    assert back.name.startswith("seg") and np.asarray(back.data).sum() == 16
