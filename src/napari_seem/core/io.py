"""Image sources: lazy, windowed reads of huge images in level-0 ``(row, col)`` pixels.

``open_image`` accepts a numpy array, a zarr array or group, a zarr / OME-Zarr directory
(zarr v2 and v3; NGFF 0.4 ``.zattrs`` and 0.5 ``zarr.json`` ``ome`` attributes), a dask
array, or a TIFF path (read through tifffile's zarr store, chunk by chunk). Pixels are only
read for the window asked for; nothing here loads a whole image.

Axes use the letters ``t z c y x`` (e.g. ``"yx"``, ``"yxc"``, ``"cyx"``, ``"zyx"``,
``"tczyx"``). ``y`` and ``x`` are the image plane, ``c`` the channels (bands), and ``t`` /
``z`` are plane axes: prompts live on one plane, chosen by a ``plane`` tuple in the order the
plane axes appear in ``axes``.

Levels: level 0 is full resolution; coarser levels (OME-Zarr multiscales, pyramidal TIFF)
carry their downsample factors. Every public coordinate is a level-0 pixel; a read at a
coarser level returns that level's pixels for the level-0 window (see ``level_box``).

The model mapping (``read_rgb``) gives ``(h, w, 3)`` uint8: grey is repeated, RGB kept,
multi-band images use three chosen ``bands``. Non-uint8 data is scaled per band from robust
percentiles computed ONCE per source from a subsample of the whole level-0 image (cached),
so that adjacent tiles scale identically. Nodata (a value, NaN or inf) is written as 0 and
reported by ``read_valid_mask``.

The code lives in :mod:`napari_seem.core.image_source` (the source and its reads) and
:mod:`napari_seem.core.image_open` (formats and metadata); this is the public io module.

No torch here (tier 1).
"""

from napari_seem.core import image_open, image_source
from napari_seem.core.image_open import *  # noqa: F403 (the public io names: __all__ below)
from napari_seem.core.image_source import *  # noqa: F403

__all__ = [*image_source.__all__, *image_open.__all__]
