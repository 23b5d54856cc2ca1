"""The engine over HTTP: a real uvicorn server on 127.0.0.1 and the futures client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from napari_seem.core.prompts import Box, ObjectPrompt, Points
from napari_seem.core.results import ObjectMask
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine
from napari_seem.model.seem import SeemModel
from napari_seem.remote.client import RemoteError, SeemClient, ServerUnavailableError
from napari_seem.remote.protocol import MaskPayload, decode_mask, encode_mask
from napari_seem.remote.server import bind_socket, create_app
from tests.remote.harness import served, write_zarr

SHAPE = (200, 300)
TILE, HALO = 128, 16  # core 96: a 3 x 4 grid
TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("allowed")


def _write_zarr(path: Path) -> Path:
    return write_zarr(path, synthetic_nuclei(SHAPE, n_objects=12, seed=1).image)


@pytest.fixture(scope="module")
def zarr_path(data_dir: Path) -> Path:
    return _write_zarr(data_dir / "nuclei.zarr")


@pytest.fixture(scope="module")
def engine(model: SeemModel) -> Iterator[Engine]:
    with Engine(model, tile=TILE, halo=HALO) as engine:
        yield engine


@pytest.fixture(scope="module")
def url(engine: Engine, data_dir: Path) -> Iterator[str]:
    app = create_app(engine, token=TOKEN, allowed_roots=[data_dir])
    with served(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[SeemClient]:
    with SeemClient(url, TOKEN) as client:
        yield client


@pytest.fixture(scope="module")
def session(client: SeemClient, zarr_path: Path) -> str:
    return client.open_session(zarr_path).result(60).session_id


def _click() -> ObjectPrompt:
    labels = synthetic_nuclei(SHAPE, n_objects=12, seed=1).labels
    rows, cols = np.nonzero(labels == 1)
    return ObjectPrompt(Points.click(int(rows.mean()), int(cols.mean())), label="nucleus")


def _remote_error(future: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        future.result(60)
    return info.value


def _raw(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.request(method, url + path, headers=headers, timeout=60, **kwargs)


# ---------------------------------------------------------------------- payload


@pytest.mark.parametrize("shape", [(0, 0), (1, 1), (3, 5), (17, 9), (64, 64)])
def test_mask_payload_round_trips(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(0).random(shape) > 0.5
    payload = MaskPayload.model_validate_json(encode_mask(mask).model_dump_json())
    assert payload.encoding == "zlib-packbits"
    np.testing.assert_array_equal(decode_mask(payload), mask)


def test_corrupt_mask_payload_is_refused() -> None:
    payload = encode_mask(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="needs"):
        decode_mask(payload.model_copy(update={"shape": (40, 40)}))
    with pytest.raises(ValueError, match="corrupt"):
        decode_mask(payload.model_copy(update={"data": "not base64!"}))


# ---------------------------------------------------------------------- server


def test_health_needs_no_token_and_info_describes_the_model(
    url: str, client: SeemClient, engine: Engine
) -> None:
    health = httpx.get(url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = client.info().result(30)
    assert info.model == engine.predictor.model.name
    assert info.device == "cpu"
    assert (info.tile, info.halo) == (TILE, HALO)
    assert info.checkpoint == "random"
    assert info.version == health.json()["version"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_requests_without_the_token_are_401(url: str, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/info"), ("POST", "/sessions"), ("GET", "/jobs/x")]:
        reply = httpx.request(method, url + path, headers=headers, json={}, timeout=10)
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert reply.json()["error"]["type"] == "Unauthorized"
        assert "Bearer" in reply.json()["error"]["message"]


def test_client_with_a_wrong_token_gets_a_typed_error(url: str) -> None:
    with SeemClient(url, "wrong") as bad:
        error = _remote_error(bad.info())
    assert (error.type, error.status) == ("Unauthorized", 401)


def test_open_session_by_path(
    client: SeemClient, engine: Engine, session: str, zarr_path: Path
) -> None:
    info = client.session_info(session).result(30)
    assert info.image_shape == SHAPE
    assert info.grid_shape == (3, 4)
    assert info.tile_size == engine.session_info(session).tile_size
    assert info.halo == HALO


def test_paths_outside_the_allowed_roots_are_403(
    client: SeemClient, data_dir: Path, tmp_path: Path
) -> None:
    outside = _write_zarr(tmp_path / "secret.zarr")
    for path in [outside, data_dir / ".." / outside.parent.name / "secret.zarr", "/etc/passwd"]:
        error = _remote_error(client.open_session(path))
        assert (error.type, error.status) == ("PathNotAllowed", 403)
        assert "allowed roots" in error.message and "--allow-root" in error.message
    escape = data_dir / "link.zarr"
    escape.symlink_to(outside)
    assert _remote_error(client.open_session(escape)).status == 403


def test_unreadable_path_inside_the_roots_is_400(client: SeemClient, data_dir: Path) -> None:
    error = _remote_error(client.open_session(data_dir / "missing.zarr"))
    assert (error.type, error.status) == ("InvalidRequestError", 400)
    assert "cannot open the image" in error.message


def test_predict_matches_the_engine_in_process(
    client: SeemClient, model: SeemModel, session: str, zarr_path: Path
) -> None:
    prompt = _click()
    remote = client.predict(session, prompt).result(120)
    with Engine(model, tile=TILE, halo=HALO) as local:
        local_session = local.open_session(str(zarr_path))
        expected = local.predict(local_session, prompt)
        assert isinstance(remote, ObjectMask)
        assert remote == expected
        assert remote.prompt == prompt
        assert remote.mask.shape == expected.mask.shape and remote.offset == expected.offset
        # a second round with memory: the server and the engine remember alike
        again = prompt.with_prompts(Box(0, 0, 150, 200))
        for _ in range(2):
            remote_2 = client.predict(session, again, object_id="a").result(120)
            assert remote_2 == local.predict(local_session, again, object_id="a")


def test_job_reports_progress_until_done(client: SeemClient, url: str, zarr_path: Path) -> None:
    # a fresh session, so the tiles are not cached yet
    sid = client.open_session(zarr_path).result(30).session_id
    started = client.start_job(sid, box=(0, 0, 100, 100)).result(30)
    assert started.kind == "encode_region" and started.session_id == sid
    assert started.total == 4  # a 100 x 100 box meets 2 x 2 cores of 96
    deadline = time.monotonic() + 120
    status = started
    while status.state not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        status = client.job_status(started.job_id).result(30)
    assert (status.state, status.done, status.total, status.error) == ("done", 4, 4, None)
    events = client.job_events(started.job_id).result(30)
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.done for e in events if e.state == "running"][-1] == 4
    assert events[-1].state == "done"
    assert client.job_events(started.job_id, since=2).result(30)[0].seq == 2
    reply = _raw(url, "POST", f"/sessions/{sid}/jobs", json={})
    assert reply.status_code == 202 and reply.json()["total"] == 12  # default: whole image
    client.close_session(sid).result(30)


def test_cancel_stops_a_job_between_tiles(
    client: SeemClient, engine: Engine, zarr_path: Path
) -> None:
    sid = client.open_session(zarr_path).result(30).session_id
    with engine._model_lock:  # the job's first tile waits here until we have cancelled
        job = client.start_job(sid).result(30)
        cancelled = client.cancel_job(job.job_id).result(30)
        assert cancelled.job_id == job.job_id
    final = engine.wait_job(job.job_id, timeout=60)
    assert final.state == "cancelled"
    assert final.done < final.total == 12
    assert client.job_status(job.job_id).result(30).state == "cancelled"
    client.close_session(sid).result(30)


def test_unknown_ids_are_typed_404(client: SeemClient, url: str) -> None:
    calls = {
        "UnknownSessionError": [
            client.predict("nope", _click()),
            client.session_info("nope"),
            client.close_session("nope"),
            client.start_job("nope"),
        ],
        "UnknownJobError": [
            client.job_status("nope"),
            client.cancel_job("nope"),
            client.job_events("nope"),
        ],
    }
    for type_, futures in calls.items():
        for future in futures:
            error = _remote_error(future)
            assert (error.type, error.status) == (type_, 404)
            assert "nope" in error.message
    reply = _raw(url, "GET", "/no/such/route")
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "NotFound"


def test_closed_session_is_gone(client: SeemClient, zarr_path: Path) -> None:
    sid = client.open_session(zarr_path).result(30).session_id
    assert client.close_session(sid).result(30) is None
    assert _remote_error(client.predict(sid, _click())).status == 404


def test_bad_requests_get_typed_4xx(client: SeemClient, session: str, url: str) -> None:
    predict = f"/sessions/{session}/predict"
    cases = [
        # (body, status, type)
        ({"prompt": {"kind": "object", "visual": [{"kind": "nonsense"}]}}, 422, "PromptError"),
        ({"prompt": {"kind": "object", "visual": []}}, 422, "PromptError"),
        ({"prompt": {"kind": "box"}}, 422, "PromptError"),
        ({"object_id": "a"}, 422, "ValidationError"),
        ({"prompt": "click here"}, 422, "ValidationError"),
    ]
    for body, status, type_ in cases:
        reply = _raw(url, "POST", predict, json=body)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["error"]["type"] == type_, reply.text
        assert reply.json()["error"]["message"]
    not_json = _raw(url, "POST", predict, content=b"{")
    assert not_json.status_code == 422
    assert not_json.json()["error"]["type"] == "ValidationError"

    outside = ObjectPrompt(Points.click(500, 10))
    error = _remote_error(client.predict(session, outside))
    assert (error.type, error.status) == ("PromptOutsideImageError", 422)
    text_only = ObjectPrompt(text="nucleus")
    error = _remote_error(client.predict(session, text_only))
    assert (error.type, error.status) == ("InvalidRequestError", 400)
    error = _remote_error(client.start_job(session, box=(0, 0, 999, 999)))
    assert (error.type, error.status) == ("InvalidRequestError", 400)
    reply = _raw(url, "POST", f"/sessions/{session}/jobs", json={"kind": "train"})
    assert reply.status_code == 400 and "encode_region" in reply.json()["error"]["message"]


def test_openapi_schema_is_served_and_complete(url: str) -> None:
    reply = httpx.get(url + "/openapi.json", timeout=10)
    assert reply.status_code == 200
    schema = reply.json()
    assert schema["openapi"].startswith("3.")
    assert {
        "/health",
        "/info",
        "/sessions",
        "/sessions/{session_id}",
        "/sessions/{session_id}/predict",
        "/sessions/{session_id}/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/cancel",
    } <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert {"ObjectMaskReply", "MaskPayload", "ErrorReply", "JobStatusReply"} <= set(components)
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    predict = schema["paths"]["/sessions/{session_id}/predict"]["post"]
    assert predict["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorReply"
    }

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(schema):  # every reference resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in components


# ---------------------------------------------------------------------- spawn_local


@pytest.mark.slow
def test_spawn_local_end_to_end_and_a_dead_server(
    model: SeemModel, data_dir: Path, zarr_path: Path
) -> None:
    client = SeemClient.spawn_local(
        variant="seem-tiny-focal", allow_roots=[data_dir], tile=TILE, halo=HALO, device="cpu"
    )
    try:
        assert client.url.startswith("http://127.0.0.1:")
        assert client.token and client.process is not None
        assert client.info().result(60).model == model.name
        sid = client.open_session(zarr_path).result(60).session_id
        prompt = _click()
        remote = client.predict(sid, prompt).result(120)
        with Engine(model, tile=TILE, halo=HALO) as local:
            expected = local.predict(local.open_session(str(zarr_path)), prompt)
        # the server process may run torch with other thread counts: the same mask, and
        # the same score up to float summation order
        assert remote.offset == expected.offset
        np.testing.assert_array_equal(remote.mask, expected.mask)
        assert remote.score == pytest.approx(expected.score, abs=1e-4)

        client.process.kill()
        client.process.wait(30)
        with pytest.raises(ServerUnavailableError, match="model process died") as info:
            client.info().result(60)
        assert isinstance(info.value, ConnectionError)
        assert "spawn_local" in str(info.value)
    finally:
        client.close()
    assert client.process.poll() is not None


@pytest.mark.slow
def test_spawn_local_reports_a_failed_start_with_its_stderr() -> None:
    with pytest.raises(ServerUnavailableError, match="exited with code") as info:
        SeemClient.spawn_local(variant="no-such-variant", timeout=120)
    assert "no-such-variant" in str(info.value)


def test_unreachable_server_is_a_connection_error() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with (
        SeemClient(f"http://127.0.0.1:{port}", TOKEN) as client,
        pytest.raises(ServerUnavailableError, match="cannot reach"),
    ):
        client.info().result(30)
