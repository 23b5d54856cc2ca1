"""Tiles with a halo, core crops, stitching and seam matching (pure numpy).

Frame: level-0 image pixels, ``(row, col)``, origin top-left. A *box* is
``(row_min, col_min, row_max, col_max)`` with the max exclusive, like ``ObjectMask.bbox``.

A ``TileGrid`` cuts an ``(H, W)`` image into *cores* that partition it exactly (no gaps, no
overlaps); each tile's *outer* box is its core grown by ``halo`` pixels on every side and
clipped to the image. The model sees the outer box, so objects near a core border have
context; only the core of each answer is kept, so every pixel comes from exactly one tile
(``crop_core``, ``stitch``). ``TileGrid.for_model`` picks the core size so that an interior
outer tile is exactly the model input and is encoded without a resize.

Interactive prompts on large images (``grow_until_closed``): decode the tiles the prompt
touches; wherever the mask reaches a core border that is not the image border
(``touches_core_edge``), decode that neighbour too; repeat until the object is closed, then
``stitch`` it into a bbox crop plus offset, never a full-image array.

Whole-image runs label every tile on its outer box; ``match_labels_across_seam`` pairs the
labels of two neighbouring tiles by IoU on the region both outer boxes cover (the halos),
so an object crossing a seam gets one id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from napari_seem.core.arrays import as_int_pair

__all__ = [
    "SIDES",
    "Box",
    "GrowResult",
    "Side",
    "Tile",
    "TileGrid",
    "crop_core",
    "grow_until_closed",
    "match_labels_across_seam",
    "outer_overlap",
    "stitch",
    "touches_core_edge",
]

BoolMask = npt.NDArray[np.bool_]
Box = tuple[int, int, int, int]
Slices = tuple[slice, slice]
# Edges, then corners: an 8-connected object can leave a core through its corner pixel
# alone, without touching the edge neighbours' cores, so corners are sides too.
Side = Literal[
    "top", "bottom", "left", "right", "top_left", "top_right", "bottom_left", "bottom_right"
]
SIDES: tuple[Side, ...] = (
    "top",
    "bottom",
    "left",
    "right",
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
)
# (d_tile_row, d_tile_col) of the neighbour on each side.
_STEP: dict[Side, tuple[int, int]] = {
    "top": (-1, 0),
    "bottom": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
    "top_left": (-1, -1),
    "top_right": (-1, 1),
    "bottom_left": (1, -1),
    "bottom_right": (1, 1),
}


def _box_slices(box: Box) -> Slices:
    return slice(box[0], box[2]), slice(box[1], box[3])


def _intersect(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[2] and box[1] < box[3] else None


@dataclass(frozen=True)
class Tile:
    """One tile of a ``TileGrid``.

    Attributes:
        index: ``(ti, tj)``, the tile's row and column in the grid.
        core: level-0 box this tile is responsible for; the cores partition the image.
        outer: level-0 box the model sees: ``core`` grown by the halo, clipped to the image.
        image_shape: level-0 ``(H, W)`` of the image the grid covers, so a tile knows which
            of its sides are image borders.
    """

    index: tuple[int, int]
    core: Box
    outer: Box
    image_shape: tuple[int, int]

    @property
    def core_slices(self) -> Slices:
        """Slices of the core into the full ``(H, W)`` image."""
        return _box_slices(self.core)

    @property
    def outer_slices(self) -> Slices:
        """Slices of the outer box into the full ``(H, W)`` image."""
        return _box_slices(self.outer)

    @property
    def core_in_outer(self) -> Slices:
        """Slices of the core into an array covering the outer box."""
        r0, c0 = self.outer[:2]
        return _box_slices(
            (self.core[0] - r0, self.core[1] - c0, self.core[2] - r0, self.core[3] - c0)
        )

    @property
    def outer_shape(self) -> tuple[int, int]:
        return self.outer[2] - self.outer[0], self.outer[3] - self.outer[1]

    @property
    def core_shape(self) -> tuple[int, int]:
        return self.core[2] - self.core[0], self.core[3] - self.core[1]


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of tiles with a halo over an ``(H, W)`` image.

    Attributes:
        image_shape: level-0 ``(H, W)``.
        tile_size: core size ``(th, tw)`` (an int means square); the last row and column of
            tiles may be smaller.
        halo: context pixels added on each side of a core to make its outer box.
    """

    image_shape: tuple[int, int]
    tile_size: tuple[int, int] | int
    halo: int = 0

    def __post_init__(self) -> None:
        shape = as_int_pair(self.image_shape, what="image_shape")
        if min(shape) <= 0:
            raise ValueError(f"image_shape must be two positive integers; got {shape}")
        size = self.tile_size
        pair = as_int_pair((size, size) if isinstance(size, int) else size, what="tile_size")
        if min(pair) <= 0:
            raise ValueError(f"tile_size must be positive; got {size!r}")
        if isinstance(self.halo, bool) or not isinstance(self.halo, int | np.integer):
            raise ValueError(f"halo must be an integer; got {self.halo!r}")
        if self.halo < 0:
            raise ValueError(f"halo must be >= 0; got {self.halo}")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "tile_size", pair)
        object.__setattr__(self, "halo", int(self.halo))

    @classmethod
    def for_model(
        cls, image_shape: tuple[int, int], *, model_input: int = 512, halo: int = 64
    ) -> TileGrid:
        """A grid whose interior outer tiles are exactly ``model_input`` pixels square.

        The core is ``model_input - 2 * halo``. An axis no longer than ``model_input`` gets a
        single tile covering it (its outer box is the whole axis, so it fits the model
        unresized); in particular an image no larger than the model input is one tile.
        """
        shape = as_int_pair(image_shape, what="image_shape")
        core = model_input - 2 * halo
        if core <= 0:
            raise ValueError(
                f"model_input ({model_input}) must exceed 2 * halo ({2 * halo}) to leave a core"
            )
        size = tuple(n if 0 < n <= model_input else core for n in shape)
        return cls(shape, (size[0], size[1]), halo)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        (h, w), (th, tw) = self.image_shape, self._size
        return -(-h // th), -(-w // tw)

    @property
    def _size(self) -> tuple[int, int]:
        size = self.tile_size
        assert not isinstance(size, int)  # normalised in __post_init__
        return size

    def __len__(self) -> int:
        rows, cols = self.grid_shape
        return rows * cols

    def __iter__(self) -> Iterator[Tile]:
        """Tiles in row-major order."""
        rows, cols = self.grid_shape
        for ti in range(rows):
            for tj in range(cols):
                yield self.tile(ti, tj)

    def tile(self, ti: int, tj: int) -> Tile:
        """The tile at grid position ``(ti, tj)``; ``IndexError`` outside the grid."""
        rows, cols = self.grid_shape
        if not (0 <= ti < rows and 0 <= tj < cols):
            raise IndexError(f"tile ({ti}, {tj}) is outside a {rows} x {cols} grid")
        (h, w), (th, tw), halo = self.image_shape, self._size, self.halo
        core = (ti * th, tj * tw, min((ti + 1) * th, h), min((tj + 1) * tw, w))
        outer = (
            max(core[0] - halo, 0),
            max(core[1] - halo, 0),
            min(core[2] + halo, h),
            min(core[3] + halo, w),
        )
        return Tile((ti, tj), core, outer, self.image_shape)

    def tile_at(self, row: int, col: int) -> Tile:
        """The tile whose core holds level-0 pixel ``(row, col)``; ``IndexError`` outside."""
        (h, w), (th, tw) = self.image_shape, self._size
        if not (0 <= row < h and 0 <= col < w):
            raise IndexError(f"pixel ({row}, {col}) is outside an image of shape {(h, w)}")
        return self.tile(int(row) // th, int(col) // tw)

    def tiles_touching(self, box: Box) -> list[Tile]:
        """Tiles whose core intersects level-0 ``box`` (clipped to the image), row-major."""
        r0, c0, r1, c1 = (int(v) for v in box)
        clipped = _intersect((r0, c0, r1, c1), (0, 0, *self.image_shape))
        if clipped is None:
            return []
        (th, tw) = self._size
        r0, c0, r1, c1 = clipped
        return [
            self.tile(ti, tj)
            for ti in range(r0 // th, (r1 - 1) // th + 1)
            for tj in range(c0 // tw, (c1 - 1) // tw + 1)
        ]

    def neighbours(self, tile: Tile, sides: Iterable[Side] = SIDES) -> list[Tile]:
        """The tiles next to ``tile`` on ``sides`` (edges and corners) that exist, in
        ``SIDES`` order, without duplicates."""
        wanted = set(sides)
        unknown = wanted - set(SIDES)
        if unknown:
            raise ValueError(f"unknown sides {sorted(unknown)}; expected some of {SIDES}")
        rows, cols = self.grid_shape
        out = []
        for side in SIDES:
            if side in wanted:
                ti, tj = tile.index[0] + _STEP[side][0], tile.index[1] + _STEP[side][1]
                if 0 <= ti < rows and 0 <= tj < cols:
                    out.append(self.tile(ti, tj))
        return out


def crop_core(tile: Tile, array_outer: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The core of an array covering ``tile.outer``: ``(..., oh, ow)`` -> ``(..., ch, cw)``
    (a view; leading axes such as channels are kept)."""
    if array_outer.shape[-2:] != tile.outer_shape:
        raise ValueError(
            f"array of shape {array_outer.shape} does not cover the outer box of tile "
            f"{tile.index} (shape {tile.outer_shape})"
        )
    rows, cols = tile.core_in_outer
    return array_outer[..., rows, cols]


def _outer_mask(tile: Tile, mask: Any) -> BoolMask:
    array = np.asarray(mask)
    if array.shape != tile.outer_shape:
        raise ValueError(
            f"mask of shape {array.shape} does not cover the outer box of tile {tile.index} "
            f"(shape {tile.outer_shape})"
        )
    return array.astype(bool, copy=False)


def stitch(
    image_shape: tuple[int, int], pieces: Iterable[tuple[Tile, npt.ArrayLike]]
) -> tuple[BoolMask, tuple[int, int]]:
    """The union of per-tile masks, each contributing its core only.

    Args:
        image_shape: level-0 ``(H, W)``; every tile must lie inside it.
        pieces: ``(tile, mask)`` pairs, ``mask`` an ``(oh, ow)`` bool (or 0/1) array on
            ``tile.outer``.

    Returns:
        ``(crop, offset)``: the union cropped to its bounding box and the level-0
        ``(row, col)`` of ``crop[0, 0]``; an empty union is a ``(0, 0)`` crop at ``(0, 0)``
        (the ``ObjectMask.from_full`` convention).
    """
    h, w = as_int_pair(image_shape, what="image_shape")
    cores: list[tuple[tuple[int, int], BoolMask]] = []
    for tile, mask in pieces:
        if _intersect(tile.outer, (0, 0, h, w)) != tile.outer:
            raise ValueError(f"tile {tile.index} {tile.outer} lies outside image {(h, w)}")
        core = crop_core(tile, _outer_mask(tile, mask))
        rows, cols = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
        if rows.size:
            top, left = tile.core[0] + int(rows[0]), tile.core[1] + int(cols[0])
            tight = core[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            cores.append(((top, left), tight))
    if not cores:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    r0 = min(top for (top, _), _ in cores)
    c0 = min(left for (_, left), _ in cores)
    r1 = max(top + m.shape[0] for (top, _), m in cores)
    c1 = max(left + m.shape[1] for (_, left), m in cores)
    out = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for (top, left), tight in cores:
        out[top - r0 : top - r0 + tight.shape[0], left - c0 : left - c0 + tight.shape[1]] |= tight
    return out, (r0, c0)


def touches_core_edge(tile: Tile, mask_outer: npt.ArrayLike) -> set[Side]:
    """The sides where ``mask_outer`` reaches the border of ``tile``'s core, leaving out
    sides on the image border (there is no neighbour to decode there).

    Args:
        tile: the tile the mask was decoded on.
        mask_outer: ``(oh, ow)`` bool (or 0/1) mask on ``tile.outer``.

    Returns:
        Edges (``"top"``, ...) where any core-border pixel is set, and corners
        (``"top_left"``, ...) where the core's corner pixel is set: an 8-connected object
        can cross into the diagonal tile through that pixel alone.
    """
    core = crop_core(tile, _outer_mask(tile, mask_outer))
    h, w = tile.image_shape
    r0, c0, r1, c1 = tile.core
    open_side = {"top": r0 > 0, "bottom": r1 < h, "left": c0 > 0, "right": c1 < w}
    hits: dict[Side, bool] = {
        "top": bool(core[0].any()),
        "bottom": bool(core[-1].any()),
        "left": bool(core[:, 0].any()),
        "right": bool(core[:, -1].any()),
        "top_left": bool(core[0, 0]),
        "top_right": bool(core[0, -1]),
        "bottom_left": bool(core[-1, 0]),
        "bottom_right": bool(core[-1, -1]),
    }
    return {
        side
        for side, hit in hits.items()
        if hit and all(open_side[part] for part in side.split("_"))
    }


@dataclass(frozen=True)
class GrowResult:
    """What ``grow_until_closed`` found.

    Attributes:
        mask: ``(h, w)`` bool crop of the stitched object (``(0, 0)`` when empty).
        offset: level-0 ``(row, col)`` of ``mask[0, 0]``.
        tiles: the tiles decoded, in the order they were decoded.
        truncated: ``True`` when ``max_tiles`` stopped the growth while the mask still
            reached undecoded tiles, so the object may be cut.
    """

    mask: BoolMask
    offset: tuple[int, int]
    tiles: tuple[Tile, ...]
    truncated: bool


def grow_until_closed(
    grid: TileGrid,
    start_tiles: Iterable[Tile],
    decode: Callable[[Tile], npt.ArrayLike],
    *,
    max_tiles: int = 64,
) -> GrowResult:
    """Decode tiles outwards from ``start_tiles`` until the mask no longer reaches an
    undecoded tile, then stitch.

    Args:
        grid: the tiling of the image.
        start_tiles: the tiles the prompt touches (e.g. ``grid.tiles_touching(bbox)``).
        decode: ``decode(tile)`` -> ``(oh, ow)`` bool mask on ``tile.outer``; called once per
            tile, breadth-first.
        max_tiles: most tiles to decode; beyond it the result is ``truncated``.
    """
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1; got {max_tiles}")
    queue: deque[Tile] = deque()
    seen: set[tuple[int, int]] = set()
    for tile in start_tiles:
        if tile.index not in seen:
            seen.add(tile.index)
            queue.append(tile)
    pieces: list[tuple[Tile, BoolMask]] = []
    while queue and len(pieces) < max_tiles:
        tile = queue.popleft()
        mask = _outer_mask(tile, decode(tile))
        pieces.append((tile, mask))
        for neighbour in grid.neighbours(tile, touches_core_edge(tile, mask)):
            if neighbour.index not in seen:
                seen.add(neighbour.index)
                queue.append(neighbour)
    crop, offset = stitch(grid.image_shape, pieces)
    return GrowResult(crop, offset, tuple(t for t, _ in pieces), truncated=bool(queue))


def outer_overlap(tile_a: Tile, tile_b: Tile) -> tuple[Slices, Slices] | None:
    """Slices into arrays on ``tile_a.outer`` and ``tile_b.outer`` selecting the level-0
    region both cover (the halos around their shared seam), or ``None`` if disjoint."""
    box = _intersect(tile_a.outer, tile_b.outer)
    if box is None:
        return None

    def local(tile: Tile) -> Slices:
        r0, c0 = tile.outer[:2]
        return _box_slices((box[0] - r0, box[1] - c0, box[2] - r0, box[3] - c0))

    return local(tile_a), local(tile_b)


def match_labels_across_seam(
    labels_a: npt.NDArray[np.integer[Any]],
    labels_b: npt.NDArray[np.integer[Any]],
    overlap_slice_a: Slices,
    overlap_slice_b: Slices,
    min_iou: float = 0.5,
) -> list[tuple[int, int]]:
    """Pair the labels of two tiles that are the same object, by IoU on their overlap.

    Args:
        labels_a, labels_b: integer label images of two tiles (``0`` is background), e.g.
            on their outer boxes.
        overlap_slice_a, overlap_slice_b: slices selecting the same level-0 region in each
            (``outer_overlap``).
        min_iou: least IoU, measured inside the overlap only, for a pair to match.

    Returns:
        ``(label_a, label_b)`` pairs, one-to-one (greedy by IoU, highest first), sorted by
        ``label_a``.
    """
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1]; got {min_iou}")
    a = np.asarray(labels_a)[overlap_slice_a]
    b = np.asarray(labels_b)[overlap_slice_b]
    if a.shape != b.shape:
        raise ValueError(f"overlap regions differ in shape: {a.shape} vs {b.shape}")
    a, b = a.ravel(), b.ravel()
    ids_a, area_a = np.unique(a[a != 0], return_counts=True)
    ids_b, area_b = np.unique(b[b != 0], return_counts=True)
    both = (a != 0) & (b != 0)
    if not both.any():
        return []
    pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    union = (
        area_a[np.searchsorted(ids_a, pairs[0])] + area_b[np.searchsorted(ids_b, pairs[1])] - inter
    )
    iou = inter / union
    order = np.lexsort((pairs[1], pairs[0], -iou))
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches = []
    for k in order:
        if iou[k] < min_iou:
            break
        la, lb = int(pairs[0, k]), int(pairs[1, k])
        if la not in used_a and lb not in used_b:
            used_a.add(la)
            used_b.add(lb)
            matches.append((la, lb))
    return sorted(matches)
