"""Issue 16 finding 6 (the store side): a store inside a root whose chunk folder links
outside it is refused when read, not served (before: only the top path was resolved)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seem.core.io import open_image
from napari_seem.engine.confined import PathEscapeError, open_confined


def _store(path: Path) -> np.ndarray:
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    array = zarr.create_array(store=str(path), shape=data.shape, chunks=(32, 32), dtype="u2")
    array[...] = data
    return data


def test_a_store_inside_the_root_reads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = _store(root / "inside.zarr")
    image = open_image(open_confined(root / "inside.zarr", [root]))
    np.testing.assert_array_equal(np.asarray(image.levels[0].array[...]), data)
    assert image.config.origin == str(root / "inside.zarr")


def test_a_chunk_folder_linking_outside_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    _store(outside / "real.zarr")
    store = root / "linked.zarr"
    store.mkdir()
    shutil.copy(outside / "real.zarr" / "zarr.json", store / "zarr.json")
    (store / "c").symlink_to(outside / "real.zarr" / "c")  # the pixels live outside
    plain = zarr.open_array(str(store), mode="r")  # what a top-path check allowed
    assert int(np.asarray(plain[...]).sum()) > 0
    array = open_confined(store, [root])
    with pytest.raises(PathEscapeError, match="outside the allowed roots"):
        np.asarray(array[...])


def test_a_store_linking_outside_is_refused_at_once(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    _store(outside / "real.zarr")
    (root / "link.zarr").symlink_to(outside / "real.zarr")
    with pytest.raises(PathEscapeError):
        open_confined(root / "link.zarr", [root])
