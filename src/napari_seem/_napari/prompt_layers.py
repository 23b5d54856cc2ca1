"""The viewer's layers as the widget's controls see them (no widget state).

Choices for the layer combo boxes, the SEEM prompt layers (find, empty, keep active) and
the polarity of new points (``T`` toggles, Ctrl-click adds a negative point).
"""

from __future__ import annotations

from typing import Any

from napari_seem._napari import layers as L

__all__ = [
    "TARGET_NAME",
    "clear_prompt_layers",
    "find_layer",
    "has_prompts",
    "image_choices",
    "keep_prompt_layer_active",
    "layers_of",
    "mask_choices",
    "polarity_on_press",
    "prompt_choices",
    "target_choices",
    "toggle_polarity",
]

#: Name of the labels layer commits go into when no target is chosen.
TARGET_NAME = "SEEM labels"
_PROMPT_LAYERS = ((L.POINTS_NAME, "Points"), (L.SHAPES_NAME, "Shapes"))


def layers_of(viewer: Any, kind: str) -> list[Any]:
    """The viewer's layers of a kind (``"Image"``, ``"Labels"``, ``"Points"``...)."""
    return [layer for layer in viewer.layers if type(layer).__name__ == kind]


def find_layer(viewer: Any, name: str, kind: str) -> Any | None:
    """The layer called ``name`` of kind ``kind``, or ``None``."""
    for layer in viewer.layers:
        if layer.name == name and type(layer).__name__ == kind:
            return layer
    return None


def image_choices(viewer: Any) -> list[tuple[str, Any]]:
    return [(layer.name, layer) for layer in layers_of(viewer, "Image")]


def target_choices(viewer: Any) -> list[tuple[str, Any]]:
    labels = [
        (layer.name, layer) for layer in layers_of(viewer, "Labels") if layer.name != L.PREVIEW_NAME
    ]
    return [(f"new '{TARGET_NAME}'", None), *labels]


def mask_choices(viewer: Any) -> list[tuple[str, Any]]:
    return [("none", None), *target_choices(viewer)[1:]]


def prompt_choices(viewer: Any) -> list[tuple[str, Any]]:
    found = layers_of(viewer, "Points") + layers_of(viewer, "Shapes")
    return [("none", None), *[(layer.name, layer) for layer in found]]


def has_prompts(viewer: Any, text: str) -> bool:
    """Whether the prompt layers hold a point or a shape, or ``text`` is not blank."""
    points = find_layer(viewer, L.POINTS_NAME, "Points")
    shapes = find_layer(viewer, L.SHAPES_NAME, "Shapes")
    return bool(
        (points is not None and len(points.data))
        or (shapes is not None and len(shapes.data))
        or text.strip()
    )


def clear_prompt_layers(viewer: Any) -> None:
    """Remove every point and shape of the SEEM prompt layers."""
    points = find_layer(viewer, L.POINTS_NAME, "Points")
    if points is not None and len(points.data):
        points.selected_data = set()
        points.data = points.data[:0]
    shapes = find_layer(viewer, L.SHAPES_NAME, "Shapes")
    if shapes is not None and len(shapes.data):
        shapes.selected_data = set(range(len(shapes.data)))
        shapes.remove_selected()


def keep_prompt_layer_active(viewer: Any, *, always: bool = False) -> None:
    """Give the keys and clicks back to the prompt layer after a layer was added."""
    active = viewer.layers.selection.active
    is_prompt = active is not None and active.name in (L.POINTS_NAME, L.SHAPES_NAME)
    on_preview = active is not None and active.name == L.PREVIEW_NAME
    if (always and not is_prompt) or on_preview:
        for name, kind in _PROMPT_LAYERS:
            layer = find_layer(viewer, name, kind)
            if layer is not None:
                viewer.layers.selection.active = layer
                return


def toggle_polarity(layer: Any) -> str:
    """Flip the polarity of new points on a points layer; the status text to show."""
    negative = not layer.metadata.get("seem_negative", False)
    layer.metadata["seem_negative"] = negative
    L.set_polarity(layer, not negative)
    if negative:
        return "New points are NEGATIVE (not this). Press T for positive."
    return "New points are positive. Press T (or Ctrl-click) for negative."


def polarity_on_press(layer: Any, event: Any) -> None:
    """Ctrl-click adds a negative point; a plain click follows the ``T`` toggle."""
    negative = bool(layer.metadata.get("seem_negative", False))
    if "Control" in getattr(event, "modifiers", ()):
        negative = not negative
    L.set_polarity(layer, not negative)
