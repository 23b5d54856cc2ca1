"""Image values as the model takes them (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["as_rgb_uint8"]


def as_rgb_uint8(image: npt.ArrayLike) -> np.ndarray:
    """Bring an image to the ``(H, W, 3)`` uint8 RGB the model expects.

    - ``(H, W)`` and ``(H, W, 1)`` grey images are repeated into three channels;
    - ``(H, W, 4)`` drops the alpha channel;
    - uint8 is used as is; bool becomes 0/255; any other dtype is scaled per image from its
      0.5th..99.5th percentile to 0..255 (robust to hot pixels; NaN/inf count as the
      minimum). Multi-band images must pick their three bands first (``napari_seem.core.io``).

    Raises:
        ValueError: wrong number of dimensions or channels, or an empty image.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(
            f"expected a 2-D grey image (H, W) or a colour image (H, W, 3/4); got shape "
            f"{arr.shape}. For stacks pass one plane; for multi-band images choose three bands."
        )
    arr = arr[..., :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    values = arr.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(values[finite], [0.5, 99.5])
    values = np.where(finite, values, lo)
    scaled = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
