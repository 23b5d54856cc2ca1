"""Limits of the engine server: exposure, body and prompt sizes, a dead child, a huge image.

Real uvicorn servers on 127.0.0.1 (in a thread, or a spawned ``napari-seem serve``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import zarr

from napari_seem.cli.main import main
from napari_seem.core.prompts import Box, ObjectPrompt, Points
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine
from napari_seem.model.seem import SeemModel
from napari_seem.remote.client import RemoteError, SeemClient, ServerUnavailableError
from napari_seem.remote.server import (
    check_bind_host,
    create_app,
    is_loopback_host,
)
from tests.remote.harness import raw_request, served, write_zarr

TOKEN = "limits-token-0123456789"
LIMIT = 4096  # bytes of body, small so tests stay fast


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits")


@pytest.fixture(scope="module")
def small_url(model: SeemModel, data_dir: Path) -> Iterator[str]:
    write_zarr(data_dir / "small.zarr", synthetic_nuclei((200, 300), n_objects=12, seed=1).image)
    with Engine(model, tile=128, halo=16) as engine:
        app = create_app(
            engine,
            token=TOKEN,
            allowed_roots=[data_dir],
            max_body_bytes=LIMIT,
            max_visual_prompts=4,
            max_points=50,
        )
        with served(app) as base_url:
            yield base_url


@pytest.fixture(scope="module")
def small_session(small_url: str, data_dir: Path) -> str:
    reply = _raw(small_url, "POST", "/sessions", json={"path": str(data_dir / "small.zarr")})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["session_id"])


def _raw(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return raw_request(url, TOKEN, method, path, **kwargs)


def _healthy(url: str) -> None:
    reply = httpx.get(url + "/health", timeout=10)
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


def _error(reply: httpx.Response, status: int, type_: str) -> str:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["type"] == type_, reply.text
    assert error["message"]
    return str(error["message"])


def _points(n: int, *, row: float = 50.0) -> dict[str, Any]:
    return {"kind": "points", "coords": [[row, 10.0 + i % 200] for i in range(n)], "positive": True}


# ---------------------------------------------------------------------- exposure


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    assert is_loopback_host(host)
    check_bind_host(host, allow_remote=False, token=None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", ""])
def test_non_loopback_hosts_need_allow_remote_and_a_token(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ValueError, match="--allow-remote"):
        check_bind_host(host, allow_remote=False, token=TOKEN)
    with pytest.raises(ValueError, match="explicit token"):
        check_bind_host(host, allow_remote=True, token=None)
    with pytest.raises(ValueError, match="too short"):
        check_bind_host(host, allow_remote=True, token="short")
    check_bind_host(host, allow_remote=True, token=TOKEN)


def test_serve_refuses_a_remote_host_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NAPARI_SEEM_TOKEN", raising=False)
    # refused before the model loads: these return at once
    assert main(["serve", "--host", "0.0.0.0", "--token", TOKEN]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "explicit token" in capsys.readouterr().err
    monkeypatch.setenv("NAPARI_SEEM_TOKEN", "short")
    assert main(["serve", "--host", "10.1.2.3", "--allow-remote"]) == 2
    assert "too short" in capsys.readouterr().err


# ---------------------------------------------------------------------- bad requests


def test_body_over_the_limit_is_413(small_url: str, small_session: str) -> None:
    predict = f"/sessions/{small_session}/predict"
    big = {"prompt": {"kind": "object", "visual": [_points(400)]}}  # > LIMIT bytes
    message = _error(_raw(small_url, "POST", predict, json=big), 413, "BodyTooLarge")
    assert str(LIMIT) in message
    _healthy(small_url)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"prompt": {"kind": "object", "visual": ['
        for _ in range(LIMIT // 8):
            yield b'{"kind":"box"},'
        yield b"]}}"

    reply = _raw(
        small_url, "POST", predict, content=chunks(), headers={"Content-Type": "application/json"}
    )
    _error(reply, 413, "BodyTooLarge")
    _healthy(small_url)
    ok = {"prompt": {"kind": "object", "visual": [_points(1)]}}  # under the limit: served
    assert _raw(small_url, "POST", predict, json=ok).status_code == 200
    _healthy(small_url)


def test_too_many_prompts_or_points_are_422(small_url: str, small_session: str) -> None:
    predict = f"/sessions/{small_session}/predict"
    many = {"prompt": {"kind": "object", "visual": [_points(1) for _ in range(5)]}}
    assert "at most 4" in _error(_raw(small_url, "POST", predict, json=many), 422, "PromptTooLarge")
    _healthy(small_url)
    dense = {"prompt": {"kind": "object", "visual": [_points(51)]}}
    assert "at most 50" in _error(
        _raw(small_url, "POST", predict, json=dense), 422, "PromptTooLarge"
    )
    _healthy(small_url)
    split = {"prompt": {"kind": "object", "visual": [_points(30), _points(30, row=60)]}}
    _error(_raw(small_url, "POST", predict, json=split), 422, "PromptTooLarge")
    _healthy(small_url)


@pytest.mark.parametrize(
    "visual",
    [
        '{"kind": "points", "coords": [[NaN, 10]], "positive": true}',
        '{"kind": "points", "coords": [[10, Infinity]], "positive": true}',
        '{"kind": "points", "coords": [[10, 10], [-Infinity, 5]], "positive": [true, false]}',
        '{"kind": "box", "row_min": NaN, "col_min": 0, "row_max": 10, "col_max": 10}',
        '{"kind": "polygon", "vertices": [[0, 0], [0, NaN], [5, 5]]}',
    ],
)
def test_non_finite_coordinates_are_422(small_url: str, small_session: str, visual: str) -> None:
    body = '{"prompt": {"kind": "object", "visual": [' + visual + "]}}"
    reply = _raw(
        small_url,
        "POST",
        f"/sessions/{small_session}/predict",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    _error(reply, 422, "PromptError")
    _healthy(small_url)


@pytest.mark.parametrize(
    "content",
    [b"{", b"", b"null", b"[1, 2]", b'{"prompt": }', b"\xff\xfe", b'{"prompt": {"kind": 1}}'],
)
def test_malformed_bodies_are_4xx_and_the_server_lives(
    small_url: str, small_session: str, content: bytes
) -> None:
    for path in [f"/sessions/{small_session}/predict", "/sessions"]:
        reply = _raw(
            small_url, "POST", path, content=content, headers={"Content-Type": "application/json"}
        )
        assert 400 <= reply.status_code < 500, (path, content, reply.text)
        assert reply.json()["error"]["type"] in {"ValidationError", "PromptError"}
        _healthy(small_url)


def test_create_app_refuses_silly_limits(model: SeemModel) -> None:
    with Engine(model, tile=128, halo=16) as engine, pytest.raises(ValueError, match="limits"):
        create_app(engine, token=TOKEN, allowed_roots=[], max_body_bytes=0)


# ---------------------------------------------------------------------- a dead child


@pytest.mark.slow
def test_a_killed_server_is_reported_then_restarted(data_dir: Path, small_url: str) -> None:
    path = data_dir / "small.zarr"  # written by the small_url fixture
    click = ObjectPrompt(Points.click(50, 60))
    client = SeemClient.spawn_local(
        variant="seem-tiny-focal",
        allow_roots=[data_dir],
        tile=128,
        halo=16,
        device="cpu",
        auto_restart=True,
    )
    try:
        first = client.process
        assert first is not None
        sid = client.open_session(path).result(60).session_id
        assert client.predict(sid, click).result(120).mask.ndim == 2
        first.kill()  # kill -9 mid-session
        first.wait(30)
        with pytest.raises(ServerUnavailableError, match="model process died") as info:
            client.predict(sid, click).result(60)
        assert "auto_restart" in str(info.value)
        # the next call respawns; the old session is gone, a new one works
        with pytest.raises(RemoteError) as gone:
            client.session_info(sid).result(300)
        assert gone.value.status == 404
        assert client.process is not first and client.process is not None
        assert client.process.poll() is None
        sid = client.open_session(path).result(60).session_id
        assert client.predict(sid, click).result(120).mask.ndim == 2

        # explicit restart() after a second death
        client.auto_restart = False
        second = client.process
        second.kill()
        second.wait(30)
        with pytest.raises(ServerUnavailableError, match=r"client\.restart\(\)"):
            client.info().result(60)
        with pytest.raises(ServerUnavailableError):  # no auto restart: still dead
            client.info().result(60)
        client.restart()
        assert client.process is not second
        sid = client.open_session(path).result(60).session_id
        assert client.predict(sid, click).result(120).mask.ndim == 2
    finally:
        client.close()
    assert client.process is not None and client.process.poll() is not None


def test_restart_needs_a_spawned_client() -> None:
    with SeemClient("http://127.0.0.1:9", TOKEN) as client, pytest.raises(RuntimeError):
        client.restart()


# ---------------------------------------------------------------------- a huge image

BIG = 20_000
CORNER = 52 * 192  # tile 256, halo 32: cores of 192, so 9984 is where four tiles meet


@pytest.mark.slow
def test_a_huge_lazy_zarr_answers_a_small_crop(model: SeemModel, data_dir: Path) -> None:
    path = data_dir / "huge.zarr"
    arr = zarr.create_array(
        store=str(path), shape=(BIG, BIG), chunks=(1024, 1024), dtype="uint8", fill_value=0
    )
    rows, cols = np.ogrid[-60:60, -60:60]
    disc = (rows**2 + cols**2 <= 40**2).astype(np.uint8) * 230
    r0 = c0 = CORNER - 60
    arr[r0 : r0 + 120, c0 : c0 + 120] = disc  # crosses the corner of four tiles
    written = [p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert 0 < len(written) <= 4  # lazily built: nearly every chunk is absent

    process = psutil.Process()
    with Engine(model, tile=256, halo=32) as engine:
        app = create_app(engine, token=TOKEN, allowed_roots=[data_dir])
        with served(app) as url:
            rss = process.memory_info().rss
            with SeemClient(url, TOKEN) as client:
                info = client.open_session(path).result(120)
                assert info.image_shape == (BIG, BIG)
                prompt = ObjectPrompt(
                    (
                        Points.click(CORNER - 5, CORNER - 5),
                        Box(CORNER - 150, CORNER - 150, CORNER + 150, CORNER + 150),
                    )
                )
                reply = _raw(
                    url,
                    "POST",
                    f"/sessions/{info.session_id}/predict",
                    json={"prompt": prompt.to_dict()},
                )
                assert reply.status_code == 200, reply.text
                assert len(reply.content) < 64 * 1024  # a crop, never the image
                obj = client.predict(info.session_id, prompt).result(300)
            (r, c), (h, w) = obj.offset, obj.mask.shape
            assert min(r, c) >= 0 and max(r + h, c + w) <= BIG
            assert 0 < h * w <= 4 * 256 * 256  # at most the four tiles around the corner
            assert process.memory_info().rss - rss < 1024**3  # the image is 400 MB
