"""What a batch run asks of the model on one tile, and the model each worker builds once.

Frame: a tile's outer box in pixels of the segmented level (level 0 unless ``level`` is
set); prompts are level-0 ``(row, col)`` and need ``level=0``.

:class:`ModelSpec` is a small picklable description of a predictor (variant, weights,
device, tile encoding size); a Dask worker builds it once and keeps it (see
:mod:`napari_seem.batch.cluster`). :class:`TaskSpec` says what to find: every object of a
vocabulary (``segment_everything``), every instance of a phrase (``ground``), or the objects
of visual prompts (``predict``). :func:`segment_tile` runs a task on one tile's pixels and
returns a :class:`TileAnswer` (local labels on the outer box); :func:`propagate_tile` is the
"video" rule: every object of the previous plane is the referring example on this plane.

torch is imported only when a predictor is built or called.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EVERYTHING_MODES,
    EverythingMode,
    everything_mode_error,
)
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.variants import DEFAULT_VARIANT

if TYPE_CHECKING:
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = [
    "ModelSpec",
    "TaskKind",
    "TaskSpec",
    "TileAnswer",
    "encode_tile",
    "propagate_tile",
    "segment_tile",
]

# Guards torch's global RNG while a model is built (see ModelSpec.build).
_BUILD_LOCK = threading.Lock()
TaskKind = Literal["everything", "text", "prompts"]
Mode = EverythingMode


@dataclass(frozen=True)
class ModelSpec:
    """A predictor to build on each worker (picklable, hashable).

    Attributes:
        variant: model variant name (``napari-seem models`` lists them).
        checkpoint: weights file readable on every worker; None = random weights (tests).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: seed of random weights (ignored with a checkpoint).
        short_side: encode each tile resized so its shorter side is this many pixels
            (faster, coarser); None encodes tiles at native resolution (the default).
        mask_resize: ``"official"`` or ``"bilinear"`` mask upsampling (see SeemPredictor).
        threads: torch intra-op threads in the process that builds it (None: torch's
            default). Several workers on one machine should share its cores (e.g. 1 each):
            oversubscribed torch threads slow CPU inference down many times.
    """

    variant: str = DEFAULT_VARIANT
    checkpoint: str | None = None
    device: str = "auto"
    seed: int = 0
    short_side: int | None = None
    mask_resize: Literal["official", "bilinear"] = "official"
    threads: int | None = None

    def build(self) -> SeemPredictor:
        """Build the predictor (loads torch and the weights)."""
        from napari_seem.model.build import build_seem
        from napari_seem.predict.predictor import SeemPredictor

        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        # random init draws from torch's process-wide RNG: two workers building at once in
        # one process (threads) would interleave their draws and get different weights
        with _BUILD_LOCK:
            model = build_seem(
                self.variant, checkpoint=self.checkpoint, device=self.device, seed=self.seed
            )
        return SeemPredictor(model, short_side=self.short_side, mask_resize=self.mask_resize)

    def identity(self) -> dict[str, Any]:
        """What the output depends on (for the run signature); the device is left out."""
        return {
            "variant": self.variant,
            "checkpoint": self.checkpoint,
            "seed": None if self.checkpoint else self.seed,
            "short_side": self.short_side,
            "mask_resize": self.mask_resize,
        }


@dataclass(frozen=True)
class TaskSpec:
    """What to segment on every tile.

    Attributes:
        kind: ``"everything"`` (vocabulary), ``"text"`` (a referring phrase) or ``"prompts"``.
        vocabulary: class names for ``"everything"``.
        mode: for ``"everything"``: ``"auto"`` (``"points"`` for models with a prompt
            window, else ``"panoptic"``), ``"panoptic"``, ``"instance"``, ``"semantic"`` or
            ``"points"`` (see ``SeemPredictor.segment_everything``).
        text: the phrase for ``"text"``.
        prompts: level-0 object prompts for ``"prompts"``; object ``i`` gets key ``i + 1``.
        object_mask_threshold: panoptic class-probability threshold.
        text_threshold: grounding: least share of the phrase's softmax over queries for a
            further instance (the best query of a tile is always kept).
        max_instances: grounding: most instances per tile (None: no limit).
        min_area: drop per-tile objects smaller than this (pixels of the segmented level).
    """

    kind: TaskKind
    vocabulary: tuple[str, ...] = ()
    mode: Mode = DEFAULT_EVERYTHING_MODE
    text: str | None = None
    prompts: tuple[ObjectPrompt, ...] = field(default=(), compare=False)
    object_mask_threshold: float = 0.4
    text_threshold: float = 0.05
    max_instances: int | None = None
    min_area: int = 1

    def __post_init__(self) -> None:
        if self.kind == "everything" and not self.vocabulary:
            raise ValueError("segment everything needs a vocabulary of class names")
        if self.kind == "text" and not (self.text and self.text.strip()):
            raise ValueError("text search needs a non-empty phrase")
        if self.kind == "prompts" and not self.prompts:
            raise ValueError("a prompts run needs at least one object prompt")
        if self.mode not in EVERYTHING_MODES:
            raise ValueError(everything_mode_error(self.mode))

    def identity(self) -> dict[str, Any]:
        """What the output depends on (for the run signature)."""
        return {
            "kind": self.kind,
            "vocabulary": list(self.vocabulary),
            "mode": self.mode if self.kind == "everything" else None,
            "text": self.text,
            "prompts": [p.to_dict() for p in self.prompts],
            "object_mask_threshold": self.object_mask_threshold,
            "text_threshold": self.text_threshold,
            "max_instances": self.max_instances,
            "min_area": self.min_area,
        }


@dataclass(frozen=True)
class TileAnswer:
    """One tile's objects as a label image.

    Attributes:
        labels: ``(oh, ow)`` uint32 local ids on the tile's outer box, 0 = background;
            overlapping objects go to the higher score.
        class_names: class (or phrase) per local id.
        scores: score per local id.
        object_keys: fixed object key per local id (prompt number or propagated global
            id), or None when pieces are matched across seams by overlap.
    """

    labels: npt.NDArray[np.uint32]
    class_names: tuple[str | None, ...]
    scores: tuple[float, ...]
    object_keys: tuple[int, ...] | None = None


def _answer(
    result: Any, valid: npt.NDArray[np.bool_] | None, keys: Sequence[int] | None
) -> TileAnswer:
    labels = result.to_labels(np.uint32)
    if valid is not None:
        labels[~valid] = 0  # nodata pixels are never an object
    return TileAnswer(
        labels,
        tuple(obj.class_name for obj in result),
        tuple(float(obj.score) for obj in result),
        None if keys is None else tuple(int(k) for k in keys),
    )


def _bf16_encode(predictor: SeemPredictor, task: TaskSpec) -> bool:
    """Whether ``task``'s tiles are encoded under bfloat16 autocast: "segment everything" in
    points mode (seem-lite), fp32 predictor, on a CPU with native bfloat16.

    Measured on BBBC007 training images with seem-lite's shipped weights: 2.4x less CPU
    time per encoding at pooled F1@0.5 0.821 (fp32: 0.824; before the batched points mode:
    0.810); the decoder still runs in float32 on float32 copies of the features.
    """
    import torch

    if task.kind != "everything" or getattr(predictor, "autocast", None) is not None:
        return False
    device = getattr(predictor, "device", None)  # test doubles may have none
    if getattr(device, "type", None) != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    windowed = getattr(predictor.model, "prompt_window", None) is not None
    if task.mode != "points" and not (task.mode == "auto" and windowed):
        return False
    return _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX; read from
    ``/proc/cpuinfo``, so False elsewhere): emulated bfloat16 would be slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def encode_tile(
    predictor: SeemPredictor, rgb: npt.NDArray[np.uint8], task: TaskSpec
) -> EncodedImage:
    """Encode one tile's ``(oh, ow, 3)`` uint8 pixels for ``task`` and make it current.

    The one place a batch tile is encoded (the benchmarks time it as the floor of a run).
    Points-mode "segment everything" on a CPU with native bfloat16 encodes under bfloat16
    autocast (see :func:`_bf16_encode`); the features are kept as float32.
    """
    if not _bf16_encode(predictor, task):
        return predictor.set_image(rgb)
    import torch

    from napari_seem.model.seem import ImageFeatures
    from napari_seem.predict.encoding import EncodedImage

    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = predictor.encode(rgb)
    f = half.features
    ms = f.multi_scale_features
    features = ImageFeatures(
        f.mask_features.float(), (ms[0].float(), ms[1].float(), ms[2].float()), f.padded_hw
    )
    encoded = EncodedImage(half.frame, features)
    predictor.set_encoded(encoded)
    return encoded


def segment_tile(
    predictor: SeemPredictor,
    rgb: npt.NDArray[np.uint8],
    task: TaskSpec,
    *,
    window: tuple[int, int, int, int],
    valid: npt.NDArray[np.bool_] | None = None,
    encoded: EncodedImage | None = None,
) -> TileAnswer:
    """Run ``task`` on one tile.

    Args:
        predictor: the model; its current image is replaced.
        rgb: ``(oh, ow, 3)`` uint8 pixels of the tile's outer box.
        window: the outer box ``(r0, c0, r1, c1)`` in the image frame (places level-0
            prompts in the tile).
        valid: ``(oh, ow)`` bool, False on nodata pixels (cleared in the answer).
        encoded: the tile's features if already computed (the engine's feature cache).
    """
    from napari_seem.core.results import SegmentationResult

    if encoded is not None:
        predictor.set_encoded(encoded)
    else:
        encode_tile(predictor, rgb, task)
    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    if task.kind == "everything":
        result = predictor.segment_everything(
            list(task.vocabulary),
            mode=task.mode,
            object_mask_threshold=task.object_mask_threshold,
            min_area=task.min_area,
        )
        return _answer(result, valid, None)
    if task.kind == "text":
        assert task.text is not None
        found = predictor.ground(
            [task.text], score_threshold=task.text_threshold, max_instances=task.max_instances
        )
        kept = tuple(o for o in found if o.area >= task.min_area)
        return _answer(SegmentationResult(shape, kept), valid, None)
    from napari_seem.core.tile_prompts import object_in_window

    local: list[ObjectPrompt] = []
    keys: list[int] = []
    for number, prompt in enumerate(task.prompts, start=1):
        visual = object_in_window(prompt.visual, window)
        if any(p.has_positive for p in visual):
            local.append(ObjectPrompt(tuple(visual), prompt.text, label=prompt.label))
            keys.append(number)
    if not local:
        return TileAnswer(np.zeros(shape, np.uint32), (), (), ())
    answers = predictor.predict(local, vocabulary=list(task.vocabulary) or None)
    named = [
        a if a.class_name is not None or p.label is None else _renamed(a, p.label)
        for a, p in zip(answers, local, strict=True)
    ]
    return _answer(SegmentationResult(shape, tuple(named)), valid, keys)


def _renamed(obj: Any, name: str | None) -> Any:
    from dataclasses import replace

    return replace(obj, class_name=name)


def propagate_tile(
    predictor: SeemPredictor,
    previous_rgb: npt.NDArray[np.uint8],
    previous_labels: npt.NDArray[np.integer[Any]],
    rgb: npt.NDArray[np.uint8],
    *,
    class_names: Mapping[int, str | None],
    valid: npt.NDArray[np.bool_] | None = None,
    min_area: int = 1,
    encoded: EncodedImage | None = None,
) -> TileAnswer:
    """The referring rule through a stack: each object on the previous plane's tile is the
    example for this plane's tile, and keeps its global id as its object key.

    Args:
        previous_rgb: ``(oh, ow, 3)`` uint8 of the tile on the previous plane.
        previous_labels: ``(oh, ow)`` final global ids of the previous plane on the tile.
        rgb: ``(oh, ow, 3)`` uint8 of the tile on this plane.
        class_names: global id -> class name of the previous plane's objects.
        min_area: objects with fewer pixels on the previous tile are not propagated.
    """
    from napari_seem.core.prompts import MaskPrompt, ReferringExample
    from napari_seem.core.results import SegmentationResult

    if encoded is not None:
        predictor.set_encoded(encoded)
    else:
        predictor.set_image(rgb)
    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    ids, areas = np.unique(previous_labels[previous_labels > 0], return_counts=True)
    objects = []
    keys = []
    for gid, area in zip(ids.tolist(), areas.tolist(), strict=True):
        if area < min_area:
            continue
        example = ReferringExample.from_image(
            previous_rgb, MaskPrompt.from_full(previous_labels == gid), label=class_names.get(gid)
        )
        (answer,) = predictor.refer(example, example_image=previous_rgb)
        if answer.area >= min_area:
            objects.append(_renamed(answer, class_names.get(gid)))
            keys.append(gid)
    return _answer(SegmentationResult(shape, tuple(objects)), valid, keys)


PredictorFactory = Callable[[], "SeemPredictor"]
