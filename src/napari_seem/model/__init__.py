"""Tier 0: the SEEM model in pure torch.

Everything under this package imports only torch (and numpy/safetensors for weight
files). Nothing here knows about napari, zarr, HTTP or tiles. Coordinates inside the
model are in the *padded model frame*: tensors ``(B, C, H_pad, W_pad)`` whose row and
column are the image's row and column after resizing and bottom/right zero padding.
The single place that maps level-0 ``(row, col)`` pixels into this frame is
:mod:`napari_seem.model.transforms`.

Import the pieces from their modules (``from napari_seem.model.build import build_seem``);
this ``__init__`` deliberately imports nothing so that ``import napari_seem.model`` stays cheap.
"""
