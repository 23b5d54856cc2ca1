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
