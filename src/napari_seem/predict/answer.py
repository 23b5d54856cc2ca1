"""Interactive answers that find their scale and obey their clicks (seem-lite's default).

Per object prompt (:func:`answer_objects`):

1. **View** (:mod:`napari_seem.predict.scale`, :mod:`napari_seem.predict.views`): the
   object's size is estimated (a scale-space blob estimate at the first positive click, so
   one object keeps one view over its rounds); the current encoding answers when the
   object is of a size the model handles there, else a crop around the prompts is encoded
   at a scale that makes the object a size the model knows (:class:`ScaleSettings`).
2. **Decode** in that view, with the object's memory laid out on the view.
3. **Check** the answer's own size; decode once more in a better view when it is far out of
   band or was cut by the window it was decoded in.
4. **Obey the clicks** (:mod:`napari_seem.predict.click_refine`): positive clicks outside
   the answer add the model's answer to that click alone; a seeded watershed splits the
   answer between positive and negative marks.

The result is the same :class:`~napari_seem.core.results.ObjectMask` per object as the
plain path (:meth:`SeemPredictor.predict`), in level-0 ``(row, col)`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.rasterize import rasterize_objects
from napari_seem.core.results import ObjectMask
from napari_seem.core.visual import Points
from napari_seem.model.postprocess import l2_normalize
from napari_seem.predict.click_refine import RefineSettings, merge_click_answers, refine_answer
from napari_seem.predict.masks import bound_by_boxes, mask_score, touching
from napari_seem.predict.memory import PreviousMasks, memory_from_mask
from napari_seem.predict.scale import (
    ScaleSettings,
    blob_diameter,
    equivalent_diameter,
    needs_second_pass,
    quantize_scale,
    view_box,
    view_scale,
)
from napari_seem.predict.spatial import choose_candidates
from napari_seem.predict.views import Decoded, View, decode_in_view

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["InteractiveSettings", "answer_objects", "answer_plain"]

BoolMask = npt.NDArray[np.bool_]
#: At most this many positive clicks outside the answer get their own decode per call.
MAX_CLICK_DECODES = 3
#: A positive click this close to the answer (a fraction of its diameter) corrects the border.
NEAR_ANSWER = 0.2
#: A click's 3 x 3 blob is part of its mark where the model's probability is at least this
#: (negative: at most 1 - this); elsewhere only the clicked pixel is.
STAMP_AGREE = 0.05


@dataclass(frozen=True)
class InteractiveSettings:
    """Switches and settings of :func:`answer_objects`.

    Attributes:
        refine: make the answer obey the clicks (click-constrained refinement).
        find_scale: choose the encoding scale per object (zoom views, second pass).
    """

    refine: bool = True
    find_scale: bool = True
    refine_with: RefineSettings = field(default_factory=RefineSettings)
    scale_with: ScaleSettings = field(default_factory=ScaleSettings)


def _bbox(mask: BoolMask) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _positive_points(obj: ObjectPrompt) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for p in obj.visual:
        if isinstance(p, Points):
            pts += [(float(r), float(c)) for r, c in p.coords[p.positive]]
    return pts


def _negative_points(obj: ObjectPrompt) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for p in obj.visual:
        if isinstance(p, Points):
            pts += [(float(r), float(c)) for r, c in p.coords[~p.positive]]
    return pts


def _refine_marks(obj: ObjectPrompt, image_hw: tuple[int, int]) -> tuple[BoolMask, BoolMask]:
    """``(pos, neg)`` level-0 ``(H, W)`` marks for the refinement: each click is its one
    pixel (a later click wins where two meet; the 3 x 3 blob the model sees would force
    pixels beyond a small object's border), other prompts as rasterised."""
    others = tuple(p for p in obj.visual if not isinstance(p, Points))
    h, w = image_hw
    if others:
        pos, neg = rasterize_objects([ObjectPrompt(others)], image_hw, box_mode="center")
        pos, neg = pos[0], neg[0]
    else:
        pos, neg = np.zeros(image_hw, bool), np.zeros(image_hw, bool)
    for p in obj.visual:
        if isinstance(p, Points):
            for (row, col), positive in zip(p.coords, p.positive, strict=True):
                r = min(max(math.floor(row + 0.5), 0), h - 1)
                c = min(max(math.floor(col + 0.5), 0), w - 1)
                pos[r, c], neg[r, c] = bool(positive), not positive
    return pos, neg


def _previous_mask(item: object, image_hw: tuple[int, int]) -> BoolMask | None:
    if item is None:
        return None
    if isinstance(item, ObjectMask):
        return item.full(image_hw)
    return np.asarray(item).astype(bool)


def _main_view(predictor: SeemPredictor) -> View:
    h, w = predictor.encoded.image_shape
    return View((0, 0, h, w), predictor.encoded, main=True)


def _view_at(
    predictor: SeemPredictor, scale: float, extent: tuple[int, int, int, int], main: View
) -> View:
    """The main view when ``scale`` is within a quarter octave of it, else a zoom view."""
    if abs(math.log2(scale / main.scale)) <= 0.25:
        return main
    r0, c0, r1, c1 = extent
    box = view_box(
        ((r0 + r1) / 2, (c0 + c1) / 2),
        extent,
        scale,
        main.shape,
        predictor.interactive.scale_with.window,
    )
    return predictor.zoom_view(box, scale)


def _first_view(
    predictor: SeemPredictor, obj: ObjectPrompt, marks: BoolMask, prev: BoolMask | None
) -> View:
    """Step 1 of the module docstring."""
    main = _main_view(predictor)
    settings = predictor.interactive
    pyramid = predictor.grey_pyramid() if settings.find_scale else None
    extent = _bbox(marks if prev is None else marks | prev)
    if pyramid is None or extent is None:
        return main
    if settings.scale_with.from_previous and prev is not None and prev.any():
        diameter = equivalent_diameter(prev)
    else:
        points = _positive_points(obj)
        r0, c0, r1, c1 = extent
        row, col = points[0] if points else ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)
        scale_with = settings.scale_with
        diameter = blob_diameter(
            pyramid, row, col, smallest=scale_with.smallest, largest=scale_with.largest
        )
    scale = view_scale(diameter, main.scale, settings.scale_with)
    return main if scale is None else _view_at(predictor, scale, extent, main)


