"""Reading georeferenced rasters: the real Landsat files through ``open_image``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from napari_seem.core.geo_meta import geo_of
from napari_seem.core.io import ImageSourceError, open_image
from tests.geo.conftest import EPSG, FALSE_COLOUR, PIXEL


def test_band_files_are_one_scene_with_its_georeferencing(landsat_paths: list[str]) -> None:
    source = open_image(landsat_paths)
    geo = geo_of(source)
    assert geo is not None
    assert source.axes == "yxc" and source.levels[0].shape == (443, 489, 6)
    with rasterio.open(landsat_paths[0]) as ds:
        assert ds.crs.to_epsg() == EPSG
        assert geo.crs_name == f"EPSG:{EPSG}"
        assert rasterio.crs.CRS.from_wkt(geo.crs) == ds.crs
        assert geo.transform == tuple(ds.transform)[:6]
        assert geo.bounds == pytest.approx(tuple(ds.bounds))
    assert geo.pixel_size == (PIXEL, PIXEL) and geo.pixel_area == PIXEL**2
    assert geo.nodata == (-99999.0,) * 5 + (-32768.0,)
    assert geo.dtypes == ("float32",) * 5 + ("int16",)
    assert geo.descriptions == tuple(Path(p).stem for p in landsat_paths)
    # mixed dtypes / nodata values: float32 with NaN on each band's own nodata pixels
    assert source.dtype == np.float32 and source.config.nodata is None


def test_windowed_reads_match_rasterio_and_mark_each_bands_nodata(
    landsat_paths: list[str],
) -> None:
    source = open_image(landsat_paths)
    window = (30, 40, 230, 300)  # rows 30..230, cols 40..300
    got = source.read_region(*window)
    assert got.shape == (200, 260, 6)
    for band, path in enumerate(landsat_paths):
        with rasterio.open(path) as ds:
            raw = ds.read(1, window=Window(40, 30, 260, 200))
            nodata = raw == ds.nodata
        assert np.array_equal(np.isnan(got[..., band]), nodata)
        assert np.array_equal(got[..., band][~nodata], raw[~nodata].astype(np.float32))
    # band 70 (int16, -32768) has nodata where the float bands hold data: NaN, not -32768
    whole = source.read_region(0, 0, 443, 489)
    assert np.isnan(whole[..., 5]).sum() > np.isnan(whole[..., 0]).sum() > 0
    assert not (whole[..., 5] == -32768).any()


def test_valid_mask_is_the_files_nodata(landsat_paths: list[str]) -> None:
    source = open_image(landsat_paths, bands=FALSE_COLOUR)
    valid = source.read_valid_mask(0, 0, 443, 489)
    with rasterio.open(landsat_paths[3]) as ds:  # NIR, one of the mapped bands
        expected = ds.read(1) != ds.nodata
    assert np.array_equal(valid, expected)
    rgb = source.read_rgb(0, 0, 443, 489)
    assert (rgb[~valid] == 0).all() and rgb[valid].max() == 255


def test_bands_by_name_and_stretch_from_the_whole_scene(landsat_paths: list[str]) -> None:
    by_name = open_image(landsat_paths, bands="lsat7_2000_40,lsat7_2000_30,lsat7_2000_20")
    assert by_name.bands == FALSE_COLOUR
    whole = by_name.read_rgb(0, 0, 443, 489)
    # tiles agree with the whole picture: one stretch for the scene, not one per tile
    for box in [(0, 0, 200, 250), (200, 250, 443, 489), (100, 300, 180, 420)]:
        tile = by_name.read_rgb(*box)
        assert np.array_equal(tile, whole[box[0] : box[2], box[1] : box[3]])
    # the limits are the percentiles of the valid pixels of the whole scene
    lo, hi = by_name.percentile_limits()
    nir = by_name.read_region(0, 0, 443, 489)[..., 3]
    assert lo[3] == pytest.approx(np.percentile(nir[~np.isnan(nir)], 0.5))
    assert hi[3] == pytest.approx(np.percentile(nir[~np.isnan(nir)], 99.5))
    with pytest.raises(ImageSourceError, match="lsat7_2000_10"):
        open_image(landsat_paths, bands="nir,red,green")  # names the bands it has


def test_one_file_scene_keeps_dtype_nodata_and_overviews(landsat_tif: Path) -> None:
    source = open_image(str(landsat_tif), bands=("nir", "red", "green"))
    assert source.bands == FALSE_COLOUR
    assert source.dtype == np.float32 and source.config.nodata == -99999.0
    assert [lev.shape for lev in source.levels] == [(443, 489, 6), (222, 245, 6), (111, 123, 6)]
    assert [source.level_factors(k) for k in range(3)] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    with rasterio.open(landsat_tif, overview_level=0) as ds:
        overview = ds.read(4)
    assert np.array_equal(source.read_region(0, 0, 443, 489, level=1)[..., 3], overview)
    assert source.level_for_step(4) == 2
    source.close()


def test_plain_tiffs_keep_the_tifffile_reader(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
    source = open_image(str(path))
    assert source.config.kind == "tiff" and geo_of(source) is None


def test_scene_files_must_share_the_grid(landsat_paths: list[str], tmp_path: Path) -> None:
    with rasterio.open(landsat_paths[0]) as ds:
        profile, band = ds.profile, ds.read(1)
    profile.update(transform=rasterio.Affine(28.5, 0, 630534.0 + 28.5, 0, -28.5, 228114.0))
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write(band, 1)
    with pytest.raises(ImageSourceError, match="transform"):
        open_image([landsat_paths[0], str(shifted)])


def test_a_vrt_of_the_band_files_is_the_same_scene(
    landsat_paths: list[str], tmp_path: Path
) -> None:
    """One path for the whole scene (Dask workers, a model server, GDAL tools)."""
    from napari_seem.core.geo_raster import write_scene_vrt

    vrt = write_scene_vrt(landsat_paths, tmp_path / "scene.vrt")
    with rasterio.open(vrt) as ds:  # GDAL itself reads it as six bands
        assert ds.count == 6 and ds.crs.to_epsg() == EPSG and ds.nodatavals[5] == -32768
    one = open_image(str(vrt), bands="lsat7_2000_40,lsat7_2000_30,lsat7_2000_20")
    many = open_image(landsat_paths, bands=FALSE_COLOUR)
    assert geo_of(one) == geo_of(many)
    assert one.dtype == many.dtype == np.float32
    assert np.array_equal(one.read_rgb(0, 0, 443, 489), many.read_rgb(0, 0, 443, 489))
    assert np.array_equal(
        one.read_region(0, 0, 443, 489), many.read_region(0, 0, 443, 489), equal_nan=True
    )
