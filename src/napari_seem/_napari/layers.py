"""napari layer adapters: prompt layers, the preview crop, the target labels, image refs.

Thin wrappers around :mod:`napari_seem._napari.convert`: they read a layer's data and
transform and hand arrays to the pure converters. No Qt widgets here.

Frames: prompt, preview and target layers are created with the image layer's full
data-to-world matrix as their ``affine``, so their data frame IS the image's level-0 pixel
frame; the converters still map through world coordinates, so prompt layers the user
made (any scale / translate / affine) work too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem._napari import convert
from napari_seem._napari.backend import ImageRef
from napari_seem.core.prompts import VisualPrompt
from napari_seem.core.results import ObjectMask

__all__ = [
    "NEGATIVE_COLOUR",
    "POINTS_NAME",
    "POSITIVE_COLOUR",
    "PREVIEW_NAME",
    "SHAPES_NAME",
    "current_plane",
    "ensure_points_layer",
    "ensure_shapes_layer",
    "image_ref",
    "new_target_labels",
    "preview_crop",
    "prompts_from_layers",
    "show_preview",
    "visible_box",
]

POINTS_NAME = "SEEM points"
SHAPES_NAME = "SEEM shapes"
PREVIEW_NAME = "SEEM preview"
POSITIVE_COLOUR = "#3ddc5a"
NEGATIVE_COLOUR = "#ff3b5c"
PREVIEW_COLOUR = "#ffb000"
# Target labels larger than this many pixels live in a zarr array on disk (painted in place).
LARGE_LABELS_PIXELS = 64 * 1024 * 1024


def _level0(layer: Any) -> Any:
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def image_shape(layer: Any) -> tuple[int, int]:
    """Level-0 ``(H, W)`` of an image layer (RGB channels excluded)."""
    shape = _level0(layer).shape
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return int(shape[-2]), int(shape[-1])


def plane_shape(layer: Any) -> tuple[int, ...]:
    """Sizes of the stack axes in front of ``(H, W)`` (``()`` for a 2-D image)."""
    shape = _level0(layer).shape
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return tuple(int(n) for n in shape[:-2])


def image_ref(layer: Any, version: int = 0) -> ImageRef:
    """How the model process gets this image layer's pixels (see ``backend``)."""
    from napari_seem._napari.ome_zarr import axes_for

    rgb = bool(getattr(layer, "rgb", False))
    seem = (layer.metadata or {}).get("napari_seem", {})
    path = seem.get("path")
    source_path = getattr(getattr(layer, "source", None), "path", None)
    if (
        path is None
        and source_path
        and Path(source_path).suffix.lower()
        in (
            ".zarr",
            ".tif",
            ".tiff",
        )
    ):
        path = str(source_path)
    channel = seem.get("channel")
    bands = None if channel is None else (int(channel),) * 3
    return ImageRef(
        key=f"{id(layer):x}-{version}",
        name=str(layer.name),
        image_shape=image_shape(layer),
        plane_shape=plane_shape(layer),
        axes=axes_for(len(_level0(layer).shape), rgb=rgb),
        path=path,
        bands=bands,
        array=_level0(layer),
    )


def current_plane(image: Any, world_point: Sequence[float]) -> tuple[int, ...]:
    """The image's stack indices at the viewer's current world position."""
    planes = plane_shape(image)
    if not planes:
        return ()
    frame = convert.frame_of(image)
    nd = frame.shape[0] - 1
    point = np.asarray(world_point, dtype=np.float64)[-nd:]
    data = (np.linalg.inv(frame) @ np.r_[point, 1.0])[:nd]
    out = []
    for value, size in zip(data[: len(planes)], planes, strict=True):
        out.append(int(np.clip(np.floor(value + 0.5), 0, size - 1)))
    return tuple(out)


def _transform_kwargs(image: Any) -> dict[str, Any]:
    return {"affine": convert.frame_of(image)}


def _find(viewer: Any, name: str, kind: str) -> Any | None:
    for layer in viewer.layers:
        if layer.name == name and type(layer).__name__ == kind:
            return layer
    return None


def ensure_points_layer(viewer: Any, image: Any) -> Any:
    """The "SEEM points" layer (created over ``image`` on first use), in add mode.

    Polarity is the bool feature ``positive``; new points take ``feature_defaults`` and
    ``current_face_color`` (green positive, red negative).
    """
    layer = _find(viewer, POINTS_NAME, "Points")
    if layer is None:
        ndim = len(plane_shape(image)) + 2
        layer = viewer.add_points(
            np.zeros((0, ndim)),
            name=POINTS_NAME,
            features={"positive": np.zeros(0, dtype=bool)},
            feature_defaults={"positive": True},
            face_color=POSITIVE_COLOUR,
            border_color="white",
            border_width=0.15,
            size=max(6.0, min(image_shape(image)) / 40.0),
            **_transform_kwargs(image),
        )
        layer.current_face_color = POSITIVE_COLOUR
    viewer.layers.selection.active = layer
    layer.mode = "add"
    return layer


