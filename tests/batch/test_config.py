"""``Task`` and ``BatchConfig``: frozen, normalised and checked on construction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from napari_seem.batch import BatchConfig, BatchConfigError, Task


def test_task_kinds_and_normalisation(tmp_path: Path) -> None:
    assert Task.from_options(vocabulary=" nucleus, cell ").vocabulary == ("nucleus", "cell")
    assert Task(vocabulary="nucleus").vocabulary == ("nucleus",)
    assert Task(vocabulary=["a", "b"]).kind == "everything"  # type: ignore[arg-type]
    assert Task.from_options(text="  a cell ").text == "a cell"
    assert Task(text="a cell").kind == "text"
    csv = tmp_path / "p.csv"
    csv.write_text("kind,row,col\npoint,3,4\n")
    task = Task.from_options(prompts=csv)
    assert task.kind == "prompts" and len(task.prompts) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.text = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of vocabulary"),
        ({"vocabulary": "a", "text": "b"}, "exactly one of vocabulary"),
        ({"vocabulary": "a, a"}, "distinct, non-empty class names"),
        ({"vocabulary": " , "}, "distinct, non-empty class names"),
        ({"vocabulary": "a", "mode": "all"}, "mode must be one of"),
    ],
)
def test_task_refusals(options: dict[str, str], message: str) -> None:
    with pytest.raises(BatchConfigError, match=message):
        Task.from_options(**options)  # type: ignore[arg-type]


def test_config_defaults_checks_and_normalisation() -> None:
    config = BatchConfig()
    assert (config.tile, config.halo, config.level, config.min_area) == (1024, 64, 0, 16)
    assert config.sliver == 64 * 64 // 4 and BatchConfig(sliver_area=5).sliver == 5
    normal = BatchConfig(planes=[0, [1, 2]], region=[0, 0, 5, 5], bands=[3, 2, 1])  # type: ignore[arg-type]
    assert normal.planes == (0, (1, 2)) and normal.region == (0, 0, 5, 5)
    assert normal.bands == (3, 2, 1)
    assert BatchConfig(planes=None).planes == "all"  # type: ignore[arg-type]
    with pytest.raises(BatchConfigError, match=r"must exceed 2 \* halo"):
        BatchConfig(tile=64, halo=32)
    with pytest.raises(BatchConfigError, match="halo >= 0"):
        BatchConfig(halo=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tile = 5  # type: ignore[misc]
    thresholds = BatchConfig(object_mask_threshold=0.2, text_threshold=0.1, min_area=3)
    spec = thresholds.tile_task(Task(text="cell"))
    assert (spec.kind, spec.text, spec.object_mask_threshold) == ("text", "cell", 0.2)
    assert (spec.text_threshold, spec.min_area) == (0.1, 3)
