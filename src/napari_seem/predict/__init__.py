"""Tier 2, torch over one model: the predictor, segment-everything by points, windowed
grounding and the feature cache. Inputs and outputs use the numpy types of :mod:`napari_seem.core`.
"""
