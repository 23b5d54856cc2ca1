"""Size limits of the engine server: request bodies (413) and object prompts (422).

:class:`BodyLimit` is ASGI middleware in front of the whole app; :class:`PromptLimits` parses
an object prompt of a request body and refuses one with too many visual prompts or points.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from napari_seem.core.arrays import as_int_pair
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.visual import PromptError, Scribble
from napari_seem.engine.limits import ServerLimits
from napari_seem.remote.routes.errors import ApiError, error_response

__all__ = ["BodyLimit", "PromptLimits", "count_points"]


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked
    body is counted as it arrives (and buffered, at most ``limit`` bytes) and refused
    once it exceeds the limit, before the app sees it. A body that has not fully arrived
    ``timeout_s`` seconds after the request started is refused with 408 ``BodyTimeout``
    (``Connection: close``), so a stalled client holds its buffer for a bounded time.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float = 60.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                too_large = False  # the server rejects a malformed header itself
            if too_large:
                await self._refuse(scope, receive, send, int(declared))
                return
        messages: list[Message] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, deadline - asyncio.get_running_loop().time())
                )
            except TimeoutError:
                await self._too_slow(scope, receive, send, size)
                return
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send, None)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        response = error_response(
            408,
            "BodyTimeout",
            f"the request body did not arrive within {self.timeout_s:g} s (got {size} bytes): "
            "send the whole body at once, or restart the server with a longer "
            "--body-timeout-s for a slow link",
            Connection="close",
        )
        await response(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        got = "more" if size is None else f"{size} bytes"
        response = error_response(
            413,
            "BodyTooLarge",
            f"the request body ({got}) exceeds the server's limit of {self.limit} bytes: "
            "send fewer prompt points; upload only small images (save a large one as zarr "
            "inside an allowed root and open it by path)",
            Connection="close",
        )
        await response(scope, receive, send)


def count_points(prompt: ObjectPrompt) -> int:
    """Points + vertices over the visual prompts (a box counts 2, a mask 1)."""
    total = 0
    for visual in prompt.visual:
        coords = getattr(visual, "coords", getattr(visual, "vertices", None))
        total += 2 if visual.kind == "box" else 1 if coords is None else len(coords)
    return total


def _declared_mask(visual: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The declared ``(shape, offset)`` of a raw mask prompt dict (``None``: malformed, left
    to :meth:`ObjectPrompt.from_dict` to refuse)."""
    try:
        shape = as_int_pair(visual.get("shape"), what="mask 'shape'", error=PromptError)
        offset = as_int_pair(visual.get("offset"), what="mask 'offset'", error=PromptError)
    except (PromptError, TypeError, ValueError, OverflowError):
        return None
    return shape, offset


@dataclass(frozen=True)
class PromptLimits:
    """How large one object prompt may be.

    Attributes:
        max_visual_prompts: most visual prompts in one object prompt.
        max_points: most points + vertices over one object's visual prompts.
        max_mask_pixels: largest declared ``h * w`` of one mask prompt (checked on the
            declared shape, before its run lengths are decoded).
        max_scribble_width: widest scribble brush, level-0 pixels (checked before any
            rasterizing).
    """

    max_visual_prompts: int
    max_points: int
    max_mask_pixels: int = ServerLimits.max_mask_pixels
    max_scribble_width: float = ServerLimits.max_scribble_width

    def parse(
        self, data: dict[str, Any], image_shape: tuple[int, int] | None = None
    ) -> ObjectPrompt:
        """The :class:`ObjectPrompt` of a request's ``data`` (``ObjectPrompt.to_dict()`` form).

        Args:
            data: the prompt as JSON data.
            image_shape: level-0 ``(H, W)`` of the image the prompt is for: a mask prompt
                must lie inside it (checked before decoding).

        Raises:
            ApiError: 422 ``PromptTooLarge`` over a limit, 422 ``PromptError`` when
                invalid, 422 ``PromptOutsideImageError`` for a mask outside the image.
        """
        visual = data.get("visual")
        if isinstance(visual, list) and len(visual) > self.max_visual_prompts:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"the prompt has {len(visual)} visual prompts; at most "
                f"{self.max_visual_prompts} per object: merge clicks into one points prompt",
            )
        for item in visual if isinstance(visual, list) else ():
            if isinstance(item, dict) and item.get("kind") == "mask":
                self._check_mask(item, image_shape)
        try:
            prompt = ObjectPrompt.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:  # PromptError is a ValueError
            raise ApiError(422, "PromptError", f"invalid prompt: {exc}") from None
        points = count_points(prompt)
        if points > self.max_points:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"the prompt has {points} points and vertices; at most {self.max_points} per "
                "object: simplify the scribbles or polygons",
            )
        for item in prompt.visual:
            if isinstance(item, Scribble) and item.width > self.max_scribble_width:
                raise ApiError(
                    422,
                    "PromptTooLarge",
                    f"a scribble is {item.width:g} pixels wide; at most "
                    f"{self.max_scribble_width:g}: draw a narrower brush, or send the region "
                    "as a polygon or mask prompt",
                )
        return prompt

    def _check_mask(self, item: dict[str, Any], image_shape: tuple[int, int] | None) -> None:
        declared = _declared_mask(item)
        if declared is None:
            return
        (h, w), (row, col) = declared
        if h < 0 or w < 0:
            return  # refused by the decoder with its own message
        if h * w > self.max_mask_pixels:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"a mask prompt declares shape ({h}, {w}) = {h * w} pixels; at most "
                f"{self.max_mask_pixels}: crop the mask to its bounding box "
                "(MaskPrompt.from_full does) or paint at a coarser level",
            )
        if image_shape is not None:
            height, width = image_shape
            if row < 0 or col < 0 or row + h > height or col + w > width:
                raise ApiError(
                    422,
                    "PromptOutsideImageError",
                    f"a mask prompt of shape ({h}, {w}) at offset ({row}, {col}) does not fit "
                    f"the image of shape ({height}, {width}): crop the mask to the image or "
                    "fix its offset",
                )
