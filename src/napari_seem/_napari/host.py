"""What the dock widget's panels may use of the widget: the :class:`Host` protocol.

Panels (model process, long runs, fine-tuning) never reach into the widget's private
state: :class:`~napari_seem._napari.widget.SeemWidget` implements this protocol and hands
itself to them. Everything here runs on the Qt GUI thread unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from magicgui.widgets import Container, Label

if TYPE_CHECKING:
    from napari_seem._napari.backend import Backend, ImageRef
    from napari_seem._napari.commits import CommitLog
    from napari_seem._napari.qt_bridge import MainThread
    from napari_seem.core.results import ObjectMask

__all__ = ["Host", "group", "header", "row"]

T = TypeVar("T")


class Host(Protocol):
    """The widget as its panels see it."""

    viewer: Any
    status: Label
    model_status: Label
    messages: list[tuple[str, str]]

    @property
    def main(self) -> MainThread:
        """Runs callables on the GUI thread (``later``, ``when_done``)."""
        ...

    @property
    def backend(self) -> Backend | None:
        """The running model process, or ``None`` (it starts on first use)."""
        ...

    @property
    def commits(self) -> CommitLog:
        """The commit / undo log of every labels layer the widget painted."""
        ...

    def notify(self, text: str, severity: str = "info") -> None:
        """Show a napari notification and the status line."""
        ...

    def fail(self, exc: BaseException, what: str) -> None:
        """Report a failed request (cancelled, model process gone, server refusal...)."""
        ...

    def with_backend(
        self, then: Callable[[Backend], None], *, on_error: Callable[[], None] | None = None
    ) -> None:
        """Call ``then(backend)`` once the model process is up (starting it if needed)."""
        ...

    def run(
        self,
        what: str,
        work: Callable[[Backend], T],
        done: Callable[[T], None],
        *,
        generation: int | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        """``work(backend)`` on a worker thread, then ``done(result)`` on the GUI thread."""
        ...

    def current_image(self) -> Any | None:
        """The chosen image layer (or the first one)."""
        ...

    def require_image(self) -> Any | None:
        """:meth:`current_image`, with an error notification when there is none."""
        ...

    def image_ref(self, image: Any) -> ImageRef:
        """How the model process sees an image layer (cheap; GUI thread)."""
        ...

    def plane_of(self, image: Any) -> tuple[int, ...]:
        """The stack plane of ``image`` the viewer shows."""
        ...

    def target_layer(self, image: Any) -> Any:
        """The labels layer commits over ``image`` go into (created when needed)."""
        ...

    def request_preview(
        self,
        what: str,
        work: Callable[[Backend], list[ObjectMask]],
        image: Any,
        plane: tuple[int, ...],
    ) -> None:
        """Run ``work`` and show its objects as the preview on ``image`` / ``plane``; a
        newer request supersedes it."""
        ...

    def preview(self) -> tuple[ObjectMask, Any, tuple[int, ...]] | None:
        """The previewed object with its image layer and plane, or ``None``."""
        ...

    def commit(self, *_: Any) -> list[int]:
        """Commit the preview; the new label ids."""
        ...


def header(text: str) -> Label:
    """A bold section title."""
    label = Label(value=text)
    label.native.setStyleSheet("font-weight: bold; margin-top: 6px;")
    return label


def row(*items: Any) -> Container:
    """Widgets side by side."""
    return Container(widgets=list(items), layout="horizontal", labels=False)


def group(title: str, *items: Any) -> Container:
    """Labelled widgets one below the other (``title`` names the Qt object)."""
    box = Container(widgets=list(items), labels=True)
    box.native.setObjectName(title)
    return box
