"""``generate(modality, seed, shape, **options) -> Scene``: the one entry point of the scene
generators.

Modalities and their images (details and options in each generator's module):

============== ============================================== ===================================
modality       image                                          instances / classes
============== ============================================== ===================================
nuclei         (H, W) uint8 / uint16 fluorescence             nuclei, ``"nucleus"``
cells          (H, W) uint8 / uint16 membrane or cytoplasm     cells, ``"cell"``
               stain fluorescence
phase_contrast (H, W) uint8 / uint16 phase contrast (halos)    cells, ``"cell"``
brightfield    (H, W) uint8 / uint16 unstained bright-field    cells, ``"cell"``
em             (H, W) uint8 electron micrograph                neurites, ``"neurite"``
he             (H, W, 3) uint8 H&E-stained tissue (RGB)        nuclei (epithelial / stromal /
                                                              lymphocyte) or glands
landcover      (H, W, B) float32 reflectance, B = 4..6         water, forest, field, road,
                                                              building regions
============== ============================================== ===================================

Every scene is a pure function of its arguments: the same call gives byte-identical arrays in
any process (with the same numpy / scipy / scikit-image versions: numpy does not promise
identical random streams across its releases); different seeds give different scenes.
Seeds >= ``HELD_OUT_START`` (10,000,000) are reserved for evaluation (see
:mod:`napari_seem.datasets.sampler`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_seem.datasets.scene import Scene, scene_rng

__all__ = ["MODALITIES", "generate"]

#: Every modality :func:`generate` knows, in a fixed order.
MODALITIES: tuple[str, ...] = (
    "nuclei",
    "cells",
    "phase_contrast",
    "brightfield",
    "em",
    "he",
    "landcover",
)


def _generator(modality: str) -> Callable[..., Scene]:
    if modality == "nuclei":
        from napari_seem.datasets.gen_nuclei import generate_nuclei

        return generate_nuclei
    if modality in ("cells", "phase_contrast", "brightfield"):
        from napari_seem.datasets.gen_cells import generator_for

        return generator_for(modality)
    if modality == "em":
        from napari_seem.datasets.gen_em import generate_em

        return generate_em
    if modality == "he":
        from napari_seem.datasets.gen_tissue import generate_he

        return generate_he
    if modality == "landcover":
        from napari_seem.datasets.gen_landcover import generate_landcover

        return generate_landcover
    raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")


def generate(
    modality: str, seed: int, shape: tuple[int, int] = (256, 256), **options: Any
) -> Scene:
    """Generate one scene with exact truth.

    Args:
        modality: one of :data:`MODALITIES`.
        seed: non-negative integer; the scene is a pure function of ``(modality, seed, shape,
            options)``.
        shape: ``(H, W)`` in pixels (at least 16 x 16).
        **options: modality options (see the generator modules); unknown names raise
            ``TypeError``.

    Returns:
        A :class:`~napari_seem.datasets.scene.Scene`; ``meta`` holds ``modality``, ``seed`` and
        every resolved option.
    """
    h, w = (int(v) for v in shape)
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least (16, 16), got {shape!r}")
    make = _generator(modality)
    rng = scene_rng(modality, seed)
    scene = make(rng, (h, w), **options)
    meta = {**scene.meta, "modality": modality, "seed": int(seed), "shape": (h, w)}
    assert scene.instances.dtype == np.int32 and scene.instances.shape == (h, w)
    return Scene(scene.image, scene.instances, scene.classes, scene.class_names, meta)
