"""Size limits of the engine server: request bodies (413) and object prompts (422).

:class:`BodyLimit` is ASGI middleware in front of the whole app; :class:`PromptLimits` parses
an object prompt of a request body and refuses one with too many visual prompts or points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.remote.routes.errors import ApiError, error_response

__all__ = ["BodyLimit", "PromptLimits", "count_points"]


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked
    body is counted as it arrives (and buffered, at most ``limit`` bytes) and refused
    once it exceeds the limit, before the app sees it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

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
        while True:
            message = await receive()
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


@dataclass(frozen=True)
class PromptLimits:
    """How large one object prompt may be.

    Attributes:
        max_visual_prompts: most visual prompts in one object prompt.
        max_points: most points + vertices over one object's visual prompts.
    """

    max_visual_prompts: int
    max_points: int

    def parse(self, data: dict[str, Any]) -> ObjectPrompt:
        """The :class:`ObjectPrompt` of a request's ``data`` (``ObjectPrompt.to_dict()`` form).

        Raises:
            ApiError: 422 ``PromptTooLarge`` over a limit, 422 ``PromptError`` when invalid.
        """
        visual = data.get("visual")
        if isinstance(visual, list) and len(visual) > self.max_visual_prompts:
            raise ApiError(
                422,
                "PromptTooLarge",
                f"the prompt has {len(visual)} visual prompts; at most "
                f"{self.max_visual_prompts} per object: merge clicks into one points prompt",
            )
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
        return prompt
