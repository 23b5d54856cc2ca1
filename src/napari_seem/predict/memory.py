"""Round-to-round mask memory of the predictor.

The predictor keeps the stride-4 logits of the masks it returned, so that passing a returned
:class:`~napari_seem.core.results.ObjectMask` back as ``previous`` gives the model exactly the
official round-2 memory input. A mask the user edited (or any other binary mask) is turned
into logits of ``+/-MEMORY_LOGIT``: memory tokens only look at where the resized logits are
>= 0, so a binary mask carries the same information up to sub-pixel boundaries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from napari_seem.core.prompts import PromptError
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.model.transforms import ModelFrame, masks_to_model_frame

__all__ = ["MAX_REMEMBERED", "MEMORY_LOGIT", "MaskMemory", "PreviousMasks", "memory_from_mask"]

#: Logit given to a binary mask used as round-to-round memory (sigmoid = 0.9997).
MEMORY_LOGIT = 8.0
#: Returned masks whose logits are kept (oldest forgotten first).
MAX_REMEMBERED = 256

#: Last round's answer per object: a result, its objects, binary level-0 masks or None.
PreviousMasks = SegmentationResult | Sequence[ObjectMask | npt.ArrayLike | None]


def _mask_key(obj: ObjectMask) -> tuple[tuple[int, int], tuple[int, ...], bytes]:
    return (obj.offset, obj.mask.shape, np.packbits(obj.mask).tobytes())


def memory_from_mask(mask: np.ndarray, frame: ModelFrame, device: torch.device) -> torch.Tensor:
    """A binary level-0 ``(H, W)`` mask -> ``(h, w)`` stride-4 logits of ``+/-MEMORY_LOGIT``
    in the padded model frame of ``frame``."""
    padded = masks_to_model_frame(torch.from_numpy(mask[None]).to(device), frame)
    cover = F.avg_pool2d(padded[None].float(), 4)[0, 0]  # fraction of each 4x4 cell
    return torch.where(cover >= 0.5, MEMORY_LOGIT, -MEMORY_LOGIT)


class MaskMemory:
    """The logits of the masks a predictor returned for its current image."""

    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        self.capacity = capacity
        self._logits: OrderedDict[tuple[object, ...], tuple[torch.Tensor, object]] = OrderedDict()

    def clear(self) -> None:
        """Forget every remembered mask (a new image, new weights)."""
        self._logits.clear()

    def remember(self, obj: ObjectMask, logits: torch.Tensor, view: object = None) -> None:
        """Keep ``obj``'s ``(h, w)`` stride-4 logits for when it comes back as ``previous``.

        ``view`` names the encoding the logits are laid out on (None: the current image's
        own; see :attr:`napari_seem.predict.views.View.key`)."""
        self._logits[_mask_key(obj)] = (logits.detach(), view)
        while len(self._logits) > self.capacity:
            self._logits.popitem(last=False)

    def lookup(self, obj: ObjectMask, view: object = None) -> torch.Tensor | None:
        """The remembered logits of ``obj`` if they were laid out on ``view``, else None."""
        found = self._logits.get(_mask_key(obj))
        if found is None or found[1] != view:
            return None
        return found[0]

    def previous_logits(
        self,
        previous: PreviousMasks,
        count: int,
        *,
        frame: ModelFrame,
        cells_hw: tuple[int, int],
        device: torch.device,
    ) -> torch.Tensor | None:
        """``(1, P, h, w)`` memory logits for ``count`` objects (None when all are None).

        Args:
            previous: one entry per object, in the objects' order.
            count: the number of objects ``P``.
            frame: the current image's model frame.
            cells_hw: ``(h, w)``, the stride-4 size of the current mask features.
            device: where the logits go.

        Raises:
            PromptError: the wrong number of entries, or a mask of the wrong shape.
        """
        items = list(previous)
        if len(items) != count:
            raise PromptError(
                f"previous has {len(items)} masks but there are {count} objects: pass one "
                "previous mask (or None) per object, in the same order"
            )
        if all(item is None for item in items):
            return None
        h, w = cells_hw
        image_shape = frame.image_hw
        rows = []
        for item in items:
            if item is None:
                # no memory for this object: memory tokens see nothing of it
                rows.append(torch.full((h, w), -MEMORY_LOGIT, device=device))
            elif isinstance(item, ObjectMask):
                known = self.lookup(item)
                rows.append(
                    known
                    if known is not None
                    else memory_from_mask(item.full(image_shape), frame, device)
                )
            else:
                mask = np.asarray(item).astype(bool)
                if mask.shape != image_shape:
                    raise PromptError(
                        f"previous mask has shape {mask.shape}; the image is {image_shape}"
                    )
                rows.append(memory_from_mask(mask, frame, device))
        return torch.stack(rows)[None]
