"""``napari-seem eval``: SEEM's interactive, text and "everything" metrics on labelled
images, side by side with two classical scikit-image baselines.

- :mod:`~napari_seem.evaluation.metrics`: pure numpy metrics (IoU, one-to-one matching,
  precision / recall / F1 at an IoU threshold, AP50).
- :mod:`~napari_seem.evaluation.clicks`: the official click simulator driving any
  segmenter (the baselines); SEEM itself goes through
  :func:`napari_seem.evaluation.heldout.click_protocol`.
- :mod:`~napari_seem.evaluation.baselines`: a seeded watershed from the simulated clicks
  and an Otsu + distance-transform watershed for "everything".
- :mod:`~napari_seem.evaluation.data`: TIFF folders, zarr / OME-Zarr labels and the
  built-in held-out data sets.
- :mod:`~napari_seem.evaluation.runner`: :func:`evaluate` and the JSON / Markdown report.

Importing this package imports neither torch nor Qt; the submodules load what they need.
"""

from __future__ import annotations

__all__: list[str] = []