def set_polarity(layer: Any, positive: bool) -> None:
    """Make the next points of a "SEEM points" layer positive or negative."""
    layer.feature_defaults["positive"] = bool(positive)
    # napari applies the current colour to the selected points too: it must only affect
    # the NEXT point, so nothing may be selected when it changes
    layer.selected_data = set()
    layer.current_face_color = POSITIVE_COLOUR if positive else NEGATIVE_COLOUR


def ensure_shapes_layer(viewer: Any, image: Any) -> Any:
    """The "SEEM shapes" layer (created over ``image`` on first use), in rectangle mode."""
    layer = _find(viewer, SHAPES_NAME, "Shapes")
    if layer is None:
        ndim = len(plane_shape(image)) + 2
        layer = viewer.add_shapes(
            None,
            ndim=ndim,
            name=SHAPES_NAME,
            edge_color=POSITIVE_COLOUR,
            face_color="transparent",
            edge_width=max(1.5, min(image_shape(image)) / 200.0),
            **_transform_kwargs(image),
        )
        layer.current_edge_color = POSITIVE_COLOUR
        layer.current_face_color = "transparent"
    viewer.layers.selection.active = layer
    layer.mode = "add_rectangle"
    return layer


def prompts_from_layers(
    image: Any,
    plane: Sequence[int],
    world_point: Sequence[float],
    *,
    points: Any | None = None,
    shapes: Any | None = None,
    mask_labels: Any | None = None,
) -> list[VisualPrompt]:
    """The visual prompts on ``plane`` of ``image`` from the given layers (level-0 pixels)."""
    frame = convert.frame_of(image)
    shape = image_shape(image)
    out: list[VisualPrompt] = []
    if points is not None and len(points.data):
        pixels = convert.to_image_pixels(
            points.data, convert.frame_of(points), frame, world_point=world_point
        )
        features = points.features
        flags = (
            np.asarray(features["positive"], dtype=bool)
            if "positive" in features
            else np.ones(len(pixels), dtype=bool)
        )
        prompt = convert.points_to_prompt(pixels, flags, shape, plane=plane)
        if prompt is not None:
            out.append(prompt)
    if shapes is not None and len(shapes.data):
        src = convert.frame_of(shapes)
        verts = [
            convert.to_image_pixels(v, src, frame, world_point=world_point) for v in shapes.data
        ]
        width = float(np.mean(np.asarray(shapes.edge_width))) if len(shapes.data) else 3.0
        out.extend(
            convert.shapes_to_prompts(
                verts,
                list(shapes.shape_type),
                shape,
                plane=plane,
                scribble_width=max(width, 1.0),
            )
        )
    if mask_labels is not None:
        mask = _labels_plane(mask_labels, image, plane)
        if mask is not None:
            prompt_mask = convert.labels_to_mask_prompt(mask)
            if prompt_mask is not None:
                out.append(prompt_mask)
    return out


def _labels_plane(labels: Any, image: Any, plane: Sequence[int]) -> npt.NDArray[Any] | None:
    """The ``(H, W)`` plane of a labels layer in the image's pixels, when the frames agree.

    A labels layer used as a mask prompt must sit on the image's pixel grid (same shape and
    transform), as napari's own labels made from an image do.
    """
    data = _level0(labels)
    if tuple(data.shape[-2:]) != image_shape(image):
        raise ValueError(
            f"labels layer {labels.name!r} has shape {tuple(data.shape)}, not the image's "
            f"{image_shape(image)}: paint the mask in a labels layer made for this image"
        )
    if not np.allclose(convert.frame_of(labels)[-3:, -3:], convert.frame_of(image)[-3:, -3:]):
        raise ValueError(
            f"labels layer {labels.name!r} is not aligned with the image (different scale, "
            "translate or affine): use a labels layer with the image's transform"
        )
    lead = data.ndim - 2
    index = tuple(int(p) for p in plane)[-lead:] if lead else ()
    if lead and len(index) != lead:
        return None
    return np.asarray(data[index]) if index else np.asarray(data)


def preview_crop(
    objects: Sequence[ObjectMask],
) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
    """The objects painted into one crop of their union's bounding box.

    Returns:
        ``(crop, offset)``: ``(h, w)`` uint8 with object ``i`` as ``i + 1`` (later objects
        on top; at most 255 shown), and the level-0 ``(row, col)`` of ``crop[0, 0]``.
    """
    boxes = [o.bbox for o in objects if o.bbox is not None]
    if not boxes:
        return np.zeros((1, 1), dtype=np.uint8), (0, 0)
    r0 = min(b[0] for b in boxes)
    c0 = min(b[1] for b in boxes)
    r1 = max(b[2] for b in boxes)
    c1 = max(b[3] for b in boxes)
    crop = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
    for i, obj in enumerate(objects):
        if obj.is_empty:
            continue
        # the object's tight part: a crop may be larger than its object (e.g. nodata pixels
        # cleared from it), and only the bounding boxes make the union
        top, left, bottom, right = obj.bbox  # type: ignore[misc]
        (row, col) = obj.offset
        part = obj.mask[top - row : bottom - row, left - col : right - col]
        window = crop[top - r0 : bottom - r0, left - c0 : right - c0]
        window[part] = min(i + 1, 255)
    return crop, (r0, c0)


