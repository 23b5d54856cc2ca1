"""Segment-everything modes in the batch layer: ``--mode`` of ``napari-seem segment``,
``Task(mode=...)`` of ``segment_image`` and ``TaskSpec`` accept ``"auto"`` (the default) and
``"points"`` and refuse anything else with a message naming every valid mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.batch import BatchConfig, BatchConfigError, Task, segment_image
from napari_seem.batch.tasks import TaskSpec
from napari_seem.cli.main import build_parser, main
from napari_seem.core.io import open_image
from napari_seem.core.modes import EVERYTHING_MODES
from tests.batch.helpers import ThresholdPredictor, render_window

VALID = "'auto', 'panoptic', 'instance', 'semantic', 'points'"


class _Recording(ThresholdPredictor):
    def __init__(self) -> None:
        super().__init__()
        self.modes: list[str] = []

    def segment_everything(self, vocabulary: Any, **kwargs: Any) -> Any:
        self.modes.append(kwargs["mode"])
        return super().segment_everything(vocabulary, **kwargs)


def test_cli_mode_choices_default_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["segment", "img.zarr", "--vocabulary", "cell"])
    assert args.mode == "auto"
    for mode in ("points", "auto", "panoptic"):
        args = parser.parse_args(["segment", "img.zarr", "--vocabulary", "cell", "--mode", mode])
        assert args.mode == mode
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["segment", "img.zarr", "--vocabulary", "cell", "--mode", "bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert all(mode in err for mode in EVERYTHING_MODES), err
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{auto,panoptic,instance,semantic,points}" in text
    assert "auto (default: points for models" in text


def test_cli_bad_mode_exits_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.zarr"
    with pytest.raises(SystemExit) as info:
        main(["segment", str(tmp_path / "img.zarr"), "--out", str(out), "--mode", "all"])
    assert info.value.code == 2
    assert "argument --mode: invalid choice" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("mode", ["points", "auto"])
def test_segment_image_runs_the_mode_on_every_tile(tmp_path: Path, mode: str) -> None:
    source = open_image(render_window(4, 0, 0, 200, 300))
    predictor = _Recording()
    summary = segment_image(
        source,
        tmp_path / f"{mode}.zarr",
        Task.from_options(vocabulary="nucleus", mode=mode),  # type: ignore[arg-type]
        BatchConfig(tile=200, halo=32, min_area=1),
        model=predictor,
    )
    assert summary.status == "complete" and summary.objects > 0
    assert predictor.modes and set(predictor.modes) == {mode}


def test_default_mode_is_auto(tmp_path: Path) -> None:
    predictor = _Recording()
    segment_image(
        open_image(np.zeros((100, 100), np.uint8)),
        tmp_path / "d.zarr",
        Task.from_options(vocabulary="nucleus"),
        BatchConfig(tile=100, halo=16),
        model=predictor,
    )
    assert set(predictor.modes) == {"auto"}
    assert TaskSpec("everything", vocabulary=("a",)).mode == "auto"


def test_bad_mode_is_refused_with_the_valid_modes(tmp_path: Path) -> None:
    with pytest.raises(BatchConfigError) as info:
        segment_image(
            open_image(np.zeros((100, 100), np.uint8)),
            tmp_path / "bad.zarr",
            Task.from_options(vocabulary="nucleus", mode="everything"),  # type: ignore[arg-type]
            BatchConfig(tile=100, halo=16),
            model=_Recording(),
        )
    assert str(info.value) == f"mode must be one of {VALID}; got 'everything'"
    assert not (tmp_path / "bad.zarr").exists()
    with pytest.raises(ValueError, match="'auto', 'panoptic', 'instance', 'semantic', 'points'"):
        TaskSpec("everything", vocabulary=("a",), mode="all")  # type: ignore[arg-type]
