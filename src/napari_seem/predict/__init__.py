"""Tier 2, torch over one model. Inputs and outputs use the numpy types of :mod:`napari_seem.core`.

- :mod:`~napari_seem.predict.predictor`: :class:`SeemPredictor`, the tasks and the public
  low-level operations the other modules are built on;
- :mod:`~napari_seem.predict.encoding`: :class:`EncodedImage`;
- :mod:`~napari_seem.predict.spatial`: visual prompts decoded (in prompt windows);
- :mod:`~napari_seem.predict.memory`: round-to-round mask memory;
- :mod:`~napari_seem.predict.masks`: mask and vocabulary helpers;
- :mod:`~napari_seem.predict.generic`: panoptic / instance / semantic by object queries;
- :mod:`~napari_seem.predict.everything`: segment everything by a point grid;
- :mod:`~napari_seem.predict.grounding`: text grounding (whole image or windows);
- :mod:`~napari_seem.predict.feature_cache`: the on-disk feature cache.
"""
