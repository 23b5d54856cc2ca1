"""Run the notebooks and save them with their outputs; the fingerprint that says they are current.

Usage (from the repository root, in the project's venv)::

    python -m tests.jupyter.notebook_outputs [--fast] notebooks/01_quickstart.ipynb [...]

Each notebook runs top to bottom in a fresh ``python3`` kernel of this interpreter with the
shipped model (``NAPARI_SEEM_VARIANT`` removed, so the default ``seem-lite`` answers, and
``NAPARI_SEEM_NOTEBOOK_FAST`` removed, so the fine-tuning notebook runs its full steps) and
is written back with its outputs. The notebook's metadata then records, under
``napari_seem``, the variant and :func:`sources_fingerprint` of the code it ran;
``tests/jupyter/test_notebooks.py`` checks that the saved outputs belong to the code as it
is now. Widget state is not stored (a widget's overview image would bloat the file); the
figures are plain PNG outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["execute_and_save", "sources_fingerprint"]

#: Where the notebook's metadata records how its outputs were made.
META_KEY = "napari_seem"


def sources_fingerprint(book: Any) -> str:
    """sha256 of the notebook's code cells, in order (markdown edits keep outputs current)."""
    code = [cell.source for cell in book.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(code).encode("utf-8")).hexdigest()


def execute_and_save(path: Path, *, timeout: int = 1800, fast: bool = False) -> float:
    """Run ``path`` with the shipped model and save it with outputs; returns the seconds.

    ``fast`` keeps ``NAPARI_SEEM_NOTEBOOK_FAST=1`` (the fine-tuning notebook then runs a
    handful of steps: plumbing, not quality) and records it in the metadata.
    """
    import nbclient
    import nbformat

    from napari_seem.api import default_variant

    names = ("NAPARI_SEEM_VARIANT", "NAPARI_SEEM_NOTEBOOK_FAST")
    env_before = {key: os.environ.pop(key, None) for key in names}
    if fast:
        os.environ["NAPARI_SEEM_NOTEBOOK_FAST"] = "1"
    try:
        variant = default_variant()
        book = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as work:  # files a notebook writes go here
            client = nbclient.NotebookClient(
                book,
                timeout=timeout,
                kernel_name="python3",
                store_widget_state=False,
                resources={"metadata": {"path": work}},
            )
            start = time.monotonic()
            client.execute()
            seconds = time.monotonic() - start
    finally:
        for key, value in env_before.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    book.metadata.pop("widgets", None)
    book.metadata[META_KEY] = {
        "outputs_from": variant,
        "sources_sha256": sources_fingerprint(book),
        "fast": fast,
    }
    nbformat.write(book, path)
    return seconds


def main(argv: list[str]) -> int:
    fast = "--fast" in argv
    names = [a for a in argv if a != "--fast"]
    if not names:
        print(__doc__)
        return 2
    for name in names:
        seconds = execute_and_save(Path(name), fast=fast)
        print(f"{name}: executed and saved with outputs in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
