"""Where model weights live, and fetching the official SEEM checkpoints.

No torch import here: listing variants and downloading files are plain I/O. Official weights
come from the Hugging Face hub repository ``xdecoder/SEEM``; they are stored in the user cache
(``$NAPARI_SEEM_CACHE`` or ``$XDG_CACHE_HOME/napari-seem`` or ``~/.cache/napari-seem``). A
download streams into a ``.part`` file, computes its SHA-256 on the fly, compares it with the
checksum the hub publishes for the file (the ``X-Linked-Etag`` header of large files), and only
then renames it into place next to a ``.sha256`` record. A local path always works offline.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OFFICIAL_WEIGHTS",
    "DownloadError",
    "WeightsInfo",
    "cache_dir",
    "cached_path",
    "download_official",
]

HUB_URL = "https://huggingface.co"
HUB_REPO = "xdecoder/SEEM"


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched or failed its checksum; the message says what to do."""


@dataclass(frozen=True)
class WeightsInfo:
    """An official weight file.

    Attributes:
        variant: model variant name (``seem-focalt-v1``).
        filename: file name in the hub repository.
        approx_bytes: float32 state-dict size (from the official key lists), for messages.
    """

    variant: str
    filename: str
    approx_bytes: int


OFFICIAL_WEIGHTS: dict[str, WeightsInfo] = {
    info.variant: info
    for info in (
        WeightsInfo("seem-focalt-v1", "seem_focalt_v1.pt", 658_477_568),
        WeightsInfo("seem-focall-v1", "seem_focall_v1.pt", 1_364_725_280),
        WeightsInfo("seem-samvitb-v1", "seem_samvitb_v1.pt", 862_255_168),
        WeightsInfo("seem-samvitl-v1", "seem_samvitl_v1.pt", 1_762_155_328),
    )
}


def cache_dir() -> Path:
    """Folder for downloaded weights (created on demand by the download)."""
    if env := os.environ.get("NAPARI_SEEM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-seem"


def cached_path(variant: str) -> Path | None:
    """The verified cached file of an official variant, or None when it is not downloaded."""
    info = _info(variant)
    path = cache_dir() / info.filename
    if path.is_file() and path.with_suffix(path.suffix + ".sha256").is_file():
        return path
    return None


def _info(variant: str) -> WeightsInfo:
    try:
        return OFFICIAL_WEIGHTS[variant]
    except KeyError:
        known = ", ".join(OFFICIAL_WEIGHTS)
        raise DownloadError(
            f"no official weights for {variant!r}; downloadable variants: {known}"
        ) from None


def _offline() -> bool:
    return any(
        os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "NAPARI_SEEM_OFFLINE")
    )


def download_official(
    variant: str,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 15.0,
    force: bool = False,
) -> Path:
    """Fetch the official checkpoint of ``variant`` into the cache and verify its SHA-256.

    Args:
        variant: one of :data:`OFFICIAL_WEIGHTS`.
        progress: called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.
        timeout: seconds to wait for the server to answer (fails fast when offline).
        force: download again even when a verified copy is cached.

    Returns:
        Path of the verified file.

    Raises:
        DownloadError: offline, server error, or checksum mismatch (the partial file is removed).
    """
    info = _info(variant)
    target = cache_dir() / info.filename
    if not force and cached_path(variant) is not None:
        return target
    base = os.environ.get("NAPARI_SEEM_HUB_URL", HUB_URL).rstrip("/")
    url = f"{base}/{HUB_REPO}/resolve/main/{info.filename}"
    how_else = (
        f"download {url} yourself (about {info.approx_bytes / 1e9:.2f} GB) and pass its path "
        "with --checkpoint"
    )
    if _offline():
        raise DownloadError(
            f"offline mode is set (HF_HUB_OFFLINE); cannot fetch {variant}: {how_else}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = _published_sha256(response.headers)
            total_header = response.headers.get("Content-Length")
            total = int(total_header) if total_header else None
            done = 0
            with open(part, "wb") as fh:
                while block := response.read(1 << 20):
                    fh.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {variant} from {url} ({exc}); {how_else}") from exc
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {info.filename}: got sha256 {actual}, the hub publishes "
            f"{expected}; the download was corrupted, run the command again"
        )
    part.replace(target)
    target.with_suffix(target.suffix + ".sha256").write_text(f"{actual}  {info.filename}\n")
    return target


def _published_sha256(headers: object) -> str | None:
    """The SHA-256 the hub publishes for an LFS file (``X-Linked-Etag``), if any."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name in ("X-Linked-Etag", "ETag"):
        value = get(name)
        if value:
            value = value.strip().strip('"').removeprefix("W/").strip('"')
            if len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
                return value.lower()
    return None
