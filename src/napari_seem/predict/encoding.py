"""``EncodedImage``: an image as the decoder sees it (what the predictor and the feature
cache keep between calls)."""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_seem.model.decoder import ImageMemory
from napari_seem.model.seem import ImageFeatures
from napari_seem.model.transforms import ModelFrame

__all__ = ["EncodedImage"]


@dataclass(frozen=True)
class EncodedImage:
    """An image as the decoder sees it.

    Attributes:
        frame: how the level-0 image maps into the padded model input.
        features: encoder output (batch of one) in the padded model frame.
        image_memory: the decoder's per-image cross-attention keys/values (filled lazily).
    """

    frame: ModelFrame
    features: ImageFeatures
    image_memory: ImageMemory | None = field(default=None, compare=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the level-0 image."""
        return self.frame.image_hw
