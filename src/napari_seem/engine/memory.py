"""Give memory back to the system after a big job (a fine-tune, a segment run) ended.

Python frees a job's tensors and arrays once nothing refers to them, but reference cycles
(exception tracebacks hold frames, frames hold the training copy of the model) wait for the
garbage collector, torch keeps freed GPU blocks cached, and glibc keeps freed heap pages
mapped. :func:`release_memory` does all three.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

__all__ = ["release_memory"]


def release_memory() -> None:
    """Collect cycles, empty torch's CUDA cache and return free heap pages (glibc)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
