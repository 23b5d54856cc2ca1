"""Issue 16, transport and prompt side: a hostile client on a real ``napari-seem serve``.

One spawned server on 127.0.0.1 (tiny random model) with short deadlines; memory is the
server process's peak RSS (``VmHWM``, reset through ``/proc/PID/clear_refs`` before each
probe), time is wall clock. The figures each test measured are appended to
``$SEEM_HARDENING_FIGURES`` (a JSON-lines file) when that is set.

This module imports nothing of the server stack, so it can also probe an older checkout
(``SEEM_HARDENING_BEFORE=1`` starts the server without the new flags).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import zarr

from napari_seem.remote.process import Launched, ServeOptions, launch, stop

BEFORE = bool(os.environ.get("SEEM_HARDENING_BEFORE"))
SHORT_S = 1.0  # header / body deadlines of the spawned server
pytestmark = pytest.mark.slow


def record(name: str, **figures: Any) -> None:
    """Keep the figures of one probe (printed; appended to $SEEM_HARDENING_FIGURES)."""
    line = json.dumps({"probe": name, "before": BEFORE, **figures})
    print(line)
    target = os.environ.get("SEEM_HARDENING_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


def peak_rss_mb(pid: int) -> float:
    """``VmHWM`` of process ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> float:
    """Reset the peak RSS of ``pid`` to its current RSS; the new peak in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_mb(pid)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hardening")
    image = np.random.default_rng(0).integers(0, 255, (600, 600), dtype=np.uint8)
    arr = zarr.create_array(
        store=str(base / "img.zarr"), shape=image.shape, chunks=(128, 128), dtype=image.dtype
    )
    arr[...] = image
    outside = tmp_path_factory.mktemp("outside")
    zarr.create_array(store=str(outside / "x.zarr"), shape=(64, 64), chunks=(32, 32), dtype="u1")
    group = zarr.open_group(str(base / "escape.zarr"), mode="w")
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "y"}, {"name": "x"}],
            "datasets": [{"path": f"../../{outside.name}/x.zarr"}],
        }
    ]
    return base


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Launched]:
    flags: tuple[str, ...] = ()
    if not BEFORE:
        flags = ("--header-timeout-s", str(SHORT_S), "--body-timeout-s", str(SHORT_S))
    launched = launch(
        ServeOptions(
            variant="seem-tiny-focal",
            allow_roots=(root,),
            tile=128,
            halo=16,
            device="cpu",
            extra_args=flags,
        )
    )
    try:
        yield launched
    finally:
        stop(launched.process)


@pytest.fixture(scope="module")
def http(server: Launched) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def session(http: httpx.Client, root: Path) -> str:
    reply = http.post("/sessions", json={"path": str(root / "img.zarr")})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["session_id"])


def _port(server: Launched) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _probe(server: Launched, send: Any) -> tuple[httpx.Response | None, float, float]:
    """Run ``send()``; its reply, seconds and the server's peak RSS growth (MiB)."""
    pid = server.process.pid
    base = reset_peak(pid)
    start = time.perf_counter()
    reply = send()
    seconds = time.perf_counter() - start
    return reply, seconds, peak_rss_mb(pid) - base


def _refused_post(
    server: Launched, http: httpx.Client, path: str, body: dict[str, Any], name: str
) -> tuple[dict[str, Any], float, float]:
    """POST ``body`` to ``path`` under :func:`_probe`, :func:`record` it as ``name`` and check
    that it is refused with 422; returns the reply's ``error`` object, seconds and RSS growth."""
    reply, seconds, grown = _probe(server, lambda: http.post(path, json=body))
    assert reply is not None
    record(name, status=reply.status_code, seconds=seconds, rss_growth_mb=grown)
    assert reply.status_code == 422, reply.text
    return reply.json()["error"], seconds, grown


# ---------------------------------------------------------------------- finding 1


