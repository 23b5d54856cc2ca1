"""Training crops drawn fresh every step, label-exact augmentations, and the held-out seeds.

Held-out rule: seeds ``>= HELD_OUT_START`` (10,000,000) are reserved for evaluation.
:data:`HELD_OUT_SEEDS` lists the evaluation seeds of every modality (all in that range);
:func:`held_out_scenes` generates them. The training helpers here (:class:`CropSampler`,
:func:`training_scene`) only ever draw seeds below ``HELD_OUT_START`` and raise
:class:`HeldOutSeedError` when given one at or above it.

Every augmentation keeps the truth exact: geometric ones (crop, zoom, flips, quarter turns)
move image and instances together and re-label instances consecutively (a piece cut off by a
crop becomes an instance of its own); photometric ones (gain, gamma, offset, contrast inversion,
blur, noise) change the image only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_seem.datasets.generate import MODALITIES, generate
from napari_seem.datasets.instances import tidy
from napari_seem.datasets.scene import HELD_OUT_START, Scene

__all__ = [
    "HELD_OUT_SEEDS",
    "HELD_OUT_START",
    "Augment",
    "CropSampler",
    "HeldOutSeedError",
    "augment",
    "check_training_seed",
    "held_out_scenes",
    "random_crop",
    "rescale",
    "training_scene",
]

#: Evaluation seeds per modality: 256 consecutive seeds from ``HELD_OUT_START + 100_000 * k``
#: for the ``k``-th modality of ``MODALITIES``. Never used by the training helpers.
HELD_OUT_SEEDS: dict[str, tuple[int, ...]] = {
    m: tuple(range(HELD_OUT_START + 100_000 * k, HELD_OUT_START + 100_000 * k + 256))
    for k, m in enumerate(MODALITIES)
}


class HeldOutSeedError(ValueError):
    """A training helper was given a seed reserved for evaluation (``>= HELD_OUT_START``)."""


def check_training_seed(seed: int) -> int:
    """Return ``seed`` if it is a training seed (``0 <= seed < HELD_OUT_START``), else raise
    :class:`HeldOutSeedError` (held out) or ``ValueError`` (negative)."""
    seed = int(seed)
    if seed >= HELD_OUT_START:
        raise HeldOutSeedError(
            f"seed {seed} is held out for evaluation "
            f"(seeds >= {HELD_OUT_START:,} are never used for training)"
        )
    if seed < 0:
        raise ValueError(f"seeds are non-negative, got {seed}")
    return seed


def training_scene(
    modality: str, seed: int, shape: tuple[int, int] = (256, 256), **options: Any
) -> Scene:
    """:func:`~napari_seem.datasets.generate.generate` for training: refuses held-out seeds."""
    return generate(modality, check_training_seed(seed), shape, **options)


def held_out_scenes(
    modality: str, n: int = 16, shape: tuple[int, int] = (256, 256), **options: Any
) -> Iterator[Scene]:
    """The first ``n`` held-out evaluation scenes of ``modality`` (same scenes every time)."""
    seeds = HELD_OUT_SEEDS[modality]
    if not 0 < n <= len(seeds):
        raise ValueError(f"n must be 1..{len(seeds)}, got {n}")
    for seed in seeds[:n]:
        yield generate(modality, seed, shape, **options)


def _scalar_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without its per-pixel maps (they would no longer match a re-labelled crop)."""
    return {k: v for k, v in meta.items() if not isinstance(v, np.ndarray)}


def _with(scene: Scene, image: np.ndarray, instances: np.ndarray, **meta: Any) -> Scene:
    labels, classes = tidy(instances, scene.classes, min_size=1, split=True)
    return Scene(
        np.ascontiguousarray(image),
        labels,
        classes,
        scene.class_names,
        {**_scalar_meta(scene.meta), **meta},
    )


