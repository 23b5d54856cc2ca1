"""Pure converters between napari layer data and napari-seem prompts / results (no Qt).

Frames:

- *layer data*: the coordinates of a layer's own ``data`` array (``(..., row, col)``).
- *world*: napari's shared frame, ``world = M @ [data, 1]`` with ``M`` the layer's
  homogeneous ``(D + 1, D + 1)`` data-to-world matrix (scale, translate, rotate, shear
  and affine composed). Layers of different ``ndim`` share the *trailing* world axes.
- *image pixels*: the data frame of the target image layer. For a multiscale layer
  napari's data frame is level 0, so image pixels are **level-0 ``(row, col)`` pixels**
  (pixel centres at integers, as :mod:`napari_seem.core.prompts` wants), with any leading
  stack axes (``z``, ``t``) in front.

Every function here takes arrays and matrices (``frame_of(layer)`` builds a matrix from
a layer through napari's public ``data_to_world``), so each is testable without a viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.app.labels import paint_object  # re-exported: the one painter
from napari_seem.core.prompts import Box, MaskPrompt, Points, Polygon, PromptError, Scribble
from napari_seem.core.prompts import VisualPrompt as _Visual

__all__ = [
    "clip_to_image",
    "frame_of",
    "labels_to_mask_prompt",
    "paint_object",
    "points_to_prompt",
    "shapes_to_prompts",
    "to_image_pixels",
    "translate_frame",
    "world_box_to_image",
]

FloatArray = npt.NDArray[np.float64]
# Vertices of the polygon that stands for an ellipse: enough for a smooth outline.
ELLIPSE_VERTICES = 64


def frame_of(layer: Any) -> FloatArray:
    """The ``(D + 1, D + 1)`` homogeneous data-to-world matrix of a napari layer.

    Probed through the public ``layer.data_to_world`` at the origin and the unit vectors,
    which is exact because napari's layer transform is affine.
    """
    ndim = int(layer.ndim)
    origin = np.asarray(layer.data_to_world(np.zeros(ndim)), dtype=np.float64)
    matrix = np.eye(ndim + 1)
    matrix[:ndim, ndim] = origin
    for axis in range(ndim):
        unit = np.zeros(ndim)
        unit[axis] = 1.0
        matrix[:ndim, axis] = np.asarray(layer.data_to_world(unit), dtype=np.float64) - origin
    return matrix


def translate_frame(frame: FloatArray, offset: Sequence[float]) -> FloatArray:
    """``frame`` composed with a shift of the data by ``offset`` (data frame units).

    A crop placed at ``offset`` in an image's data frame has the frame
    ``translate_frame(image_frame, offset)``: crop pixel ``p`` lands on image pixel
    ``p + offset``. Used to show a small preview crop exactly over a huge image.
    """
    shift = np.eye(frame.shape[0])
    shift[:-1, -1] = np.asarray(offset, dtype=np.float64)
    return np.asarray(frame @ shift, dtype=np.float64)


def to_image_pixels(
    coords: npt.ArrayLike,
    source_frame: FloatArray,
    image_frame: FloatArray,
    *,
    world_point: Sequence[float] = (),
) -> FloatArray:
    """Map ``(N, Ds)`` data coordinates of a source layer into an image layer's data frame.

    Args:
        coords: ``(N, Ds)`` points in the source layer's data frame.
        source_frame: ``(Ds + 1, Ds + 1)`` data-to-world matrix of the source layer.
        image_frame: ``(Di + 1, Di + 1)`` data-to-world matrix of the image layer.
        world_point: the viewer's current world position (``viewer.dims.point``); it fills
            the world axes the source layer does not have (e.g. ``z`` for 2-D points drawn
            over a 3-D stack). Trailing axes are aligned, as napari does.

    Returns:
        ``(N, Di)`` float64 image-pixel coordinates (level-0 ``(..., row, col)``).
    """
    pts = np.asarray(coords, dtype=np.float64)
    ds, di = source_frame.shape[0] - 1, image_frame.shape[0] - 1
    if pts.ndim != 2 or pts.shape[1] != ds:
        raise ValueError(f"coords must be (N, {ds}) in the source layer's frame; got {pts.shape}")
    world_src = (source_frame @ np.c_[pts, np.ones(len(pts))].T).T[:, :ds]  # (N, Ds)
    ndim = max(ds, di)
    base = np.zeros(ndim)
    given = np.asarray(world_point, dtype=np.float64)[-ndim:] if len(world_point) else None
    if given is not None:
        base[ndim - len(given) :] = given
    world = np.tile(base, (len(pts), 1))
    world[:, ndim - ds :] = world_src
    world_img = world[:, ndim - di :]  # (N, Di)
    inverse = np.linalg.inv(image_frame)
    out = (inverse @ np.c_[world_img, np.ones(len(pts))].T).T[:, :di]
    return np.asarray(out, dtype=np.float64)


def _on_plane(pixels: FloatArray, plane: Sequence[int]) -> npt.NDArray[np.bool_]:
    """Which image-pixel rows lie on ``plane`` (their leading coordinates round to it)."""
    if not len(plane):
        return np.ones(len(pixels), dtype=bool)
    lead = np.floor(pixels[:, : len(plane)] + 0.5).astype(np.int64)
    return np.all(lead == np.asarray(plane, dtype=np.int64), axis=1)


def clip_to_image(rc: FloatArray, image_shape: tuple[int, int]) -> FloatArray:
    """``(N, 2)`` ``(row, col)`` clipped to the image's extent ``[-0.5, H - 0.5]``."""
    h, w = image_shape
    out = np.array(rc, dtype=np.float64)
    out[:, 0] = np.clip(out[:, 0], -0.5, h - 0.5)
    out[:, 1] = np.clip(out[:, 1], -0.5, w - 0.5)
    return out


