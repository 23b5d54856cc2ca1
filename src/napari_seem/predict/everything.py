""" "Segment everything" by prompting a grid of points (``mode="points"``).

A model trained mostly on visual prompts (seem-lite) answers a click far better than its
object queries find every instance in a crowded image. This mode asks it about every point
of a regular grid, the way automatic mask generators do:

1. grid points every ``spacing`` model pixels over the image part of the padded frame;
2. the frame is cut into windows of the model's ``prompt_window`` (stride half a window);
   each point is decoded in the window whose centre it is nearest to, all points of a
   window in one decoder pass;
3. an answer is kept when it contains its own point (its connected part through the point
   is taken), is at least ``min_area`` cells, covers at most half the window, does not run
   into the window's inner border (it would be cut), and is confident: mean probability
   inside >= ``score_threshold`` and stability (IoU of the masks at logits > 1 and > -1)
   >= ``stability_threshold``;
4. answers are taken best score first; one overlapping an accepted object by more than
   ``overlap_threshold`` of its own area is a duplicate; points already inside an accepted
   object are not asked again.

Objects are non-overlapping (panoptic), named by the best class of their caption
embedding among the vocabulary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.rasterize import rasterize_objects
from napari_seem.core.results import ObjectMask
from napari_seem.core.visual import Points
from napari_seem.model.prompt_window import Window, crop_features, nearest_window, tile_windows
from napari_seem.model.seem import ImageFeatures
from napari_seem.predict.foreground import foreground_cells

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["PointsSettings", "StageTimes", "segment_by_points", "timing"]


@dataclass
class StageTimes:
    """Seconds spent per stage of :func:`segment_by_points` while :func:`timing` is active.

    Stages: ``"decode"`` (prompt encoding + decoder passes), ``"answers"`` (checking each
    answer: its connected part, area, border, score and stability; the best-first
    duplicate test), ``"masks"`` (level-0 masks from the accepted answers' logits);
    ``"points"`` counts the grid points asked and ``"passes"`` the decoder passes.
    """

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, value: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + value


_ACTIVE = threading.local()


@contextlib.contextmanager
def timing() -> Iterator[StageTimes]:
    """Collect :class:`StageTimes` of every points-mode run in this thread (profiling)."""
    times = StageTimes()
    _ACTIVE.times = times
    try:
        yield times
    finally:
        _ACTIVE.times = None


def _clock(stage: str, since: float) -> float:
    """Add ``now - since`` to ``stage`` when timing; returns now."""
    now = time.perf_counter()
    times = getattr(_ACTIVE, "times", None)
    if times is not None:
        times.add(stage, now - since)
    return now


@dataclass(frozen=True, kw_only=True)
class PointsSettings:
    """Knobs of :func:`segment_by_points` (see the module docstring)."""

    spacing: int = 24
    min_area: int = 6
    # chosen on BBBC007 training images (never on the held-out ones): F1 0.90 there
    score_threshold: float = 0.65
    stability_threshold: float = 0.6
    overlap_threshold: float = 0.5
    max_prompts: int = 64
    # prompt slots of one decoder pass: windows that cannot see each other's objects are
    # decoded together (batch axis), padded to the one with most points
    batch_prompts: int = 256
    # and at most this many windows per pass (each brings its crop of the features: memory)
    batch_windows: int = 16
    # ask only points near the smaller cluster of the pixel features (predict.foreground),
    # within this many stride-4 cells; None asks every grid point
    background_margin: int | None = 1
    # ask every other grid point of a window first, then the rest that no accepted object
    # covers (fewer decoder slots: most nuclei hold several grid points)
    coarse_first: bool = True


@dataclass
class _Candidate:
    window: Window
    cells: npt.NDArray[np.bool_]  # (h, w) stride-4 cells inside the window
    logits: torch.Tensor  # (h, w)
    score: float
    caption: torch.Tensor  # (D,)


def segment_by_points(
    predictor: SeemPredictor,
    names: list[str],
    settings: PointsSettings = PointsSettings(),
) -> list[ObjectMask]:
    """All objects found by prompting a point grid on the predictor's current image."""
    enc = predictor.encoded
    frame = enc.frame
    padded = enc.features.padded_hw
    size = int(getattr(predictor.model, "prompt_window", None) or max(padded))
    size = min(size, max(padded))
    windows = tile_windows(padded, size)
    rh, rw = frame.resized_hw
    s = settings.spacing
    grid = [(r, c) for r in range(s // 2, rh, s) for c in range(s // 2, rw, s)]
    if settings.background_margin is not None:
        near = foreground_cells(
            enc.features.mask_features, frame, margin=settings.background_margin
        )
        if near is not None:
            grid = [(r, c) for r, c in grid if near[r // 4, c // 4]]
    by_window: dict[int, list[tuple[int, int]]] = {}
    for r, c in grid:
        by_window.setdefault(nearest_window(windows, r, c), []).append((r, c))

    taken = np.zeros((padded[0] // 4, padded[1] // 4), np.int32)  # stride-4 object ids
    accepted: list[_Candidate] = []
    for group in _independent_groups(windows, sorted(by_window)):
        for round_points in zip(*(_rounds(by_window[k], settings) for k in group), strict=True):
            # points already inside an accepted object are not asked again
            jobs = [
                (windows[k], [(r, c) for r, c in points if taken[r // 4, c // 4] == 0])
                for k, points in zip(group, round_points, strict=True)
            ]
            for batch in _batches(jobs, settings):
                for window, found in zip(
                    [w for w, _ in batch],
                    _decode_windows(predictor, batch, settings, padded),
                    strict=True,
                ):
                    since = time.perf_counter()
                    _accept(found, window, taken, accepted, settings.overlap_threshold)
                    _clock("answers", since)
    since = time.perf_counter()
    objects = _to_objects(predictor, accepted, taken, names)
    _clock("masks", since)
    return objects


def _overlap(a: Window, b: Window) -> bool:
    return a.top < b.bottom and b.top < a.bottom and a.left < b.right and b.left < a.right


def _independent_groups(windows: list[Window], used: list[int]) -> list[list[int]]:
    """The windows ``used`` (indices, in order) in groups of pairwise disjoint windows of
    one shape, greedily in order (a regular grid gives its four parity classes).

    Accepted objects lie inside their window, so the windows of a group cannot see each
    other's objects: decoding a group in one batch answers exactly as one window at a time.
    """
    groups: list[list[int]] = []
    for k in used:
        w = windows[k]
        shape = (w.bottom - w.top, w.right - w.left)
        for group in groups:
            first = windows[group[0]]
            same = (first.bottom - first.top, first.right - first.left) == shape
            if same and not any(_overlap(w, windows[j]) for j in group):
                group.append(k)
                break
        else:
            groups.append([k])
    return groups


def _batches(
    jobs: list[tuple[Window, list[tuple[int, int]]]], settings: PointsSettings
) -> list[list[tuple[Window, list[tuple[int, int]]]]]:
    """Jobs (window, points) cut into decoder passes of at most ``max_prompts`` points per
    window, ``batch_windows`` windows and ``batch_prompts`` prompt slots per pass (windows
    padded to the largest)."""
    pieces = [
        (window, points[i : i + settings.max_prompts])
        for window, points in jobs
        for i in range(0, len(points), settings.max_prompts)
    ]
    pieces.sort(key=lambda job: -len(job[1]))  # similar counts together: little padding
    out: list[list[tuple[Window, list[tuple[int, int]]]]] = []
    for job in pieces:
        fits = out and len(out[-1]) < settings.batch_windows
        if fits and len(out[-1][0][1]) * (len(out[-1]) + 1) <= settings.batch_prompts:
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _rounds(points: list[tuple[int, int]], settings: PointsSettings) -> list[list[tuple[int, int]]]:
    """The points of one window in the order they are asked: with ``coarse_first``, every
    other grid point in both directions first, then the rest (a fine point inside an
    object the coarse round found is then skipped)."""
    if not settings.coarse_first:
        return [points]
    s = settings.spacing
    coarse = [(r, c) for r, c in points if (r // s) % 2 == 0 and (c // s) % 2 == 0]
    fine = [(r, c) for r, c in points if (r // s) % 2 or (c // s) % 2]
    return [coarse, fine]


def _accept(
    found: list[_Candidate],
    window: Window,
    taken: npt.NDArray[np.int32],
    accepted: list[_Candidate],
    overlap_threshold: float,
) -> None:
    """Best score first, accept the candidates that do not duplicate an accepted object:
    a candidate overlapping accepted objects by more than ``overlap_threshold`` of its
    own area is dropped; accepted ones claim their free cells of ``taken`` (stride-4 ids)."""
    rows, cols = window.cells(4)
    region = taken[rows, cols]
    for cand in sorted(found, key=lambda c: -c.score):
        area = int(cand.cells.sum())
        if (region[cand.cells] > 0).sum() > overlap_threshold * area:
            continue
        accepted.append(cand)
        region[cand.cells & (region == 0)] = len(accepted)


def _decode_windows(
    predictor: SeemPredictor,
    batch: list[tuple[Window, list[tuple[int, int]]]],
    settings: PointsSettings,
    padded: tuple[int, int],
) -> list[list[_Candidate]]:
    """One decoder pass over several windows of one shape (batch axis), each with its
    points as clicks; the candidates of each window.

    Windows with fewer points are padded with copies of their last point (prompts are
    decoded independently; the copies' answers are ignored).
    """
    since = time.perf_counter()
    enc = predictor.encoded
    first = batch[0][0]
    h, w = first.bottom - first.top, first.right - first.left
    count = max(len(points) for _, points in batch)
    crops = [crop_features(enc.features, window) for window, _ in batch]
    features = ImageFeatures(
        torch.cat([c.mask_features for c in crops]),
        (
            torch.cat([c.multi_scale_features[0] for c in crops]),
            torch.cat([c.multi_scale_features[1] for c in crops]),
            torch.cat([c.multi_scale_features[2] for c in crops]),
        ),
        (h, w),
    )
    pos = np.zeros((len(batch), count, h, w), bool)
    neg = np.zeros((len(batch), count, h, w), bool)
    for b, (window, points) in enumerate(batch):
        padded_points = points + [points[-1]] * (count - len(points))
        clicks = [
            ObjectPrompt((Points.click(r - window.top, c - window.left),)) for r, c in padded_points
        ]
        pos[b], neg[b] = rasterize_objects(clicks, (h, w))  # window-local model pixels
    model = predictor.model
    with predictor.inference():
        tokens = model.encode_visual_prompts(
            features,
            torch.from_numpy(pos).to(predictor.device),
            torch.from_numpy(neg).to(predictor.device),
        )
        out = model.decode(features, visual_prompts=tokens, tasks=("spatial",), return_aux=False)
    assert out.pred_smasks is not None and out.spatial_logits is not None
    assert out.pred_stexts is not None
    since = _clock("decode", since)
    times = getattr(_ACTIVE, "times", None)
    if times is not None:
        times.add("points", sum(len(points) for _, points in batch))
        times.add("passes", 1)
    found = [
        _candidates(
            window,
            points,
            out.pred_smasks[b],
            out.spatial_logits[b][:, : len(points)],
            out.pred_stexts[b],
            settings,
            padded,
        )
        for b, (window, points) in enumerate(batch)
    ]
    _clock("answers", since)
    return found


def _candidates(
    window: Window,
    points: list[tuple[int, int]],
    masks: torch.Tensor,
    logits: torch.Tensor,
    captions: torch.Tensor,
    settings: PointsSettings,
    padded: tuple[int, int],
) -> list[_Candidate]:
    """The kept answers of one window: ``masks`` ``(P*Q, h, w)`` stride-4 logits,
    ``logits`` ``(P*Q, P)`` selection logits, ``captions`` ``(P*Q, D)`` (module docstring,
    step 3)."""
    chosen = logits.float().argmax(0)  # (P,)
    hc, wc = masks.shape[-2:]
    inner = np.zeros((hc, wc), bool)  # window borders that are not the image border
    inner[0, :] = window.top > 0
    inner[-1, :] = window.bottom < padded[0]
    inner[:, 0] = window.left > 0
    inner[:, -1] = window.right < padded[1]
    out = []
    for p, (r, c) in enumerate(points):
        index = int(chosen[p])
        lg = masks[index].float()
        mask = (lg > 0).cpu().numpy()
        cell = ((r - window.top) // 4, (c - window.left) // 4)
        if not mask[cell]:
            continue
        parts, _ = ndimage.label(mask)
        mask = parts == parts[cell]
        area = int(mask.sum())
        if area < settings.min_area or area > mask.size // 2 or (mask & inner).any():
            continue
        inside = torch.from_numpy(mask).to(lg.device)
        prob = torch.sigmoid(lg[inside])
        score = float(prob.mean())
        high, low = (lg > 1) & inside, (lg > -1) & inside
        stability = float(high.sum()) / max(float(low.sum()), 1.0)
        if score < settings.score_threshold or stability < settings.stability_threshold:
            continue
        # copies: a view would keep the whole pass's output alive
        out.append(_Candidate(window, mask, lg.clone(), score, captions[index].clone()))
    return out


def _to_objects(
    predictor: SeemPredictor,
    accepted: list[_Candidate],
    taken: npt.NDArray[np.int32],
    names: list[str],
) -> list[ObjectMask]:
    """Stride-4 object ids -> level-0 masks (bilinear logits inside each object's cells)."""
    if not accepted:
        return []
    enc = predictor.encoded
    frame = enc.frame
    captions = torch.stack([c.caption for c in accepted])
    cls_names, cls_scores = predictor.name_captions(captions, names)
    # level-0 label map: nearest-neighbour of the stride-4 id map through the frame
    h0, w0 = frame.image_hw
    sy, sx = frame.scale
    rows = np.minimum(((np.arange(h0) + 0.5) * sy / 4).astype(int), taken.shape[0] - 1)
    cols = np.minimum(((np.arange(w0) + 0.5) * sx / 4).astype(int), taken.shape[1] - 1)
    # refine boundaries with the objects' own logits, upsampled within their windows
    labels = taken[rows[:, None], cols[None, :]]
    refined = np.zeros_like(labels)
    for i, cand in enumerate(accepted, start=1):
        win = cand.window
        r0 = int(np.floor(win.top / sy))
        r1 = min(int(np.ceil(win.bottom / sy)), h0)
        c0 = int(np.floor(win.left / sx))
        c1 = min(int(np.ceil(win.right / sx)), w0)
        if r1 <= r0 or c1 <= c0:
            continue
        up = F.interpolate(
            cand.logits[None, None],
            size=(round((win.bottom - win.top) / sy), round((win.right - win.left) / sx)),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        mine = (up > 0).cpu().numpy()[: r1 - r0, : c1 - c0]
        near = ndimage.binary_dilation(labels[r0:r1, c0:c1] == i, iterations=3)
        view = refined[r0:r1, c0:c1]
        hh, ww = mine.shape
        view[:hh, :ww][mine & near[:hh, :ww] & (view[:hh, :ww] == 0)] = i
    objects = []
    for i, cand in enumerate(accepted, start=1):
        mask = refined == i
        if not mask.any():
            continue
        objects.append(
            ObjectMask.from_full(
                mask,
                score=cand.score,
                class_name=cls_names[i - 1],
                class_score=cls_scores[i - 1],
                source="points",
            )
        )
    return objects
