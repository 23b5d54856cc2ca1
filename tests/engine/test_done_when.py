"""Issue 4's "done when" items not covered elsewhere, each through a real server on 127.0.0.1:
an object spanning four tiles comes back as one mask; a stale disk feature cache is refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from napari_seem.core.prompts import ObjectPrompt, Points
from napari_seem.engine import Engine
from napari_seem.model.seem import SeemModel
from napari_seem.remote.client import RemoteError, SeemClient
from napari_seem.remote.server import create_app
from tests.engine._threshold import ThresholdPredictor
from tests.remote.harness import served, write_zarr

TOKEN = "done-when-token"
TILE, HALO = 128, 16  # cores of 96: four cores meet at (96, 96)


@contextmanager
def _serve(engine: Engine, root: Path) -> Iterator[tuple[str, SeemClient]]:
    with served(create_app(engine, token=TOKEN, allowed_roots=[root])) as url:
        client = SeemClient(url, TOKEN)
        try:
            yield url, client
        finally:
            client.close()


def test_an_object_spanning_four_tiles_comes_back_whole(model: SeemModel, tmp_path: Path) -> None:
    image = np.full((200, 300), 10, np.uint8)
    rows, cols = np.ogrid[:200, :300]
    disc = (rows - 96) ** 2 + (cols - 96) ** 2 <= 40**2  # 81 x 81, across four cores
    image[disc] = 230
    path = write_zarr(tmp_path / "disc.zarr", image)
    engine = Engine(ThresholdPredictor(model), tile=TILE, halo=HALO)
    with engine, _serve(engine, tmp_path) as (_, client):
        sid = client.open_session(path).result(60).session_id
        obj = client.predict(sid, ObjectPrompt(Points.click(70, 70))).result(120)
    assert obj.offset == (56, 56) and obj.mask.shape == (81, 81)
    np.testing.assert_array_equal(obj.full((200, 300)), disc)


def test_a_stale_disk_cache_is_refused(model: SeemModel, tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (150, 150), dtype=np.uint8)
    path = write_zarr(tmp_path / "image.zarr", image)
    cache_dir = tmp_path / "cache"
    click = ObjectPrompt(Points.click(40, 40))
    engine = Engine(model, tile=TILE, halo=HALO, cache_dir=cache_dir)
    with engine, _serve(engine, tmp_path) as (_, client):
        sid = client.open_session(path).result(60).session_id
        first = client.predict(sid, click).result(120)
    stores = list(cache_dir.iterdir())
    assert len(stores) == 1 and stores[0].name.startswith("image.zarr-")

    # the same settings reuse the stored features: no encode at all
    with Engine(model, tile=TILE, halo=HALO, cache_dir=cache_dir) as engine:
        calls: list[int] = []
        original = engine.predictor.encode_many

        def counting(images: Any) -> Any:
            calls.append(len(images))
            return original(images)

        engine.predictor.encode_many = counting  # type: ignore[method-assign]
        again = engine.predict(engine.open_session(path), click)
    assert calls == [] and again.offset == first.offset
    np.testing.assert_array_equal(again.mask, first.mask)

    # another tiling (or model) on the same cache folder is refused with a clear 409
    engine = Engine(model, tile=160, halo=HALO, cache_dir=cache_dir)
    with engine, _serve(engine, tmp_path) as (url, client):
        with pytest.raises(RemoteError) as info:
            client.open_session(path).result(60)
        assert info.value.status == 409 and info.value.type == "StaleCacheRefusedError"
        assert "tile_size" in info.value.message and "refuses" in info.value.message
        assert httpx.get(f"{url}/health").status_code == 200
        assert client.info().result(60).tile == 160  # still serving