def random_crop(scene: Scene, size: tuple[int, int], rng: np.random.Generator) -> Scene:
    """A ``size = (h, w)`` window at a random position, instances re-labelled ``1..N``.

    Raises ``ValueError`` when the scene is smaller than ``size``.
    """
    h, w = scene.instances.shape
    ch, cw = int(size[0]), int(size[1])
    if ch > h or cw > w:
        raise ValueError(f"crop {size} is larger than the scene {(h, w)}")
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    window = (slice(top, top + ch), slice(left, left + cw))
    crop = scene.meta.get("crop", (0, 0))
    return _with(
        scene, scene.image[window], scene.instances[window], crop=(crop[0] + top, crop[1] + left)
    )


def rescale(scene: Scene, size: tuple[int, int]) -> Scene:
    """Resample a scene to ``size = (h, w)``: image by linear interpolation (Gaussian
    pre-smoothing when shrinking), instances by the nearest pixel at the same positions."""
    h, w = scene.instances.shape
    oh, ow = int(size[0]), int(size[1])
    zr, zc = oh / h, ow / w
    rows = np.clip((np.arange(oh) + 0.5) / zr - 0.5, 0, h - 1)
    cols = np.clip((np.arange(ow) + 0.5) / zc - 0.5, 0, w - 1)
    labels = scene.instances[np.rint(rows).astype(int)[:, None], np.rint(cols).astype(int)[None, :]]
    img = scene.image.astype(np.float32)
    anti = (max(0.0, (1 / zr - 1) / 2), max(0.0, (1 / zc - 1) / 2))
    planes = img[..., None] if img.ndim == 2 else img
    out = np.empty((oh, ow, planes.shape[2]), np.float32)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    for b in range(planes.shape[2]):
        plane = ndimage.gaussian_filter(planes[..., b], anti) if max(anti) > 0 else planes[..., b]
        out[..., b] = ndimage.map_coordinates(plane, [rr, cc], order=1, mode="nearest")
    image = _to_dtype(out[..., 0] if img.ndim == 2 else out, scene.image.dtype)
    return _with(scene, image, labels, zoom=scene.meta.get("zoom", 1.0) * zr)


