"""The "Model" section of the dock widget: which model process, starting it, prefetching.

:class:`ModelPanel` owns the model process of the widget (a
:class:`~napari_seem._napari.backend.Backend`): it starts it on first use (off the GUI
thread), restarts it when it died, closes it when the widget goes, and warms its feature
cache for the visible region (prefetch). It talks to the widget through
:class:`~napari_seem._napari.host.Host` only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, LineEdit, Password, PushButton

from napari_seem._napari import layers as L
from napari_seem._napari.backend import Backend, ModelChoice
from napari_seem._napari.host import Host
from napari_seem.core.variants import DEFAULT_VARIANT, VARIANT_SUMMARIES

__all__ = ["REMOTE", "ModelPanel"]

REMOTE = "remote"


def _model_choices() -> list[tuple[str, str]]:
    out = [(f"default: {DEFAULT_VARIANT}", DEFAULT_VARIANT)]
    for name, summary in VARIANT_SUMMARIES.items():
        if name != DEFAULT_VARIANT:
            out.append((f"{name} ({summary.backbone}, {summary.weights})", name))
    out.append(("remote server (URL + token)", REMOTE))
    return out


class ModelPanel:
    """The model controls and the model process behind them.

    Args:
        host: the widget.
        model: the initial model choice.
    """

    def __init__(self, host: Host, model: ModelChoice) -> None:
        self.host = host
        self.choice = model
        self.backend: Backend | None = None
        self.starting: Future[Backend] | None = None
        self.owns_backend = False
        self.prefetch_job: str | None = None
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seem-start")
        initial = REMOTE if model.url else model.variant
        self.model_choice = ComboBox(label="Model", choices=_model_choices(), value=initial)
        self.checkpoint = FileEdit(
            label="Checkpoint", mode=FileDialogMode.EXISTING_FILE, filter="*.pt *.pth *.safetensors"
        )
        self.url = LineEdit(label="Server URL", value=model.url or "")
        self.token = Password(label="Token", value=model.token or "")
        self.connect_button = PushButton(text="Connect")
        self.model_status = Label(value="model: not started (starts on first use)")
        self.model_status.native.setWordWrap(True)
        self.prefetch = CheckBox(text="Prefetch the visible region", value=True)
        self.update_fields()
        self.model_choice.changed.connect(self.update_fields)

    def update_fields(self, *_: Any) -> None:
        """Show the checkpoint field for variants, URL and token for a server."""
        value = self.model_choice.value
        self.url.visible = self.token.visible = value == REMOTE
        self.checkpoint.visible = value not in (REMOTE, DEFAULT_VARIANT)

    def chosen(self) -> ModelChoice:
        """The model the controls describe.

        Raises:
            ValueError: a server without a URL.
        """
        value = self.model_choice.value
        if value == REMOTE:
            url = str(self.url.value).strip()
            if not url:
                raise ValueError("enter the server URL (http://host:port) and its token")
            return ModelChoice(url=url, token=str(self.token.value).strip() or None)
        path = str(self.checkpoint.value or "").strip()
        checkpoint = path if path not in ("", ".") else None
        base = self.choice
        return ModelChoice(
            variant=value,
            checkpoint=checkpoint,
            tile=base.tile,
            halo=base.halo,
            device=base.device,
            read_roots=base.read_roots,
        )

    # ------------------------------------------------------------------ lifecycle

    def use(self, backend: Backend) -> None:
        """Use an already running model process (the caller closes it)."""
        self.drop()
        self.backend, self.starting = backend, None
        self.owns_backend = False
        self._show_running(backend)
        if backend.info.model in list(self.model_choice.choices or ()):  # the running model
            with self.model_choice.changed.blocked():
                self.model_choice.value = backend.info.model

    def drop(self) -> None:
        """Forget the model process (closing it when this panel started it)."""
        backend, self.backend, self.starting = self.backend, None, None
        self.prefetch_job = None
        if backend is not None and self.owns_backend:
            threading.Thread(target=backend.close, daemon=True).start()
        self.model_status.value = "model: not running (starts on next use)"

    def _show_running(self, backend: Backend) -> None:
        host = self.host
        backend.on_notice = lambda text: host.main.later(lambda: host.notify(text, "warning"))
        info = backend.info
        # the file name only: a full path is long and says where the user's files live
        weights = Path(info.checkpoint).name if info.checkpoint else "none"
        self.model_status.value = f"model: {info.model} on {info.device} (weights: {weights})"

    def _download_progress(self, done: int, total: int | None) -> None:
        """Weights download progress (from the starting thread)."""
        size = f" of {total / 1e6:.0f} MB" if total else ""
        text = f"model: downloading official weights, {done / 1e6:.0f} MB{size}..."
        self.host.main.later(lambda: setattr(self.model_status, "value", text))

    def with_backend(
        self, then: Callable[[Backend], None], *, on_error: Callable[[], None] | None = None
    ) -> None:
        """Call ``then(backend)`` on the GUI thread once the model process is up."""
        if self.backend is not None and self.backend.alive:
            then(self.backend)
            return
        if self.backend is not None:
            process = self.backend.client.process
            code = None if process is None else process.poll()
            self.drop()
            self.host.notify(
                f"The model process stopped (exit code {code}); starting a new one. Your "
                "committed labels are kept; the open image is sent to the new process.",
                "error",
            )
        if self.starting is None:
            try:
                choice = self.chosen()
            except ValueError as exc:
                if on_error is not None:
                    on_error()
                self.host.notify(str(exc), "error")
                return
            self.choice = choice
            self.model_status.value = f"model: starting {choice.describe()}..."
            self.starting = self._starter.submit(
                Backend.start, choice, download=self._download_progress
            )
        self.host.main.when_done(self.starting, lambda f: self._started(f, then, on_error))

    def _started(
        self,
        future: Future[Backend],
        then: Callable[[Backend], None],
        on_error: Callable[[], None] | None,
    ) -> None:
        if future is not self.starting:
            return
        exc = future.exception()
        if exc is not None:
            self.starting = None
            if on_error is not None:
                on_error()
            self.model_status.value = "model: failed to start"
            self.host.notify(
                f"The model process did not start ({self.choice.describe()}): {exc}\n"
                "Check the checkpoint path and the variant (or the URL and token); an "
                "official variant without a checkpoint downloads its weights once.",
                "error",
            )
            return
        if self.backend is None:
            self.backend = future.result()
            self.owns_backend = True
            self._show_running(self.backend)
        then(self.backend)

    # ------------------------------------------------------------------ prefetch

    def prefetch_visible(self) -> None:
        """Encode the visible region of the chosen image ahead of the next click."""
        backend, image = self.backend, self.host.current_image()
        if backend is None or image is None or not backend.alive:
            return
        box = L.visible_box(self.host.viewer, image)
        if box is None:
            return
        ref, plane, previous = (
            self.host.image_ref(image),
            self.host.plane_of(image),
            self.prefetch_job,
        )

        def work(b: Backend) -> str:
            if previous is not None:
                b.cancel_job(previous)
            return b.prefetch(ref, plane, box)

        def started(job_id: str) -> None:
            self.prefetch_job = job_id

        future = backend.submit(work, backend)
        self.host.main.when_done(
            future, lambda f: started(f.result()) if f.exception() is None else None
        )
