"""The v2 data path (fresh seeded crops of every source, training data only) and the v2
trainer on a tiny random seem-lite: rounds train, resume is exact, milestones reload."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from napari_seem.datasets.generate import MODALITIES  # noqa: E402
from napari_seem.datasets.real import (  # noqa: E402
    BBBC007_HELD_OUT,
    LANDSAT_TRAIN_COLUMNS,
)
from napari_seem.datasets.scene import HELD_OUT_START  # noqa: E402
from napari_seem.train.config import TrainConfig  # noqa: E402
from napari_seem.train.stream import CropStream, real_training_scenes  # noqa: E402
from napari_seem.train.stream_trainer import RoundsConfig, StreamTrainer  # noqa: E402

TINY_V2 = TrainConfig(
    steps=4,
    batch_size=1,
    crop=64,
    lr=1e-3,
    warmup=1,
    max_prompts=2,
    seed=5,
    device="cpu",
    checkpoint_every=0,
    cache_dtype="float32",
    w_feature=1.0,
    neighbour_negative=0.5,
)
#: every draw runs at least one corrective round, the last with gradient
ROUNDS = RoundsConfig(extra_rounds=(0.0, 0.5, 0.5))


def tiny_stream(crop: int = 64) -> CropStream:
    return CropStream({"nuclei": 1.0, "em": 0.5}, crop=crop)


def tiny_trainer(model: Any, cfg: TrainConfig = TINY_V2, **kwargs: Any) -> StreamTrainer:
    return StreamTrainer(model, tiny_stream(cfg.crop), cfg, ROUNDS, progress=False, **kwargs)


def _same(a: Any, b: Any) -> bool:
    return (
        a.source == b.source
        and np.array_equal(a.rgb, b.rgb)
        and np.array_equal(a.instances, b.instances)
        and dict(a.classes) == dict(b.classes)
    )


def test_crops_are_a_pure_function_of_seed_step_and_index() -> None:
    stream = CropStream({m: 1.0 for m in MODALITIES}, crop=96)
    again = CropStream({m: 1.0 for m in MODALITIES}, crop=96)
    first = [stream.draw(7, step, b) for step in range(6) for b in range(2)]
    assert all(
        _same(x, y)
        for x, y in zip(
            first, (again.draw(7, s, b) for s in range(6) for b in range(2)), strict=True
        )
    )
    # fresh every step: no two crops of the run are the same image
    images = {x.rgb.tobytes() for x in first}
    assert len(images) == len(first)
    assert not _same(stream.draw(7, 0, 0), stream.draw(8, 0, 0))
    for crop in first:
        assert crop.rgb.shape == (96, 96, 3) and crop.rgb.dtype == np.uint8
        assert crop.instances.shape == (96, 96) and crop.instances.dtype == np.int32
        assert 0 <= crop.meta["seed"] < HELD_OUT_START  # training seeds only
        ids = [int(i) for i in np.unique(crop.instances) if i > 0]
        assert ids == list(range(1, len(ids) + 1)) and set(ids) == set(crop.classes)
        for i in ids[:8]:  # exact instances: every id is one connected object
            assert ndimage.label(crop.instances == i)[1] == 1


def test_every_modality_is_drawn_and_multi_band_becomes_false_colour() -> None:
    stream = CropStream({m: 1.0 for m in MODALITIES}, crop=64)
    seen = {stream.draw(1, s).source for s in range(60)}
    assert seen == set(MODALITIES)
    land = next(stream.draw(1, s) for s in range(60) if stream.draw(1, s).source == "landcover")
    assert land.rgb.shape == (64, 64, 3) and land.rgb.std() > 0


def test_real_crops_use_training_images_only() -> None:
    pytest.importorskip("tifffile")
    real = real_training_scenes()
    names = {r.scene.meta["name"] for r in real["bbbc007"]}
    assert len(names) == 11 and not names & set(BBBC007_HELD_OUT)
    (land,) = real["landsat"]
    assert land.scene.instances.shape[1] == LANDSAT_TRAIN_COLUMNS  # held-out columns never read
    assert real["bio_nuclei"]
    stream = CropStream(
        {"real:bbbc007": 1.0, "real:bio_nuclei": 1.0, "real:landsat": 1.0}, real=real, crop=128
    )
    drawn = [stream.draw(3, s) for s in range(12)]
    assert {d.source for d in drawn} == {"real:bbbc007", "real:bio_nuclei", "real:landsat"}
    for d in drawn:
        assert d.meta["name"] not in BBBC007_HELD_OUT
        assert d.rgb.shape == (128, 128, 3) and d.instances.any()
    with pytest.raises(ValueError, match="real_training_scenes"):
        CropStream({"real:bbbc007": 1.0})


def test_the_trainer_draws_the_streams_crops_of_each_step(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    trainer = tiny_trainer(fresh_lite)
    other = tiny_stream()
    for step in (0, 1, 17):
        (crop,) = trainer.stream_crops(step)
        assert _same(crop, other.draw(TINY_V2.seed, step, 0))
    assert "nucleus" in trainer.vocabulary and "neurite" in trainer.vocabulary


def test_multi_round_steps_train_every_part(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    trainer = tiny_trainer(fresh_lite)
    before = {k: p.detach().clone() for k, p in trainer.params.items()}
    losses = [trainer.train_step() for _ in range(3)]
    assert all(np.isfinite(losses)) and trainer.step == 3
    moved = [k for k, p in trainer.params.items() if not torch.equal(p, before[k])]
    assert any(k.startswith("sem_seg_head.pixel_decoder.") for k in moved)
    assert any("mask_sptial_embed" in k for k in moved)  # the visual prompt path learns


def test_resume_gives_identical_weights(fresh_lite, lite_state, tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    straight = tiny_trainer(fresh_lite)
    for _ in range(TINY_V2.steps):
        straight.train_step()
    expected = straight.trained_state()

    fresh_lite.load_state_dict(lite_state)
    first = tiny_trainer(fresh_lite, out_dir=tmp_path)
    first.train_step()
    first.train_step()
    first.save_checkpoint(tmp_path / "last.pt")
    fresh_lite.load_state_dict(lite_state)  # a new process starts from the initial weights
    second = tiny_trainer(fresh_lite, out_dir=tmp_path)
    second.load_checkpoint(tmp_path / "last.pt")
    assert second.step == 2
    while second.step < TINY_V2.steps:
        second.train_step()
    resumed = second.trained_state()
    assert resumed.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(resumed[k], expected[k])]
    assert different == []
    assert second.history == straight.history


def test_milestones_have_the_shipped_format_and_restore_the_step(fresh_lite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    from napari_seem.model.build import build_seem
    from napari_seem.model.lite_weights import shipped_lite_weights
    from napari_seem.train.recipe_v2 import build_trainer, export_milestone, milestone_step

    trainer = tiny_trainer(fresh_lite)
    trainer.train_step()
    path = export_milestone(trainer, tmp_path / "m" / "step_00001.safetensors")
    state = load_file(str(path))
    shipped_path = shipped_lite_weights()
    assert shipped_path is not None
    shipped = load_file(str(shipped_path))
    assert state.keys() == shipped.keys()
    assert all(
        state[k].dtype == shipped[k].dtype and state[k].shape == shipped[k].shape for k in state
    )
    assert path.stat().st_size < 30e6
    assert milestone_step(path) == 1 and milestone_step(shipped_path) is None
    model = build_seem("seem-lite", checkpoint=path)
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k].half(), v), k
    # a later session resumes from the milestone: its weights and its step
    cfg = replace(TINY_V2, steps=3)
    later = build_trainer(None, cfg, ROUNDS, init=path, real=False, mix={"nuclei": 1.0})
    assert later.step == 1
    later.train_step()
    assert later.step == 2
