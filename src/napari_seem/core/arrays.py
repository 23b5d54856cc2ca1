"""numpy helpers shared by the prompt and result types (no torch, no Qt).

- read-only coercion of binary masks (``as_bool_mask``);
- value equality and hashing for frozen dataclasses that hold arrays (``ValueEq``);
- the JSON wire format of a binary mask placed in an image, written once so that prompts
  and results encode masks identically::

      {"shape": [h, w], "offset": [row, col], "rle": [n0, n1, n2, ...]}

  ``rle`` holds the run lengths of the row-major (C-order) flattened ``(h, w)`` mask,
  alternating False and True runs and always starting with a False run (which may be 0);
  the runs sum to ``h * w``. ``offset`` is the level-0 ``(row, col)`` of ``mask[0, 0]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt

__all__ = [
    "ValueEq",
    "as_bool_mask",
    "as_int_pair",
    "mask_from_dict",
    "mask_to_dict",
    "readonly",
    "rle_decode",
    "rle_encode",
]

BoolMask = npt.NDArray[np.bool_]


def readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Mark ``array`` read-only in place and return it (frozen types must stay frozen)."""
    array.flags.writeable = False
    return array


def _plain(value: Any) -> Any:
    """A hashable stand-in for ``value``: arrays become (dtype, shape, bytes)."""
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return value


class ValueEq:
    """Value equality and hashing for frozen dataclasses whose fields may be arrays.

    The generated dataclass ``__eq__`` compares arrays with ``==``, which is ambiguous;
    this compares them by dtype, shape and content. Fields declared with
    ``compare=False`` are ignored, as dataclasses do.
    """

    def _value_key(self) -> tuple[Any, ...]:
        return tuple(
            _plain(getattr(self, f.name)) for f in dataclasses.fields(cast(Any, self)) if f.compare
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._value_key() == other._value_key()

    def __hash__(self) -> int:
        return hash(self._value_key())


def as_bool_mask(value: Any, *, what: str, error: type[ValueError] = ValueError) -> BoolMask:
    """A read-only 2-D bool copy of ``value``.

    Args:
        value: array-like ``(h, w)``: bool, or integers/floats holding only 0 and 1.
        what: the name used in error messages (e.g. ``"MaskPrompt.mask"``).
        error: the exception type to raise (a ``ValueError`` subclass).

    Raises:
        error: wrong number of dimensions, a dtype that is not bool/int/float, or values
            other than 0 and 1.
    """
    array = np.asarray(value)
    if array.ndim != 2:
        raise error(f"{what} must be a 2-D (rows, cols) array; got {array.ndim} dimension(s)")
    if array.dtype == np.bool_:
        return readonly(array.copy(order="C"))
    if array.dtype.kind not in "iuf":
        raise error(
            f"{what} must be boolean (or 0/1 integers); got dtype {array.dtype}: "
            "convert it with `mask.astype(bool)` if that is what you mean"
        )
    ones = array == 1
    if not np.all(ones | (array == 0)):
        bad = array[~(ones | (array == 0))].flat[0].item()
        raise error(
            f"{what} must hold only 0 and 1 (or be boolean); found the value {bad!r}: "
            "threshold it first, e.g. `probabilities > 0.5` or `labels == label_id`"
        )
    return readonly(np.ascontiguousarray(ones))


def as_int_pair(value: Any, *, what: str, error: type[ValueError] = ValueError) -> tuple[int, int]:
    """``value`` as a pair of Python ints; integral floats (``3.0``) are accepted."""
    try:
        first, second = value
        pair = (float(first), float(second))
    except (TypeError, ValueError) as exc:
        raise error(f"{what} must be two integers (row, col); got {value!r}") from exc
    if (
        isinstance(first, bool)
        or isinstance(second, bool)
        or not all(np.isfinite(v) and v == int(v) for v in pair)
    ):
        raise error(f"{what} must be two integers (row, col); got {value!r}")
    return int(pair[0]), int(pair[1])


def rle_encode(mask: BoolMask) -> list[int]:
    """Run lengths of the C-order flattened ``mask``, starting with a False run."""
    flat = np.ascontiguousarray(mask, dtype=np.bool_).ravel()
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def rle_decode(
    counts: Any, shape: tuple[int, int], *, error: type[ValueError] = ValueError
) -> BoolMask:
    """Inverse of ``rle_encode``: a read-only ``shape`` bool mask.

    Raises:
        error: ``counts`` are not non-negative integers summing to ``shape[0] * shape[1]``.
    """
    message = "mask 'rle' must be a list of non-negative integers (run lengths)"
    if not isinstance(counts, list | tuple | np.ndarray):
        raise error(f"{message}; got {type(counts).__name__}")
    try:
        runs = np.asarray(counts, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise error(message) from exc
    if not np.all(np.isfinite(runs)) or np.any(runs < 0) or np.any(runs != np.floor(runs)):
        raise error(message)
    size = shape[0] * shape[1]
    if int(runs.sum()) != size:
        raise error(
            f"mask 'rle' runs sum to {int(runs.sum())} but the mask shape {tuple(shape)} "
            f"has {size} pixels"
        )
    values = np.arange(runs.size) % 2 == 1  # runs alternate False, True, False, ...
    flat = np.repeat(values, runs.astype(np.int64))
    return readonly(flat.reshape(shape))


def mask_to_dict(mask: BoolMask, offset: tuple[int, int]) -> dict[str, Any]:
    """The JSON-safe ``{"shape", "offset", "rle"}`` encoding of ``mask`` placed at ``offset``."""
    return {
        "shape": [int(mask.shape[0]), int(mask.shape[1])],
        "offset": [int(offset[0]), int(offset[1])],
        "rle": rle_encode(mask),
    }


def mask_from_dict(
    data: Mapping[str, Any], *, what: str, error: type[ValueError] = ValueError
) -> tuple[BoolMask, tuple[int, int]]:
    """Decode ``{"shape", "offset", "rle"}`` into ``(mask (h, w) bool, offset (row, col))``."""
    missing = [key for key in ("shape", "offset", "rle") if key not in data]
    if missing:
        raise error(f"{what} needs the keys 'shape', 'offset' and 'rle'; missing {missing}")
    shape = as_int_pair(data["shape"], what=f"{what} 'shape'", error=error)
    if shape[0] < 0 or shape[1] < 0:
        raise error(f"{what} 'shape' must be non-negative; got {list(shape)}")
    offset = as_int_pair(data["offset"], what=f"{what} 'offset'", error=error)
    return rle_decode(data["rle"], shape, error=error), offset
