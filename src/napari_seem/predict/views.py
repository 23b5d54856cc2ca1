"""Views: where and at what scale one object is decoded.

A :class:`View` is a level-0 box of the current image with an encoding of it. The *main*
view is the whole image with the predictor's own encoding (:meth:`SeemPredictor.set_image`);
a *zoom* view is a crop re-encoded at a scale chosen for one object
(:mod:`napari_seem.predict.scale`). Views are kept in a small LRU (:class:`ViewCache`), so
the clicks that correct one object decode on one encoding.

Decoding one object in a view (:func:`decode_in_view`) rasterises its prompts into the
view's padded frame, decodes them (in prompt windows for models that have them), picks the
answering query and returns the object's probability over the view's box, in level-0
pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.rasterize import rasterize_objects
from napari_seem.model.prompt_window import OUTSIDE_LOGIT
from napari_seem.model.transforms import logits_to_image, make_frame
from napari_seem.predict.encoding import EncodedImage
from napari_seem.predict.scale import grey_pyramid
from napari_seem.predict.spatial import choose_candidates, decode_spatial

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["Decoded", "ImagePixels", "View", "ViewCache", "crop_box", "decode_in_view", "zoom_view"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class View:
    """An encoding of the level-0 box ``box`` ``(r0, c0, r1, c1)`` of the current image.

    Attributes:
        box: level-0 pixels, max exclusive; the whole image for the main view.
        encoded: the box's encoding; ``encoded.frame.image_hw`` is the box's size.
        main: True for the predictor's own encoding of the whole image.
    """

    box: Box
    encoded: EncodedImage
    main: bool = False

    @property
    def scale(self) -> float:
        """Mean level-0 -> model pixel scale of the view."""
        sy, sx = self.encoded.frame.scale
        return (sy + sx) / 2

    @property
    def key(self) -> tuple[object, ...] | None:
        """Identifies the view (memory logits are only reused in the view they came from);
        None for the main view (the predictor's plain path uses that too)."""
        return None if self.main else (self.box, self.encoded.frame.resized_hw)

    @property
    def offset(self) -> tuple[int, int]:
        return self.box[0], self.box[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.box[2] - self.box[0], self.box[3] - self.box[1]

    def crop(self, full: np.ndarray, fill: object = 0) -> np.ndarray:
        """The view's box of a level-0 ``(H, W, ...)`` array; ``fill`` where the box
        reaches beyond the image."""
        return crop_box(full, self.box, fill)

    def paste(self, local: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """A ``(H_v, W_v)`` bool crop of this view put into a ``(H, W)`` image mask."""
        h, w = image_hw
        r0, c0, r1, c1 = self.box
        out = np.zeros((h, w), bool)
        t, lft = max(r0, 0), max(c0, 0)
        b, rgt = min(r1, h), min(c1, w)
        out[t:b, lft:rgt] = local[t - r0 : b - r0, lft - c0 : rgt - c0]
        return out


def crop_box(full: np.ndarray, box: Box, fill: object = 0) -> np.ndarray:
    """``full[r0:r1, c0:c1]`` of a level-0 ``(H, W, ...)`` array, ``fill`` outside it."""
    r0, c0, r1, c1 = box
    h, w = full.shape[:2]
    if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:
        return full[r0:r1, c0:c1]
    out = np.empty((r1 - r0, c1 - c0, *full.shape[2:]), full.dtype)
    out[...] = fill
    t, lft = max(r0, 0), max(c0, 0)
    b, rgt = min(r1, h), min(c1, w)
    if b > t and rgt > lft:
        out[t - r0 : b - r0, lft - c0 : rgt - c0] = full[t:b, lft:rgt]
    return out


class ViewCache:
    """The last few zoom-view encodings of the current image (oldest dropped first)."""

    def __init__(self, capacity: int = 6) -> None:
        self.capacity = capacity
        self._views: OrderedDict[tuple[Box, float], EncodedImage] = OrderedDict()

    def clear(self) -> None:
        self._views.clear()

    def get(self, box: Box, scale: float) -> EncodedImage | None:
        found = self._views.get((box, scale))
        if found is not None:
            self._views.move_to_end((box, scale))
        return found

    def put(self, box: Box, scale: float, encoded: EncodedImage) -> None:
        self._views[(box, scale)] = encoded
        while len(self._views) > self.capacity:
            self._views.popitem(last=False)


class ImagePixels:
    """The current image's pixels, its grey version and the zoom views encoded from it.

    Args:
        rgb: ``(H, W, 3)`` uint8, or None when the predictor only has an encoding.
    """

    def __init__(self, rgb: np.ndarray | None) -> None:
        self.rgb = rgb
        self.views = ViewCache()
        self._grey: tuple[np.ndarray, list[np.ndarray]] | None = None

    def grey(self) -> np.ndarray | None:
        """``(H, W)`` float32 in [0, 1] (the channel mean), or None without pixels."""
        if self.rgb is None:
            return None
        if self._grey is None:
            grey = self.rgb.mean(-1, dtype=np.float32) / 255.0
            self._grey = (grey, grey_pyramid(grey))
        return self._grey[0]

    def pyramid(self) -> list[np.ndarray] | None:
        """:func:`~napari_seem.predict.scale.grey_pyramid` of :meth:`grey` (cached)."""
        self.grey()
        return None if self._grey is None else self._grey[1]


def zoom_view(predictor: SeemPredictor, box: Box, scale: float) -> View:
    """The current image's level-0 ``box`` encoded at ``scale`` (cached per image).

    Where the box reaches beyond the image it is filled with the median colour of the
    image's border, so a large object keeps background around it at the trained context
    size.
    """
    pixels = predictor.pixels
    if pixels.rgb is None:
        raise RuntimeError("zoom views need the image's pixels: call set_image(image)")
    encoded = pixels.views.get(box, scale)
    if encoded is None:
        rgb = pixels.rgb
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        crop = crop_box(rgb, box, np.median(border, 0).astype(np.uint8))
        short = max(1, round(min(crop.shape[:2]) * scale))
        frame = make_frame(
            crop.shape[:2], short_side=short, size_divisibility=predictor.model.size_divisibility
        )
        encoded = predictor.encode_many([crop], frame=frame)[0]
        pixels.views.put(box, scale, encoded)
    return View(box, encoded)


@dataclass(frozen=True)
class Decoded:
    """One object decoded in a view.

    Attributes:
        logits: ``(h, w)`` stride-4 logits of the answering query, the view's padded frame.
        caption: ``(D,)`` its caption embedding.
        prob: ``(H_v, W_v)`` float32 object probability over the view's box (level 0).
        decoded: ``(H_v, W_v)`` bool, where the model decoded (its prompt window).
    """

    logits: torch.Tensor
    caption: torch.Tensor
    prob: npt.NDArray[np.float32]
    decoded: npt.NDArray[np.bool_]


def decode_in_view(
    predictor: SeemPredictor,
    view: View,
    obj: ObjectPrompt,
    memory: torch.Tensor | None,
    *,
    resize: str = "bilinear",
) -> Decoded:
    """Decode one object's prompts in ``view``.

    Args:
        obj: the object, level-0 prompts (parts outside the view are clipped away).
        memory: ``(h, w)`` stride-4 memory logits in the view's padded frame, or None.
        resize: how logits are resampled to level 0 (``"official"`` or ``"bilinear"``).
    """
    frame = view.encoded.frame
    pos, neg = rasterize_objects(
        [obj], frame.padded_hw, scale=frame.scale, offset=view.offset, box_mode="center"
    )
    prev = None if memory is None else memory[None, None]
    on = None if view.main else view.encoded  # the main view: the predictor's cached keys
    smasks, slogits, stexts = decode_spatial(predictor, pos, neg, prev, encoded=on)
    chosen = int(choose_candidates(predictor, [obj], slogits, stexts)[0])
    logits = smasks[chosen]
    full = logits_to_image(logits[None].float(), frame, frame.image_hw, method=resize)[0]  # type: ignore[arg-type]
    prob = torch.sigmoid(full).cpu().numpy().astype(np.float32)
    # decoded cells: everything but the constant fill outside the prompt window
    inside = (logits != OUTSIDE_LOGIT).float()[None]
    cover = logits_to_image(inside, frame, frame.image_hw, method="bilinear")[0]
    decoded = (cover > 0.5).cpu().numpy()
    return Decoded(logits, stexts[chosen], prob, decoded)
