"""The trainer on tiny synthetic data: loss goes down, resume is exact, fine-tuning helps."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from napari_seem.train.loop import TrainConfig, Trainer  # noqa: E402
from tests.train.conftest import tiny_scenes  # noqa: E402

TINY = TrainConfig(
    steps=12,
    batch_size=1,
    crop=64,
    crops_per_image=2,
    short_side=None,
    scale_jitter=(1.0, 1.0),
    lr=1e-3,
    warmup=2,
    max_prompts=2,
    seed=3,
    device="cpu",
    checkpoint_every=0,
    cache_dtype="float32",
)


def test_training_reduces_the_loss(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(fresh_lite, tiny_scenes([1, 2]), TINY, progress=False)
    before = trainer.eval_loss()
    trainer.train()
    after = trainer.eval_loss()
    assert trainer.step == TINY.steps
    assert after < 0.9 * before, (before, after)


def test_resume_gives_the_weights_of_an_uninterrupted_run(fresh_lite, lite_state, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(TINY, steps=6, tasks=("spatial", "object"))
    data = tiny_scenes([4])
    straight = Trainer(fresh_lite, data, cfg, progress=False)
    straight.train()
    expected = straight.trained_state()

    fresh_lite.load_state_dict(lite_state)
    first = Trainer(fresh_lite, data, cfg, out_dir=tmp_path, progress=False)
    first.train(steps=3)  # writes tmp_path/last.pt at the end
    fresh_lite.load_state_dict(lite_state)  # forget everything, as a new process would
    second = Trainer(fresh_lite, data, cfg, out_dir=tmp_path, progress=False)
    second.load_checkpoint(tmp_path / "last.pt")
    assert second.step == 3
    second.train()
    resumed = second.trained_state()
    assert resumed.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(resumed[k], expected[k], rtol=1e-5, atol=1e-6, msg=k)


def test_fine_tuning_beats_the_start_on_held_out_objects(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(TINY, steps=15, tasks=("spatial",))
    trainer = Trainer(fresh_lite, tiny_scenes([5, 6]), cfg, progress=False)
    held_out = Trainer(fresh_lite, tiny_scenes([50, 51]), cfg, progress=False)
    before = held_out.eval_loss()
    trainer.train()
    after = held_out.eval_loss()
    assert after < 0.9 * before, (before, after)


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown tasks"):
        TrainConfig(tasks=("panoptic",))
    with pytest.raises(ValueError, match="multiple of 32"):
        TrainConfig(crop=100)


def test_export_loads_strictly_into_seem_lite(fresh_lite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from napari_seem.model.build import build_seem
    from napari_seem.model.checkpoint import CheckpointError

    trainer = Trainer(fresh_lite, tiny_scenes([7]), replace(TINY, steps=1), progress=False)
    trainer.train()
    path = trainer.export(tmp_path / "ft.safetensors")
    model = build_seem("seem-lite", checkpoint=path)
    state = model.state_dict()
    for k, v in trainer.trained_state().items():
        torch.testing.assert_close(state[k], v)
    broken = {k: v for k, v in trainer.trained_state().items() if "class_embed" not in k}
    with pytest.raises(CheckpointError, match="missing"):
        build_seem("seem-lite", checkpoint=broken)


def test_train_reports_progress_and_stops_on_cancel(fresh_lite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from napari_seem.core.progress import Cancelled, Progress

    cfg = replace(TINY, steps=5)
    trainer = Trainer(fresh_lite, tiny_scenes([7]), cfg, out_dir=tmp_path, progress=False)
    seen: list[Progress] = []
    cancel = threading.Event()

    def reporter(progress: Progress) -> None:
        seen.append(progress)
        if progress.done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        trainer.train(reporter=reporter, cancel=cancel)
    assert [p.done for p in seen] == [1, 2] and all(p.total == 5 for p in seen)
    assert seen[-1].values["loss"] == trainer.history[-1] and "loss" in seen[-1].message
    assert trainer.step == 2 and (tmp_path / "last.pt").exists()  # resumable where it stopped


def test_fine_tune_callback_stops_early_and_still_writes_weights(fresh_lite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from unittest import mock

    from napari_seem.train import api

    calls: list[tuple[int, float]] = []

    def callback(step: int, loss: float) -> bool:
        calls.append((step, loss))
        return step == 2

    with mock.patch.object(api, "build_seem", return_value=fresh_lite):
        path = api.fine_tune(
            tiny_scenes([7]),
            out=tmp_path / "ft.safetensors",
            progress=False,
            callback=callback,
            **{k: getattr(TINY, k) for k in ("batch_size", "crop", "crops_per_image")},
            steps=5,
            short_side=None,
            device="cpu",
            cache_dtype="float32",
        )
    assert [s for s, _ in calls] == [1, 2] and path.exists()
