"""Per-tile image features: an in-memory LRU with a byte budget, optionally backed by zarr.

Encoding a tile is the expensive step of a click on a huge image; decoding a prompt is cheap.
:class:`FeatureCache` keeps the :class:`~napari_seem.predict.predictor.EncodedImage` of each tile
(keyed by the tile's ``(ti, tj)`` grid index) so a second click in the same area costs only
the decoder, and :func:`prefetch` fills it in the background around the current view.

The disk layer follows micro-sam's habit: the zarr store is stamped with a
:class:`CacheSignature` (model, weights, tile geometry, data and its band/scaling mapping,
format version) and a store whose stamp differs is refused with :class:`StaleCacheError`
rather than silently used. Store layout (zarr v3)::

    <disk_path>/                     group; attrs["napari_seem_feature_cache"] = signature
        r{ti}_c{tj}/                 one group per tile
            mask_features            (1, D, H_pad/4, W_pad/4)
            ms0, ms1, ms2            (1, D, h_i, w_i), strides 32, 16, 8
            attrs: image_hw, resized_hw, padded_hw, dtype, complete

``complete`` is written last, so a tile whose write was interrupted is never read as valid.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import zarr

from napari_seem.core.tiling import Tile
from napari_seem.model.seem import ImageFeatures
from napari_seem.model.transforms import ModelFrame
from napari_seem.predict.encoding import EncodedImage

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheSignature",
    "CacheStats",
    "FeatureCache",
    "StaleCacheError",
    "prefetch",
]

#: Bump when the stored layout or the meaning of stored features changes.
CACHE_FORMAT_VERSION = 1

#: Root attribute that marks a zarr group as a napari-seem feature cache.
_SIGNATURE_ATTR = "napari_seem_feature_cache"
_MS_NAMES = ("ms0", "ms1", "ms2")
_TILE_NAME = re.compile(r"r(-?\d+)_c(-?\d+)")

TileIndex = tuple[int, int]


class StaleCacheError(RuntimeError):
    """A feature store on disk was written for other data, weights or settings."""


@dataclass(frozen=True)
class CacheSignature:
    """Everything that changes the features of a tile; two caches agree iff these agree.

    Attributes:
        variant: model variant name (e.g. ``"seem-focal-t"``).
        checkpoint: SHA-256 of the weights file, or ``"random:<seed>"`` for random weights.
        tile_size: core size ``(th, tw)`` of the tile grid (level pixels).
        halo: halo of the tile grid in pixels.
        source: :meth:`napari_seem.core.io.ImageSource.fingerprint` of the image; it already
            includes the level shape, bands, nodata and scaling percentiles.
        level: pyramid level the tiles are cut from.
        dtype: dtype of the features as encoded (``"float32"``, ``"bfloat16"``...).
        format_version: :data:`CACHE_FORMAT_VERSION` of the code that wrote the cache.
    """

    variant: str
    checkpoint: str
    tile_size: tuple[int, int]
    halo: int
    source: str
    level: int = 0
    dtype: str = "float32"
    format_version: int = CACHE_FORMAT_VERSION

    def __post_init__(self) -> None:
        size = self.tile_size
        pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(pair) != 2 or min(pair) < 1:
            raise ValueError(f"tile_size must be two positive ints, got {size!r}")
        if self.halo < 0:
            raise ValueError(f"halo must be >= 0, got {self.halo}")
        object.__setattr__(self, "tile_size", pair)
        object.__setattr__(self, "halo", int(self.halo))
        object.__setattr__(self, "level", int(self.level))
        object.__setattr__(self, "format_version", int(self.format_version))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CacheSignature:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown cache signature fields: {sorted(unknown)}")
        return cls(**data)

    @property
    def key(self) -> str:
        """A short stable hex key of the whole signature (e.g. for a cache folder name)."""
        return hashlib.blake2b(self.to_json().encode(), digest_size=16).hexdigest()

    def differences(self, other: CacheSignature) -> dict[str, tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for every field that differs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FeatureCache`.

    Attributes:
        hits: ``get`` answered from memory.
        disk_hits: ``get`` answered from disk (the entry is then promoted into memory).
        misses: ``get`` answered None.
        evictions: entries dropped from memory to stay within the byte budget.
        disk_writes: tiles written to disk.
    """

    hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    evictions: int = 0
    disk_writes: int = 0


