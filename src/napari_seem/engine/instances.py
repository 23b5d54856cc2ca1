"""Instances found tile by tile, merged across seams into whole objects (pure numpy).

Grounding ("every nucleus") and referring ("things like this one") answer per tile: each
tile gives a few instance masks on its outer box. An object crossing a seam is then found
twice, once by each tile. Two pieces of neighbouring tiles are the same object when their
masks agree on the region both outer boxes cover (IoU at least ``min_iou`` there, pairs
matched one to one, best IoU first, as :func:`napari_seem.core.tiling.match_labels_across_seam`
does for label images; instances of one tile may overlap, so they are compared as masks).
Matches are chained (union-find), and each object is stitched from the cores of its pieces
(:func:`napari_seem.core.tiling.stitch`), so every pixel comes from exactly one tile.

Frame: the tiles' own pixel grid (level 0, or the session's level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from napari_seem.core.tiling import Tile, outer_overlap, stitch

__all__ = ["MergedInstance", "TilePiece", "merge_pieces"]


@dataclass(frozen=True)
class TilePiece:
    """One instance found on one tile.

    Attributes:
        tile: the tile it was found on.
        mask: ``(oh, ow)`` bool on ``tile.outer``.
        score: the model's score for it.
    """

    tile: Tile
    mask: npt.NDArray[np.bool_]
    score: float


@dataclass(frozen=True)
class MergedInstance:
    """A whole object: ``mask`` ``(h, w)`` bool crop at ``offset``; ``score`` the best
    piece's; ``pieces`` how many tile pieces were merged."""

    mask: npt.NDArray[np.bool_]
    offset: tuple[int, int]
    score: float
    pieces: int


def merge_pieces(
    image_shape: tuple[int, int], pieces: list[TilePiece], *, min_iou: float = 0.5
) -> list[MergedInstance]:
    """Merge the pieces of objects crossing seams; objects with an empty core are dropped.

    Args:
        image_shape: ``(H, W)`` of the tiles' grid.
        pieces: every instance of every decoded tile.
        min_iou: least IoU on the shared halo region for two pieces to be one object.

    Returns:
        The objects, best score first.
    """
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_tile: dict[tuple[int, int], list[int]] = {}
    for i, piece in enumerate(pieces):
        by_tile.setdefault(piece.tile.index, []).append(i)
    for (ti, tj), mine in by_tile.items():
        for di, dj in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
            theirs = by_tile.get((ti + di, tj + dj))
            if not theirs:
                continue
            for a, b in _match(pieces, mine, theirs, min_iou):
                parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(find(i), []).append(i)
    merged = []
    for members in groups.values():
        mask, offset = stitch(image_shape, [(pieces[i].tile, pieces[i].mask) for i in members])
        if mask.any():
            score = max(pieces[i].score for i in members)
            merged.append(MergedInstance(mask, offset, score, len(members)))
    merged.sort(key=lambda m: -m.score)
    return merged


def _match(
    pieces: list[TilePiece], mine: list[int], theirs: list[int], min_iou: float
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` of pieces of two neighbouring tiles, best IoU first."""
    overlap = outer_overlap(pieces[mine[0]].tile, pieces[theirs[0]].tile)
    if overlap is None:
        return []
    sa, sb = overlap
    a = np.stack([pieces[i].mask[sa].ravel() for i in mine]).astype(np.float32)
    b = np.stack([pieces[j].mask[sb].ravel() for j in theirs]).astype(np.float32)
    inter = a @ b.T  # (len(mine), len(theirs))
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    pairs = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        k, m = divmod(int(flat), len(theirs))
        if iou[k, m] < min_iou:
            break
        if k not in used_a and m not in used_b:
            used_a.add(k)
            used_b.add(m)
            pairs.append((mine[k], theirs[m]))
    return pairs
