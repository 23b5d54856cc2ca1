"""The output of a batch run on disk: labels array, manifest, scratch tiles, class table.

Layout of a plain output ``OUT.zarr`` (a zarr v3 array at the root of the store)::

    OUT.zarr/                      uint32 labels, shape (*planes, H, W), chunks (1.., th, tw)
    OUT.zarr/napari_seem_manifest.json   config signature, finished tiles and chunks
    OUT.zarr/napari_seem_work/     per-tile scratch (deleted when the run completes)
    OUT.classes.csv                the class table (also in the array's attributes)

As OME-Zarr labels of an OME-Zarr image ``IMAGE.zarr`` (NGFF 0.4 = zarr v2, 0.5 = zarr v3)::

    IMAGE.zarr/labels/             group listing the label images
    IMAGE.zarr/labels/NAME/        multiscales group with image-label metadata
    IMAGE.zarr/labels/NAME/0, 1, … uint32 levels (level 0 = the segmented resolution)
    IMAGE.zarr/labels/NAME/napari_seem_manifest.json, napari_seem_work/, classes.csv

Crash safety: zarr's local store writes every chunk to a temporary file and renames it
into place, so a chunk is either absent (fill value 0) or complete; a chunk is recorded in
the manifest only after its write returned, and chunks not recorded are rewritten on
resume. Scratch tiles and the manifest are written the same way (temporary file, fsync,
``os.replace``). Until ``status`` is ``"complete"`` the array's ``napari_seem.complete``
attribute is False.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MANIFEST_NAME",
    "WORK_DIR",
    "BatchConfigError",
    "Manifest",
    "atomic_write_bytes",
    "config_signature",
    "read_tile",
    "read_tile_meta",
    "write_class_table",
    "write_tile",
]

MANIFEST_NAME = "napari_seem_manifest.json"
WORK_DIR = "napari_seem_work"
MANIFEST_VERSION = 1
_ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


class BatchConfigError(ValueError):
    """A batch run cannot start as asked (bad input, existing output...); says what to do."""


def config_signature(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able run configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tile_name(key: Sequence[int]) -> str:
    """``(*plane, ti, tj)`` -> ``"p0_3_r1_c2"`` style file stem (planes may be empty)."""
    *plane, ti, tj = key
    prefix = "p" + "_".join(str(p) for p in plane) + "_" if plane else ""
    return f"{prefix}r{ti}_c{tj}"


def write_tile(
    work: Path, key: Sequence[int], labels: npt.NDArray[np.integer[Any]], meta: Mapping[str, Any]
) -> Path:
    """Store one tile's ``(oh, ow)`` local labels and its object table atomically.

    Labels are stored in the smallest unsigned dtype that holds them (uint8 for most tiles),
    zlib-compressed.
    """
    import io
    import zlib

    array = np.asarray(labels)
    top = int(array.max()) if array.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    buffer = io.BytesIO()
    np.save(buffer, array.astype(dtype, copy=False), allow_pickle=False)
    header = json.dumps(dict(meta)).encode()
    payload = len(header).to_bytes(8, "little") + header + zlib.compress(buffer.getvalue(), 1)
    path = work / f"{tile_name(key)}.tile"
    atomic_write_bytes(path, payload)
    return path


def read_tile_meta(work: Path, key: Sequence[int]) -> dict[str, Any]:
    """Only the object table of a tile written by :func:`write_tile` (labels not decoded)."""
    with (work / f"{tile_name(key)}.tile").open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        meta: dict[str, Any] = json.loads(f.read(size).decode())
    return meta


def read_tile(work: Path, key: Sequence[int]) -> tuple[npt.NDArray[np.uint32], dict[str, Any]]:
    """The ``(oh, ow)`` uint32 labels and the object table written by :func:`write_tile`."""
    import io
    import zlib

    raw = (work / f"{tile_name(key)}.tile").read_bytes()
    size = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + size].decode())
    array = np.load(io.BytesIO(zlib.decompress(raw[8 + size :])), allow_pickle=False)
    return array.astype(np.uint32, copy=False), meta


class Manifest:
    """The JSON record of a run in its output store: configuration, signature, progress.

    ``done`` maps a stage (``"tiles"``, ``"chunks"``, ``"pyramid"``, ...) to the sorted
    names of the units finished. Every :meth:`save` replaces the file atomically.
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._done = {stage: set(names) for stage, names in data.get("done", {}).items()}

    @classmethod
    def new(cls, path: Path, signature: str, config: Mapping[str, Any]) -> Manifest:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = {
            "kind": "napari-seem-batch",
            "version": MANIFEST_VERSION,
            "signature": signature,
            "config": json.loads(json.dumps(config, default=str)),
            "status": "running",
            "started": now,
            "updated": now,
            "done": {},
        }
        return cls(path, data)

    @classmethod
    def load(cls, path: Path) -> Manifest | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise BatchConfigError(
                f"{path} is unreadable ({exc}); pass --overwrite to start the run afresh"
            ) from exc
        if data.get("kind") != "napari-seem-batch":
            return None
        return cls(path, data)

    @property
    def signature(self) -> str:
        return str(self.data.get("signature"))

    @property
    def status(self) -> str:
        return str(self.data.get("status"))

    def is_done(self, stage: str, name: str) -> bool:
        return name in self._done.get(stage, set())

    def done_count(self, stage: str) -> int:
        return len(self._done.get(stage, ()))

    def mark(self, stage: str, name: str, *, save: bool = True) -> None:
        self._done.setdefault(stage, set()).add(name)
        if save:
            self.save()

    def forget(self, stage: str) -> None:
        self._done.pop(stage, None)

    def set(self, **values: Any) -> None:
        self.data.update(values)

    def save(self) -> None:
        self.data["done"] = {stage: sorted(names) for stage, names in self._done.items()}
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_bytes(self.path, json.dumps(self.data, indent=1).encode())


def is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_partials(root: Path) -> int:
    """Delete temporary ``*.partial`` files a killed writer left behind; how many."""
    count = 0
    for stray in root.rglob("*.partial"):
        stray.unlink(missing_ok=True)
        count += 1
    return count


CSV_COLUMNS = ("id", "class_name", "score", "area", "row_min", "col_min", "row_max", "col_max")


def write_class_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the class table as CSV (one row per label id; bbox max exclusive)."""
    extra = [k for k in ("pieces", "planes") if rows and k in rows[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_COLUMNS, *extra])
        for row in rows:
            bbox = row["bbox"]
            cells = [row["id"], row["class_name"] or "", f"{row['score']:.6g}", row["area"], *bbox]
            for k in extra:
                value = row[k]
                cells.append(json.dumps(value) if isinstance(value, list) else value)
            writer.writerow(cells)
    os.replace(tmp, path)
    return path
