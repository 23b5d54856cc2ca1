"""A job's labels result and its binary payload (numpy only; no torch, no HTTP).

A region job (e.g. "segment everything on this box") answers a :class:`LabelsCrop`: a
``uint32`` label image over a level-0 box plus a class table, never a full-image array.

**Payload** (media type ``application/vnd.napari-seem.labels``), all integers
little-endian::

    offset  size  content
    0       4     magic b"NSLB"
    4       1     format version (1)
    5       3     zero
    8       4     n = byte length of the header (uint32)
    12      n     header: UTF-8 JSON object
                    shape        [h, w] of the crop
                    offset       [row, col] level-0 pixel of labels[0, 0]
                    image_shape  [H, W] level-0 size of the image plane
                    plane        plane indices of a stack ([] for 2-D)
                    dtype        "<u4"
                    compression  "zlib"
                    classes      class table rows, e.g. {"id": 1, "class_name": "cell",
                                 "score": 0.9, ...}; "id" is the label value
                    output       optional: where a job wrote its full result instead
                                 (e.g. {"labels": path, "class_table": csv, ...}); the
                                 crop is then empty (0 x 0). Readers ignore unknown keys.
    12+n    ...   zlib.compress(labels as C-order "<u4" bytes)

JSON keeps the table self-describing and extensible; the pixels stay binary (a 4096^2
crop of mostly background compresses to a few hundred kilobytes).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.results import ObjectMask, SegmentationResult

__all__ = ["LABELS_FORMAT_VERSION", "LABELS_MEDIA_TYPE", "LabelsCrop", "decode_labels"]

LABELS_MEDIA_TYPE = "application/vnd.napari-seem.labels"
LABELS_FORMAT_VERSION = 1
_MAGIC = b"NSLB"
_PREFIX = struct.Struct("<4sB3xI")
# a label crop bigger than this is refused when decoding (a corrupt or hostile header)
_MAX_DECODED_PIXELS = 1 << 31


@dataclass(frozen=True)
class LabelsCrop:
    """Labels over a level-0 box of one image plane.

    Attributes:
        labels: ``(h, w)`` uint32; 0 is background, ``k > 0`` the object with ``"id": k``
            in ``classes``.
        offset: level-0 ``(row, col)`` of ``labels[0, 0]``.
        image_shape: level-0 ``(H, W)`` of the plane.
        classes: JSON-safe rows, one per label id (``"id"`` and usually ``"class_name"``,
            ``"score"``; see :meth:`SegmentationResult.class_table`).
        plane: plane indices of a stack; ``()`` for a 2-D image.
        output: JSON-safe description of where a job wrote its labels when they were too
            large to send (the ``"segment"`` job with ``out=``): ``labels`` (zarr path),
            ``class_table`` (CSV path), ``objects``, ``shape``, ``level``; the crop is
            then usually empty. ``None`` for an ordinary crop.
    """

    labels: npt.NDArray[np.uint32]
    offset: tuple[int, int]
    image_shape: tuple[int, int]
    classes: tuple[Mapping[str, Any], ...] = ()
    plane: tuple[int, ...] = field(default=())
    output: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 2 or labels.dtype.kind not in "ui":
            raise ValueError(
                f"LabelsCrop.labels must be a 2-D integer array; got {labels.dtype} {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint32).max):
            raise ValueError("LabelsCrop.labels must fit in uint32")
        object.__setattr__(self, "labels", labels.astype(np.uint32, copy=False))
        offset = (int(self.offset[0]), int(self.offset[1]))
        shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        h, w = labels.shape
        if min(offset) < 0 or offset[0] + h > shape[0] or offset[1] + w > shape[1]:
            raise ValueError(
                f"a {h} x {w} labels crop at {offset} does not fit the image of {shape}"
            )
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "plane", tuple(int(p) for p in self.plane))
        object.__setattr__(self, "classes", tuple(dict(row) for row in self.classes))
        if self.output is not None:
            object.__setattr__(self, "output", dict(self.output))

    @classmethod
    def from_result(
        cls, result: SegmentationResult, box: Sequence[int] | None = None
    ) -> LabelsCrop:
        """The labels of ``result`` cut to level-0 ``box`` ``(r0, c0, r1, c1)`` (default: the
        objects' bounding box), with ``result.class_table()`` as the class table."""
        h, w = result.image_shape
        if box is None:
            boxes = [obj.bbox for obj in result.objects if obj.bbox is not None]
            if boxes:
                box = (
                    min(b[0] for b in boxes),
                    min(b[1] for b in boxes),
                    max(b[2] for b in boxes),
                    max(b[3] for b in boxes),
                )
            else:
                box = (0, 0, 0, 0)
        r0, c0, r1, c1 = (int(v) for v in box)
        labels = np.zeros((r1 - r0, c1 - c0), np.uint32)
        order = sorted(range(len(result.objects)), key=lambda i: (result.objects[i].score, -i))
        for i in order:  # as SegmentationResult.to_labels, but only inside the box
            obj = result.objects[i]
            (orow, ocol), (mh, mw) = obj.offset, obj.mask.shape
            top, left = max(orow, r0), max(ocol, c0)
            bottom, right = min(orow + mh, r1), min(ocol + mw, c1)
            if bottom > top and right > left:
                part = obj.mask[top - orow : bottom - orow, left - ocol : right - ocol]
                labels[top - r0 : bottom - r0, left - c0 : right - c0][part] = i + 1
        return cls(labels, (r0, c0), (h, w), tuple(result.class_table()), result.plane)

    def to_objects(self, *, source: str = "panoptic") -> list[ObjectMask]:
        """One level-0 :class:`ObjectMask` crop per label id, in id order, named from the
        class table (``class_name``, ``score``, ``class_score``, ``source``; ``source``
        is the default for rows without one)."""
        from scipy import ndimage

        if not self.labels.size:
            return []
        rows = {int(r["id"]): r for r in self.classes if "id" in r}
        found = ndimage.find_objects(self.labels)
        out = []
        for value in np.unique(self.labels).tolist():
            if value == 0:
                continue
            rs, cs = found[value - 1]
            row = rows.get(value, {})
            class_score = row.get("class_score")
            out.append(
                ObjectMask(
                    self.labels[rs, cs] == value,
                    (self.offset[0] + rs.start, self.offset[1] + cs.start),
                    score=float(row.get("score") or 0.0),
                    class_name=row.get("class_name"),
                    class_score=None if class_score is None else float(class_score),
                    source=str(row.get("source") or source),
                )
            )
        return out

    def to_bytes(self) -> bytes:
        """The binary payload (module docstring)."""
        header: dict[str, Any] = {
            "shape": list(self.labels.shape),
            "offset": list(self.offset),
            "image_shape": list(self.image_shape),
            "plane": list(self.plane),
            "dtype": "<u4",
            "compression": "zlib",
            "classes": list(self.classes),
        }
        if self.output is not None:
            header["output"] = dict(self.output)
        text = json.dumps(header, allow_nan=False).encode("utf-8")
        pixels = zlib.compress(np.ascontiguousarray(self.labels, dtype="<u4").tobytes(), 6)
        return _PREFIX.pack(_MAGIC, LABELS_FORMAT_VERSION, len(text)) + text + pixels


def decode_labels(data: bytes) -> LabelsCrop:
    """The :class:`LabelsCrop` of a payload.

    Raises:
        ValueError: not a labels payload, another format version, or corrupt.
    """
    if len(data) < _PREFIX.size:
        raise ValueError("not a napari-seem labels payload: too short")
    magic, version, size = _PREFIX.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a napari-seem labels payload (bad magic)")
    if version != LABELS_FORMAT_VERSION:
        raise ValueError(
            f"labels payload version {version} is not supported (this is version "
            f"{LABELS_FORMAT_VERSION}); update napari-seem on both sides"
        )
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + size].decode("utf-8"))
        h, w = (int(v) for v in header["shape"])
        if header.get("dtype") != "<u4" or header.get("compression") != "zlib":
            raise ValueError(f"unknown dtype/compression {header.get('dtype')!r}")
        if h < 0 or w < 0 or math.prod((h, w)) > _MAX_DECODED_PIXELS:
            raise ValueError(f"implausible shape {(h, w)}")
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data[_PREFIX.size + size :], 4 * h * w + 1)
        if len(raw) != 4 * h * w or not inflate.eof:
            raise ValueError(f"pixel data does not hold {h} x {w} uint32 labels")
        labels = np.frombuffer(raw, dtype="<u4").reshape(h, w).astype(np.uint32)
        return LabelsCrop(
            labels,
            tuple(header["offset"]),
            tuple(header["image_shape"]),
            tuple(header.get("classes", ())),
            tuple(header.get("plane", ())),
            header.get("output"),
        )
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError, zlib.error) as exc:
        raise ValueError(f"corrupt labels payload: {exc}") from None
