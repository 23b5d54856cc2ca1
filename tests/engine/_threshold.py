"""A real predictor with deterministic answers, for checking the engine's tiling.

A random-weight model segments nothing in particular, so tests of stitching, seam merging
and levels need answers they can predict. ``ThresholdPredictor`` encodes tiles with the
real model (features, cache and timing paths are the real ones) but answers every prompt
with the bright (> 128) connected components its positive prompts touch, grounding
with every bright component of the tile, and segment-everything with every bright
component too, named by size: the vocabulary's first class for components of at least
``BIG`` pixels (of the tile), its last class for smaller ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.measure import label

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.rasterize import rasterize_object
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.model.seem import SeemModel
from napari_seem.predict.predictor import EncodedImage, SeemPredictor

BIG = 400


class ThresholdPredictor(SeemPredictor):
    def __init__(self, model: SeemModel) -> None:
        super().__init__(model, short_side=None)
        self._bright: dict[int, np.ndarray] = {}
        self.everything_calls: list[dict[str, Any]] = []

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

    def segment_everything(self, vocabulary: Sequence[str], **kwargs: Any) -> SegmentationResult:
        self.everything_calls.append({"vocabulary": list(vocabulary), **kwargs})
        components = self._components()
        found = []
        for k in range(1, int(components.max()) + 1):
            mask = components == k
            name = vocabulary[0] if int(mask.sum()) >= BIG else vocabulary[-1]
            found.append(
                ObjectMask.from_full(
                    mask, score=0.8, class_name=name, class_score=0.8, source="panoptic"
                )
            )
        return SegmentationResult(components.shape, tuple(found))
