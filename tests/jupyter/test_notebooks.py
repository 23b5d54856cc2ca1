"""The notebooks are saved with the outputs of their current code, and run top to bottom
(their own assertions check their outputs).

The saved outputs come from the shipped model (``python -m tests.jupyter.notebook_outputs
notebooks/NAME.ipynb`` runs one and saves it; the notebook's metadata records the variant and
a fingerprint of the code it ran). The run test executes them again with the reduced random
model (``NAPARI_SEEM_VARIANT=seem-tiny-focal``, set by ``tests/jupyter/conftest.py`` unless
already set) in a kernel of this interpreter, with nothing downloaded.
``NAPARI_SEEM_NOTEBOOK_FAST=1`` (also set unless already set) makes the fine-tuning
notebook run a handful of steps on a few objects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.jupyter.notebook_outputs import META_KEY, sources_fingerprint

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_with_current_outputs(path: Path) -> None:
    """Every code cell ran, in order, in one kernel, without an error; the outputs include
    figures and come from the shipped model; and the code has not changed since it ran."""
    from napari_seem.core.variants import seem_lite_shipped

    book = nbformat.read(path, as_version=4)
    rerun = f"run `python -m tests.jupyter.notebook_outputs {path.relative_to(ROOT)}`"
    recorded = book.metadata.get(META_KEY, {})
    assert recorded.get("sources_sha256") == sources_fingerprint(book), (
        f"{path.name}: the saved outputs are not those of the code as it is now: {rerun}"
    )
    if seem_lite_shipped():
        assert recorded.get("outputs_from") == "seem-lite", f"{path.name}: {rerun}"
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), rerun
    outputs = [out for cell in code for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"], path.name
    assert all(cell.outputs for cell in code if cell.source.strip()), (
        f"{path.name}: a code cell has no output (print or show what it found)"
    )
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert figures, f"{path.name}: no figure among the outputs"


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