@pytest.mark.parametrize("route", ["predict", "refer"])
def test_a_huge_declared_mask_is_refused_before_decoding(
    server: Launched, http: httpx.Client, session: str, route: str
) -> None:
    h, w = 20_000, 20_000  # 400 M pixels declared on a 600 x 600 image
    mask = {"kind": "mask", "shape": [h, w], "offset": [0, 0], "rle": [0, h * w]}
    prompt = {"kind": "object", "visual": [mask]}
    if route == "predict":
        body: dict[str, Any] = {"prompt": prompt}
    else:
        body = {"example": prompt, "example_session_id": session}
    path = f"/sessions/{session}/{route}"
    error, seconds, grown = _refused_post(server, http, path, body, f"mask/{route}")
    assert "crop the mask" in error["message"]
    assert grown < 50, f"the server grew {grown:.0f} MiB"
    assert seconds < 2.0


def test_a_mask_outside_the_image_is_refused_before_decoding(
    server: Launched, http: httpx.Client, session: str
) -> None:
    mask = {"kind": "mask", "shape": [700, 4000], "offset": [0, 0], "rle": [0, 700 * 4000]}
    body = {"prompt": {"kind": "object", "visual": [mask]}}
    path = f"/sessions/{session}/predict"
    error, _, _ = _refused_post(server, http, path, body, "mask/outside")
    assert error["type"] == "PromptOutsideImageError"


# ---------------------------------------------------------------------- finding 2


def _connect(server: Launched) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_reply(sock: socket.socket, within: float) -> bytes:
    """What the server sent within ``within`` seconds (until it closed, or the time ran out)."""
    sock.settimeout(0.2)
    got = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            return got + b"<closed>"
        got += chunk
    return got


