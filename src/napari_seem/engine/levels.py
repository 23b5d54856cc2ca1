"""Working on a coarser pyramid level while speaking level-0 pixels (pure numpy).

A session may infer on level ``k`` of a multiscale image (faster, coarser). Everything the
engine receives and returns stays in level-0 ``(row, col)`` pixels; :class:`LevelFrame`
converts at the two edges:

- prompts come in at level 0 and are mapped into the level's pixel grid with
  :func:`napari_seem.core.rasterize.to_frame` (``scale = 1 / factor``: pixel centres align the
  way image resizers align them); clicks stay clicks, boxes stay boxes, scribbles and
  polygons keep their vertices (a scribble's width shrinks with the level, at least one
  pixel), a painted mask is resampled nearest-neighbour (splatted when smaller than one
  level pixel, so it never vanishes);
- masks come out of the model on the level grid and go back to level 0 by nearest
  neighbour: level-0 pixel ``r`` takes the value of level pixel
  ``floor((r + 0.5) / factor)``, i.e. every level pixel becomes the ``factor x factor``
  block of level-0 pixels whose centres it covers. The answer is an
  :class:`~napari_seem.core.results.ObjectMask` crop with its level-0 offset, exactly as on
  level 0 (the mask is as coarse as the level: block-shaped borders).

Level 0 is the identity: nothing is converted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    Polygon,
    Scribble,
    VisualPrompt,
)
from napari_seem.core.rasterize import rasterize_prompts, to_frame
from napari_seem.core.results import ObjectMask, ResultPrompt

__all__ = ["LevelFrame"]


@dataclass(frozen=True)
class LevelFrame:
    """The pixel grid of one pyramid level, relative to level 0.

    Attributes:
        level: the level index (0 = full resolution).
        image_shape: level-0 ``(H, W)``.
        level_shape: ``(h, w)`` of the level.
        factors: ``(fy, fx)`` level-0 pixels per level pixel (``(1.0, 1.0)`` at level 0).
    """

    level: int
    image_shape: tuple[int, int]
    level_shape: tuple[int, int]
    factors: tuple[float, float]

    @property
    def is_identity(self) -> bool:
        return self.level_shape == self.image_shape and self.factors == (1.0, 1.0)

    @property
    def scale(self) -> tuple[float, float]:
        """Level pixels per level-0 pixel, ``(1 / fy, 1 / fx)``."""
        return 1.0 / self.factors[0], 1.0 / self.factors[1]

    # ------------------------------------------------------------------ level 0 -> level

    def coords_to_level(self, coords: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(N, 2)`` level-0 ``(row, col)`` -> level ``(row, col)``, clipped into the level."""
        mapped = to_frame(coords, scale=self.scale)
        h, w = self.level_shape
        return np.clip(mapped, -0.5, (h - 0.5, w - 0.5))

    def box_to_level(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A level-0 pixel box ``(r0, c0, r1, c1)`` (max exclusive) -> the level pixels
        whose area meets it (rounded outwards, never empty)."""
        fy, fx = self.factors
        h, w = self.level_shape
        r0 = min(math.floor(box[0] / fy), h - 1)
        c0 = min(math.floor(box[1] / fx), w - 1)
        r1 = max(min(math.ceil(box[2] / fy), h), r0 + 1)
        c1 = max(min(math.ceil(box[3] / fx), w), c0 + 1)
        return r0, c0, r1, c1

    def visual_to_level(self, prompt: VisualPrompt) -> VisualPrompt:
        """One level-0 visual prompt in the level's pixel grid (same kind)."""
        if self.is_identity:
            return prompt
        if isinstance(prompt, Points):
            return Points(self.coords_to_level(prompt.coords), prompt.positive)
        if isinstance(prompt, Box):
            (top, left), (bottom, right) = self.coords_to_level(
                [(prompt.row_min, prompt.col_min), (prompt.row_max, prompt.col_max)]
            )
            if bottom <= top or right <= left:  # squeezed to nothing at the image border
                return Points.click((top + bottom) / 2, (left + right) / 2)
            return Box(top, left, bottom, right)
        if isinstance(prompt, Scribble):
            width = max(prompt.width / max(self.factors), 1.0)
            return Scribble(
                self.coords_to_level(prompt.vertices), width=width, positive=prompt.positive
            )
        if isinstance(prompt, Polygon):
            return Polygon(self.coords_to_level(prompt.vertices), positive=prompt.positive)
        if isinstance(prompt, MaskPrompt):
            return self._mask_prompt_to_level(prompt)
        raise TypeError(f"not a visual prompt: {type(prompt).__name__}")

    def _mask_prompt_to_level(self, prompt: MaskPrompt) -> MaskPrompt:
        fy, fx = self.factors
        h, w = self.level_shape
        (r, c), (mh, mw) = prompt.offset, prompt.mask.shape
        # the level pixels holding the centres of the crop's first and last pixels
        k0 = min(math.floor((r + 0.5) / fy), h - 1)
        l0 = min(math.floor((c + 0.5) / fx), w - 1)
        k1 = min(math.floor((r + mh - 0.5) / fy) + 1, h)
        l1 = min(math.floor((c + mw - 0.5) / fx) + 1, w)
        upright = MaskPrompt(prompt.mask, prompt.offset)  # draw into `pos` whatever the sign
        pos, _ = rasterize_prompts(
            [upright], (k1 - k0, l1 - l0), scale=self.scale, offset=(k0 * fy, l0 * fx)
        )
        return MaskPrompt(pos, (k0, l0), positive=prompt.positive)

    def prompt_to_level(self, prompt: ObjectPrompt) -> ObjectPrompt:
        """A level-0 object prompt in the level's grid (text and label unchanged)."""
        if self.is_identity:
            return prompt
        visual = tuple(self.visual_to_level(p) for p in prompt.visual)
        return ObjectPrompt(visual, prompt.text, label=prompt.label)

    # ------------------------------------------------------------------ level -> level 0

    def crop_to_level0(
        self, mask: npt.NDArray[np.bool_], offset: tuple[int, int]
    ) -> tuple[npt.NDArray[np.bool_], tuple[int, int]]:
        """A ``(h, w)`` bool crop at level ``offset`` -> its level-0 crop and offset.

        Nearest neighbour: level-0 pixel ``r`` takes level pixel ``floor((r + 0.5) / fy)``
        (see the module docstring); an empty crop stays empty at ``(0, 0)``.
        """
        mask = np.asarray(mask, dtype=bool)
        if self.is_identity:
            return mask, (int(offset[0]), int(offset[1]))
        if mask.size == 0 or not mask.any():
            return np.zeros((0, 0), bool), (0, 0)
        rows = self._axis_to_level0(offset[0], mask.shape[0], axis=0)
        cols = self._axis_to_level0(offset[1], mask.shape[1], axis=1)
        full = mask[np.ix_(rows[1], cols[1])]
        return full, (rows[0], cols[0])

    def _axis_to_level0(self, start: int, size: int, *, axis: int) -> tuple[int, np.ndarray]:
        """First level-0 index and, per level-0 index, the source index into the crop."""
        f = self.factors[axis]
        full = self.image_shape[axis]
        # level-0 pixels whose centre lies in level pixels [start, start + size)
        first = max(math.ceil(start * f - 0.5), 0)
        stop = min(math.ceil((start + size) * f - 0.5), full)
        if start + size >= self.level_shape[axis]:
            stop = full  # a level that rounds its size down still covers the last rows
        index = np.arange(first, max(stop, first + 1))
        source = np.floor((index + 0.5) / f).astype(np.int64) - start
        return first, np.clip(source, 0, size - 1)

    def object_to_level0(self, obj: ObjectMask, prompt: ResultPrompt | None) -> ObjectMask:
        """A level-grid answer as the level-0 answer (``prompt``: the level-0 prompt)."""
        mask, offset = self.crop_to_level0(obj.mask, obj.offset)
        return ObjectMask(
            mask,
            offset,
            score=obj.score,
            class_name=obj.class_name,
            class_score=obj.class_score,
            prompt=prompt if prompt is not None else obj.prompt,
            source=obj.source,
        )
