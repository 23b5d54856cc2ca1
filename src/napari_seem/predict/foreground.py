"""A cheap foreground estimate from the encoded pixel features (where to prompt at all).

"Segment everything" by points asks the model about every point of a grid; on a slide of
nuclei most points lie on empty background and every one costs a decoder slot. The pixel
features already separate "stuff like the objects" from "the background": two-means
clustering of the unit-normalised stride-4 ``mask_features`` splits a tile into two feature
clusters, and the smaller one is the foreground. Grid points farther than a margin from it
need not be asked.

The split is used only when it is clean (the clusters explain at least
``min_separation`` of the features' variance) and the smaller cluster is not most of the
tile; otherwise :func:`foreground_cells` returns None and every point is asked. The result
is deterministic for given features (fixed subsample and initialisation).

Frame: stride-4 cells of the padded model frame, ``(H_pad / 4, W_pad / 4)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from napari_seem.model.transforms import ModelFrame

__all__ = ["foreground_cells"]

_SAMPLE = 4096  # cells fitted (all cells are then assigned)
_ITERATIONS = 12


def _two_means(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Two centroids ``(2, D)`` of the rows of ``x`` ``(N, D)`` and the variance share they
    explain (between-cluster / total)."""
    mean = x.mean(0)
    first = x[int(((x - mean) ** 2).sum(1).argmax())]
    second = x[int(((x - first) ** 2).sum(1).argmax())]
    centres = torch.stack([first, second])
    assign = torch.zeros(len(x), dtype=torch.long)
    for _ in range(_ITERATIONS):
        assign = torch.cdist(x, centres).argmin(1)
        if (assign == 0).all() or (assign == 1).all():
            return centres, 0.0
        centres = torch.stack([x[assign == k].mean(0) for k in range(2)])
    total = float(((x - mean) ** 2).sum())
    within = float(sum(((x[assign == k] - centres[k]) ** 2).sum() for k in range(2)))
    return centres, 1.0 - within / total if total > 0 else 0.0


def foreground_cells(
    mask_features: torch.Tensor,
    frame: ModelFrame,
    *,
    margin: int,
    min_separation: float = 0.25,
    max_share: float = 0.6,
) -> npt.NDArray[np.bool_] | None:
    """Stride-4 cells on or within ``margin`` cells of the smaller feature cluster.

    Args:
        mask_features: ``(1, D, H_pad / 4, W_pad / 4)`` pixel features of one image.
        frame: its model frame (only the image part, ``frame.resized_hw``, is clustered).
        margin: cells added around the foreground (points this close are still asked).
        min_separation: least variance share the two clusters must explain.
        max_share: the foreground (with margin) may cover at most this share of the image.

    Returns:
        ``(H_pad / 4, W_pad / 4)`` bool, or None when the split is not clean (ask everywhere).
    """
    feats = mask_features[0].float()
    d, h4, w4 = feats.shape
    hv = min(h4, -(-frame.resized_hw[0] // 4))
    wv = min(w4, -(-frame.resized_hw[1] // 4))
    x = torch.nn.functional.normalize(feats[:, :hv, :wv].reshape(d, -1).T, dim=1)  # (N, D)
    step = max(1, len(x) // _SAMPLE)
    centres, separation = _two_means(x[::step])
    if separation < min_separation:
        return None
    # nearer centre, as one projection: |x - c1|^2 < |x - c0|^2
    direction = centres[1] - centres[0]
    offset = 0.5 * float((centres[1] ** 2).sum() - (centres[0] ** 2).sum())
    second = (x @ direction > offset).reshape(hv, wv).numpy()
    fg = second if second.mean() <= 0.5 else ~second
    if margin > 0:
        fg = ndimage.binary_dilation(fg, iterations=margin)
    if fg.mean() > max_share:
        return None
    out = np.zeros((h4, w4), bool)
    out[:hv, :wv] = fg
    return out
