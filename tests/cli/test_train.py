"""``napari-seem train``: the parser and clear errors (no training here)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_seem.cli.main import build_parser, main


def test_train_parser_builds_without_torch() -> None:
    already = "torch" in sys.modules
    args = build_parser().parse_args(["train", "--tiff-folder", "x", "--class-name", "nucleus"])
    assert args.command == "train" and args.class_name == "nucleus"
    if not already:
        assert "torch" not in sys.modules


def test_train_reports_bad_inputs(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import tifffile

    assert main(["train", "--tiff-folder", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((16, 16), np.uint8))
    tifffile.imwrite(tmp_path / "a_labels.tif", np.zeros((16, 16), np.uint16))
    assert main(["train", "--tiff-folder", str(tmp_path)]) == 2
    assert "no objects" in capsys.readouterr().err


def test_train_needs_a_source() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train"])


def _band_first_pair(folder, planes: bool = False):  # type: ignore[no-untyped-def]
    """A band-first (3, 64, 64) TIFF with (64, 64) labels of two squares in ``folder``."""
    import tifffile

    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.uint16)
    labels[8:24, 8:24] = 1
    labels[36:56, 30:50] = 2
    image = rng.integers(0, 60, (3, 64, 64), dtype=np.uint8)
    image[:, labels > 0] += 150
    tifffile.imwrite(folder / "r.tif", image, photometric="minisblack")
    tifffile.imwrite(folder / "r_labels.tif", labels)
    return image, labels


def test_train_axes_names_band_first_images(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A (3, H, W) raster with (H, W) labels: refused with a pointer to --axes, and with
    ``--axes cyx`` trained as one 3-channel image (one step; the line says how it was read)."""
    _band_first_pair(tmp_path)
    base = ["train", "--tiff-folder", str(tmp_path), "--class-name", "building"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "does not match the image shape" in err and "--axes" in err
    out = tmp_path / "w.safetensors"
    small = ["--steps", "1", "--batch-size", "1", "--crop", "64", "--threads", "1"]
    assert main([*base, "--axes", "cyx", *small, "--no-progress", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "1 training images (64 x 64, 3 channels; axes 'cyx' as given)" in stdout
    assert out.is_file() and out.stat().st_size > 0


def test_train_axes_rearrange_planes_and_channels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from napari_seem.train import data as tdata

    image, labels = _band_first_pair(tmp_path)
    (item,) = tdata.from_tiff_folder(tmp_path, "building", axes="cyx")
    assert item.image.shape == (64, 64, 3)
    np.testing.assert_array_equal(item.image, np.moveaxis(image, 0, -1))
    np.testing.assert_array_equal(item.labels, labels)
    # z last with channels first: (C, Y, X, Z) image, (Y, X, Z) labels -> one image per plane
    stack = np.stack([image, image[:, ::-1]], axis=-1)
    stack_labels = np.stack([labels, labels[::-1]], axis=-1)
    items = tdata.from_arrays(stack, stack_labels, "building", axes="cyxz")
    assert [i.image.shape for i in items] == [(64, 64, 3)] * 2
    np.testing.assert_array_equal(items[1].labels, labels[::-1])
    np.testing.assert_array_equal(items[1].image, np.moveaxis(image[:, ::-1], 0, -1))
    with pytest.raises(tdata.TrainingDataError, match="one distinct letter of tczyx"):
        tdata.from_arrays(image, labels, "building", axes="cy")
    with pytest.raises(tdata.TrainingDataError, match="axes without c"):
        tdata.from_arrays(image, labels[:32], "building", axes="cyx")
