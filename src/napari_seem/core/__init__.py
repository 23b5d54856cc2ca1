"""Tier 0, the numpy contract: prompts, results, rasterizing, tiling, image io, hub downloads.

Nothing here imports torch, Qt or napari; every other tier builds on these types. Arrays are
documented where they are defined: level-0 ``(row, col)`` pixels, shapes and dtypes.
"""
