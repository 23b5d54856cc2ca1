"""The geo options of ``napari-seem segment`` as parsed (no model run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_seem.cli._common import CliError
from napari_seem.cli.geo_flags import plan_geo
from napari_seem.cli.main import build_parser
from napari_seem.core.io import open_image
from tests.geo.conftest import FALSE_COLOUR


def _args(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["segment", *argv])


def test_band_files_outputs_and_band_names(landsat_paths: list[str], tmp_path: Path) -> None:
    out = tmp_path / "water.gpkg"
    args = _args(
        ",".join(landsat_paths),
        "--out",
        str(out),
        "--text",
        "water",
        "--bands",
        "lsat7_2000_40,lsat7_2000_30,lsat7_2000_20",
        "--also-write",
        str(tmp_path / "water.tif"),
    )
    plan = plan_geo(args)
    assert plan.image == landsat_paths and plan.bands == FALSE_COLOUR
    assert plan.out == str(tmp_path / "water.labels.zarr")
    assert plan.outputs == [str(out), str(tmp_path / "water.tif")]


def test_band_files_become_one_vrt_for_dask_workers(
    landsat_paths: list[str], tmp_path: Path
) -> None:
    args = _args(
        ",".join(landsat_paths),
        "--out",
        str(tmp_path / "x.zarr"),
        "--text",
        "water",
        "--scheduler",
        "local",
    )
    plan = plan_geo(args)
    assert plan.image == str(tmp_path / "x.scene.vrt")
    one, many = open_image(plan.image), open_image(landsat_paths)
    assert np.array_equal(one.read_rgb(0, 0, 443, 489), many.read_rgb(0, 0, 443, 489))


def test_refusals_say_what_to_do(landsat_paths: list[str], tmp_path: Path) -> None:
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((32, 32), np.uint8))
    cases = [
        (_args(str(plain), "--out", str(tmp_path / "a.gpkg"), "--text", "w"), "--out NAME.zarr"),
        (
            _args(
                landsat_paths[0],
                "--out",
                str(tmp_path / "a.zarr"),
                "--text",
                "w",
                "--also-write",
                str(tmp_path / "a.shp"),
            ),
            ".gpkg",
        ),
        (
            _args(
                landsat_paths[0],
                "--out",
                str(tmp_path / "a.zarr"),
                "--text",
                "w",
                "--bands",
                "nir,red,green",
            ),
            "lsat7_2000_10",
        ),
        (
            _args(
                landsat_paths[0],
                "--out",
                str(tmp_path / "a.zarr"),
                "--text",
                "w",
                "--prompts-crs",
                "EPSG:4326",
            ),
            "--prompts FILE",
        ),
        (
            _args(
                landsat_paths[0],
                "--out",
                str(tmp_path / "a.gpkg"),
                "--text",
                "w",
                "--simplify",
                "-1",
            ),
            "map units",
        ),
    ]
    for args, hint in cases:
        with pytest.raises(CliError, match=hint.replace(".", r"\.")):
            plan_geo(args)
