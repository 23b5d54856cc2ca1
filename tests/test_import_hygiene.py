"""`import napari_seem` must stay light: no torch, no Qt, no napari."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "napari", "transformers")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_import_napari_seem_is_light() -> None:
    loaded = _modules_after("import napari_seem")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_contract_modules_are_light() -> None:
    loaded = _modules_after(
        "import napari_seem.core.prompts, napari_seem.core.results, napari_seem.core.rasterize, "
        "napari_seem.cli"
    )
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_client_side_is_light() -> None:
    """napari talks to the model process through the client: no torch, no server stack."""
    loaded = _modules_after("import napari_seem.remote.client, napari_seem.remote.protocol")
    assert not loaded & {"torch", "fastapi", "uvicorn", "PyQt6", "napari"}, sorted(loaded)


def test_fine_tune_is_exported_lazily() -> None:
    """``napari_seem.fine_tune`` resolves without torch: the training code loads on call."""
    loaded = _modules_after(
        "import napari_seem\nassert callable(napari_seem.fine_tune)\n"
        "assert 'fine_tune' in napari_seem.__all__"
    )
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
