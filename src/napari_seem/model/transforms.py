"""The one place where images, prompt masks, coordinates and mask logits change frame.

Three frames are involved. All of them index pixels as ``(row, col)`` with the origin
at the top-left corner and pixel *centres* at integer coordinates (numpy / napari
convention).

- **Image frame**: the level-0 image, ``(H, W)`` pixels, as the user sees it.
- **Resized frame**: the image after the model's resize rule, ``(h, w)`` pixels. The
  resize stretches the whole image extent onto the new grid (``align_corners=False``),
  so a continuous coordinate maps as ``r_resized = (r + 0.5) * h / H - 0.5``.
- **Padded model frame**: the resized image zero-padded at the bottom and right to
  ``(H_pad, W_pad)``. It shares its origin and pixel grid with the resized frame, so
  ``(row, col)`` is the same number in both; only the extent differs. Backbone features
  and mask logits are laid out on this frame (mask logits at stride 4: ``H_pad / 4``).

:class:`ModelFrame` records the three sizes; :func:`make_frame` builds one from the
official resize rules; :func:`preprocess`, :func:`masks_to_model_frame` and
:func:`logits_to_image` move tensors between the frames; :func:`grid_xy` turns padded-frame
``(row, col)`` into the normalised ``(x, y)`` that ``grid_sample`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "ModelFrame",
    "grid_xy",
    "logits_to_image",
    "make_frame",
    "masks_to_model_frame",
    "preprocess",
]

#: ``INPUT.PIXEL_MEAN`` of every released SEEM config (RGB, 0..255 scale).
PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
#: ``INPUT.PIXEL_STD`` of every released SEEM config (RGB, 0..255 scale).
PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelFrame:
    """How an image of size ``image_hw`` is laid out in the model input.

    Attributes:
        image_hw: ``(H, W)`` of the level-0 image.
        resized_hw: ``(h, w)`` after the resize rule (equal to ``image_hw`` when the frame
            does not resize). This is the region of the padded input that holds image
            pixels, and the crop applied to upsampled mask logits.
        padded_hw: ``(H_pad, W_pad)`` of the model input: ``resized_hw`` rounded up to a
            multiple of the size divisibility, or a fixed size (SAM-ViT: 1024 x 1024).
    """

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("image_hw", "resized_hw", "padded_hw"):
            hw = getattr(self, name)
            if len(hw) != 2 or min(hw) < 1:
                raise ValueError(f"{name} must be two positive ints, got {hw}")
        h, w = self.resized_hw
        ph, pw = self.padded_hw
        if h > ph or w > pw:
            raise ValueError(
                f"resized image {self.resized_hw} does not fit the padded size {self.padded_hw}"
            )

    @property
    def resizes(self) -> bool:
        """True when the image is resampled before entering the model."""
        return self.resized_hw != self.image_hw

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis ``(h / H, w / W)``. The two differ slightly because sizes are rounded."""
        return (
            self.resized_hw[0] / self.image_hw[0],
            self.resized_hw[1] / self.image_hw[1],
        )

    def image_to_model(self, rc: torch.Tensor) -> torch.Tensor:
        """Map image-frame ``(row, col)`` into the padded model frame.

        Args:
            rc: ``(N, 2)`` ``(row, col)`` in level-0 image pixels, any float dtype (integer
                input is promoted to float32), any device.

        Returns:
            ``(N, 2)`` ``(row, col)`` in the padded model frame, same dtype/device (float).
        """
        rc = _as_float(rc)
        s = rc.new_tensor(self.scale)
        # pixel centres follow the resize, which maps image extent onto resized extent
        return (rc + 0.5) * s - 0.5

    def model_to_image(self, rc: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`image_to_model`.

        Args:
            rc: ``(N, 2)`` ``(row, col)`` in the padded model frame (float; integer input
                is promoted to float32).

        Returns:
            ``(N, 2)`` ``(row, col)`` in level-0 image pixels. Points in the padding map
            outside the image (``row >= H`` or ``col >= W``).
        """
        rc = _as_float(rc)
        s = rc.new_tensor(self.scale)
        return (rc + 0.5) / s - 0.5

    def grid_xy(self, rc: torch.Tensor) -> torch.Tensor:
        """:func:`grid_xy` for this frame's padded size."""
        return grid_xy(rc, self.padded_hw)


def grid_xy(rc: torch.Tensor, padded_hw: tuple[int, int]) -> torch.Tensor:
    """Padded-frame ``(row, col)`` -> normalised ``(x, y)`` for ``grid_sample``.

    This is the official SEEM point convention (``point_sample``): a prompt pixel
    ``(row, col)`` is divided by ``(H_pad, W_pad)`` and read with
    ``grid_sample(..., align_corners=True)``, i.e. ``x = 2 * col / W_pad - 1`` and
    ``y = 2 * row / H_pad - 1``. Sampled on a feature map of width ``w_f`` it lands on
    feature column ``col / W_pad * (w_f - 1)``: not the pixel centre, but what the
    released weights were trained with. **Use the result with ``align_corners=True``.**

    Args:
        rc: ``(..., 2)`` ``(row, col)`` in the padded model frame (float or integer).
        padded_hw: ``(H_pad, W_pad)`` of the model input.

    Returns:
        ``(..., 2)`` float tensor of ``(x, y)`` in ``[-1, 1)`` for points inside the frame.
    """
    rc = _as_float(rc)
    size = rc.new_tensor(padded_hw)  # (H_pad, W_pad)
    return (2.0 * rc / size - 1.0).flip(-1)


def make_frame(
    image_hw: tuple[int, int],
    *,
    short_side: int | None = None,
    long_max: int | None = None,
    long_side: int | None = None,
    size_divisibility: int = 32,
    fixed_size: int | tuple[int, int] | None = None,
) -> ModelFrame:
    """Build the :class:`ModelFrame` of an image under one of the official resize rules.

    Resize rules (at most one of ``short_side`` / ``long_side``):

    - nothing: no resize (the parity fixtures and tiled inference).
    - ``short_side`` (``long_max`` optional): detectron2 ``ResizeShortestEdge``: scale so
      the short side is ``short_side``; if the long side then exceeds ``long_max``, scale
      down so it equals ``long_max``; sizes are rounded half up. COCO evaluation:
      ``short_side=800, long_max=1333``; the demo: ``short_side=512``. (The demo resizes
      with torchvision, which truncates the long side instead of rounding: at most one
      pixel of difference.)
    - ``long_side``: SAM ``ResizeLongestSide``: scale so the long side equals
      ``long_side`` (up or down), rounded half up.
    - ``long_max`` alone: shrink so the long side is at most ``long_max``; never enlarge.

    Padding: ``fixed_size`` (an int for a square, or ``(H_pad, W_pad)``) pads to exactly
    that size (SAM-ViT: 1024; the tiny SAM fixture: 128) and takes precedence over
    ``size_divisibility``; otherwise both sides are rounded up to a multiple of
    ``size_divisibility`` (32 for Focal; values < 2 mean no padding).

    Args:
        image_hw: ``(H, W)`` of the level-0 image.

    Returns:
        The frame.

    Raises:
        ValueError: on conflicting rules, non-positive sizes, or a resized image larger
            than ``fixed_size``.
    """
    img_h, img_w = (int(v) for v in image_hw)
    if img_h < 1 or img_w < 1:
        raise ValueError(f"image size must be positive, got {image_hw}")
    if short_side is not None and long_side is not None:
        raise ValueError("give short_side or long_side, not both")
    for name, value in (
        ("short_side", short_side),
        ("long_max", long_max),
        ("long_side", long_side),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be positive, got {value}")

    if short_side is not None:
        resized = _shortest_edge_size(img_h, img_w, short_side, long_max)
    elif long_side is not None:
        resized = _scaled_size(img_h, img_w, long_side / max(img_h, img_w))
    elif long_max is not None and max(img_h, img_w) > long_max:
        resized = _scaled_size(img_h, img_w, long_max / max(img_h, img_w))
    else:
        resized = (img_h, img_w)

    if fixed_size is not None:
        padded = (fixed_size, fixed_size) if isinstance(fixed_size, int) else tuple(fixed_size)
        if len(padded) != 2:
            raise ValueError(f"fixed_size must be an int or (H_pad, W_pad), got {fixed_size}")
        padded_hw = (int(padded[0]), int(padded[1]))
        if resized[0] > padded_hw[0] or resized[1] > padded_hw[1]:
            raise ValueError(
                f"resized image {resized} exceeds the fixed model input {padded_hw}; "
                "use a resize rule that fits (e.g. long_side or long_max)"
            )
    else:
        d = max(int(size_divisibility), 1)
        padded_hw = (math.ceil(resized[0] / d) * d, math.ceil(resized[1] / d) * d)
    return ModelFrame(image_hw=(img_h, img_w), resized_hw=resized, padded_hw=padded_hw)


def preprocess(
    image: torch.Tensor,
    frame: ModelFrame,
    pixel_mean: torch.Tensor | Sequence[float] = PIXEL_MEAN,
    pixel_std: torch.Tensor | Sequence[float] = PIXEL_STD,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Turn an RGB image into the model input: resize, normalise, then zero-pad.

    Order as in the official code (detectron2 ``ImageList.from_tensors``): normalise
    first, then pad bottom/right with 0, so padding is 0 in *normalised* space.

    When the frame resizes, the image is resampled bilinearly with antialiasing
    (``align_corners=False``); a uint8 input is then rounded back to integers, because the
    official pipelines resize the uint8 image (PIL) and the model saw integer values.

    Args:
        image: either ``(H, W, 3)`` uint8 RGB (HWC, 0..255) or ``(B, 3, H, W)`` float RGB
            on the 0..255 scale; ``(H, W)`` must equal ``frame.image_hw``.
        frame: the target frame.
        pixel_mean: ``(3,)`` per-channel mean, RGB, 0..255 scale.
        pixel_std: ``(3,)`` per-channel std, RGB, 0..255 scale.
        dtype: output dtype; default float32 for integer input, else the input's dtype.

    Returns:
        ``(B, 3, H_pad, W_pad)`` normalised input in the padded model frame (``B = 1`` for
        HWC input), on the input's device.
    """
    if image.dim() == 3:
        if image.shape[-1] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got {tuple(image.shape)}")
        x = image.permute(2, 0, 1).unsqueeze(0)
    elif image.dim() == 4:
        if image.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) image, got {tuple(image.shape)}")
        x = image
    else:
        raise ValueError(f"expected (H, W, 3) or (B, 3, H, W), got {tuple(image.shape)}")
    if tuple(x.shape[-2:]) != frame.image_hw:
        raise ValueError(f"image size {tuple(x.shape[-2:])} != frame image size {frame.image_hw}")

    integer_input = not x.is_floating_point()
    out_dtype = dtype or (torch.float32 if integer_input else x.dtype)
    # half precision has no antialiased resize on CPU and loses 0..255 detail: work in fp32
    work_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.to(work_dtype)

    if frame.resizes:
        x = F.interpolate(
            x, size=frame.resized_hw, mode="bilinear", align_corners=False, antialias=True
        )
        if integer_input:
            x = x.round().clamp(0.0, 255.0)

    mean = torch.as_tensor(pixel_mean, dtype=work_dtype, device=x.device).reshape(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=work_dtype, device=x.device).reshape(1, 3, 1, 1)
    x = (x - mean) / std

    h, w = frame.resized_hw
    ph, pw = frame.padded_hw
    x = F.pad(x, (0, pw - w, 0, ph - h), value=0.0)
    return x.to(out_dtype)


def masks_to_model_frame(masks: torch.Tensor, frame: ModelFrame) -> torch.Tensor:
    """Bring binary prompt masks from the image frame into the padded model frame.

    Resizing uses nearest neighbour on pixel centres (``nearest-exact``), the same centre
    convention as :meth:`ModelFrame.image_to_model`; padding is False, as the official
    code pads prompt masks exactly like the image.

    Args:
        masks: ``(..., H, W)`` bool (or 0/1) masks in the image frame, typically
            ``(P, H, W)`` for ``P`` prompts.
        frame: the target frame.

    Returns:
        ``(..., H_pad, W_pad)`` bool masks in the padded model frame.
    """
    if tuple(masks.shape[-2:]) != frame.image_hw:
        raise ValueError(
            f"mask size {tuple(masks.shape[-2:])} != frame image size {frame.image_hw}"
        )
    lead = masks.shape[:-2]
    m = masks.reshape(-1, *frame.image_hw).bool()
    if frame.resizes:
        m = F.interpolate(m[None].float(), size=frame.resized_hw, mode="nearest-exact")[0] > 0.5
    h, w = frame.resized_hw
    out = m.new_zeros((m.shape[0], *frame.padded_hw))
    out[:, :h, :w] = m
    return out.reshape(*lead, *frame.padded_hw)


def logits_to_image(
    logits: torch.Tensor,
    frame: ModelFrame,
    out_hw: tuple[int, int] | None = None,
    *,
    method: Literal["official", "bilinear"] = "official",
) -> torch.Tensor:
    """Resample mask logits from the stride-4 model grid to the image (or any output size).

    ``method="official"`` (default) is the official chain, bit for bit:

    1. bilinear (``align_corners=False``) upsampling to the padded size ``(H_pad, W_pad)``;
    2. crop to the resized image ``(h, w)``;
    3. bicubic with ``antialias=True`` (PIL-style cubic, a = -0.5) to ``out_hw``.

    It materialises an ``(N, H_pad, W_pad)`` intermediate. ``method="bilinear"`` is the
    cheaper interactive path: every output pixel centre is mapped straight onto the logit
    grid and read bilinearly in one ``grid_sample`` (no padded intermediate, no cubic).
    It samples the same continuous positions as the official chain, so values differ only
    by interpolation kernel (bilinear vs. bilinear-then-cubic); masks thresholded at 0
    agree except on a thin boundary band. Avoid it when ``out_hw`` is much smaller than
    the logit grid (it does not antialias).

    Args:
        logits: ``(..., h_l, w_l)`` mask logits laid out on the padded model frame (stride
            4: ``h_l = H_pad / 4``), typically ``(N, h_l, w_l)``; float.
        frame: the frame the model input was built with.
        out_hw: output ``(H_out, W_out)``; default ``frame.image_hw`` (level-0 pixels).
        method: ``"official"`` or ``"bilinear"``.

    Returns:
        ``(..., H_out, W_out)`` logits in the output frame (the image frame scaled to
        ``out_hw``), same dtype and device.
    """
    out_h, out_w = out_hw if out_hw is not None else frame.image_hw
    lead = logits.shape[:-2]
    x = logits.reshape(1, -1, *logits.shape[-2:])  # (1, N, h_l, w_l): channels are independent
    h, w = frame.resized_hw
    if method == "official":
        x = F.interpolate(x, size=frame.padded_hw, mode="bilinear", align_corners=False)
        x = x[:, :, :h, :w]
        x = F.interpolate(
            x, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True
        )
    elif method == "bilinear":
        ph, pw = frame.padded_hw
        # output centre i -> padded-frame extent position (i + 0.5) * h / out_h; the logit
        # grid spans the padded extent, so its normalised coordinate is 2 * pos / H_pad - 1
        ys = (torch.arange(out_h, device=x.device, dtype=x.dtype) + 0.5) * (2.0 * h / (out_h * ph))
        xs = (torch.arange(out_w, device=x.device, dtype=x.dtype) + 0.5) * (2.0 * w / (out_w * pw))
        grid = torch.stack(
            (xs[None, :].expand(out_h, out_w) - 1.0, ys[:, None].expand(out_h, out_w) - 1.0),
            dim=-1,
        )
        x = F.grid_sample(
            x, grid[None], mode="bilinear", padding_mode="border", align_corners=False
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    return x.reshape(*lead, out_h, out_w)


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.to(torch.float32)


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(int(h * scale + 0.5), 1), max(int(w * scale + 0.5), 1)


def _shortest_edge_size(h: int, w: int, short: int, long_max: int | None) -> tuple[int, int]:
    # detectron2 ResizeShortestEdge.get_output_shape: the short side is set exactly, the
    # long side scaled, both shrunk together if the long side passes long_max
    scale = short / min(h, w)
    new_h, new_w = (float(short), scale * w) if h < w else (scale * h, float(short))
    if long_max is not None and max(new_h, new_w) > long_max:
        shrink = long_max / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return max(int(new_h + 0.5), 1), max(int(new_w + 0.5), 1)
