"""Image sources: real zarr / OME-Zarr / TIFF stores written in tmp_path, windowed reads."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_seem.core.io import ImageSourceError, open_image
from tests.ome import write_ome_zarr


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---- sources --------------------------------------------------------------------------------


def test_numpy_grey_region_equals_slicing() -> None:
    img = _rng().integers(0, 255, (50, 70), dtype=np.uint8)
    src = open_image(img)
    assert src.axes == "yx"
    assert src.spatial_shape == (50, 70)
    assert src.plane_shape == ()
    assert src.num_channels == 1
    assert len(src.levels) == 1
    region = src.read_region(3, 5, 20, 33)
    assert region.shape == (17, 28, 1)
    np.testing.assert_array_equal(region[..., 0], img[3:20, 5:33])
    rgb = src.read_rgb(3, 5, 20, 33)
    assert rgb.shape == (17, 28, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.repeat(img[3:20, 5:33, None], 3, axis=-1))
    assert src.read_valid_mask(3, 5, 20, 33).all()


def test_numpy_rgb_is_kept() -> None:
    img = _rng().integers(0, 255, (40, 30, 3), dtype=np.uint8)
    src = open_image(img)
    assert src.axes == "yxc" and src.num_channels == 3
    np.testing.assert_array_equal(src.read_rgb(0, 0, 40, 30), img)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_array_path_v2_v3(tmp_path: Path, fmt: int) -> None:
    img = _rng().integers(0, 60000, (64, 96), dtype=np.uint16)
    path = tmp_path / f"img_v{fmt}.zarr"
    arr = zarr.create_array(
        store=str(path), shape=img.shape, chunks=(16, 32), dtype=img.dtype, zarr_format=fmt
    )
    arr[...] = img
    src = open_image(path)
    assert src.config.kind == "zarr"
    np.testing.assert_array_equal(src.read_region(10, 20, 50, 90)[..., 0], img[10:50, 20:90])
    # the zarr array object itself works too
    src2 = open_image(zarr.open(str(path), mode="r"))
    np.testing.assert_array_equal(src2.read_region(0, 0, 5, 7)[..., 0], img[:5, :7])
    assert src.fingerprint() == open_image(path).fingerprint()


def test_ome_zarr_ngff_04_levels(tmp_path: Path) -> None:
    img = _rng().integers(0, 4000, (64, 80), dtype=np.uint16)
    path = tmp_path / "img04.ome.zarr"
    path.mkdir()
    axes = [
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    write_ome_zarr(path, img, axes, "0.4")
    src = open_image(path)
    assert src.config.kind == "ome-zarr"
    assert src.axes == "yx"
    assert len(src.levels) == 3
    assert [src.level_factors(k) for k in range(3)] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert src.levels[2].shape == (16, 20)
    np.testing.assert_array_equal(src.read_region(10, 20, 30, 44)[..., 0], img[10:30, 20:44])
    # a coarse read maps level-0 coordinates: level 1 pixel i covers level-0 rows 2i, 2i+1
    assert src.level_box(10, 20, 30, 44, level=1) == (5, 10, 15, 22)
    coarse = src.read_region(10, 20, 30, 44, level=1)
    np.testing.assert_array_equal(coarse[..., 0], img[10:30:2, 20:44:2])
    assert src.level_box(10, 21, 31, 44, level=2) == (2, 5, 8, 11)
    np.testing.assert_array_equal(
        src.read_region(10, 21, 31, 44, level=2)[..., 0], img[::4, ::4][2:8, 5:11]
    )
    assert src.fingerprint(level=0) != src.fingerprint(level=1)


def test_ome_zarr_ngff_05_channels_and_default_level(tmp_path: Path) -> None:
    img = _rng().integers(0, 255, (3, 48, 64), dtype=np.uint8)
    path = tmp_path / "img05.ome.zarr"
    path.mkdir()
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    write_ome_zarr(path, img, axes, "0.5")
    src = open_image(path, level=1)
    assert src.axes == "cyx" and src.num_channels == 3 and src.spatial_shape == (48, 64)
    assert len(src.levels) == 3
    rgb = src.read_rgb(8, 16, 40, 48)  # default level 1
    np.testing.assert_array_equal(rgb, img[:, 8:40:2, 16:48:2].transpose(1, 2, 0))
    full = src.read_rgb(8, 16, 40, 48, level=0)
    np.testing.assert_array_equal(full, img[:, 8:40, 16:48].transpose(1, 2, 0))
    # a zarr Group object opens the same way
    group = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(
        open_image(group).read_region(0, 0, 4, 4, level=0)[0, 0], img[:, 0, 0]
    )


def test_tiff_grey_rgb_and_stack(tmp_path: Path) -> None:
    grey = _rng().integers(0, 60000, (60, 80), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    src = open_image(tmp_path / "grey.tif")
    assert src.config.kind == "tiff" and src.axes == "yx"
    np.testing.assert_array_equal(src.read_region(5, 6, 30, 70)[..., 0], grey[5:30, 6:70])
    src.close()

    rgb = _rng().integers(0, 255, (30, 40, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, photometric="rgb")
    src = open_image(tmp_path / "rgb.tiff")
    assert src.axes == "yxc"
    np.testing.assert_array_equal(src.read_rgb(0, 0, 30, 40), rgb)

    stack = _rng().integers(0, 255, (4, 32, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    src = open_image(tmp_path / "stack.tif")
    assert src.axes == "zyx" and src.plane_shape == (4,)
    np.testing.assert_array_equal(
        src.read_region(2, 3, 20, 40, plane=(2,))[..., 0], stack[2, 2:20, 3:40]
    )


def test_dask_array() -> None:
    img = _rng().integers(0, 255, (100, 120, 3), dtype=np.uint8)
    lazy = da.from_array(img, chunks=(32, 32, 3))
    src = open_image(lazy)
    assert src.config.kind == "dask" and src.axes == "yxc"
    out = src.read_region(10, 15, 70, 99)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, img[10:70, 15:99])
    assert src.fingerprint().startswith("dask:")
    assert src.fingerprint() == open_image(lazy).fingerprint()


def test_stack_planes_zyx_and_tczyx() -> None:
    stack = _rng().integers(0, 1000, (5, 20, 30), dtype=np.uint16)
    src = open_image(stack)
    assert src.axes == "zyx" and src.plane_axes == "z" and src.plane_shape == (5,)
    for z in (0, 4):
        np.testing.assert_array_equal(
            src.read_region(1, 2, 19, 28, plane=(z,))[..., 0], stack[z, 1:19, 2:28]
        )
    big = _rng().integers(0, 255, (2, 3, 4, 16, 18), dtype=np.uint8)
    src = open_image(big, axes="tczyx")
    assert src.plane_axes == "tz" and src.plane_shape == (2, 4) and src.num_channels == 3
    np.testing.assert_array_equal(
        src.read_region(0, 0, 16, 18, plane=(1, 3)), big[1, :, 3].transpose(1, 2, 0)
    )


def test_band_first_multiband_needs_axes() -> None:
    bands = _rng().normal(size=(6, 30, 40)).astype(np.float32)
    src = open_image(bands, axes="cyx", bands=(3, 2, 1))
    assert src.num_channels == 6 and src.bands == (3, 2, 1)
    np.testing.assert_array_equal(src.read_region(0, 0, 30, 40), bands.transpose(1, 2, 0))


# ---- multi-band scaling and nodata ----------------------------------------------------------


def _multiband() -> np.ndarray:
    rng = _rng()
    img = rng.normal(1000.0, 200.0, size=(64, 96, 6)).astype(np.float32)
    img[..., 4] *= 10.0
    img[5:9, 10:20, :] = -99999.0  # nodata block
    img[30, 40, 1] = np.nan
    img[31, 41, :] = np.inf
    return img


def test_multiband_nodata_and_nan_masked() -> None:
    img = _multiband()
    src = open_image(img, bands=(4, 1, 0), nodata=-99999)
    rgb = src.read_rgb(0, 0, 64, 96)
    valid = src.read_valid_mask(0, 0, 64, 96)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
    assert not valid[5:9, 10:20].any()
    assert not valid[30, 40] and not valid[31, 41]
    assert valid.sum() == 64 * 96 - 40 - 2
    assert (rgb[~valid] == 0).all()
    # percentiles ignore nodata: valid pixels span the full range
    assert rgb[valid].min() == 0 and rgb[valid].max() == 255
    lo, hi = src.percentile_limits()
    assert lo.shape == hi.shape == (6,)
    assert 0 < lo[0] < hi[0] < 2000 and hi[4] > 5000


def test_percentile_scaling_is_tile_consistent() -> None:
    img = _multiband()
    src = open_image(img, nodata=-99999)
    whole = src.read_rgb(0, 0, 64, 96)
    left = src.read_rgb(0, 0, 64, 50)
    right = src.read_rgb(0, 50, 64, 96)
    np.testing.assert_array_equal(np.concatenate([left, right], axis=1), whole)
    top = src.read_rgb(0, 0, 20, 96)
    np.testing.assert_array_equal(top, whole[:20])


def test_grey_uint16_tiles_consistent_on_zarr(tmp_path: Path) -> None:
    img = _rng().integers(0, 4000, (128, 128), dtype=np.uint16)
    img[:64] += 20000  # tiles with very different content
    arr = zarr.create_array(
        store=str(tmp_path / "g.zarr"), shape=img.shape, chunks=(32, 32), dtype=img.dtype
    )
    arr[...] = img
    src = open_image(tmp_path / "g.zarr")
    top = src.read_rgb(0, 0, 64, 128)
    bottom = src.read_rgb(64, 0, 128, 128)
    np.testing.assert_array_equal(np.concatenate([top, bottom]), src.read_rgb(0, 0, 128, 128))
    assert top.mean() > bottom.mean() + 100


# ---- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_tracks_data_and_mapping() -> None:
    img = _rng().integers(0, 255, (64, 64, 4), dtype=np.uint8)
    base = open_image(img).fingerprint()
    assert base == open_image(img.copy()).fingerprint()
    assert base != open_image(img, bands=(2, 1, 0)).fingerprint()
    assert base != open_image(img, nodata=0).fingerprint()
    other = img.copy()
    other[0, 0, 0] ^= 1
    assert base != open_image(other).fingerprint()


# ---- errors ---------------------------------------------------------------------------------


def test_errors(tmp_path: Path) -> None:
    img = np.zeros((20, 30, 5), np.float32)
    with pytest.raises(ImageSourceError, match="no such file"):
        open_image(tmp_path / "missing.zarr")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ImageSourceError, match="unknown image format"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ImageSourceError, match="not a zarr store"):
        open_image(tmp_path / "empty_dir")
    with pytest.raises(ImageSourceError, match="exactly 3"):
        open_image(img, bands=(0, 1))
    with pytest.raises(ImageSourceError, match="band index 5 is out of range"):
        open_image(img, bands=(0, 1, 5))
    with pytest.raises(ImageSourceError, match="out of range"):
        open_image(img, bands=(-1, 1, 2))
    with pytest.raises(ImageSourceError, match="unsupported axes"):
        open_image(img, axes="yxq")
    with pytest.raises(ImageSourceError, match="unsupported axes"):
        open_image(img, axes="yyx")
    with pytest.raises(ImageSourceError, match="dimensions"):
        open_image(img, axes="yx")
    with pytest.raises(ImageSourceError, match="cannot infer axes"):
        open_image(np.zeros((2,) * 6, np.uint8))
    with pytest.raises(ImageSourceError, match="level 2 does not exist"):
        open_image(img, level=2)
    src = open_image(img)
    with pytest.raises(ImageSourceError, match="outside the image"):
        src.read_region(0, 0, 21, 10)
    with pytest.raises(ImageSourceError, match="outside the image"):
        src.read_region(-1, 0, 5, 10)
    with pytest.raises(ImageSourceError, match="outside the image"):
        src.read_region(5, 5, 5, 10)
    with pytest.raises(ImageSourceError, match="single-plane"):
        src.read_region(0, 0, 5, 5, plane=(0,))
    stack = open_image(np.zeros((3, 10, 20), np.uint8))
    with pytest.raises(ImageSourceError, match="plane index 3 for axis 'z' is out of range"):
        stack.read_region(0, 0, 5, 5, plane=(3,))
    with pytest.raises(ImageSourceError, match="pass plane="):
        stack.read_region(0, 0, 5, 5)
    with pytest.raises(ImageSourceError, match="cannot open"):
        open_image(object())
    assert issubclass(ImageSourceError, ValueError)


# ---- huge images stay lazy ------------------------------------------------------------------


def test_huge_lazy_zarr_reads_a_corner_cheaply(tmp_path: Path) -> None:
    path = tmp_path / "huge.zarr"
    arr = zarr.create_array(
        store=str(path), shape=(20000, 20000), chunks=(1024, 1024), dtype=np.uint16, fill_value=7
    )
    rng = _rng()
    corner = rng.integers(0, 5000, (1024, 1024), dtype=np.uint16)
    arr[:1024, :1024] = corner
    arr[10240:11264, 5120:6144] = rng.integers(0, 5000, (1024, 1024), dtype=np.uint16)

    tracemalloc.start()
    t0 = time.perf_counter()
    src = open_image(path)
    region = src.read_region(100, 200, 612, 712)
    rgb = src.read_rgb(0, 0, 512, 512)  # triggers the percentile subsample of the whole image
    fill = src.read_region(19000, 19000, 19010, 19020)
    fp = src.fingerprint()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert src.spatial_shape == (20000, 20000)
    np.testing.assert_array_equal(region[..., 0], corner[100:612, 200:712])
    assert rgb.shape == (512, 512, 3)
    assert (fill == 7).all()
    assert fp
    assert elapsed < 3.0, elapsed
    assert peak < 100 * 2**20, peak  # the whole image would be 800 MB


def test_import_io_does_not_import_torch() -> None:
    code = "import napari_seem.core.io, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_read_level_rgb_takes_windows_in_level_pixels(tmp_path: Path) -> None:
    level0 = _rng().integers(0, 255, (64, 96), dtype=np.uint8)
    path = tmp_path / "img.ome.zarr"
    path.mkdir()
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    write_ome_zarr(path, level0, axes, "0.4")
    src = open_image(path)
    assert src.spatial_shape_at(0) == (64, 96) and src.spatial_shape_at(1) == (32, 48)
    rgb = src.read_level_rgb(3, 5, 20, 41, level=1)
    np.testing.assert_array_equal(rgb[..., 0], level0[::2, ::2][3:20, 5:41])
    assert rgb.shape == (17, 36, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(
        src.read_level_rgb(0, 0, 64, 96, level=0), src.read_rgb(0, 0, 64, 96)
    )
    with pytest.raises(ImageSourceError, match="outside level 1"):
        src.read_level_rgb(0, 0, 33, 10, level=1)
    with pytest.raises(ImageSourceError, match=r"levels 0\.\.2"):
        src.spatial_shape_at(3)


def test_png_and_jpeg_pictures_open_as_grey_or_colour(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from napari_seem.core.image_open import describe_axes

    grey = _rng().integers(0, 255, (40, 50), dtype=np.uint8)
    iio.imwrite(tmp_path / "g.png", grey)
    src = open_image(tmp_path / "g.png")
    assert src.config.kind == "png" and src.axes == "yx" and src.config.axes_from == "metadata"
    np.testing.assert_array_equal(src.read_region(0, 0, 40, 50)[..., 0], grey)
    rgba = _rng().integers(0, 255, (30, 20, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "c.png", rgba)
    src = open_image(tmp_path / "c.png")
    assert src.axes == "yxc" and src.num_channels == 4 and src.bands == (0, 1, 2)
    np.testing.assert_array_equal(src.read_rgb(0, 0, 30, 20), rgba[..., :3])
    photo = np.zeros((32, 48, 3), np.uint8)
    photo[:, 24:] = (200, 40, 10)
    iio.imwrite(tmp_path / "p.JPG", photo)
    src = open_image(tmp_path / "p.JPG")
    assert src.config.kind == "jpeg" and src.spatial_shape == (32, 48)
    assert abs(int(src.read_rgb(0, 0, 32, 48)[10, 40, 0]) - 200) < 20  # lossy, but red
    assert "read as axes 'yxc' (32 x 48, 3 channels; from the file's metadata" in describe_axes(src)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageSourceError, match="cannot read as a picture"):
        open_image(tmp_path / "broken.png")


def test_strict_axes_refuses_ambiguous_shapes_and_says_what_was_assumed(tmp_path: Path) -> None:
    from napari_seem.core.image_open import describe_axes

    three = np.zeros((3, 40, 50), np.uint8)
    # without strict_axes the documented inference stands (and says so)
    loose = open_image(three)
    assert loose.axes == "zyx" and loose.config.axes_from == "shape"
    assert "inferred from the shape" in describe_axes(loose)
    with pytest.raises(ImageSourceError, match=r"ambiguous.*--axes cyx.*--axes zyx"):
        open_image(three, strict_axes=True)
    tifffile.imwrite(tmp_path / "s.tif", three, photometric="rgb", planarconfig="separate")
    with pytest.raises(ImageSourceError, match="ambiguous"):
        open_image(tmp_path / "s.tif", strict_axes=True)
    assert open_image(tmp_path / "s.tif", axes="zyx", strict_axes=True).plane_shape == (3,)
    given = open_image(three, axes="cyx", strict_axes=True)
    assert given.num_channels == 3 and "as given" in describe_axes(given)
    # five planes, a channel-last image and named axes are not ambiguous
    assert open_image(np.zeros((5, 40, 50), np.uint8), strict_axes=True).axes == "zyx"
    assert open_image(np.zeros((40, 50, 3), np.uint8), strict_axes=True).axes == "yxc"
    tifffile.imwrite(tmp_path / "ij.tif", three, imagej=True, metadata={"axes": "ZYX"})
    assert open_image(tmp_path / "ij.tif", strict_axes=True).axes == "zyx"