def _inside(rc: FloatArray, image_shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    h, w = image_shape
    return (rc[:, 0] >= -0.5) & (rc[:, 0] <= h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] <= w - 0.5)


def points_to_prompt(
    pixels: FloatArray,
    positive: npt.ArrayLike,
    image_shape: tuple[int, int],
    *,
    plane: Sequence[int] = (),
) -> Points | None:
    """Clicks on one plane as a :class:`Points` prompt (``None`` when there are none).

    Args:
        pixels: ``(N, Di)`` image-pixel coordinates (from :func:`to_image_pixels`).
        positive: ``(N,)`` bool polarity of each click.
        image_shape: level-0 ``(H, W)``; clicks outside it are dropped.
        plane: leading stack indices of the plane (``()`` for a 2-D image); clicks on
            other planes are dropped.
    """
    flags = np.asarray(positive, dtype=bool).reshape(-1)
    if len(pixels) != len(flags):
        raise ValueError(f"{len(pixels)} points but {len(flags)} polarity flags")
    keep = _on_plane(pixels, plane)
    rc = pixels[keep][:, -2:]
    flags = flags[keep]
    inside = _inside(rc, image_shape)
    rc, flags = rc[inside], flags[inside]
    if len(rc) == 0:
        return None
    return Points(rc, flags)


def _ellipse_polygon(corners: FloatArray) -> FloatArray:
    """A polygon for the ellipse inscribed in a (possibly rotated) 4-corner box.

    napari stores an ellipse as the 4 corners of its bounding box, in order.
    """
    center = corners.mean(axis=0)
    half_a = (corners[1] - corners[0]) / 2.0  # one semi-axis vector
    half_b = (corners[3] - corners[0]) / 2.0  # the other
    angles = np.linspace(0.0, 2.0 * np.pi, ELLIPSE_VERTICES, endpoint=False)
    return center + np.cos(angles)[:, None] * half_a + np.sin(angles)[:, None] * half_b


