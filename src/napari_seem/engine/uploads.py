"""Uploaded in-memory images of one engine and the one memory budget they share.

An upload counts against ``max_upload_bytes`` from the moment its size is declared (a
:class:`UploadReservation`, taken before the payload is decoded) until nothing holds the
array any more: deleting an image that open sessions still use hides it from lookups
but frees nothing until the last of those sessions closes.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import numpy as np

from napari_seem.engine.errors import ImageTooLargeError, UnknownImageError

__all__ = ["Upload", "UploadReservation", "UploadStore", "unknown_image"]


@dataclass
class Upload:
    """One uploaded array ``(..., y, x[, c])`` with its axis letters; ``holders`` are the
    ids of the sessions opened on it, ``deleted`` is set once the client deleted it."""

    array: np.ndarray
    axes: str
    holders: set[str]
    deleted: bool = False


class UploadReservation:
    """Bytes set aside for an upload whose payload is still being decoded.

    Use it as a context manager around the decoding and
    :meth:`~napari_seem.engine.Engine.add_image` (pass it as ``reservation=``); leaving
    the block releases what the upload did not take.
    """

    def __init__(self, store: UploadStore, nbytes: int) -> None:
        self.store = store
        self.nbytes = int(nbytes)
        self.used = False

    def release(self) -> None:
        """Give the reserved bytes back (no-op once released or turned into an upload)."""
        self.store.release(self)

    def __enter__(self) -> UploadReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class UploadStore:
    """The uploads of one engine and their budget (thread-safe).

    Args:
        max_bytes: most bytes of uploaded arrays held (or reserved) at once.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}
        self._reserved: dict[int, int] = {}  # id(reservation) -> bytes

    @property
    def held_bytes(self) -> int:
        """Bytes of arrays held (deleted ones still used by a session included) plus
        reservations."""
        with self._lock:
            return self._held()

    def _held(self) -> int:
        return sum(u.array.nbytes for u in self._uploads.values()) + sum(self._reserved.values())

    def _refuse(self, nbytes: int, held: int) -> ImageTooLargeError:
        return ImageTooLargeError(
            f"the image has {nbytes} bytes and {held} are held by earlier uploads (images "
            "deleted while a session still uses them count until that session closes); the "
            f"engine keeps at most {self.max_bytes} bytes of in-memory images: save the image "
            "as zarr inside a folder the server may read (an allowed root) and open it by "
            "path, or delete unused uploads and close the sessions opened on them"
        )

    def reserve(self, nbytes: int) -> UploadReservation:
        """Set ``nbytes`` aside for an upload about to be decoded.

        Raises:
            ImageTooLargeError: they do not fit the budget next to what is held.
        """
        reservation = UploadReservation(self, nbytes)
        with self._lock:
            held = self._held()
            if held + reservation.nbytes > self.max_bytes:
                raise self._refuse(reservation.nbytes, held)
            self._reserved[id(reservation)] = reservation.nbytes
        return reservation

    def release(self, reservation: UploadReservation) -> None:
        """Give back what ``reservation`` still holds."""
        with self._lock:
            self._reserved.pop(id(reservation), None)

    def add(self, array: np.ndarray, axes: str, reservation: UploadReservation | None) -> str:
        """Keep ``array`` (its bytes replace ``reservation``'s) and return its new id.

        Raises:
            ImageTooLargeError: the array does not fit the budget.
        """
        with self._lock:
            reserved = 0 if reservation is None else self._reserved.pop(id(reservation), 0)
            held = self._held()
            if held + array.nbytes > self.max_bytes:
                if reservation is not None and reserved:
                    self._reserved[id(reservation)] = reserved
                raise self._refuse(array.nbytes, held)
            if reservation is not None:
                reservation.used = True
            image_id = uuid.uuid4().hex
            self._uploads[image_id] = Upload(array, axes, set())
        return image_id

    def get(self, image_id: str) -> Upload:
        """The upload (not a deleted one).

        Raises:
            UnknownImageError: no such upload, or it was deleted.
        """
        with self._lock:
            upload = self._uploads.get(image_id)
        if upload is None or upload.deleted:
            raise UnknownImageError(unknown_image(image_id))
        return upload

    def ids(self) -> list[str]:
        """The ids of the uploads a client can still use, oldest first."""
        with self._lock:
            return [k for k, u in self._uploads.items() if not u.deleted]

    def delete(self, image_id: str) -> None:
        """Forget an upload; its memory is freed once no session holds it.

        Raises:
            UnknownImageError: no such upload, or it was deleted already.
        """
        with self._lock:
            upload = self._uploads.get(image_id)
            if upload is None or upload.deleted:
                raise UnknownImageError(unknown_image(image_id))
            upload.deleted = True
            if not upload.holders:
                del self._uploads[image_id]

    def hold(self, image_id: str, session_id: str) -> None:
        """Count ``session_id`` as a user of the upload (its bytes stay held).

        Raises:
            UnknownImageError: the upload was deleted meanwhile.
        """
        with self._lock:
            upload = self._uploads.get(image_id)
            if upload is None or upload.deleted:
                raise UnknownImageError(unknown_image(image_id))
            upload.holders.add(session_id)

    def let_go(self, image_id: str, session_id: str) -> None:
        """``session_id`` closed: a deleted upload nobody holds any more is freed."""
        with self._lock:
            upload = self._uploads.get(image_id)
            if upload is None:
                return
            upload.holders.discard(session_id)
            if upload.deleted and not upload.holders:
                del self._uploads[image_id]

    def clear(self) -> None:
        """Forget every upload and reservation."""
        with self._lock:
            self._uploads.clear()
            self._reserved.clear()


def unknown_image(image_id: str) -> str:
    """The refusal text for an image id the engine does not hold."""
    return (
        f"no uploaded image {image_id!r}: upload it with add_image / POST /images and use "
        "the id it returns (deleted images are gone)"
    )
