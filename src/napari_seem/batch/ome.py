"""OME-Zarr labels of an OME-Zarr image: ``IMAGE.zarr/labels/NAME`` with multiscale levels.

NGFF 0.4 images (zarr v2, ``.zattrs``) get 0.4 labels (zarr v2 arrays with ``/`` chunk
keys); NGFF 0.5 images (zarr v3, attributes under ``"ome"``) get 0.5 labels. The label
image has the image's axes without the channel axis; its level 0 is the resolution that was
segmented (image level ``level``), each further level halves ``y`` and ``x`` (labels are
downsampled by taking every second pixel: ids are never blended).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OmeImage", "label_levels", "read_ome_image", "write_label_group"]


@dataclass(frozen=True)
class OmeImage:
    """What the labels need from the image's metadata.

    Attributes:
        version: ``"0.4"`` or ``"0.5"``.
        zarr_format: 2 or 3.
        axes: the NGFF axes list of the image (dicts with name/type/unit).
        scales: per image level, the ``scale`` transform (one number per axis), or None.
    """

    version: str
    zarr_format: int
    axes: list[dict[str, Any]]
    scales: list[list[float] | None]


def read_ome_image(path: Path) -> OmeImage | None:
    """The NGFF metadata of the image group at ``path``, or None if it is not OME-Zarr."""
    import zarr

    try:
        group: Any = zarr.open_group(str(path), mode="r")
    except Exception:  # not a group (an array, a TIFF...): not OME-Zarr
        return None
    attrs: dict[str, Any] = dict(group.attrs)
    fmt = int(group.metadata.zarr_format)
    if isinstance(attrs.get("ome"), dict) and "multiscales" in attrs["ome"]:
        version, multiscales = str(attrs["ome"].get("version", "0.5")), attrs["ome"]["multiscales"]
    elif "multiscales" in attrs:
        multiscales = attrs["multiscales"]
        version = str(multiscales[0].get("version", "0.4"))
    else:
        return None
    first = multiscales[0]
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in first.get("axes", [])]
    scales: list[list[float] | None] = []
    for ds in first.get("datasets", []):
        scale = None
        for tr in ds.get("coordinateTransformations", []):
            if tr.get("type") == "scale":
                scale = [float(s) for s in tr["scale"]]
        scales.append(scale)
    return OmeImage(version, fmt, axes, scales)


def label_levels(shape: Sequence[int], chunks: Sequence[int], *, max_levels: int = 6) -> int:
    """How many levels: halve ``y, x`` until the level fits in one chunk (at most
    ``max_levels``)."""
    h, w = shape[-2], shape[-1]
    levels = 1
    while levels < max_levels and (h > chunks[-2] or w > chunks[-1]):
        h, w = -(-h // 2), -(-w // 2)
        levels += 1
    return levels


def write_label_group(
    image_path: Path,
    name: str,
    image: OmeImage,
    *,
    out_axes: str,
    image_axes: str,
    level: int,
    levels: int,
) -> Path:
    """Create (or refresh) the metadata of ``IMAGE/labels/NAME`` and list it in
    ``IMAGE/labels``; the arrays ``0..levels-1`` are created by the caller.

    Returns:
        The label group's path.
    """
    import zarr

    keep = [i for i, letter in enumerate(image_axes) if letter != "c"]
    axes = (
        [image.axes[i] for i in keep]
        if len(image.axes) == len(image_axes)
        else [{"name": letter} for letter in out_axes]
    )
    base = image.scales[level] if level < len(image.scales) else None
    base_scale = (
        [base[i] for i in keep]
        if base is not None and len(base) == len(image_axes)
        else [1.0] * len(out_axes)
    )
    datasets = []
    for k in range(levels):
        scale = list(base_scale)
        scale[-2] *= 2**k
        scale[-1] *= 2**k
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    multiscale = {"name": name, "axes": axes, "datasets": datasets}
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    fmt: Any = image.zarr_format
    labels_root: Any = zarr.open_group(str(image_path / "labels"), mode="a", zarr_format=fmt)
    group: Any = zarr.open_group(str(image_path / "labels" / name), mode="a", zarr_format=fmt)
    if image.version.startswith("0.4") or image.zarr_format == 2:
        multiscale["version"] = "0.4"
        image_label["version"] = "0.4"
        group.attrs.update({"multiscales": [multiscale], "image-label": image_label})
        listed = list(dict(labels_root.attrs).get("labels", []))
        if name not in listed:
            labels_root.attrs["labels"] = [*listed, name]
    else:
        ome = {"version": "0.5", "multiscales": [multiscale], "image-label": image_label}
        group.attrs.update({"ome": ome})
        current = dict(dict(labels_root.attrs).get("ome", {}))
        listed = list(current.get("labels", []))
        if name not in listed:
            listed.append(name)
        labels_root.attrs["ome"] = {**current, "version": "0.5", "labels": listed}
    return image_path / "labels" / name
