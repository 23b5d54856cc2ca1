"""What every ``napari-seem`` subcommand shares: the user-facing error, notes and checks."""

from __future__ import annotations

__all__ = [
    "EXTRA_OF_MODULE",
    "RANDOM_WEIGHTS_NOTE",
    "RESUMABLE_COMMANDS",
    "CliError",
    "check_device",
    "missing_extra_message",
    "random_weights",
    "resumable",
]


class CliError(Exception):
    """A user-facing error: printed as ``napari-seem: error: ...`` with exit code 2."""


RANDOM_WEIGHTS_NOTE = (
    "NOTE: this run uses {variant!r} with RANDOM weights, so the masks exercise the whole "
    "pipeline but say nothing about segmentation quality. For real masks use the default "
    "--variant seem-lite (trained, shipped in the package), or --variant seem-focalt-v1 "
    "--checkpoint PATH (or `napari-seem models download seem-focalt-v1`)."
)

# Commands whose interrupted run continues where it stopped when run again (``train``
# only with a --resume-dir or a --recipe, see ``resumable``).
RESUMABLE_COMMANDS = frozenset({"segment", "train"})


def resumable(args: object) -> bool:
    """Whether running the same command line again resumes the interrupted run ``args``."""
    command = getattr(args, "command", None)
    if command == "train":
        return bool(getattr(args, "resume_dir", None) or getattr(args, "recipe", None))
    return command in RESUMABLE_COMMANDS


# Top-level module -> the pip extra that installs it (for a missing optional dependency).
EXTRA_OF_MODULE = {
    "uvicorn": "server",
    "fastapi": "server",
    "httpx": "server",
    "dask": "distributed",
    "distributed": "distributed",
    "napari": "napari",
    "ipywidgets": "jupyter",
    "anywidget": "jupyter",
}


def random_weights(variant: str, checkpoint: object | None) -> bool:
    """Whether ``variant`` with ``checkpoint`` runs on random weights: no checkpoint and not
    the seem-lite whose trained weights ship in this installation (the same rule for every
    command)."""
    if checkpoint is not None:
        return False
    if variant == "seem-lite":
        from napari_seem.core.variants import seem_lite_shipped

        return not seem_lite_shipped()
    return True


def missing_extra_message(module: str | None) -> str | None:
    """The one-line fix for an optional dependency that is not installed, or None when
    ``module`` is not one of the package's optional dependencies."""
    top = (module or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (
        f"this command needs the {extra!r} extra ({top} is not installed): run "
        f'`pip install -e ".[{extra}]"` in the repository (or `pip install '
        f"'napari-seem[{extra}]'`) inside this environment"
    )


def check_device(device: str) -> str:
    """The torch device name for a ``--device`` value; a clear :class:`CliError` when the
    device does not exist on this machine (instead of a traceback from deep inside torch).

    ``gpu`` is taken as ``cuda``. ``auto`` and ``cpu`` never import torch.
    """
    text = device.strip().lower()
    if text in ("auto", "cpu"):
        return text
    if text == "gpu" or text.startswith("gpu:"):
        text = "cuda" + text[3:]
    if text == "cuda" or text.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise CliError(
                f"--device {device}: no CUDA GPU is available here (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use "
                "--device cpu or auto, or install the CUDA build of torch (README: GPU)"
            )
        index = text.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise CliError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
        return text
    if text == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise CliError(f"--device {device}: Apple MPS is not available here; use cpu or auto")
        return text
    raise CliError(f"--device {device!r}: unknown device; use cpu, cuda, cuda:N, mps or auto")
