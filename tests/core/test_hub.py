"""Official-weight download: a real HTTP server on 127.0.0.1 stands in for the hub."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from napari_seem.core import hub as weights

PAYLOAD = b"not really a checkpoint, but bytes with a checksum" * 1000


class _Hub(BaseHTTPRequestHandler):
    published = hashlib.sha256(PAYLOAD).hexdigest()
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.send_header("X-Linked-Etag", f'"{type(self).published}"')
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type[_Hub]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("NAPARI_SEEM_HUB_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _Hub.published = hashlib.sha256(PAYLOAD).hexdigest()
    _Hub.requests = []
    yield _Hub
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(hub: type[_Hub]) -> None:
    seen: list[tuple[int, int | None]] = []
    path = weights.download_official("seem-focalt-v1", progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == PAYLOAD
    assert hub.requests == ["/xdecoder/SEEM/resolve/main/seem_focalt_v1.pt"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    record = path.with_suffix(".pt.sha256").read_text()
    assert record.startswith(hashlib.sha256(PAYLOAD).hexdigest())
    assert weights.cached_path("seem-focalt-v1") == path
    # a second call uses the cache
    assert weights.download_official("seem-focalt-v1") == path
    assert len(hub.requests) == 1


def test_checksum_mismatch_keeps_nothing(hub: type[_Hub]) -> None:
    hub.published = "0" * 64
    with pytest.raises(weights.DownloadError, match="checksum mismatch"):
        weights.download_official("seem-focall-v1")
    assert weights.cached_path("seem-focall-v1") is None
    assert not list((weights.cache_dir()).glob("*.part"))


def test_offline_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(weights.DownloadError, match="--checkpoint"):
        weights.download_official("seem-samvitb-v1")


def test_unreachable_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NAPARI_SEEM_HUB_URL", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(weights.DownloadError, match="could not download"):
        weights.download_official("seem-samvitl-v1", timeout=2)


def test_unknown_variant() -> None:
    with pytest.raises(weights.DownloadError, match="downloadable variants"):
        weights.download_official("seem-huge")
