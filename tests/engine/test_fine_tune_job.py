"""The ``"fine_tune"`` job through a real server on 127.0.0.1: progress with the loss, a
weights file, the model switched (and back), cancel, and refused inputs.

The engine runs seem-lite with seeded random trained parts (its packaged backbone and
sentence encoder are real; no shipped weights needed). Runs are tiny: a few steps on one
128 x 128 crop.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.core.prompts import ObjectPrompt, Points
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine
from napari_seem.remote.client import RemoteError, SeemClient
from napari_seem.remote.server import create_app
from tests.remote.harness import served, wait_for_job

TOKEN = "fine-tune-job-token"
SHAPE = (128, 128)
TINY = {"crops_per_image": 1, "crop": 128, "tasks": ["spatial"]}
CLICK = ObjectPrompt((Points.click(64, 64),))


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fine-tune-roots")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from napari_seem.model.build import build_seem

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the seem-lite weights are not in this installation"
        model = build_seem("seem-lite", shipped_weights=False, seed=0)
    work = tmp_path_factory.mktemp("fine-tune-work")
    with Engine(model, tile=128, halo=16, work_dir=work) as engine:
        yield engine


@pytest.fixture(scope="module")
def client(engine: Engine, roots: Path) -> Iterator[SeemClient]:
    app = create_app(engine, token=TOKEN, allowed_roots=[roots])
    with served(app) as url, SeemClient(url, TOKEN) as client:
        yield client


@pytest.fixture(scope="module")
def scene() -> Any:
    return synthetic_nuclei(SHAPE, n_objects=8, radius=(8.0, 14.0), seed=3)


@pytest.fixture(scope="module")
def uploaded(client: SeemClient, scene: Any) -> dict[str, str]:
    image = client.upload_image(scene.image).result(60)
    labels = client.upload_image(scene.labels.astype(np.uint32)).result(60)
    session = client.open_session(image_id=image).result(60).session_id
    return {"image": image, "labels": labels, "session": session}


@pytest.fixture(autouse=True)
def base_weights(engine: Engine) -> Iterator[None]:
    """Every test starts and ends on the base weights."""
    engine.use_weights(None)
    yield
    engine.use_weights(None)


def _wait(client: SeemClient, job_id: str, timeout: float = 120) -> Any:
    return wait_for_job(client, job_id, timeout)


def _remote(future: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        future.result(60)
    return info.value


def _predict(client: SeemClient, session: str) -> Any:
    return client.predict(session, CLICK).result(60)


def test_fine_tune_reports_the_loss_writes_weights_and_switches(
    client: SeemClient, engine: Engine, uploaded: dict[str, str], scene: Any, tmp_path: Path
) -> None:
    session = uploaded["session"]
    before = _predict(client, session)
    assert len(engine.session(session).cache) == 1  # the click's tile is cached
    base = client.weights().result(30)
    assert not base.fine_tuned and base.path is None and base.checkpoint == "random"

    data = [{"image": session, "labels": uploaded["labels"]}]
    started = client.start_fine_tune(session, data, class_name="nucleus", steps=3, **TINY)
    status = _wait(client, started.result(30).job_id)
    assert status.state == "done", status
    assert (status.done, status.total) == (3, 3)
    events = client.job_events(status.job_id).result(30)
    steps = [e for e in events if e.message and e.message.startswith("step ")]
    assert [e.done for e in steps] == [1, 2, 3]
    assert all("loss" in e.message for e in steps)  # type: ignore[operator]

    info = status.info
    assert info is not None and info["switched"] and info["steps"] == 3
    weights = Path(info["weights"])
    assert weights.is_file() and weights.suffix == ".safetensors"
    assert weights.parent == engine.work_dir
    assert info["objects"] == len(np.unique(scene.labels)) - 1 and info["images"] == 1
    now = client.weights().result(30)
    assert now.fine_tuned and now.path == str(weights) and now.checkpoint == info["checkpoint"]
    assert client.info().result(30).checkpoint == info["checkpoint"]
    # the features made with the old weights are gone (seem-lite's pixel decoder changed)
    assert len(engine.session(session).cache) == 0
    assert engine.session(session).cache.signature.checkpoint == info["checkpoint"]

    after = _predict(client, session)
    assert after.score != pytest.approx(before.score, abs=1e-6)

    saved = client.download_weights(tmp_path / "mine.safetensors").result(30)
    assert saved.read_bytes() == weights.read_bytes()

    back = client.use_base_weights().result(30)
    assert not back.fine_tuned and back.checkpoint == "random"
    again = _predict(client, session)
    assert again.score == pytest.approx(before.score, abs=1e-6)
    np.testing.assert_array_equal(again.full(SHAPE), before.full(SHAPE))
    assert _remote(client.download_weights(tmp_path / "none.safetensors")).status == 409

    client.use_weights(weights).result(30)  # a file of the work dir loads by path
    assert _predict(client, session).score == pytest.approx(after.score, abs=1e-6)


def test_cancel_mid_run_leaves_the_old_model(
    client: SeemClient, engine: Engine, uploaded: dict[str, str]
) -> None:
    session = uploaded["session"]
    before = _predict(client, session)
    files = set(engine.work_dir.glob("finetuned-*"))
    job = client.start_fine_tune(
        session, [{"image": uploaded["image"], "labels": uploaded["labels"]}], steps=2000, **TINY
    ).result(30)
    deadline = time.monotonic() + 60
    while client.job_status(job.job_id).result(30).done < 1:  # training has started
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.cancel_job(job.job_id).result(30)
    status = _wait(client, job.job_id)
    assert status.state == "cancelled" and status.done < 2000 and status.info is None
    assert not client.weights().result(30).fine_tuned
    assert set(engine.work_dir.glob("finetuned-*")) == files  # no half-trained file left
    assert _predict(client, session).score == pytest.approx(before.score, abs=1e-6)


def test_bad_inputs_are_refused_with_what_to_do(
    client: SeemClient, uploaded: dict[str, str], scene: Any
) -> None:
    session, labels = uploaded["session"], uploaded["labels"]

    def refused(**params: Any) -> RemoteError:
        return _remote(client.start_job(session, kind="fine_tune", params=params))

    wrong = client.upload_image(np.ones((64, 96), np.uint32)).result(30)
    error = refused(data=[{"image": session, "labels": wrong}])
    assert error.status == 400 and "do not match" in error.message and "(128, 128)" in error.message
    empty = client.upload_image(np.zeros(SHAPE, np.uint32)).result(30)
    error = refused(labels=empty)
    assert error.status == 400 and "no objects" in error.message and "commit" in error.message
    error = refused(data=[{"image": "nope", "labels": labels}])
    assert error.status == 404 and "no open session or uploaded image" in error.message
    error = refused(data=[{"image": session, "labels": "nope"}])
    assert error.status == 404 and "upload the (H, W) label image" in error.message
    floats = client.upload_image(scene.labels.astype(np.float32)).result(30)
    assert "integer" in refused(labels=floats).message
    for steps in (0, -3, 10**7, 2.5):
        error = refused(labels=labels, steps=steps)
        assert error.status == 400 and "steps must be an integer from 1 to" in error.message
    assert "unknown ['epochs']" in refused(labels=labels, epochs=3).message
    assert "tasks must list" in refused(labels=labels, tasks=["panoptic"]).message
    error = refused(labels=labels, class_name={"1": "nucleus"})
    assert "have no class name" in error.message
    assert "needs its training data" in refused().message


def test_unreadable_checkpoint_fails_and_keeps_the_model(
    client: SeemClient, uploaded: dict[str, str], roots: Path, tmp_path: Path
) -> None:
    session = uploaded["session"]
    before = _predict(client, session)
    junk = roots / "junk.safetensors"
    junk.write_bytes(b"not a weight file")
    job = client.start_fine_tune(
        session,
        [{"image": session, "labels": uploaded["labels"]}],
        steps=2,
        checkpoint=str(junk),
        **TINY,
    ).result(30)
    status = _wait(client, job.job_id)
    assert status.state == "failed" and status.error and "junk.safetensors" in status.error
    assert not client.weights().result(30).fine_tuned
    assert _predict(client, session).score == pytest.approx(before.score, abs=1e-6)

    # switching to it directly is refused before anything changes
    error = _remote(client.use_weights(junk))
    assert error.status == 400 and "cannot read the weight file" in error.message
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    assert _remote(client.use_weights(outside)).type == "PathNotAllowed"
    error = _remote(
        client.start_fine_tune(
            session, [{"image": session, "labels": uploaded["labels"]}], checkpoint=str(outside)
        )
    )
    assert error.type == "PathNotAllowed"
    assert _predict(client, session).score == pytest.approx(before.score, abs=1e-6)
