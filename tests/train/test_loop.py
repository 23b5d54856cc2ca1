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
