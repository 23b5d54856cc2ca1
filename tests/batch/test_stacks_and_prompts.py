"""Stacks (per plane, and propagation through z) and the prompts file formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seem.batch import BatchConfig, BatchConfigError, ModelSpec, Task, segment_image
from napari_seem.batch.prompts_file import read_prompts
from napari_seem.core.prompts import Box, Points
from tests.batch.helpers import ThresholdPredictor, render_window

TINY = ModelSpec("seem-tiny-focal", device="cpu", mask_resize="bilinear", threads=1)


def _stack(path: Path, planes: int = 3) -> Path:
    array = zarr.create_array(
        store=str(path), shape=(planes, 300, 280), chunks=(1, 150, 140), dtype="uint8"
    )
    for z in range(planes):
        array[z] = render_window(10 + z, 0, 0, 300, 280)
    return path


def test_selected_planes_only(tmp_path: Path) -> None:
    stack = _stack(tmp_path / "stack.zarr")
    summary = segment_image(
        stack,
        tmp_path / "o.zarr",
        Task(vocabulary=("cell",)),
        BatchConfig(planes="0,2", tile=160, halo=16, min_area=1),
        model=ThresholdPredictor(),
    )
    labels = zarr.open_array(summary.labels)[...]
    assert labels.shape == (3, 300, 280) and labels[1].max() == 0
    ids0, ids2 = set(np.unique(labels[0])) - {0}, set(np.unique(labels[2])) - {0}
    assert ids0 and ids2 and not ids0 & ids2  # ids are unique across the stack
    table = zarr.open_array(summary.labels).attrs["napari_seem"]["classes"]
    assert {tuple(r["planes"][0]) for r in table} == {(0,), (2,)}
    with pytest.raises(BatchConfigError, match=r"use 0\.\.2"):
        segment_image(
            stack, tmp_path / "x.zarr", Task(vocabulary=("cell",)), BatchConfig(planes="5")
        )


@pytest.mark.slow
def test_propagation_keeps_ids_through_z(tmp_path: Path) -> None:
    stack = _stack(tmp_path / "stack.zarr")
    summary = segment_image(
        stack,
        tmp_path / "p.zarr",
        Task(text="a round cell"),
        BatchConfig(propagate="z", tile=160, halo=16, min_area=4),
        model=TINY,
    )
    labels = zarr.open_array(summary.labels)[...]
    first = set(np.unique(labels[0])) - {0}
    assert first
    for z in (1, 2):
        assert set(np.unique(labels[z])) - {0} <= first  # only objects followed from z = 0
    table = zarr.open_array(summary.labels).attrs["napari_seem"]["classes"]
    assert {r["id"] for r in table} == set(np.unique(labels)) - {0}
    for row in table:
        assert row["area"] == int((labels == row["id"]).sum())
    manifest = json.loads((tmp_path / "p.zarr" / "napari_seem_manifest.json").read_text())
    assert manifest["done"]["steps"] == ["step0", "step1", "step2"]


def test_prompts_from_csv_and_geojson(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(
        "kind,row,col,row_min,col_min,row_max,col_max\npoint,12.5,30,,,,\nbox,,,40,50,60,80\n"
    )
    objects = read_prompts(csv_path)
    assert len(objects) == 2
    (points,) = objects[0].visual
    assert isinstance(points, Points) and points.coords.tolist() == [[12.5, 30.0]]
    assert objects[1].visual == (Box(40, 50, 60, 80),)
    geo = tmp_path / "p.geojson"
    geo.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [30, 12]},
                        "properties": {"object": 1, "label": "nucleus"},
                    },
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [35, 14]},
                        "properties": {"object": 1, "positive": False},
                    },
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[50, 40], [80, 40], [80, 60], [50, 40]]],
                        },
                        "properties": {},
                    },
                ],
            }
        )
    )
    one, two = read_prompts(geo)
    assert one.label == "nucleus" and one.visual[0].coords.tolist() == [[12, 30], [14, 35]]
    assert one.visual[0].positive.tolist() == [True, False]
    assert two.visual == (Box(40, 50, 60, 80),)
    for text, message in (
        ("{", "not valid JSON"),
        ('{"type": "Feature"}', "FeatureCollection"),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
            '{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}]}',
            "LineString",
        ),
    ):
        geo.write_text(text)
        with pytest.raises(BatchConfigError, match=message):
            read_prompts(geo)
    with pytest.raises(BatchConfigError, match="unknown format"):
        read_prompts(csv_path.rename(tmp_path / "p.txt"))
    neg = tmp_path / "n.csv"
    neg.write_text("kind,row,col,positive\npoint,1,1,0\n")
    with pytest.raises(BatchConfigError, match="only negative clicks"):
        read_prompts(neg)