def _tile_name(index: TileIndex) -> str:
    return f"r{int(index[0])}_c{int(index[1])}"


def _as_index(index: TileIndex) -> TileIndex:
    ti, tj = index
    return int(ti), int(tj)


def _entry_bytes(encoded: EncodedImage) -> int:
    return encoded.features.nbytes


class FeatureCache:
    """Encoded tiles of one image under one :class:`CacheSignature`. Thread-safe.

    Args:
        signature: what the features depend on; a disk store with another one is refused.
        memory_budget_bytes: most bytes of features kept in memory; least recently used
            entries are evicted beyond it. An entry larger than the whole budget is not
            kept in memory (it still goes to disk when there is a disk layer).
        disk_path: folder of a zarr v3 store to persist features in, or None (memory only).
            Created if missing; an existing store must carry the same signature.
        disk_dtype: dtype of the stored arrays; ``"float16"`` halves the disk size at a
            relative error around 1e-3. Features read back are cast to ``signature.dtype``.
        overwrite_stale: wipe an existing store whose signature differs instead of raising.
        load_device: device of the tensors read back from disk.

    Raises:
        StaleCacheError: ``disk_path`` holds a store with another signature.
        ValueError: ``disk_path`` exists but is not a napari-seem feature cache.

    Entries are kept without their decoder key/value memory (``image_memory``), which the
    predictor recomputes cheaply; the byte budget counts feature tensors only.
    """

    def __init__(
        self,
        signature: CacheSignature,
        *,
        memory_budget_bytes: int = 2 * 1024**3,
        disk_path: str | Path | None = None,
        disk_dtype: Literal["float32", "float16"] = "float32",
        overwrite_stale: bool = False,
        load_device: str | torch.device = "cpu",
    ) -> None:
        if memory_budget_bytes < 0:
            raise ValueError(f"memory_budget_bytes must be >= 0, got {memory_budget_bytes}")
        if disk_dtype not in ("float32", "float16"):
            raise ValueError(f"disk_dtype must be 'float32' or 'float16', got {disk_dtype!r}")
        self.signature = signature
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.disk_dtype = disk_dtype
        self.load_device = torch.device(load_device)
        self.disk_path = None if disk_path is None else Path(disk_path)
        self._entries: OrderedDict[TileIndex, EncodedImage] = OrderedDict()
        self._bytes = 0
        self._stats = CacheStats()
        self._lock = threading.RLock()  # memory LRU and counters
        self._disk_lock = threading.RLock()  # zarr reads and writes (slow: kept apart)
        self._root: zarr.Group | None = None
        if self.disk_path is not None:
            self._root = self._open_store(self.disk_path, overwrite_stale=overwrite_stale)

    # ---- public API ----------------------------------------------------------------------

    def get(self, tile_index: TileIndex) -> EncodedImage | None:
        """The encoded tile from memory, else from disk (promoted into memory), else None."""
        key = _as_index(tile_index)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._count(hits=1)
                return entry
        loaded = self._read_disk(key)
        with self._lock:
            if loaded is None:
                self._count(misses=1)
                return None
            self._count(disk_hits=1)
            self._remember(key, loaded)
        return loaded

    def put(self, tile_index: TileIndex, encoded: EncodedImage) -> None:
        """Keep ``encoded`` (a batch of one) for ``tile_index``; writes through to disk."""
        if encoded.features.batch_size != 1:
            raise ValueError(
                f"cache entries are single tiles; got a batch of {encoded.features.batch_size}"
            )
        key = _as_index(tile_index)
        entry = EncodedImage(encoded.frame, encoded.features)
        with self._lock:
            self._remember(key, entry)
        if self._root is not None:
            self._write_disk(key, entry)

    def __contains__(self, tile_index: object) -> bool:
        """In memory or complete on disk (no counters change)."""
        if not isinstance(tile_index, tuple) or len(tile_index) != 2:
            return False
        key = _as_index(tile_index)
        with self._lock:
            if key in self._entries:
                return True
        return self._disk_complete(key)

    def __len__(self) -> int:
        """Entries in memory."""
        with self._lock:
            return len(self._entries)

    @property
    def memory_bytes(self) -> int:
        """Bytes of feature tensors held in memory."""
        with self._lock:
            return self._bytes

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return self._stats

    def memory_keys(self) -> list[TileIndex]:
        """Tile indices in memory, least recently used first."""
        with self._lock:
            return list(self._entries)

    def disk_keys(self) -> list[TileIndex]:
        """Tile indices complete on disk (empty without a disk layer)."""
        if self._root is None or self.disk_path is None:
            return []
        # Folder names rather than ``group_keys()``: that parses every child's metadata and
        # fails on one torn by an interrupted write.
        keys = []
        for child in self.disk_path.iterdir():
            match = _TILE_NAME.fullmatch(child.name)
            if match is None:
                continue
            key = (int(match[1]), int(match[2]))
            if self._disk_complete(key):
                keys.append(key)
        return sorted(keys)

    def clear_memory(self) -> None:
        """Drop all in-memory entries (the disk layer is kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    # ---- memory LRU ------------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        s = self._stats
        self._stats = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})

    def _remember(self, key: TileIndex, entry: EncodedImage) -> None:
        """Insert as most recently used and evict down to the budget. Caller holds the lock."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _entry_bytes(old)
        size = _entry_bytes(entry)
        if size > self.memory_budget_bytes:
            return  # would evict everything and still not fit
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.memory_budget_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= _entry_bytes(evicted)
            self._count(evictions=1)

    # ---- disk layer ------------------------------------------------------------------------

    def _open_store(self, path: Path, *, overwrite_stale: bool) -> zarr.Group:
        if path.exists():
            try:
                existing = self._existing_signature(path)
            except StaleCacheError:  # our stamp, but from another format version
                if not overwrite_stale:
                    raise
                existing = None
                shutil.rmtree(path)
        if path.exists():
            if existing is None:
                if not path.is_dir() or any(path.iterdir()):
                    raise ValueError(
                        f"{path} exists but is not a napari-seem feature cache; "
                        "choose another folder (it is not overwritten)"
                    )
                path.rmdir()
            elif existing == self.signature:
                return zarr.open_group(str(path), mode="r+", zarr_format=3)
            elif overwrite_stale:
                shutil.rmtree(path)
            else:
                raise StaleCacheError(_stale_message(path, existing, self.signature))
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs[_SIGNATURE_ATTR] = json.loads(self.signature.to_json())
        return root

    @staticmethod
    def _existing_signature(path: Path) -> CacheSignature | None:
        """The signature of the store at ``path``; None when it is not a feature cache."""
        if not (path / "zarr.json").is_file():
            return None
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
            stamp = root.attrs.get(_SIGNATURE_ATTR)
        except Exception:
            return None
        if not isinstance(stamp, dict):
            return None
        try:
            return CacheSignature.from_json(json.dumps(stamp))
        except (TypeError, ValueError) as exc:
            # written by another format version with other fields: stale by definition
            raise StaleCacheError(
                f"{path}: feature cache signature unreadable by this napari-seem ({exc}). {_FIX}"
            ) from exc

    def _disk_complete(self, key: TileIndex) -> bool:
        if self._root is None:
            return False
        with self._disk_lock:
            try:
                group = self._root[_tile_name(key)]
                return bool(group.attrs.get("complete", False))
            except Exception:  # missing or a half-written zarr.json
                return False

    def _write_disk(self, key: TileIndex, entry: EncodedImage) -> None:
        assert self._root is not None
        feats = entry.features
        frame = entry.frame
        tensors = {"mask_features": feats.mask_features}
        tensors.update(zip(_MS_NAMES, feats.multi_scale_features, strict=True))
        with self._disk_lock:
            # Overwriting recreates the group without ``complete``: a crash from here on
            # leaves a tile that readers skip.
            group = self._root.create_group(_tile_name(key), overwrite=True)
            for name, tensor in tensors.items():
                data = tensor.detach().to("cpu", torch.float32).numpy().astype(self.disk_dtype)
                chunks = (1, min(int(data.shape[1]), 64), *data.shape[2:])
                array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
                array[...] = data
            group.attrs.update(
                {
                    "image_hw": list(frame.image_hw),
                    "resized_hw": list(frame.resized_hw),
                    "padded_hw": list(frame.padded_hw),
                    "features_padded_hw": list(feats.padded_hw),
                    "dtype": str(feats.mask_features.dtype).removeprefix("torch."),
                }
            )
            group.attrs["complete"] = True  # last: marks the tile valid
        with self._lock:
            self._count(disk_writes=1)

    def _read_disk(self, key: TileIndex) -> EncodedImage | None:
        if self._root is None:
            return None
        with self._disk_lock:
            try:
                group = self._root[_tile_name(key)]
                attrs: dict[str, Any] = dict(group.attrs)
                if not isinstance(group, zarr.Group) or not attrs.get("complete", False):
                    return None
                arrays = []
                for name in ("mask_features", *_MS_NAMES):
                    array = group[name]
                    if not isinstance(array, zarr.Array):
                        return None
                    arrays.append(np.asarray(array[...]))
            except Exception:  # missing tile, or files damaged by an interrupted write
                return None
        dtype = getattr(torch, str(attrs["dtype"]))
        mask, ms0, ms1, ms2 = (
            torch.from_numpy(a).to(device=self.load_device, dtype=dtype) for a in arrays
        )
        frame = ModelFrame(
            _hw(attrs["image_hw"]), _hw(attrs["resized_hw"]), _hw(attrs["padded_hw"])
        )
        features = ImageFeatures(mask, (ms0, ms1, ms2), _hw(attrs["features_padded_hw"]))
        return EncodedImage(frame, features)