def _memory(
    predictor: SeemPredictor, view: View, item: object, prev: BoolMask | None
) -> torch.Tensor | None:
    """The object's memory logits laid out on ``view`` (None without a previous answer)."""
    if prev is None:
        return None
    if isinstance(item, ObjectMask):
        known = predictor.mask_memory.lookup(item, view.key)
        if known is not None:
            return known
    return memory_from_mask(view.crop(prev), view.encoded.frame, predictor.device)


def _image_edge(view: View, image_hw: tuple[int, int]) -> BoolMask:
    """The view's pixels on the border of the image."""
    h, w = view.shape
    edge = np.zeros((h, w), bool)
    r0, c0, r1, c1 = view.box
    edge[0, :] |= r0 <= 0
    edge[-1, :] |= r1 >= image_hw[0]
    edge[:, 0] |= c0 <= 0
    edge[:, -1] |= c1 >= image_hw[1]
    return edge


def _second_view(
    predictor: SeemPredictor,
    view: View,
    dec: Decoded,
    obj: ObjectPrompt,
    marks: BoolMask,
) -> View | None:
    """Step 3 of the module docstring: a better view, or None."""
    settings = predictor.interactive.scale_with
    image_hw = predictor.encoded.image_shape
    local_marks = view.crop(marks)
    answer = touching(dec.prob >= 0.5, local_marks, obj)
    if not (answer & local_marks).any():
        return None
    diameter = needs_second_pass(
        answer, dec.decoded, _image_edge(view, image_hw), view.scale, settings
    )
    if diameter is None:
        return None
    scale = quantize_scale(min(settings.target_out / max(diameter, 1e-6), settings.max_upscale))
    if abs(math.log2(scale / view.scale)) <= 0.25:
        return None
    full = view.paste(answer, image_hw)
    extent = _bbox(full | marks)
    assert extent is not None
    return _view_at(predictor, scale, extent, _main_view(predictor))


