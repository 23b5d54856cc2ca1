"""Failures show as napari notifications with a clear message; committed labels survive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests._napari.conftest import wait_idle

pytestmark = pytest.mark.qt


def _errors(widget: Any) -> list[str]:
    return [text for severity, text in widget.messages if severity == "error"]


def _napari_errors() -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        str(n.message)
        for n in notification_manager.records
        if n.severity == NotificationSeverity.ERROR
    ]


def test_no_image_layer(make_napari_viewer: Any) -> None:
    from napari_seem._napari.widget import SeemWidget

    viewer = make_napari_viewer(show=False)
    widget = SeemWidget(viewer)
    widget.segment()
    (message,) = _errors(widget)
    assert "No image layer" in message and "File > Open" in message
    assert any("No image layer" in m for m in _napari_errors())


@pytest.mark.slow
def test_model_process_dies_committed_labels_survive(make_napari_viewer: Any, qtbot: Any) -> None:
    from napari_seem._napari.backend import Backend, ModelChoice
    from napari_seem._napari.widget import SeemWidget

    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(synthetic_nuclei((128, 128), n_objects=6, seed=0).image)
    widget = SeemWidget(viewer)
    backend = Backend.start(ModelChoice(variant="seem-tiny-focal", tile=256, halo=32))
    try:
        widget.use_backend(backend)
        widget.image.value = image
        points = widget.add_points_layer()
        points.add([64.0, 64.0])
        widget.segment()
        wait_idle(qtbot, widget)
        assert widget.commit() == [1]
        labels = viewer.layers["SEEM labels"]
        saved = labels.data.copy()
        saved_features = labels.features.copy()
        assert saved.any()

        backend.client.process.kill()  # the model process dies
        backend.client.process.wait(10)
        points.add([30.0, 30.0])
        widget.segment()
        wait_idle(qtbot, widget)
        (message,) = _errors(widget)
        assert "model process stopped" in message and "committed labels are kept" in message
        assert any("model process stopped" in m for m in _napari_errors())
        np.testing.assert_array_equal(labels.data, saved)
        assert labels.features.equals(saved_features)
        # the Segment went on with a new model process (the image was sent again)
        restarted = widget._backend
        assert restarted is not None and restarted is not backend and restarted.alive
        assert widget._preview
        np.testing.assert_array_equal(labels.data, saved)

        # a death DURING a request: the request fails with a clear notification
        restarted.client.process.kill()
        restarted.client.process.wait(10)
        widget.messages.clear()
        widget._with_backend = lambda then, on_error=None: then(restarted)  # no pre-check
        widget.segment()
        wait_idle(qtbot, widget)
        (message,) = _errors(widget)
        assert "model process died" in message and "committed labels are kept" in message
        np.testing.assert_array_equal(labels.data, saved)
        assert widget._backend is None and "not running" in widget.model_status.value
    finally:
        backend.close()


@pytest.mark.slow
def test_bad_checkpoint_is_reported(make_napari_viewer: Any, qtbot: Any, tmp_path: Path) -> None:
    from napari_seem._napari.widget import SeemWidget

    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"this is not a checkpoint")
    viewer = make_napari_viewer(show=False)
    viewer.add_image(np.zeros((64, 64), np.uint8))
    widget = SeemWidget(viewer)
    widget.model_choice.value = "seem-tiny-focal"
    widget.checkpoint.value = bad
    widget.connect()
    qtbot.waitUntil(lambda: bool(_errors(widget)), timeout=120000)
    (message,) = _errors(widget)
    assert "did not start" in message and "weights.pt" in message
    assert "checkpoint" in message.lower()
    assert widget._backend is None and "failed" in widget.model_status.value


@pytest.mark.slow
def test_remote_server_by_url_uploads_in_memory_layers(
    make_napari_viewer: Any, qtbot: Any, backend: Any
) -> None:
    """A server reached by URL + token gets in-memory layers through upload_image."""
    from napari_seem._napari.widget import SeemWidget

    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(synthetic_nuclei((128, 128), n_objects=6, seed=0).image)
    widget = SeemWidget(viewer)
    widget.model_choice.value = "remote"
    assert not widget.url.native.isHidden() and widget.checkpoint.native.isHidden()
    widget.url.value = backend.client.url
    widget.token.value = backend.client.token
    widget.image.value = image
    points = widget.add_points_layer()
    points.add([64.0, 64.0])
    widget.segment()  # connects first, then segments
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: bool(widget._preview) or bool(_errors(widget)), timeout=30000)
    assert not _errors(widget)
    remote = widget._backend
    assert remote is not None and remote.staging is None
    assert [kind for _, kind in remote._opened.values()] == ["upload"]
    widget.close_backend()  # a remote connection closes; the server keeps running
    assert backend.client.health().result().status == "ok"


def test_wrong_token_is_reported(make_napari_viewer: Any, qtbot: Any, backend: Any) -> None:
    from napari_seem._napari.widget import SeemWidget

    viewer = make_napari_viewer(show=False)
    viewer.add_image(np.zeros((64, 64), np.uint8))
    widget = SeemWidget(viewer)
    widget.model_choice.value = "remote"
    widget.url.value = backend.client.url
    widget.token.value = "not-the-token"
    widget.connect()
    qtbot.waitUntil(lambda: bool(_errors(widget)), timeout=30000)
    (message,) = _errors(widget)
    assert "did not start" in message and "token" in message.lower()


def test_official_variant_offline_without_checkpoint_says_what_to_do(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """No cached official weights and no network: the download refuses with the URL and the
    checkpoint hint (nothing is downloaded in tests: HF_HUB_OFFLINE is set)."""
    from napari_seem._napari.widget import SeemWidget

    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path))
    viewer = make_napari_viewer(show=False)
    widget = SeemWidget(viewer)
    widget.model_choice.value = "seem-focalt-v1"
    assert not widget.checkpoint.native.isHidden()
    widget.connect()
    qtbot.waitUntil(lambda: bool(_errors(widget)), timeout=30000)
    (message,) = _errors(widget)
    assert "offline" in message and "checkpoint" in message.lower()