def _hw(value: Any) -> tuple[int, int]:
    h, w = value
    return int(h), int(w)


_FIX = "Delete the folder or pass overwrite_stale=True (which wipes it) to rebuild the cache."


def _stale_message(path: Path, stored: CacheSignature, wanted: CacheSignature) -> str:
    diffs = stored.differences(wanted)
    detail = "; ".join(f"{name}: stored {a!r}, now {b!r}" for name, (a, b) in diffs.items())
    return (
        f"{path}: the feature cache was written for other settings ({detail}). "
        f"Its features would be wrong for this image and model. {_FIX}"
    )


def _next_batch(pending: list[Tile], batch_size: int) -> list[Tile]:
    """The first pending tile plus up to ``batch_size - 1`` later ones of the same shape.

    Tiles of one shape can share a batched forward (``SeemPredictor.encode_many``); taking
    the first pending tile first keeps the caller's priority order (nearest to the view).
    """
    shape = pending[0].outer_shape
    return [t for t in pending if t.outer_shape == shape][:batch_size]


def prefetch(
    cache: FeatureCache,
    tiles: Sequence[Tile],
    encode_fn: Callable[[list[Tile]], list[EncodedImage]],
    *,
    executor: Executor | None = None,
    cancel_event: threading.Event | None = None,
    batch_size: int = 4,
) -> Future[int]:
    """Encode the tiles of ``tiles`` missing from ``cache`` in the background.

    Args:
        cache: where the encodings go (``cache.put``).
        tiles: tiles to have encoded, most wanted first (e.g. the view, then its ring).
        encode_fn: encodes a list of tiles of one ``outer_shape`` and returns one
            :class:`EncodedImage` per tile, in order (e.g. cut the tiles and call
            ``SeemPredictor.encode_many``). Runs on the worker thread.
        executor: where to run; None starts a private single worker thread.
        cancel_event: when set, the work stops before its next batch.
        batch_size: at most this many tiles per ``encode_fn`` call.

    Returns:
        A future of the number of tiles encoded; an exception of ``encode_fn`` is raised
        by ``future.result()``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    wanted = list(tiles)

    def work() -> int:
        done = 0
        pending = [t for t in wanted if t.index not in cache]
        while pending:
            if cancel_event is not None and cancel_event.is_set():
                break
            batch = _next_batch(pending, batch_size)
            chosen = {t.index for t in batch}
            pending = [t for t in pending if t.index not in chosen]
            batch = [t for t in batch if t.index not in cache]  # encoded meanwhile elsewhere
            if not batch:
                continue
            encoded = encode_fn(batch)
            if len(encoded) != len(batch):
                raise ValueError(f"encode_fn returned {len(encoded)} encodings for {len(batch)}")
            for tile, enc in zip(batch, encoded, strict=True):
                cache.put(tile.index, enc)
            done += len(batch)
        return done

    if executor is not None:
        return executor.submit(work)
    own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-seem-prefetch")
    future = own.submit(work)
    own.shutdown(wait=False)  # the submitted work still runs; the thread exits after it
    return future
