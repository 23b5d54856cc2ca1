"""Feature cache: memory LRU with a byte budget, zarr disk layer with a signature, prefetch."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from napari_seem.core.tiling import Tile, TileGrid
from napari_seem.model.seem import ImageFeatures
from napari_seem.model.transforms import ModelFrame
from napari_seem.predict.feature_cache import (
    CacheSignature,
    FeatureCache,
    StaleCacheError,
    prefetch,
)
from napari_seem.predict.predictor import EncodedImage

D = 8
# mask (8x8) + ms0 (1x1) + ms1 (2x2) + ms2 (4x4), float32
ENTRY_BYTES = 4 * D * (64 + 1 + 4 + 16)


def _signature(**changes: object) -> CacheSignature:
    values: dict[str, object] = {
        "variant": "seem-tiny-focal",
        "checkpoint": "random:0",
        "tile_size": (32, 32),
        "halo": 0,
        "source": "numpy:abc",
    }
    values.update(changes)
    return CacheSignature(**values)  # type: ignore[arg-type]


def _encoded(seed: int, image_hw: tuple[int, int] = (30, 31)) -> EncodedImage:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randn(1, D, 8, 8, generator=g)
    ms = tuple(torch.randn(1, D, s, s, generator=g) for s in (1, 2, 4))
    frame = ModelFrame(image_hw, image_hw, (32, 32))
    return EncodedImage(frame, ImageFeatures(mask, (ms[0], ms[1], ms[2]), (32, 32)))


def _assert_same(a: EncodedImage, b: EncodedImage, atol: float = 0.0) -> None:
    assert a.frame == b.frame
    assert a.features.padded_hw == b.features.padded_hw
    pairs = [(a.features.mask_features, b.features.mask_features)]
    ms_a, ms_b = a.features.multi_scale_features, b.features.multi_scale_features
    pairs += list(zip(ms_a, ms_b, strict=True))
    for x, y in pairs:
        assert x.shape == y.shape and x.dtype == y.dtype
        if atol == 0.0:
            assert torch.equal(x, y)
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


# ---- signature ----------------------------------------------------------------------------


def test_signature_json_round_trip_and_key() -> None:
    sig = _signature(tile_size=48)
    assert sig.tile_size == (48, 48)
    back = CacheSignature.from_json(sig.to_json())
    assert back == sig and back.key == sig.key
    assert _signature(halo=16).key != sig.key
    assert sig.differences(_signature(halo=16, level=1)).keys() == {"halo", "level", "tile_size"}
    with pytest.raises(ValueError, match="unknown"):
        CacheSignature.from_json(json.dumps({**json.loads(sig.to_json()), "extra": 1}))


# ---- memory LRU ---------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_and_counts_bytes() -> None:
    assert _encoded(0).features.nbytes == ENTRY_BYTES
    cache = FeatureCache(_signature(), memory_budget_bytes=3 * ENTRY_BYTES)
    for i in range(3):
        cache.put((0, i), _encoded(i))
    assert cache.memory_bytes == 3 * ENTRY_BYTES
    assert cache.get((0, 0)) is not None  # (0, 0) is now the most recent
    cache.put((1, 0), _encoded(3))
    assert cache.memory_keys() == [(0, 2), (0, 0), (1, 0)]
    assert (0, 1) not in cache and cache.get((0, 1)) is None
    assert cache.memory_bytes == 3 * ENTRY_BYTES
    # replacing an entry does not double count it
    cache.put((0, 2), _encoded(5))
    assert cache.memory_bytes == 3 * ENTRY_BYTES and len(cache) == 3
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.evictions, stats.disk_hits) == (1, 1, 1, 0)


def test_entry_larger_than_budget_is_not_kept_in_memory(tmp_path: Path) -> None:
    cache = FeatureCache(_signature(), memory_budget_bytes=ENTRY_BYTES - 1)
    cache.put((0, 0), _encoded(0))
    assert len(cache) == 0 and cache.memory_bytes == 0 and (0, 0) not in cache
    # ... but it still goes to disk, and a disk hit does not enter memory either
    disk = FeatureCache(_signature(), memory_budget_bytes=ENTRY_BYTES - 1, disk_path=tmp_path / "c")
    disk.put((0, 0), _encoded(0))
    assert (0, 0) in disk and disk.memory_bytes == 0
    got = disk.get((0, 0))
    assert got is not None and disk.memory_bytes == 0 and disk.stats.disk_hits == 1


def test_put_drops_image_memory_and_rejects_batches() -> None:
    cache = FeatureCache(_signature())
    enc = _encoded(0)
    cache.put((0, 0), EncodedImage(enc.frame, enc.features, image_memory=object()))  # type: ignore[arg-type]
    got = cache.get((0, 0))
    assert got is not None and got.image_memory is None
    f = enc.features
    two = ImageFeatures(
        torch.cat([f.mask_features] * 2),
        tuple(torch.cat([m] * 2) for m in f.multi_scale_features),  # type: ignore[arg-type]
        f.padded_hw,
    )
    with pytest.raises(ValueError, match="batch of 2"):
        cache.put((0, 1), EncodedImage(enc.frame, two))


# ---- disk layer ---------------------------------------------------------------------------


def test_disk_round_trip_float32_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    cache = FeatureCache(_signature(), disk_path=path)
    enc = _encoded(7)
    cache.put((2, 3), enc)
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["napari_seem_feature_cache"]["halo"] == 0
    tile = group["r2_c3"]
    assert set(tile.array_keys()) == {"mask_features", "ms0", "ms1", "ms2"}
    assert tile.attrs["complete"] is True and tile.attrs["image_hw"] == [30, 31]

    reopened = FeatureCache(_signature(), disk_path=path)
    assert (2, 3) in reopened and reopened.disk_keys() == [(2, 3)]
    got = reopened.get((2, 3))
    assert got is not None
    _assert_same(got, enc)
    assert reopened.stats.disk_hits == 1
    # promoted: the second get is a memory hit
    assert reopened.get((2, 3)) is got and reopened.stats.hits == 1


def test_disk_round_trip_float16_within_tolerance(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    enc = _encoded(8)
    FeatureCache(_signature(), disk_path=path, disk_dtype="float16").put((0, 0), enc)
    assert zarr.open_group(str(path), mode="r")["r0_c0/mask_features"].dtype == np.float16
    got = FeatureCache(_signature(), disk_path=path).get((0, 0))
    assert got is not None
    assert got.features.mask_features.dtype == torch.float32  # cast back to the signature's
    _assert_same(got, enc, atol=5e-3)


def test_stale_signature_is_refused_with_field_names(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    FeatureCache(_signature(), disk_path=path).put((0, 0), _encoded(0))
    with pytest.raises(StaleCacheError) as info:
        FeatureCache(_signature(halo=16, checkpoint="abc123"), disk_path=path)
    message = str(info.value)
    assert "halo" in message and "checkpoint" in message and "tile_size" not in message
    assert "overwrite_stale=True" in message and "Delete the folder" in message
    # the refused store is untouched
    assert (0, 0) in FeatureCache(_signature(), disk_path=path)


def test_overwrite_stale_wipes_the_store(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    FeatureCache(_signature(), disk_path=path).put((0, 0), _encoded(0))
    fresh = FeatureCache(_signature(source="numpy:other"), disk_path=path, overwrite_stale=True)
    assert (0, 0) not in fresh and fresh.disk_keys() == []
    fresh.put((1, 1), _encoded(1))
    assert FeatureCache(_signature(source="numpy:other"), disk_path=path).disk_keys() == [(1, 1)]


def test_signature_of_another_format_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    FeatureCache(_signature(), disk_path=path)
    root = zarr.open_group(str(path), mode="r+")
    stamp = dict(root.attrs["napari_seem_feature_cache"])  # type: ignore[arg-type]
    root.attrs["napari_seem_feature_cache"] = {**stamp, "format_version": 99, "new_field": 1}
    with pytest.raises(StaleCacheError, match="overwrite_stale=True"):
        FeatureCache(_signature(), disk_path=path)
    FeatureCache(_signature(), disk_path=path, overwrite_stale=True).put((0, 0), _encoded(0))
    assert FeatureCache(_signature(), disk_path=path).disk_keys() == [(0, 0)]


def test_folder_that_is_not_a_cache_is_never_wiped(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a napari-seem feature cache"):
        FeatureCache(_signature(), disk_path=path, overwrite_stale=True)
    assert (path / "precious.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    FeatureCache(_signature(), disk_path=empty).put((0, 0), _encoded(0))


def test_incomplete_tile_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    cache = FeatureCache(_signature(), disk_path=path)
    cache.put((0, 0), _encoded(0))
    cache.put((0, 1), _encoded(1))
    # simulate a crash mid-write: the group exists with arrays but without ``complete``
    root = zarr.open_group(str(path), mode="r+")
    del root["r0_c1"].attrs["complete"]
    half = root.create_group("r0_c2")
    half.create_array("mask_features", shape=(1, D, 8, 8), dtype="float32")
    (path / "r0_c2" / "zarr.json").write_text("{ truncated")  # torn metadata write

    reopened = FeatureCache(_signature(), disk_path=path)
    assert reopened.disk_keys() == [(0, 0)]
    assert (0, 1) not in reopened and (0, 2) not in reopened
    assert reopened.get((0, 1)) is None and reopened.get((0, 2)) is None
    assert reopened.get((0, 0)) is not None
    # rewriting a broken tile makes it valid again
    reopened.put((0, 2), _encoded(2))
    got = FeatureCache(_signature(), disk_path=path).get((0, 2))
    assert got is not None
    _assert_same(got, _encoded(2))


# ---- threads ------------------------------------------------------------------------------


def test_writer_thread_and_reader_loop(tmp_path: Path) -> None:
    cache = FeatureCache(
        _signature(), memory_budget_bytes=5 * ENTRY_BYTES, disk_path=tmp_path / "c"
    )
    keys = [(i // 4, i % 4) for i in range(16)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n, key in enumerate(keys):
                cache.put(key, _encoded(n))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        for n, key in enumerate(keys):
            got = cache.get(key)
            if got is not None:
                _assert_same(got, _encoded(n))
        assert cache.memory_bytes <= 5 * ENTRY_BYTES
    thread.join()
    assert not errors
    assert cache.memory_bytes == len(cache) * ENTRY_BYTES <= 5 * ENTRY_BYTES
    assert sorted(cache.disk_keys()) == keys


# ---- prefetch -----------------------------------------------------------------------------


def _tiles() -> list[Tile]:
    return list(TileGrid((96, 64), tile_size=32, halo=0))  # 3 x 2 tiles


def test_prefetch_encodes_only_missing_tiles_in_batches() -> None:
    tiles = _tiles()
    cache = FeatureCache(_signature())
    cache.put(tiles[1].index, _encoded(100))
    calls: list[list[tuple[int, int]]] = []

    def encode(batch: list[Tile]) -> list[EncodedImage]:
        calls.append([t.index for t in batch])
        return [_encoded(10 * t.index[0] + t.index[1]) for t in batch]

    future = prefetch(cache, tiles, encode, batch_size=2)
    assert future.result(timeout=30) == 5
    assert calls == [[(0, 0), (1, 0)], [(1, 1), (2, 0)], [(2, 1)]]
    assert all(t.index in cache for t in tiles)
    kept = cache.get(tiles[1].index)
    assert kept is not None
    _assert_same(kept, _encoded(100))  # the cached tile was not re-encoded
    assert prefetch(cache, tiles, encode).result(timeout=30) == 0


def test_prefetch_batches_only_tiles_of_one_shape() -> None:
    tiles = list(TileGrid((80, 64), tile_size=32, halo=0))  # last row is 16 px tall
    cache = FeatureCache(_signature())
    shapes: list[set[tuple[int, int]]] = []

    def encode(batch: list[Tile]) -> list[EncodedImage]:
        shapes.append({t.outer_shape for t in batch})
        return [_encoded(0) for _ in batch]

    assert prefetch(cache, tiles, encode, batch_size=8).result(timeout=30) == 6
    assert all(len(s) == 1 for s in shapes) and len(shapes) == 2


def test_prefetch_respects_cancel_and_reports_errors() -> None:
    tiles = _tiles()
    cache = FeatureCache(_signature())
    cancel = threading.Event()

    def encode(batch: list[Tile]) -> list[EncodedImage]:
        cancel.set()  # the view moved while the first batch was encoding
        return [_encoded(0) for _ in batch]

    assert prefetch(cache, tiles, encode, cancel_event=cancel, batch_size=1).result(30) == 1
    assert len(cache) == 1
    cancel.set()
    assert prefetch(cache, tiles, encode, cancel_event=cancel).result(30) == 0

    def broken(batch: list[Tile]) -> list[EncodedImage]:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        prefetch(FeatureCache(_signature()), tiles, broken).result(timeout=30)
    with pytest.raises(ValueError, match="encodings"):
        prefetch(FeatureCache(_signature()), tiles, lambda b: []).result(timeout=30)


def test_prefetch_with_seem_predictor_end_to_end(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from napari_seem.model.build import build_seem
    from napari_seem.predict.predictor import SeemPredictor

    predictor = SeemPredictor(build_seem("seem-tiny-focal", seed=0), short_side=None)
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    grid = TileGrid(image.shape[:2], tile_size=32, halo=0)

    def encode(batch: list[Tile]) -> list[EncodedImage]:
        return predictor.encode_many([image[t.outer_slices] for t in batch])

    cache = FeatureCache(_signature(), disk_path=tmp_path / "c")
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert prefetch(cache, list(grid), encode, executor=pool).result(timeout=120) == 6
    tile = grid.tile(1, 2)
    direct = predictor.encode(image[tile.outer_slices])
    cached = FeatureCache(_signature(), disk_path=tmp_path / "c").get(tile.index)
    assert cached is not None
    assert cached.frame == direct.frame
    torch.testing.assert_close(
        cached.features.mask_features, direct.features.mask_features, atol=1e-5, rtol=1e-5
    )
    # a cached encoding drives the predictor like a fresh one
    predictor.set_encoded(cached)
    assert predictor.encoded is cached