def shapes_to_prompts(
    shapes: Sequence[FloatArray],
    shape_types: Sequence[str],
    image_shape: tuple[int, int],
    *,
    plane: Sequence[int] = (),
    positive: Sequence[bool] | None = None,
    scribble_width: float = 3.0,
) -> list[_Visual]:
    """napari shapes (already in image pixels) as visual prompts.

    Rectangles become :class:`Box` (the bounds of a rotated rectangle), paths and lines
    :class:`Scribble`, polygons :class:`Polygon`, ellipses a :class:`Polygon` through
    :data:`ELLIPSE_VERTICES` points. Shapes not on ``plane`` are skipped (a shape is on
    the plane when its first vertex is); vertices are clipped to the image, and a shape
    wholly outside it is skipped.

    Args:
        shapes: one ``(V, Di)`` array of image-pixel vertices per shape.
        shape_types: napari's ``shape_type`` of each shape.
        image_shape: level-0 ``(H, W)``.
        plane: leading stack indices of the plane.
        positive: polarity per shape (default all positive); boxes are always positive.
        scribble_width: brush width of scribbles in level-0 pixels.
    """
    out: list[_Visual] = []
    flags = [True] * len(shapes) if positive is None else list(positive)
    for verts, kind, flag in zip(shapes, shape_types, flags, strict=True):
        verts = np.asarray(verts, dtype=np.float64)
        if not _on_plane(verts[:1], plane).all():
            continue
        rc = verts[:, -2:]
        if not _inside(rc, image_shape).any() and kind != "rectangle":
            continue
        if kind == "rectangle":
            lo, hi = rc.min(axis=0), rc.max(axis=0)
            h, w = image_shape
            if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > h - 0.5 or lo[1] > w - 0.5:
                continue
            lo, hi = clip_to_image(np.stack([lo, hi]), image_shape)
            if hi[0] > lo[0] and hi[1] > lo[1]:
                out.append(Box(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))
        elif kind in ("path", "line"):
            out.append(
                Scribble(clip_to_image(rc, image_shape), width=scribble_width, positive=flag)
            )
        elif kind == "polygon":
            out.append(Polygon(clip_to_image(rc, image_shape), positive=flag))
        elif kind == "ellipse":
            out.append(Polygon(clip_to_image(_ellipse_polygon(rc), image_shape), positive=flag))
        else:
            raise PromptError(
                f"shape type {kind!r} is not a SEEM prompt: draw a rectangle (box), path or "
                "line (scribble), polygon or ellipse"
            )
    return out


def labels_to_mask_prompt(
    labels: npt.ArrayLike, *, label: int | None = None, positive: bool = True
) -> MaskPrompt | None:
    """A ``(H, W)`` label plane (level-0) as a mask prompt, or ``None`` when it is empty.

    Args:
        labels: ``(H, W)`` integer labels of one plane, in the image's level-0 pixels.
        label: only this id is the mask; ``None`` takes every non-zero pixel.
    """
    plane = np.asarray(labels)
    mask = plane != 0 if label is None else plane == label
    if not mask.any():
        return None
    return MaskPrompt.from_full(mask, positive=positive)


def world_box_to_image(
    corners_world: FloatArray,
    image_frame: FloatArray,
    image_shape: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    """The level-0 box ``(row0, col0, row1, col1)`` (max exclusive) seen in a world region.

    Args:
        corners_world: ``(K, Di)`` world corners of the visible region (any K >= 2).
        image_frame: ``(Di + 1, Di + 1)`` data-to-world matrix of the image layer.
        image_shape: level-0 ``(H, W)``.

    Returns:
        The clipped integer box, or ``None`` when the region misses the image.
    """
    inverse = np.linalg.inv(image_frame)
    k, di = corners_world.shape
    pixels = (inverse @ np.c_[corners_world, np.ones(k)].T).T[:, :di][:, -2:]
    lo = np.floor(pixels.min(axis=0) + 0.5).astype(int)
    hi = np.floor(pixels.max(axis=0) + 0.5).astype(int) + 1
    h, w = image_shape
    r0, c0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    r1, c1 = min(int(hi[0]), h), min(int(hi[1]), w)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1, c1