def test_a_body_without_the_token_is_refused_before_it_is_read(
    server: Launched, session: str
) -> None:
    declared = 16 * 1024**2 - 1024  # just under the default body limit
    head = (
        f"POST /sessions/{session}/predict HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    part = b" " * (1024**2)

    def attack() -> list[bytes]:
        socks = [_connect(server) for _ in range(8)]
        for sock in socks:
            sock.sendall(head)
        for _ in range(15):  # 15 MiB each, then stall
            for sock in socks:
                try:
                    sock.settimeout(0.05)
                    sock.send(part)
                except OSError:
                    pass
        replies = [_read_reply(sock, 2.0) for sock in socks]
        for sock in socks:
            sock.close()
        return replies

    replies, seconds, grown = _probe(server, attack)  # type: ignore[arg-type]
    assert replies is not None
    answered = sum(b" 401 " in r for r in replies)  # type: ignore[union-attr]
    record("tokenless-bodies", answered_401=answered, seconds=seconds, rss_growth_mb=grown)
    assert answered == 8, replies
    assert grown < 40, f"8 tokenless connections grew the server by {grown:.0f} MiB"


def test_a_stalled_body_is_cut_at_the_body_deadline(server: Launched, session: str) -> None:
    head = (
        f"POST /sessions/{session}/predict HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    sock = _connect(server)
    start = time.perf_counter()
    sock.sendall(head)
    reply = _read_reply(sock, 6.0)
    seconds = time.perf_counter() - start
    sock.close()
    record("stalled-body", reply=reply[:40].decode("latin-1"), seconds=seconds)
    assert b" 408 " in reply and b"BodyTimeout" in reply, reply
    assert seconds < SHORT_S + 2


def test_slow_headers_are_cut_at_the_header_deadline(server: Launched) -> None:
    sock = _connect(server)
    start = time.perf_counter()
    sock.sendall(b"GET /info HTTP/1.1\r\n")
    closed = False
    while time.perf_counter() - start < 6:  # one header byte every 0.3 s
        try:
            sock.sendall(b"X")
        except OSError:
            closed = True
            break
        if _read_reply(sock, 0.3).endswith(b"<closed>"):
            closed = True
            break
    seconds = time.perf_counter() - start
    sock.close()
    record("slow-headers", closed=closed, seconds=seconds)
    assert closed and seconds < SHORT_S + 2


@pytest.mark.skipif(BEFORE, reason="the deadline flags are new")
def test_an_idle_kept_alive_connection_outlives_the_header_deadline(server: Launched) -> None:
    request = f"GET /info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n\r\n"
    sock = _connect(server)
    sock.sendall(request.encode())
    assert b" 200 " in _read_reply(sock, 1.0)
    time.sleep(SHORT_S * 2)  # idle past the header deadline, within the keep-alive timeout
    sock.sendall(request.encode())
    assert b" 200 " in _read_reply(sock, 1.0)
    sock.close()


@pytest.mark.skipif(BEFORE, reason="uvicorn's own refusal was an untyped plain-text 400")
@pytest.mark.parametrize(
    ("headers", "status", "kind"),
    [
        ("X-Pad: " + "a" * 40_000 + "\r\n", 431, "HeadersTooLarge"),  # over max_header_bytes
        ("Bad Header Without Colon\r\n", 400, "BadHttpRequest"),
    ],
    ids=["oversized", "malformed"],
)
def test_unparseable_headers_get_a_typed_json_refusal(
    server: Launched, headers: str, status: int, kind: str
) -> None:
    """h11 refuses what it cannot parse before the app sees it; the reply is still the
    server's ``{"error": {"type", "message"}}`` JSON, and the server keeps serving."""
    sock = _connect(server)
    start = time.perf_counter()
    sock.sendall(f"GET /info HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    raw = _read_reply(sock, 3.0)
    seconds = time.perf_counter() - start
    sock.close()
    head, _, body = raw.removesuffix(b"<closed>").partition(b"\r\n\r\n")
    record(f"headers/{kind}", status=head.split(b" ")[1].decode(), seconds=seconds)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), raw[:200]
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert error["type"] == kind and error["message"], error
    if status == 431:
        assert "max-header-bytes" in error["message"]
    assert raw.endswith(b"<closed>")
    reply = httpx.get(f"{server.url}/info", headers={"Authorization": f"Bearer {server.token}"})
    assert reply.status_code == 200


# ---------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("width", [10_000, 1e9])
def test_a_huge_scribble_width_is_refused_before_rasterizing(
    server: Launched, http: httpx.Client, session: str, width: float
) -> None:
    scribble = {"kind": "scribble", "vertices": [[300, 300], [310, 310]], "width": width}
    body = {"prompt": {"kind": "object", "visual": [scribble]}}
    path = f"/sessions/{session}/predict"
    error, seconds, grown = _refused_post(server, http, path, body, f"scribble/{width:g}")
    assert "narrower" in error["message"]
    assert seconds < 2 and grown < 50


# ---------------------------------------------------------------------- finding 5


@pytest.mark.skipif(BEFORE, reason="out equal to a root was accepted")
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_segment_job_may_not_write_to_a_root_itself(
    http: httpx.Client, root: Path, session: str, overwrite: bool
) -> None:
    """``out`` equal to an allowed root would put the class table in the root's parent
    (outside the roots) and, with overwrite, replace the root: refused with 403."""
    before = sorted(p.name for p in root.iterdir())
    parent_before = sorted(p.name for p in root.parent.iterdir())
    params = {"vocabulary": ["object"], "out": str(root), "overwrite": overwrite}
    reply = http.post(f"/sessions/{session}/jobs", json={"kind": "segment", "params": params})
    record("out-is-root", overwrite=overwrite, status=reply.status_code)
    assert reply.status_code == 403, reply.text
    error = reply.json()["error"]
    assert error["type"] == "PathNotAllowed" and "inside the root" in error["message"]
    assert sorted(p.name for p in root.iterdir()) == before
    assert sorted(p.name for p in root.parent.iterdir()) == parent_before


def test_a_segment_job_writes_its_class_table_inside_the_root(
    http: httpx.Client, root: Path, session: str
) -> None:
    out = root / "runs" / "labels.zarr"
    params = {"vocabulary": ["object"], "out": str(out), "box": [0, 0, 128, 128]}
    reply = http.post(f"/sessions/{session}/jobs", json={"kind": "segment", "params": params})
    assert reply.status_code == 202, reply.text
    job = reply.json()["job_id"]
    deadline = time.monotonic() + 120
    while (state := _job_state(http, job)) not in ("done", "failed"):
        assert time.monotonic() < deadline, "the segment job did not finish"
        time.sleep(0.2)
    assert state == "done", http.get(f"/jobs/{job}").json()
    assert (out / "napari_seem_manifest.json").is_file()
    assert (root / "runs" / "labels.classes.csv").is_file()  # beside out, inside the root


def _run_segment(http: httpx.Client, session: str, params: dict[str, Any]) -> httpx.Response:
    """Start a segment job (small box, vocabulary 'object') and wait for it if it started."""
    body = {"kind": "segment", "params": {"vocabulary": ["object"], "box": [0, 0, 128, 128]}}
    body["params"].update(params)
    reply = http.post(f"/sessions/{session}/jobs", json=body)
    if reply.status_code == 202:
        job, deadline = reply.json()["job_id"], time.monotonic() + 120
        while _job_state(http, job) not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the segment job did not finish"
            time.sleep(0.2)
    return reply


@pytest.mark.skipif(BEFORE, reason="a resumed run was written through its links")
def test_a_run_resumed_through_symlinks_is_refused(
    http: httpx.Client, root: Path, session: str, tmp_path: Path
) -> None:
    """An existing run inside a root whose folders link outside, or whose class table is a
    link outside, would be written through those links on resume / overwrite: 403."""
    out = root / "linked-run.zarr"
    assert _run_segment(http, session, {"out": str(out)}).status_code == 202
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    inner = next(p for p in sorted(out.rglob("*")) if p.is_dir())  # a folder the run writes
    moved = outside / inner.name
    inner.rename(moved)
    inner.symlink_to(moved, target_is_directory=True)
    written_before = sorted(p.relative_to(outside) for p in outside.rglob("*"))
    for overwrite in (False, True):
        reply = _run_segment(http, session, {"out": str(out), "overwrite": overwrite})
        record("resume-through-link", overwrite=overwrite, status=reply.status_code)
        assert reply.status_code == 403, reply.text
        assert "outside the allowed roots" in reply.json()["error"]["message"]
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == written_before
    assert inner.is_symlink()  # overwrite did not replace the run either

    table_out = root / "linked-table.zarr"
    outside_table = outside / "classes.csv"
    outside_table.write_text("someone else's table\n")
    (root / "linked-table.classes.csv").symlink_to(outside_table)
    reply = _run_segment(http, session, {"out": str(table_out), "overwrite": True})
    assert reply.status_code == 403, reply.text
    assert outside_table.read_text() == "someone else's table\n"


# ---------------------------------------------------------------------- finding 7


def test_keep_alive_requests_are_not_delayed(server: Launched, http: httpx.Client) -> None:
    http.get("/info")  # the connection is open and reused below
    times = []
    for _ in range(40):
        start = time.perf_counter()
        assert http.get("/info").status_code == 200
        times.append(time.perf_counter() - start)
    p50 = statistics.median(times) * 1000
    record("info-keepalive", p50_ms=p50)
    assert p50 < 20, f"GET /info p50 {p50:.1f} ms on a reused connection"


# ---------------------------------------------------------------------- finding 10


def test_bad_paths_are_typed_4xx_and_keep_the_connection(
    http: httpx.Client, root: Path, session: str
) -> None:
    cases = {
        "nul": str(root / "a\x00b.zarr"),
        "long-name": str(root / ("n" * 300)),
        "long-path": str(root / "/".join(["d" * 200] * 30)),
        "dotdot-dataset": str(root / "escape.zarr"),
    }
    statuses = {}
    for name, path in cases.items():
        reply = http.post("/sessions", json={"path": path})
        statuses[name] = reply.status_code
        assert 400 <= reply.status_code < 500, (name, reply.text)
        assert reply.json()["error"]["message"]
    out = http.post(
        f"/sessions/{session}/jobs", json={"kind": "segment", "params": {"out": cases["nul"]}}
    )
    weights = http.post("/weights", json={"path": cases["nul"]})
    statuses["nul-out"], statuses["nul-weights"] = out.status_code, weights.status_code
    record("bad-paths", **statuses)
    assert 400 <= out.status_code < 500 and 400 <= weights.status_code < 500
    assert http.get("/info").status_code == 200  # the same connection still serves


# ---------------------------------------------------------------------- finding 13


def test_docs_do_not_load_a_cdn(server: Launched, http: httpx.Client) -> None:
    reply = http.get("/docs")  # with the token: no Swagger page (it would load a CDN)
    record("docs", status=reply.status_code)
    assert "cdn.jsdelivr" not in reply.text and reply.status_code == 404
    assert httpx.get(server.url + "/openapi.json", timeout=10).status_code == 200


def test_a_lower_case_bearer_scheme_is_accepted(server: Launched) -> None:
    headers = {"Authorization": f"bearer {server.token}"}
    assert httpx.get(server.url + "/info", headers=headers, timeout=10).status_code == 200


@pytest.mark.skipif(BEFORE, reason="the --token-file flag is new")
def test_a_given_token_is_never_printed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token = "given-token-0123456789"
    cmd = [sys.executable, "-m", "napari_seem.cli", "serve", "--variant", "seem-tiny-focal"]
    cmd += ["--device", "cpu", "--port", "0", "--token-file", str(token_file)]
    env = {**os.environ, "NAPARI_SEEM_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or ()), daemon=True)
    reader.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (line, lines)
        assert token not in line and "token=" not in line
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o777 == 0o600
    finally:
        process.terminate()
        process.wait(20)
    assert all(token not in text for text in lines)


# ---------------------------------------------------------------------- finding 9 (in process)


def test_the_weight_file_is_streamed(tmp_path: Path) -> None:
    import uvicorn

    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from napari_seem.remote.server import bind_socket, create_app

    big = tmp_path / "big.safetensors"
    size = 48 * 1024**2
    with big.open("wb") as out:
        for _ in range(size // 1024**2):
            out.write(os.urandom(1024**2))
    engine = Engine(build_seem("seem-tiny-focal", seed=0), tile=96, halo=16)
    engine.weights_info = lambda: SimpleNamespace(path=str(big))  # type: ignore[method-assign]
    app = create_app(engine, token="t" * 20, allowed_roots=[tmp_path])
    sock = bind_socket("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/weights/file"
    sizes: list[int] = []

    def download() -> None:
        total = 0
        headers = {"Authorization": "Bearer " + "t" * 20}
        with httpx.stream("GET", url, headers=headers, timeout=60) as reply:
            assert reply.status_code == 200
            assert "attachment" in reply.headers["content-disposition"]
            for chunk in reply.iter_bytes():
                total += len(chunk)
                time.sleep(0.001)  # a slow reader
        sizes.append(total)

    try:
        while not uv.started:
            time.sleep(0.02)
        pid = os.getpid()
        base = reset_peak(pid)
        start = time.perf_counter()
        workers = [threading.Thread(target=download) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        grown = peak_rss_mb(pid) - base
        record("weights-file", rss_growth_mb=grown, seconds=time.perf_counter() - start)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()
        engine.close()
    assert sizes == [size] * 8
    assert grown < 8 * size / 1024**2 / 4, f"8 downloads of 48 MiB grew {grown:.0f} MiB"


def _job_state(http: httpx.Client, job: str) -> str:
    reply = http.get(f"/jobs/{job}")
    assert reply.status_code == 200, (reply.status_code, reply.headers, reply.content[:600])
    return str(reply.json()["state"])