def _click_answers(
    predictor: SeemPredictor, view: View, obj: ObjectPrompt, prob: npt.NDArray[np.float32]
) -> list[npt.NDArray[np.float32]]:
    """The model's answers to the positive clicks that ``prob`` leaves out (newest first).

    A click within :data:`NEAR_ANSWER` of the answer's diameter from it (at least 3 px)
    corrects the border: it only adds itself (the model's answer to a click on a border
    is as often the touching neighbour); a click farther out marks a missed part, and
    the model's answer to that click alone is added.
    """
    from scipy import ndimage

    r0, c0, r1, c1 = view.box
    negatives = _negative_points(obj)
    inside = prob >= 0.5
    distance = ndimage.distance_transform_edt(~inside) if inside.any() else None
    near = max(3.0, NEAR_ANSWER * equivalent_diameter(inside))
    out = []
    for row, col in reversed(_positive_points(obj)):
        r, c = math.floor(row + 0.5), math.floor(col + 0.5)
        if not (r0 <= r < r1 and c0 <= c < c1) or inside[r - r0, c - c0]:
            continue
        if distance is not None and distance[r - r0, c - c0] <= near:
            continue
        alone = ObjectPrompt((Points.clicks(positive=[(row, col)], negative=negatives),))
        out.append(decode_in_view(predictor, view, alone, None, resize="bilinear").prob)
        if len(out) >= MAX_CLICK_DECODES:
            break
    return out


def _negative_objects(
    predictor: SeemPredictor, view: View, obj: ObjectPrompt, prob: npt.NDArray[np.float32]
) -> npt.NDArray[np.bool_]:
    """Where the objects under the negative clicks outside the answer are (newest first,
    at most :data:`MAX_CLICK_DECODES`): each such click decoded as a positive one (with the
    object's positive clicks as negatives), kept where that answer is more likely than the
    object's own and connected to the click. ``(H_v, W_v)`` bool over the view."""
    from scipy import ndimage

    r0, c0, r1, c1 = view.box
    positives = _positive_points(obj)
    out = np.zeros(prob.shape, bool)
    for n, (row, col) in enumerate(reversed(_negative_points(obj))):
        if n >= MAX_CLICK_DECODES:
            break
        r, c = math.floor(row + 0.5), math.floor(col + 0.5)
        if not (r0 <= r < r1 and c0 <= c < c1) or prob[r - r0, c - c0] >= 0.5:
            continue  # a click inside the answer splits it (the watershed) on its own
        other = ObjectPrompt((Points.clicks(positive=[(row, col)], negative=positives),))
        theirs = decode_in_view(predictor, view, other, None, resize="bilinear").prob
        region = (theirs >= 0.5) & (theirs > prob)
        parts, _ = ndimage.label(region)
        if parts[r - r0, c - c0]:
            out |= parts == parts[r - r0, c - c0]
    return out


def _answer_one(
    predictor: SeemPredictor, obj: ObjectPrompt, item: object
) -> tuple[ObjectMask, torch.Tensor, float]:
    """One object: its answer, its caption embedding and its score."""
    image_hw = predictor.encoded.image_shape
    settings = predictor.interactive
    prev = _previous_mask(item, image_hw)
    pos, neg = rasterize_objects([obj], image_hw, box_mode="center")
    pos, neg = pos[0], neg[0]
    view = _first_view(predictor, obj, pos | neg, prev)
    memory = _memory(predictor, view, item, prev)
    dec = decode_in_view(predictor, view, obj, memory, resize=predictor.mask_resize)
    if settings.find_scale and predictor.image_rgb is not None:
        better = _second_view(predictor, view, dec, obj, pos)
        if better is not None:
            view = better
            dec = decode_in_view(predictor, view, obj, _memory(predictor, view, item, prev))
    prob = dec.prob
    if settings.refine:
        prob = merge_click_answers(prob, _click_answers(predictor, view, obj, prob))
        grey = predictor.grey_image()
        pos_px, neg_px = _refine_marks(obj, image_hw)
        # a click's blob counts where the model half agrees: small objects keep their border
        negative = view.crop(neg_px) | (view.crop(neg) & (prob < 1 - STAMP_AGREE))
        if negative.any():
            negative |= _negative_objects(predictor, view, obj, prob)
        local = refine_answer(
            prob,
            view.crop(pos_px) | (view.crop(pos) & (prob >= STAMP_AGREE)),
            negative,
            grey=None if grey is None else view.crop(grey),
            settings=settings.refine_with,
        )
    else:
        local = prob >= 0.5
        if predictor.connected:
            local = touching(local, view.crop(pos), obj)
    full = bound_by_boxes(view.paste(local, image_hw), obj)
    score = float(prob[local].mean()) if local.any() else 0.0
    result = ObjectMask.from_full(full, score=score, prompt=obj, source="interactive")
    # memory consistent with the answer: the model's logits, pushed to its side of 0
    agree = memory_from_mask(view.crop(full), view.encoded.frame, predictor.device) > 0
    logits = dec.logits.float()
    logits = torch.where(agree, logits.clamp(min=1.0), logits.clamp(max=-1.0))
    predictor.mask_memory.remember(result, logits, view.key)
    return result, dec.caption, score


