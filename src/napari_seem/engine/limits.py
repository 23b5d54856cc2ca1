"""Every limit of the model process in one place (``napari-seem serve`` flags map onto these).

A hostile client with a valid token must get a 4xx, never a 500, an out-of-memory or a file
write: each field bounds one resource a request can make the process spend. The engine
enforces the engine-side fields, the HTTP layer (:mod:`napari_seem.remote`) the transport ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ServerLimits"]

MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what one client can make the model process allocate, hold or run.

    Transport (HTTP layer):

    Attributes:
        max_body_bytes: largest request body read (bigger: 413 before it is buffered).
        header_timeout_s: seconds a client may take to send its request headers.
        body_timeout_s: seconds a client may take to send a whole declared body.
        keep_alive_timeout_s: seconds an idle keep-alive connection stays open.
        max_header_bytes: largest request line + headers buffered (bigger: 431
            ``HeadersTooLarge``, a typed JSON reply).

    Prompts:
        max_visual_prompts: most visual prompts in one object prompt.
        max_points: most points + vertices over one object's visual prompts.
        max_mask_pixels: largest declared ``h * w`` of a mask prompt, checked on the declared
            shape before any decoding (a mask must also lie inside its image).
        max_scribble_width: widest scribble stroke in level-0 pixels.
        max_object_id_chars: longest ``object_id`` (memory key) a client may name.
        max_vocabulary_names: most class names in one ``predict`` vocabulary (the names a
            clicked object is named from).

    Engine:
        max_sessions: most open sessions at once (more: 429 until one is closed).
        max_jobs_kept: most jobs remembered; the oldest finished ones are evicted first.
        finished_job_ttl_s: seconds a finished job's status and result are kept.
        max_tiles: most tiles one ``predict`` decodes (a larger answer is cut and the reply
            says ``truncated``); most tiles one ``ground`` / ``refer`` covers.
        cache_bytes_per_session: feature-cache memory of one session.
        cache_bytes_total: feature-cache memory over all sessions (least recently used
            sessions' caches are trimmed first).
        max_upload_bytes: bytes of uploaded in-memory images held at once, counted while
            any session still holds the array (deleting an image a session uses frees
            nothing until that session closes).
        max_result_pixels: largest level-0 box a ``segment`` job answers as a labels crop.
        max_fine_tune_pixel_steps: most ``batch_size * crop**2 * steps`` of one fine-tune.
        max_fine_tune_batch_pixels: most ``batch_size * crop**2`` of one optimizer step (the
            peak-memory bound of a fine-tune).
        max_fine_tune_crop_pixels: most ``crops_per_image * images * crop**2`` a fine-tune
            caches before its first step (its training crops are held in memory).
        max_weight_files: most fine-tuned weight files the engine keeps in its work folder;
            beyond it the oldest ones not in use are deleted (cancelled runs, start-point
            snapshots and files replaced by newer weights are deleted at once).
    """

    max_body_bytes: int = 16 * MiB
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_timeout_s: float = 5.0
    max_header_bytes: int = 16 * 1024

    max_visual_prompts: int = 64
    max_points: int = 10_000
    max_mask_pixels: int = 8192 * 8192
    max_scribble_width: int = 256
    max_object_id_chars: int = 200
    max_vocabulary_names: int = 256

    max_sessions: int = 64
    max_jobs_kept: int = 256
    finished_job_ttl_s: float = 3600.0
    max_tiles: int = 64
    cache_bytes_per_session: int = 2 * GiB
    cache_bytes_total: int = 4 * GiB
    max_upload_bytes: int = 512 * MiB
    max_result_pixels: int = 8192 * 8192
    max_fine_tune_pixel_steps: int = 8 * 512 * 512 * 2000
    max_fine_tune_batch_pixels: int = 16 * 512 * 512
    max_fine_tune_crop_pixels: int = 256 * 512 * 512
    max_weight_files: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ServerLimits.{f.name} must be a positive number, got {value!r}")
