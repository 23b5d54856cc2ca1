"""The seem-lite v2 recipe: fresh crops of every modality and of the real training data, the
interactive task trained over several rounds with the model's own errors, starting from the
shipped weights (or any seem-lite weight file), resumable across sessions.

Run it with ``python scripts/train_seem_lite.py --recipe seem-lite-v2`` (or
:func:`run_seem_lite_v2`). In ``out_dir`` (default ``out/seem-lite-v2``):

- ``last.pt``: trainable weights, optimizer, step and history every ``checkpoint_every``
  steps (a run resumed from it repeats an uninterrupted one exactly);
- ``milestones/step_NNNNN.safetensors``: every ``milestone_every`` steps, the trained parts
  in float16, the format of the shipped file (``model/data/seem_lite.safetensors``; load with
  ``build_seem("seem-lite", checkpoint=path)``). A later session without ``last.pt`` resumes
  from one with ``init=path``: the weights and the step (the schedule continues; the
  optimizer restarts with a short warm-up).

Data (:mod:`napari_seem.train.stream`): synthetic nuclei, cells, phase contrast,
bright-field, EM, H&E and land cover from training seeds only, and the BBBC007 training
images (never ``BBBC007_HELD_OUT``), the nuclei volume's planes and Landsat columns
0..244, with zoom, flips, intensity, contrast inversion, blur and noise augmentation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.train.config import TrainConfig
from napari_seem.train.recipe import SYNONYMS
from napari_seem.train.stream_trainer import RoundsConfig, StreamTrainer

__all__ = [
    "V2_CONFIG",
    "V2_ROUNDS",
    "V2_SYNONYMS",
    "export_milestone",
    "milestone_step",
    "run_seem_lite_v2",
]

RECIPE = "seem-lite-v2"
#: Grounding phrases of the v2 vocabulary (v1's plus the new modalities' classes).
V2_SYNONYMS: dict[str, tuple[str, ...]] = {
    **SYNONYMS,
    "neurite": ("neurites", "neuron", "axon"),
    "field": ("fields", "farmland"),
    "road": ("roads", "street"),
    "building": ("buildings", "houses"),
    "epithelial nucleus": ("epithelial nuclei",),
    "stromal nucleus": ("stromal nuclei",),
    "lymphocyte": ("lymphocytes",),
}
V2_CONFIG = TrainConfig(
    steps=4000,
    batch_size=2,
    crop=256,
    lr=2e-4,
    weight_decay=0.05,
    warmup=30,
    max_prompts=6,
    # clicks three times as often as each other kind: the click protocol is what users do most
    prompt_kinds=("click", "click", "click", "scribble", "polygon", "box", "mask"),
    neighbour_negative=0.3,
    w_feature=1.0,
    grounding_absent=0.25,
    synonyms=V2_SYNONYMS,
    seed=20261202,
    num_threads=1,
    checkpoint_every=25,
    cache_dtype="float32",
)
V2_ROUNDS = RoundsConfig(extra_rounds=(0.2, 0.3, 0.25, 0.25), w_last=1.0, merged_prob=0.5)


def milestone_step(path: str | Path) -> int | None:
    """The step a v2 milestone file was written at (its metadata), None for other files."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("recipe") != RECIPE:
        return None
    return int(meta["steps"])


def export_milestone(trainer: StreamTrainer, path: str | Path, **extra: str) -> Path:
    """Write the trained parts (float16, the shipped file's keys) with the v2 metadata."""
    from safetensors.torch import save_file

    from napari_seem.train.config import default_trainable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = trainer.model.state_dict()
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in full.items()
        if k in set(default_trainable(trainer.model))
    }
    meta = {
        "format": "napari-seem-trained-parts",
        "variant": trainer.model.name,
        "recipe": RECIPE,
        "steps": str(trainer.step),
        "seed": str(trainer.config.seed),
        "vocabulary": ",".join(trainer.vocabulary),
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def build_trainer(
    out: Path | None,
    config: TrainConfig,
    rounds: RoundsConfig,
    *,
    init: str | Path | None = None,
    real: bool = True,
    mix: dict[str, float] | None = None,
    progress: bool = False,
    model: Any = None,
) -> StreamTrainer:
    """The v2 trainer: resumed from ``out/last.pt`` when it exists, else started from
    ``init`` (a seem-lite weight file; a v2 milestone also restores its step) or from the
    shipped weights."""
    from napari_seem.model.build import build_seem
    from napari_seem.train.stream import DEFAULT_MIX, CropStream, real_training_scenes

    if model is None:
        model = build_seem("seem-lite", checkpoint=init, seed=config.seed)
    if mix is None:
        mix = DEFAULT_MIX if real else {k: v for k, v in DEFAULT_MIX.items() if ":" not in k}
    stream = CropStream(mix, real=real_training_scenes() if real else None, crop=config.crop)
    trainer = StreamTrainer(model, stream, config, rounds, out_dir=out, progress=progress)
    if out is not None and (out / "last.pt").exists():
        trainer.load_checkpoint(out / "last.pt")
        print(f"resumed from {out / 'last.pt'} at step {trainer.step}", flush=True)
    elif init is not None and (step := milestone_step(init)) is not None:
        trainer.step = step
        print(f"started from milestone {init} at step {step}", flush=True)
    return trainer


def run_seem_lite_v2(
    out_dir: str | Path | None = None,
    *,
    steps: int | None = None,
    init: str | Path | None = None,
    milestone_every: int = 100,
    log_every: int = 10,
    device: str = "auto",
    num_threads: int | None = None,
) -> Path:
    """Train (or resume) the v2 recipe until ``steps``; returns the last milestone path.

    Logs one line every ``log_every`` steps: step, mean loss of those steps, seconds per
    step, learning rate and the sources drawn.
    """
    out = Path(out_dir) if out_dir is not None else Path("out") / RECIPE
    config = replace(V2_CONFIG, device=device)
    if steps is not None:
        config = replace(config, steps=steps)
    if num_threads is not None:
        config = replace(config, num_threads=num_threads)
    trainer = build_trainer(out, config, V2_ROUNDS, init=init)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(
        json.dumps({"config": asdict(config), "rounds": asdict(V2_ROUNDS)}, indent=2, default=str)
    )
    start_step = trainer.step
    window: list[float] = []
    tick = time.perf_counter()
    path = out / "milestones" / f"step_{trainer.step:05d}.safetensors"
    while trainer.step < config.steps:
        window.append(trainer.train_step())
        if trainer.step % config.checkpoint_every == 0:
            trainer.save_checkpoint(out / "last.pt")
        if trainer.step % milestone_every == 0:
            path = export_milestone(
                trainer, out / "milestones" / f"step_{trainer.step:05d}.safetensors"
            )
        if trainer.step % log_every == 0 or trainer.step == config.steps:
            now = time.perf_counter()
            lr = trainer.optimizer.param_groups[0]["lr"]
            print(
                f"step {trainer.step} loss {np.mean(window):.4f} "
                f"s/step {(now - tick) / len(window):.2f} lr {lr:.2e} "
                f"sources {','.join(trainer.last_sources)}",
                flush=True,
            )
            window, tick = [], now
    trainer.save_checkpoint(out / "last.pt")
    path = export_milestone(trainer, out / "milestones" / f"step_{trainer.step:05d}.safetensors")
    print(f"done: {trainer.step - start_step} steps this run; weights {path}", flush=True)
    return path
