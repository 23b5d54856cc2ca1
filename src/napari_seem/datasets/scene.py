"""The :class:`Scene` record every generator returns, and the seed rules.

Seeds: a scene is a pure function of ``(modality, seed, shape, options)``. Seeds
``0 <= seed < HELD_OUT_START`` are training seeds; seeds ``>= HELD_OUT_START`` (10,000,000) are
held out for evaluation: the training helpers of :mod:`napari_seem.datasets.sampler` never draw
them and refuse them when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "HELD_OUT_START",
    "MODALITY_CODES",
    "Options",
    "Scene",
    "density_coverage",
    "scene_rng",
    "size_range",
]

#: First held-out seed; every seed at or above it is reserved for evaluation.
HELD_OUT_START = 10_000_000

#: Fixed integer per modality, mixed into the random stream (never Python's ``hash``, which
#: changes between processes), so that the same seed gives unrelated scenes per modality.
MODALITY_CODES: dict[str, int] = {
    "nuclei": 11,
    "cells": 12,
    "phase_contrast": 13,
    "brightfield": 14,
    "em": 15,
    "he": 16,
    "landcover": 17,
}


def scene_rng(modality: str, seed: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one scene (PCG64 seeded by ``[seed, modality code, stream]``)."""
    if seed < 0:
        raise ValueError(f"seeds are non-negative integers, got {seed}")
    return np.random.default_rng([int(seed), MODALITY_CODES[modality], int(stream)])


@dataclass(frozen=True)
class Scene:
    """A generated image with exact truth.

    Attributes:
        image: the picture, by modality: ``(H, W)`` uint8 or uint16 grey (nuclei, cells,
            phase_contrast, brightfield, em), ``(H, W, 3)`` uint8 RGB (he) or ``(H, W, B)``
            float32 surface reflectance in about ``[0, 1]`` (landcover, ``B >= 4`` bands named in
            ``meta["band_names"]``).
        instances: ``(H, W)`` int32, 0 = background, ids ``1..N`` one per object, each a single
            4-connected component.
        classes: instance id -> class name, for every id ``1..N``.
        class_names: the class vocabulary of the modality (a class need not occur in a scene).
        meta: what was drawn: ``modality``, ``seed``, the resolved options (sizes, density, noise,
            dtype, ...) and extra maps where a modality has them (``"nuclei"`` for cells,
            ``"glands"`` for H&E), each ``(H, W)`` int32.
    """

    image: np.ndarray
    instances: np.ndarray
    classes: Mapping[int, str]
    class_names: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        """Number of objects ``N``."""
        return len(self.classes)

    def class_map(self) -> np.ndarray:
        """``(H, W)`` int32 semantic map: 0 = background, ``k + 1`` = ``class_names[k]``."""
        lut = np.zeros(self.n_instances + 1, np.int32)
        index = {name: k + 1 for k, name in enumerate(self.class_names)}
        for i, name in self.classes.items():
            lut[i] = index[name]
        return lut[self.instances]


class Options:
    """Resolve a generator's keyword options against random defaults.

    Every default is drawn whether or not the caller gave the option, so that overriding one
    option leaves the random draws of all the others unchanged. Unknown names raise
    ``TypeError``. ``resolved`` records every final value (it goes into ``Scene.meta``).
    """

    def __init__(self, modality: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise TypeError(f"{modality}: unknown option(s) {unknown}; known: {', '.join(allowed)}")
        self.given = dict(given)
        self.resolved: dict[str, Any] = {}

    def get(self, name: str, drawn: Any) -> Any:
        """The caller's value for ``name`` if given, else ``drawn``; recorded in ``resolved``."""
        value = self.given.get(name, drawn)
        if value is None:
            value = drawn
        self.resolved[name] = value
        return value


def size_range(value: Any, name: str = "diameter") -> tuple[float, float]:
    """Validate a ``(lo, hi)`` size range in pixels."""
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {value!r}")
    return lo, hi


def density_coverage(value: Any, rng: np.random.Generator) -> float:
    """Fraction of the image covered by objects: a number in ``(0, 0.9]`` or one of
    ``"sparse"`` (0.03-0.12), ``"medium"`` (0.12-0.30), ``"crowded"`` (0.30-0.55)."""
    ranges = {"sparse": (0.03, 0.12), "medium": (0.12, 0.30), "crowded": (0.30, 0.55)}
    u = float(rng.random())  # drawn always: the other draws do not depend on the option
    if isinstance(value, str):
        if value not in ranges:
            raise ValueError(f"density must be a number or one of {sorted(ranges)}, got {value!r}")
        lo, hi = ranges[value]
        return lo + u * (hi - lo)
    cov = float(value)
    if not 0 < cov <= 0.9:
        raise ValueError(f"density as a coverage fraction must be in (0, 0.9], got {cov}")
    return cov