def show_preview(
    viewer: Any, image: Any, objects: Sequence[ObjectMask], plane: Sequence[int]
) -> Any:
    """Show ``objects`` in the "SEEM preview" labels layer: a crop, placed by its transform.

    The layer holds only the crop of the objects' union (``(h, w)``, or ``(1, ..., h, w)``
    on a stack), never a full-image array, and sits over the image through
    ``translate_frame(image frame, (plane, offset))``.
    """
    lead = len(plane_shape(image))
    crop2d, origin = preview_crop(objects)
    crop = crop2d.reshape((1,) * lead + crop2d.shape)
    affine = convert.translate_frame(convert.frame_of(image), (*plane, *origin))
    layer = _find(viewer, PREVIEW_NAME, "Labels")
    if layer is None:
        from napari.utils.colormaps import DirectLabelColormap

        active = viewer.layers.selection.active  # adding a layer selects it: restore
        layer = viewer.add_labels(
            crop,
            name=PREVIEW_NAME,
            affine=affine,
            opacity=0.6,
            colormap=DirectLabelColormap(color_dict={None: PREVIEW_COLOUR, 0: "transparent"}),
        )
        layer.editable = False
        if active is not None:
            viewer.layers.selection.active = active
    else:
        layer.affine = affine
        layer.data = crop
        layer.visible = True
    return layer


def hide_preview(viewer: Any) -> None:
    layer = _find(viewer, PREVIEW_NAME, "Labels")
    if layer is not None:
        layer.data = np.zeros((*layer.data.shape[:-2], 1, 1), dtype=np.uint8)


def new_target_labels(viewer: Any, image: Any, name: str, *, folder: Path | None = None) -> Any:
    """A target labels layer for ``image``: level-0 shape, the image's transform.

    Up to :data:`LARGE_LABELS_PIXELS` pixels it is an in-memory uint32 array; larger, a
    zarr array on disk (``folder``/``name``.zarr, opened r+) that commits paint in place.
    The image's ``metadata["geo"]`` / ``["crs"]`` (a GeoTIFF's georeferencing) are copied.
    """
    import pandas as pd

    shape = (*plane_shape(image), *image_shape(image))
    features = pd.DataFrame(
        {
            "index": pd.Series([0], dtype="int64"),
            "class_name": pd.Series(["background"], dtype="object"),
            "score": pd.Series([np.nan], dtype="float64"),
            "source": pd.Series([""], dtype="object"),
        }
    )
    if int(np.prod(shape)) > LARGE_LABELS_PIXELS:
        import tempfile

        import zarr

        folder = folder or Path(tempfile.mkdtemp(prefix="napari-seem-labels-"))
        chunks = (*(1 for _ in shape[:-2]), 1024, 1024)
        data: Any = zarr.open_array(
            str(folder / f"{name}.zarr"),
            mode="w",
            shape=shape,
            chunks=chunks,
            dtype="uint32",
            fill_value=0,
        )
    else:
        data = np.zeros(shape, dtype=np.uint32)
    # the image's georeferencing travels with its labels, so the writer can save them as a
    # GeoTIFF / GeoPackage (see _napari/geo_layers.py)
    source_meta = getattr(image, "metadata", None) or {}
    metadata = {k: source_meta[k] for k in ("geo", "crs") if k in source_meta}
    return viewer.add_labels(
        data,
        name=name,
        features=features,
        opacity=0.6,
        metadata=metadata,
        **_transform_kwargs(image),
    )


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, else ``.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def visible_box(viewer: Any, image: Any) -> tuple[int, int, int, int] | None:
    """The level-0 box of ``image`` the 2-D canvas shows now, or ``None`` (3-D view / off)."""
    if viewer.dims.ndisplay != 2:
        return None
    camera = camera_of(viewer)
    center = np.asarray(camera.center, dtype=np.float64)[-2:]
    zoom = float(camera.zoom)
    canvas = np.asarray(viewer.canvas.size, dtype=np.float64)  # (height, width) in screen px
    half = canvas / (2.0 * max(zoom, 1e-9))
    frame = convert.frame_of(image)
    nd = frame.shape[0] - 1
    point = np.asarray(viewer.dims.point, dtype=np.float64)[-nd:]
    corners = []
    for dr in (-1.0, 1.0):
        for dc in (-1.0, 1.0):
            world = point.copy()
            world[-2:] = center + np.array([dr, dc]) * half
            corners.append(world)
    return convert.world_box_to_image(np.asarray(corners), frame, image_shape(image))
