"""Interactive answers on an open session: one object from its prompts, every instance of a
phrase, and what an example marks (referring), on arbitrarily large images.

How a prompt is answered (:func:`predict_object`):

1. the start tiles are the tiles whose core a positive visual prompt touches;
2. each tile is encoded once (its outer box, read with ``ImageSource.read_level_rgb``) and
   kept in the session's :class:`~napari_seem.predict.feature_cache.FeatureCache`;
3. the tile is decoded with the object's prompts clipped into its window
   (:mod:`napari_seem.core.tile_prompts`); when the mask reaches a core edge the
   neighbour is decoded too (:func:`~napari_seem.core.tiling.grow_until_closed`), and the
   cores are stitched into one crop with its level-0 offset.

**Neighbour rule.** A tile whose window holds a positive prompt of the object decodes
with those prompts (plus any negatives in the window). A tile reached only by growth has
no positive prompt of its own: it decodes with the part of the growing mask (the union
of the cores decoded so far) inside its window as a positive mask prompt, plus the
object's negatives in the window. If that part is empty the tile contributes nothing and
is not decoded. A box bounds the object everywhere: every tile's mask is clipped to the
union of the object's boxes, so growth cannot leave them.

**Memory.** Each session remembers the last mask per ``object_id``; the next prediction
with that id passes the part of it inside each decoded tile's window to the predictor as
``previous`` (SEEM's round-to-round memory).

**Grounding and referring** (:func:`ground_phrase`, :func:`refer_example`) answer on every
tile whose core meets a level-0 box (at most ``max_tiles`` tiles: larger regions are batch
jobs); instances crossing seams are merged (:mod:`napari_seem.engine.instances`) and cut
at the border of the decoded tiles' cores.

Every function takes the predictor and the lock held around each use of it (the
predictor keeps the current tile's features); prompts come in and masks go out in level-0
``(row, col)`` pixels.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.geo_nodata import drop_nodata
from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    PromptError,
    ReferringExample,
    TextPrompt,
    VisualPrompt,
)
from napari_seem.core.results import ObjectMask
from napari_seem.core.tile_prompts import object_in_window, object_mask_in_window
from napari_seem.core.tiling import Tile, TileGrid, grow_until_closed
from napari_seem.engine.errors import InvalidRequestError, PromptOutsideImageError
from napari_seem.engine.instances import TilePiece, merge_pieces
from napari_seem.engine.sessions import Session, encoded, region_tiles
from napari_seem.predict.predictor import SeemPredictor

__all__ = [
    "Prediction",
    "checked_vocabulary",
    "ground_phrase",
    "predict_object",
    "refer_example",
]

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Prediction:
    """The engine's whole answer to one ``predict``.

    Attributes:
        mask: the object as a level-0 crop with its offset.
        truncated: the object reached beyond ``max_tiles`` decoded tiles and was cut
            there (prompt a smaller object, or raise the server's ``max_tiles``).
        max_tiles: the tile limit the answer was decoded under.
        tiles: tiles decoded for it (tiles of the session's working level).
    """

    mask: ObjectMask
    truncated: bool
    max_tiles: int
    tiles: int


def checked_vocabulary(vocabulary: Sequence[str] | None, limit: int) -> tuple[str, ...] | None:
    """``vocabulary`` for naming a clicked object: distinct non-empty names, at most ``limit``.

    Raises:
        InvalidRequestError: it is not such a list.
    """
    if vocabulary is None:
        return None
    items = [vocabulary] if isinstance(vocabulary, str) else vocabulary
    if not isinstance(items, Sequence) or not all(isinstance(v, str) for v in items):
        raise InvalidRequestError(
            f"vocabulary must be a list of class names (strings); got {vocabulary!r:.200}"
        )
    names = tuple(v.strip() for v in items)
    if not names or not all(names) or len(set(names)) != len(names) or len(names) > limit:
        raise InvalidRequestError(
            f"vocabulary must list 1 to {limit} distinct non-empty class names, e.g. "
            f"['nucleus', 'cell']; got {len(names)} names"
        )
    return names


def predict_object(
    predictor: SeemPredictor,
    lock: threading.Lock,
    session: Session,
    prompt: ObjectPrompt,
    *,
    object_id: str | None,
    max_tiles: int,
    vocabulary: Sequence[str] | None = None,
) -> Prediction:
    """One object's mask as a level-0 crop (see :meth:`napari_seem.engine.Engine.predict`).

    Decodes at most ``max_tiles`` tiles: a larger object is cut (``truncated``). With a
    ``vocabulary`` and no text, the object is named by its best class of it.
    """
    if not isinstance(prompt, ObjectPrompt):
        raise InvalidRequestError(f"predict takes one ObjectPrompt; got {type(prompt).__name__}")
    if not prompt.visual or not prompt.has_positive:
        raise InvalidRequestError(
            "the object prompt has no positive visual prompt: add a click, box, scribble, "
            "polygon or mask on the object (text alone is a grounding query: use ground)"
        )
    _check_fits(prompt, session.frame.image_shape)
    grid = session.grid
    local = session.frame.prompt_to_level(prompt)
    previous = None if object_id is None else session.history.get(object_id)
    start = _start_tiles(grid, local.visual)
    decoder = _TileDecoder(predictor, session, local, previous, vocabulary)
    with lock:
        grown = grow_until_closed(grid, start, decoder, max_tiles=max_tiles)
    first = decoder.first
    on_level = ObjectMask(
        grown.mask,
        grown.offset,
        score=0.0 if first is None else first.score,
        class_name=None if first is None else first.class_name,
        class_score=None if first is None else first.class_score,
        source="interactive",
    )
    if object_id is not None:
        session.history[object_id] = on_level
    (answer,) = drop_nodata(
        [session.frame.object_to_level0(on_level, prompt)], session.source, session.plane
    )
    return Prediction(
        answer,
        bool(grown.truncated),
        int(max_tiles),
        len(grown.tiles),
    )


def ground_phrase(
    predictor: SeemPredictor,
    lock: threading.Lock,
    session: Session,
    text: str,
    *,
    box: Window | None,
    score_threshold: float,
    max_instances: int | None,
    max_tiles: int,
) -> list[ObjectMask]:
    """Every instance of a phrase over ``box``, best first (see
    :meth:`napari_seem.engine.Engine.ground`)."""
    phrase = text.strip() if isinstance(text, str) else ""
    if not phrase:
        raise InvalidRequestError("ground needs a non-empty phrase, e.g. 'nucleus'")
    if not (math.isfinite(score_threshold) and 0.0 <= score_threshold <= 1.0):
        raise InvalidRequestError(
            f"score_threshold must be between 0 and 1; got {score_threshold!r}"
        )
    if max_instances is not None and max_instances < 1:
        raise InvalidRequestError(f"max_instances must be >= 1; got {max_instances!r}")
    tiles = _tiles_within(session, box, max_tiles, what="ground")
    pieces: list[TilePiece] = []
    for tile in tiles:
        with lock:  # per tile: clicks may interleave
            predictor.set_encoded(encoded(predictor, session, tile))
            try:
                found = predictor.ground(
                    [phrase], score_threshold=score_threshold, max_instances=max_instances
                )
            except PromptError as exc:
                raise InvalidRequestError(str(exc)) from None
        pieces += _pieces(tile, found)
    query = TextPrompt(phrase)
    answers = [
        _answer(session, m.mask, m.offset, m.score, phrase, query, "grounding")
        for m in merge_pieces(session.grid.image_shape, pieces)
    ]
    return answers if max_instances is None else answers[:max_instances]


def refer_example(
    predictor: SeemPredictor,
    lock: threading.Lock,
    target: Session,
    other: Session,
    example: ObjectPrompt,
    *,
    box: Window | None,
    max_tiles: int,
    window_size: int,
) -> list[ObjectMask]:
    """What ``example`` marks on ``other`` segmented on ``target``, best first (see
    :meth:`napari_seem.engine.Engine.refer`); the example is encoded on a
    ``window_size``-square window of its own image centred on its positive prompts."""
    if not isinstance(example, ObjectPrompt) or not example.has_positive:
        raise InvalidRequestError(
            "the referring example needs a positive visual prompt (a click, box, "
            "scribble or mask) on the example object"
        )
    _check_fits(example, other.frame.image_shape)
    label = example.label or (example.text.text if example.text is not None else None)
    local = other.frame.prompt_to_level(example)
    window = _example_window(local.visual, other.frame.level_shape, window_size)
    visual = tuple(object_in_window(local.visual, window))
    if not any(p.has_positive for p in visual):
        raise InvalidRequestError(
            "the example's positive prompts do not fit one tile-sized window: mark a "
            "smaller example object"
        )
    rgb = other.source.read_level_rgb(*window, level=other.frame.level, plane=other.plane)
    referring = ReferringExample.from_image(rgb, visual, label=label)
    tiles = _tiles_within(target, box, max_tiles, what="refer")
    with lock:  # encoded once, referred on every tile
        example_encoded = predictor.encode(rgb)
    pieces: list[TilePiece] = []
    for tile in tiles:
        with lock:
            predictor.set_encoded(encoded(predictor, target, tile))
            found = predictor.refer(referring, example_encoded=example_encoded)
        pieces += _pieces(tile, found)
    wire_example = ReferringExample(
        other.frame.image_shape,
        example.visual,
        image_ref=other.session_id,
        label=label,
        plane=other.plane,
    )
    return [
        _answer(target, m.mask, m.offset, m.score, label, wire_example, "referring")
        for m in merge_pieces(target.grid.image_shape, pieces)
    ]


class _TileDecoder:
    """``decode(tile)`` for :func:`grow_until_closed`: one object's mask on one tile."""

    def __init__(
        self,
        predictor: SeemPredictor,
        session: Session,
        prompt: ObjectPrompt,
        previous: ObjectMask | None,
        vocabulary: Sequence[str] | None = None,
    ) -> None:
        self.predictor = predictor
        self.vocabulary = vocabulary
        self.session = session
        self.prompt = prompt
        self.previous = previous
        self.boxes = [p for p in prompt.visual if isinstance(p, Box)]
        self.cores: list[tuple[Tile, npt.NDArray[np.bool_]]] = []
        self.first: ObjectMask | None = None

    def __call__(self, tile: Tile) -> npt.NDArray[np.bool_]:
        """The object's ``(oh, ow)`` bool mask over the tile's outer box."""
        window = tile.outer
        visual = object_in_window(self.prompt.visual, window)
        if not any(p.has_positive for p in visual):
            grown = self._grown_in(window)
            if not grown.any():
                return np.zeros(tile.outer_shape, bool)
            visual = [MaskPrompt.from_full(grown), *visual]
        local = ObjectPrompt(tuple(visual), self.prompt.text, label=self.prompt.label)
        self.predictor.set_encoded(encoded(self.predictor, self.session, tile))
        memory = None
        if self.previous is not None:
            memory = object_mask_in_window(self.previous, window)
        previous = None if memory is None else [memory]
        answer = self.predictor.predict(local, previous=previous, vocabulary=self.vocabulary)[0]
        if self.first is None:
            self.first = answer
        mask = answer.full(tile.outer_shape) & self._box_region(window)
        rows, cols = tile.core_in_outer
        self.cores.append((tile, mask[rows, cols]))
        return mask

    def _grown_in(self, window: Window) -> npt.NDArray[np.bool_]:
        """The union of the cores decoded so far, inside ``window``."""
        r0, c0, r1, c1 = window
        out = np.zeros((r1 - r0, c1 - c0), bool)
        for tile, core in self.cores:
            top, left = max(tile.core[0], r0), max(tile.core[1], c0)
            bottom, right = min(tile.core[2], r1), min(tile.core[3], c1)
            if bottom > top and right > left:
                out[top - r0 : bottom - r0, left - c0 : right - c0] |= core[
                    top - tile.core[0] : bottom - tile.core[0],
                    left - tile.core[1] : right - tile.core[1],
                ]
        return out

    def _box_region(self, window: Window) -> npt.NDArray[np.bool_]:
        """Where the object's boxes allow the mask, in ``window`` (everywhere without boxes)."""
        r0, c0, r1, c1 = window
        if not self.boxes:
            return np.ones((r1 - r0, c1 - c0), bool)
        allowed = np.zeros((r1 - r0, c1 - c0), bool)
        for box in self.boxes:  # the same pixel rule as the predictor's box bound
            top = max(math.floor(box.row_min) - r0, 0)
            left = max(math.floor(box.col_min) - c0, 0)
            bottom = min(math.ceil(box.row_max) + 1 - r0, r1 - r0)
            right = min(math.ceil(box.col_max) + 1 - c0, c1 - c0)
            if bottom > top and right > left:
                allowed[top:bottom, left:right] = True
        return allowed


def _start_tiles(grid: TileGrid, visual: tuple[VisualPrompt, ...]) -> list[Tile]:
    """Tiles whose core holds a positive prompt (each positive prompt's own bounds)."""
    tiles: dict[tuple[int, int], Tile] = {}
    for prompt in visual:
        if not prompt.has_positive:
            continue
        if isinstance(prompt, Points):  # each positive click on its own
            boxes = [(r, c, r, c) for r, c in prompt.coords[prompt.positive]]
        else:
            boxes = [prompt.bounds()]
        for r0, c0, r1, c1 in boxes:
            # pixel centres at integers: the pixel holding coordinate x is floor(x + 0.5)
            box = (
                math.floor(r0 + 0.5),
                math.floor(c0 + 0.5),
                math.floor(r1 + 0.5) + 1,
                math.floor(c1 + 0.5) + 1,
            )
            for tile in grid.tiles_touching(box):
                tiles.setdefault(tile.index, tile)
    return sorted(tiles.values(), key=lambda t: t.index)


def _tiles_within(session: Session, box: Any, max_tiles: int, *, what: str) -> list[Tile]:
    """The tiles whose core meets the level-0 ``box``; refuses more than ``max_tiles``."""
    level0, _, tiles = region_tiles(session, box)
    if len(tiles) > max_tiles:
        raise InvalidRequestError(
            f"{what} over the box {level0} covers {len(tiles)} tiles; at most "
            f"{max_tiles} per request: pass a smaller box= (e.g. the visible "
            "region), open the session at a coarser level=, or segment the whole "
            "image with a batch job (napari_seem.batch)"
        )
    return tiles


def _pieces(tile: Tile, found: Any) -> list[TilePiece]:
    """A tile's non-empty answers as pieces over its outer box, for the seam merge."""
    return [
        TilePiece(tile, obj.full(tile.outer_shape), obj.score) for obj in found if not obj.is_empty
    ]


def _answer(
    session: Session,
    mask: npt.NDArray[np.bool_],
    offset: tuple[int, int],
    score: float,
    name: str | None,
    prompt: TextPrompt | ReferringExample,
    source: str,
) -> ObjectMask:
    """A merged instance (working-level crop at ``offset``) as a level-0 answer, nodata
    pixels of the session's image cleared."""
    mask0, offset0 = session.frame.crop_to_level0(mask, offset)
    answer = ObjectMask(
        mask0,
        offset0,
        score=score,
        class_name=name,
        class_score=score if name is not None else None,
        prompt=prompt,
        source=source,
    )
    (valid,) = drop_nodata([answer], session.source, session.plane)  # nodata is never an object
    return valid


def _check_fits(prompt: ObjectPrompt, shape: tuple[int, int]) -> None:
    try:
        prompt.check_fits(shape)
    except PromptError as exc:
        raise PromptOutsideImageError(
            f"{exc} (the image is {shape[0]} x {shape[1]} level-0 pixels)"
        ) from None


def _example_window(visual: tuple[VisualPrompt, ...], shape: tuple[int, int], size: int) -> Window:
    """A ``size``-square window (clipped to ``shape``) centred on the positive prompts."""
    bounds = [p.bounds() for p in visual if p.has_positive]
    r0 = min(b[0] for b in bounds)
    c0 = min(b[1] for b in bounds)
    r1 = max(b[2] for b in bounds)
    c1 = max(b[3] for b in bounds)
    h, w = shape
    th, tw = min(size, h), min(size, w)
    top = min(max(math.floor((r0 + r1) / 2 + 0.5) - th // 2, 0), h - th)
    left = min(max(math.floor((c0 + c1) / 2 + 0.5) - tw // 2, 0), w - tw)
    return top, left, top + th, left + tw
