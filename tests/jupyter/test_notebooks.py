"""The notebooks run top to bottom (their own assertions check their outputs).

They run with the reduced random model (``NAPARI_SEEM_VARIANT=seem-tiny-focal``, set by
``tests/jupyter/conftest.py`` unless already set) in a kernel of this interpreter, with
nothing downloaded. ``NAPARI_SEEM_NOTEBOOK_FAST=1`` (also set unless already set) makes the
fine-tuning notebook run a handful of steps on a few objects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_saved_without_outputs() -> None:
    assert len(NOTEBOOKS) >= 3
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    os.environ.setdefault("NAPARI_SEEM_VARIANT", "seem-tiny-focal")  # the kernel inherits it
    os.environ.setdefault("NAPARI_SEEM_NOTEBOOK_FAST", "1")  # 04: a few steps, few objects
    client = nbclient.NotebookClient(
        book,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.monotonic()
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
    elapsed = time.monotonic() - start
    assert elapsed < 180, f"{path.name} took {elapsed:.0f} s"