def _to_dtype(img: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.clip(np.rint(img), 0, top).astype(dtype)
    return img.astype(dtype)


@dataclass(frozen=True)
class Augment:
    """Augmentation strengths (0 turns one off).

    Attributes:
        zoom: ``(lo, hi)`` log-uniform zoom of :class:`CropSampler` (object sizes scale by it).
        flip: random flips and quarter turns.
        intensity: gain in ``1 +- intensity``, gamma ``exp(N(0, intensity / 2))``, offset in
            ``+- intensity / 4`` of the image range (per band for multi-band images).
        invert: probability of contrast inversion (grey images only).
        blur: largest extra Gaussian blur sigma in px (applied with probability 0.3).
        noise: largest extra Gaussian noise sigma, as a fraction of the image range
            (applied with probability 0.5).
    """

    zoom: tuple[float, float] = (0.6, 1.6)
    flip: bool = True
    intensity: float = 0.3
    invert: float = 0.2
    blur: float = 1.2
    noise: float = 0.04


def augment(scene: Scene, rng: np.random.Generator, config: Augment = Augment()) -> Scene:
    """Flips / quarter turns and photometric changes; the truth stays exact."""
    image, labels = scene.image, scene.instances
    if config.flip:
        k = int(rng.integers(4))
        image, labels = np.rot90(image, k, axes=(0, 1)), np.rot90(labels, k)
        if rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
    img = image.astype(np.float32)
    grey = img.ndim == 2
    top = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    scale = max(float(img.max()), 1e-6) if grey else top
    x = img / scale
    applied: dict[str, Any] = {}
    s = config.intensity
    if s > 0:
        bands = 1 if grey else img.shape[2]
        gain = rng.uniform(1 - s, 1 + s, bands).astype(np.float32)
        gamma = np.float32(np.exp(rng.normal(0, s / 2)))
        offset = rng.uniform(-s / 4, s / 4, bands).astype(np.float32)
        x = np.clip(x, 0, None) ** gamma * (gain if not grey else gain[0]) + (
            offset if not grey else offset[0]
        )
        applied.update(gamma=float(gamma), gain=gain.tolist())
    if grey and rng.random() < config.invert:
        x = 1.0 - x
        applied["inverted"] = True
    if config.blur > 0 and rng.random() < 0.3:
        sigma = float(rng.uniform(0, config.blur))
        x = ndimage.gaussian_filter(x, (sigma, sigma) + (() if grey else (0,)))
        applied["blur"] = sigma
    if config.noise > 0 and rng.random() < 0.5:
        sd = float(rng.uniform(0, config.noise))
        x = x + rng.normal(0, sd, x.shape).astype(np.float32)
        applied["noise"] = sd
    x = np.clip(x, 0, 1 if top > 1 or grey else None) * scale
    out = _to_dtype(x, image.dtype)
    return Scene(
        np.ascontiguousarray(out),
        np.ascontiguousarray(labels),
        scene.classes,
        scene.class_names,
        {**_scalar_meta(scene.meta), "augment": applied},
    )


class CropSampler:
    """An endless stream of fresh training crops (no cache: every step draws a new scene).

    Each step picks a modality (by ``weights``), a training seed below ``HELD_OUT_START``, a
    zoom, generates a scene large enough for the zoomed window, crops it, resamples it to
    ``crop`` and augments it. Deterministic for a ``seed``.

    Args:
        modalities: names, or a name -> weight mapping (default: all, equal weights).
        crop: ``(h, w)`` of every sample in pixels.
        seed: seed of the stream; must be a training seed (held-out seeds raise
            :class:`HeldOutSeedError`).
        config: augmentation strengths.
        options: per-modality generator options, e.g. ``{"nuclei": {"diameter": (8, 30)}}``.
        min_instances: a crop with fewer objects is thrown away and drawn again (up to 20
            times; then the last one is returned), so that every step has something to learn.
    """

    def __init__(
        self,
        modalities: Sequence[str] | Mapping[str, float] | None = None,
        *,
        crop: tuple[int, int] = (256, 256),
        seed: int = 0,
        config: Augment = Augment(),
        options: Mapping[str, Mapping[str, Any]] | None = None,
        min_instances: int = 1,
    ) -> None:
        check_training_seed(seed)
        if modalities is None:
            modalities = MODALITIES
        weights = (
            dict(modalities) if isinstance(modalities, Mapping) else {m: 1.0 for m in modalities}
        )
        unknown = sorted(set(weights) - set(MODALITIES))
        if unknown or not weights:
            raise ValueError(f"unknown or no modalities {unknown}; known: {', '.join(MODALITIES)}")
        self.modalities = tuple(weights)
        p = np.asarray([weights[m] for m in self.modalities], np.float64)
        self._p = p / p.sum()
        self.crop = (int(crop[0]), int(crop[1]))
        self.config = config
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        self.min_instances = int(min_instances)
        self._rng = np.random.default_rng([seed, 0x5EED])

    def __iter__(self) -> Iterator[Scene]:
        return self

    def __next__(self) -> Scene:
        return self.sample()

    def sample(self) -> Scene:
        """The next crop: a :class:`Scene` of shape ``crop`` with at least ``min_instances``
        objects (see the class docstring)."""
        for _ in range(20):
            out = self._draw()
            if out.n_instances >= self.min_instances:
                break
        return out

    def _draw(self) -> Scene:
        rng = self._rng
        modality = self.modalities[int(rng.choice(len(self.modalities), p=self._p))]
        scene_seed = int(rng.integers(0, HELD_OUT_START))
        lo, hi = self.config.zoom
        zoom = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
        window = (
            max(math.ceil(self.crop[0] / zoom), 16),
            max(math.ceil(self.crop[1] / zoom), 16),
        )
        shape = (max(window[0], self.crop[0]), max(window[1], self.crop[1]))
        scene = training_scene(modality, scene_seed, shape, **self.options.get(modality, {}))
        out = random_crop(scene, window, rng)
        if window != self.crop:
            out = rescale(out, self.crop)
        out = augment(out, rng, self.config)
        return Scene(
            out.image,
            out.instances,
            out.classes,
            out.class_names,
            {**out.meta, "scene_seed": scene_seed, "zoom": zoom},
        )