def answer_objects(
    predictor: SeemPredictor,
    objects: Sequence[ObjectPrompt],
    previous: Sequence[object] | None,
    vocabulary: Sequence[str] | None,
) -> list[ObjectMask]:
    """Every object's answer (module docstring), named by ``vocabulary`` or its text.

    Args:
        objects: the object prompts, level-0.
        previous: last round's answer per object (ObjectMask, bool ``(H, W)`` or None), or
            None for a first round.
        vocabulary: class names to label the masks with, or None.
    """
    answers = []
    captions = []
    for p, obj in enumerate(objects):
        item = None if previous is None else previous[p]
        mask, caption, _ = _answer_one(predictor, obj, item)
        answers.append(mask)
        captions.append(caption)
    names, name_scores = predictor.name_captions(torch.stack(captions), vocabulary)
    out = []
    for p, (obj, mask) in enumerate(zip(objects, answers, strict=True)):
        name, name_score = names[p], name_scores[p]
        if obj.text is not None:
            sim = torch.dot(
                l2_normalize(captions[p].float()), predictor.sentence_embedding(obj.text.text)
            )
            name, name_score = obj.text.text, float(sim)
        named = ObjectMask(
            mask.mask,
            mask.offset,
            score=mask.score,
            class_name=name,
            class_score=name_score,
            prompt=obj,
            source="interactive",
        )
        out.append(named)
    return out


def answer_plain(
    predictor: SeemPredictor,
    objects: Sequence[ObjectPrompt],
    previous: PreviousMasks | None,
    vocabulary: Sequence[str] | None,
) -> list[ObjectMask]:
    """The model's own answers, all objects in one decoder pass on the current encoding
    (the official variants' path: no views, no refinement; ``connected`` still applies)."""
    enc = predictor.encoded
    frame = enc.frame
    # SEEM has no box encoder: a box prompts with its centre and bounds the answer
    pos, neg = rasterize_objects(objects, frame.padded_hw, scale=frame.scale, box_mode="center")
    h4, w4 = enc.features.mask_features.shape[-2:]
    prev = (
        None
        if previous is None
        else predictor.mask_memory.previous_logits(
            previous,
            len(objects),
            frame=frame,
            cells_hw=(int(h4), int(w4)),
            device=predictor.device,
        )
    )
    smasks, spatial_logits, stexts = predictor.decode_spatial(pos, neg, prev)
    chosen = choose_candidates(predictor, list(objects), spatial_logits, stexts)
    logits = smasks[chosen]  # (P, h, w)
    captions = stexts[chosen]  # (P, D)
    masks = predictor.logits_to_masks(logits)
    if predictor.connected:
        marks, _ = rasterize_objects(objects, frame.image_hw, box_mode="center")
        triples = zip(masks, marks, objects, strict=True)
        masks = np.stack([touching(m, k, o) for m, k, o in triples])
    names, name_scores = predictor.name_captions(captions, vocabulary)
    results = []
    for p, obj in enumerate(objects):
        name, name_score = names[p], name_scores[p]
        if obj.text is not None:
            sim = torch.dot(
                l2_normalize(captions[p].float()), predictor.sentence_embedding(obj.text.text)
            )
            name, name_score = obj.text.text, float(sim)
        result = ObjectMask.from_full(
            bound_by_boxes(masks[p], obj),
            score=mask_score(logits[p]),
            class_name=name,
            class_score=name_score,
            prompt=obj,
            source="interactive",
        )
        predictor.mask_memory.remember(result, logits[p])
        results.append(result)
    return results
