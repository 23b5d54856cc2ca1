"""A real predictor with deterministic answers, for checking the engine's tiling.

A random-weight model segments nothing in particular, so tests of stitching, seam merging
and levels need answers they can predict. ``ThresholdPredictor`` encodes tiles with the
real model (features, cache and timing paths are the real ones) but answers every prompt
with the bright (> 128) connected components its positive prompts touch, and grounding
with every bright component of the tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.measure import label

from napari_seem.model.seem import SeemModel
from napari_seem.predictor import EncodedImage, SeemPredictor
from napari_seem.prompts import ObjectPrompt
from napari_seem.rasterize import rasterize_object
from napari_seem.results import ObjectMask, SegmentationResult


class ThresholdPredictor(SeemPredictor):
    def __init__(self, model: SeemModel) -> None:
        super().__init__(model, short_side=None)
        self._bright: dict[int, np.ndarray] = {}

    def encode_many(self, images: Sequence[Any]) -> list[EncodedImage]:
        encoded = super().encode_many(images)
        for enc, image in zip(encoded, images, strict=True):
            self._bright[id(enc.features)] = np.asarray(image)[..., 0] > 128
        return encoded

    def _components(self) -> np.ndarray:
        return label(self._bright[id(self.encoded.features)], connectivity=2)

    def predict(self, prompts: Any, **kwargs: Any) -> SegmentationResult:
        assert isinstance(prompts, ObjectPrompt)
        components = self._components()
        pos, _ = rasterize_object(prompts, components.shape)
        ids = np.unique(components[pos])
        mask = np.isin(components, ids[ids > 0])
        obj = ObjectMask.from_full(mask, score=0.9, prompt=prompts)
        return SegmentationResult(components.shape, (obj,))

    def ground(self, texts: Sequence[str], **kwargs: Any) -> SegmentationResult:
        components = self._components()
        found = tuple(
            ObjectMask.from_full(
                components == k, score=0.5 + k / 1000, class_name=texts[0], source="grounding"
            )
            for k in range(1, int(components.max()) + 1)
        )
        return SegmentationResult(components.shape, found)
