"""``SeemApp``: the canvas widget with ipywidgets controls (model, vocabulary, thresholds,
progress with Cancel). The controls only set the widget's traitlets and call its methods."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from napari_seem._jupyter.widget import SeemWidget
from napari_seem.api import default_variant
from napari_seem.core.modes import EVERYTHING_MODES
from napari_seem.core.variants import VARIANT_SUMMARIES

__all__ = ["SeemApp"]


class SeemApp(w.VBox):
    """A :class:`SeemWidget` above a row of controls, in one VBox.

    Args:
        image: as :class:`SeemWidget`.
        model: an engine object (Engine / SeemClient / predictor) or a variant name; the
            model dropdown lists variant names and switches between them.
        vocabulary: class names for Everything and for naming clicked objects.
        **kwargs: passed to :class:`SeemWidget` (plane, bands, labels, name, height).

    ``app.canvas`` is the widget; ``app.labels`` / ``app.prompts`` / ``app.results`` are
    its state.
    """

    def __init__(
        self,
        image: Any,
        *,
        model: Any = None,
        vocabulary: Sequence[str] = ("object",),
        **kwargs: Any,
    ) -> None:
        self.canvas = SeemWidget(image, model=model, vocabulary=vocabulary, **kwargs)
        names = list(VARIANT_SUMMARIES)
        current = model if isinstance(model, str) else default_variant()
        if model is not None and not isinstance(model, str):
            current = f"given: {type(model).__name__}"
        if current not in names:
            names.insert(0, current)
        style = {"description_width": "initial"}
        self.model_choice = w.Dropdown(
            options=names, value=current, description="Model", style=style
        )
        self.vocabulary = w.Text(
            value=", ".join(vocabulary),
            description="Vocabulary",
            placeholder="comma-separated class names",
            style=style,
            layout=w.Layout(flex="1 1 240px"),
        )
        self.mode = w.Dropdown(
            options=list(EVERYTHING_MODES),
            value=self.canvas.everything_mode,
            description="Everything",
            tooltip=(
                "auto: points for models that decode prompts in windows (seem-lite), else "
                "panoptic; points: prompt a grid of points"
            ),
            style=style,
            layout=w.Layout(width="200px"),
        )
        self.grounding = w.FloatSlider(
            value=0.05, min=0.0, max=1.0, step=0.01, description="Text threshold", style=style
        )
        self.objectness = w.FloatSlider(
            value=0.4, min=0.0, max=1.0, step=0.01, description="Object threshold", style=style
        )
        self.progress = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="", layout=w.Layout(width="220px")
        )
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.status = w.Label(value="")
        self.model_choice.observe(self._on_model, names="value")
        self.vocabulary.observe(self._on_vocabulary, names="value")
        self.mode.observe(lambda c: setattr(self.canvas, "everything_mode", c["new"]), "value")
        self.grounding.observe(
            lambda c: setattr(self.canvas, "grounding_threshold", c["new"]), "value"
        )
        self.objectness.observe(
            lambda c: setattr(self.canvas, "object_mask_threshold", c["new"]), "value"
        )
        self.cancel_button.on_click(lambda _: self.canvas.cancel())
        self.canvas.observe(self._on_progress, names=["progress", "job", "status", "error"])
        controls = w.VBox(
            [
                w.HBox([self.model_choice, self.vocabulary, self.mode]),
                w.HBox(
                    [self.grounding, self.objectness, self.progress, self.cancel_button],
                    layout=w.Layout(align_items="center"),
                ),
                self.status,
            ]
        )
        super().__init__([self.canvas, controls])

    # ---- state passthrough ---------------------------------------------------------------

    @property
    def labels(self) -> Any:
        return self.canvas.labels

    @property
    def prompts(self) -> Any:
        return self.canvas.prompts

    @property
    def results(self) -> Any:
        return self.canvas.results

    def to_geojson(self, *, simplify: float = 0.0) -> dict[str, Any]:
        """The committed labels as a GeoJSON FeatureCollection in the image's CRS (one
        (multi)polygon per object with ``id``, ``class``, ``score``, ``area`` in squared map
        units; ``simplify`` in map units); ready for
        ``geopandas.GeoDataFrame.from_features``. Needs a georeferenced image (GeoTIFF /
        COG, the ``geo`` extra).

        Raises:
            ValueError: the image has no georeferencing.
        """
        from napari_seem.core.geo_meta import geo_of
        from napari_seem.core.geo_write import labels_geojson

        geo = geo_of(self.canvas.source)
        if geo is None:
            raise ValueError(
                "to_geojson needs a georeferenced image (open a GeoTIFF / COG path); this "
                "one has no CRS / transform: use app.labels instead"
            )
        return labels_geojson(
            self.canvas.labels, geo, self.results.class_table(), simplify=simplify
        )

    def use_weights(self, path: str | Path | None) -> str:
        """Switch the running model to a fine-tuned weight file (``None``: base weights);
        see :meth:`SeemWidget.use_weights`. Returns the checkpoint id in use."""
        try:
            checkpoint = self.canvas.use_weights(path)
        except Exception as exc:
            self.status.value = f"cannot switch the weights: {exc}"
            raise
        self.status.value = self.canvas.status
        return checkpoint

    def link_example(self, other: SeemApp | SeemWidget) -> None:
        """Use the prompts on ``other`` as this image's referring example (Refer button)."""
        self.canvas.set_example_source(other.canvas if isinstance(other, SeemApp) else other)

    # ---- control events ------------------------------------------------------------------

    def _on_model(self, change: dict[str, Any]) -> None:
        if str(change["new"]).startswith("given:"):
            return
        try:
            self.canvas.set_model(change["new"])
            self.status.value = f"model: {change['new']} (loads on the next request)"
        except Exception as exc:  # a bad choice must not break the app
            self.status.value = f"cannot switch the model: {exc}"

    def _on_vocabulary(self, change: dict[str, Any]) -> None:
        names = [n.strip() for n in str(change["new"]).split(",") if n.strip()]
        if names:
            self.canvas.vocabulary = names

    def _on_progress(self, _change: dict[str, Any]) -> None:
        running = bool(self.canvas.job)
        self.progress.value = self.canvas.progress if running else 0.0
        self.progress.bar_style = "info" if running else ""
        self.cancel_button.disabled = not running
        self.status.value = self.canvas.error or self.canvas.status
