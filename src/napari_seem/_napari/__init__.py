"""Tier 3: napari integration (manifest commands, widgets, layer <-> prompt adapters).

Only this subpackage touches napari and Qt; it is imported by napari when a manifest
command is used, never by ``import napari_seem``.
"""
