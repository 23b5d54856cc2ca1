"""The "Referring example" section: find, on the chosen image, what marks show on another.

SEEM's referring path: the points or shapes on an example image layer mark one object;
the model finds the like of it on the chosen image (``Backend.refer``). The answer becomes
the widget's preview, as a Segment's does (see :class:`~napari_seem._napari.host.Host`).
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, PushButton

from napari_seem._napari import layers as L
from napari_seem._napari import prompt_layers as P
from napari_seem._napari.backend import Backend
from napari_seem._napari.host import Host
from napari_seem.core.prompts import ObjectPrompt, PromptError
from napari_seem.core.results import ObjectMask

__all__ = ["ExamplePanel"]


class ExamplePanel:
    """The example image, its marks and the "Find it here" button."""

    def __init__(self, host: Host) -> None:
        self.host = host
        viewer = host.viewer

        def images(_: Any = None) -> list[tuple[str, Any]]:
            return P.image_choices(viewer)

        def marks(_: Any = None) -> list[tuple[str, Any]]:
            return P.prompt_choices(viewer)

        self.example_image = ComboBox(label="Example image", choices=images)
        self.example_prompts = ComboBox(label="Example marks", choices=marks)
        self.find_button = PushButton(text="Find it here")
        self.find_button.changed.connect(self.find_it_here)

    def find_it_here(self, *_: Any) -> None:
        """Segment, on the chosen image, the object marked on the example image."""
        host = self.host
        image = host.require_image()
        example = self.example_image.value
        marks = self.example_prompts.value
        if image is None:
            return
        if example is None or example is image or marks is None:
            host.notify(
                "Choose an example image (another image layer) and the points or shapes "
                "layer that marks the example object on it.",
                "error",
            )
            return
        example_plane = host.plane_of(example)
        kind = type(marks).__name__
        try:
            visual = L.prompts_from_layers(
                example,
                example_plane,
                host.viewer.dims.point,
                points=marks if kind == "Points" else None,
                shapes=marks if kind == "Shapes" else None,
            )
            prompt = ObjectPrompt(tuple(visual))
        except (PromptError, ValueError) as exc:
            host.notify(f"Cannot use the example marks: {exc}", "error")
            return
        ref, example_ref = host.image_ref(image), host.image_ref(example)
        plane = host.plane_of(image)

        def work(backend: Backend) -> list[ObjectMask]:
            return backend.refer(ref, plane, example_ref, example_plane, prompt)[:1]

        host.request_preview("Find it here", work, image, plane)
