"""Model speed: image encoding and per-prompt decoding time of SEEM variants on this machine.

For every variant (random weights: speed does not depend on them) and every square image
size ``S``, the image is ``S x S`` RGB with no resize (the padded model frame is ``S x S``
for Focal variants) and the benchmark measures:

- **image encoding**: backbone + pixel decoder on the preprocessed image (preprocessing
  excluded), once per image;
- **ImageMemory projection**: the per-layer cross-attention keys and values
  (:meth:`SeemDecoder.project_image`), computed once per image for the fast path;
- **per prompt**, with warm image features: prompt encoding (rasterise the visual prompts
  and :meth:`SeemModel.encode_visual_prompts`; for text, tokenise and encode the phrase)
  plus one decode and picking the answer, for a click, a box (SEEM's rule: its centre as a
  click; the answer is then bounded by the box), a scribble, a text query (grounding) and
  text + click (grounding and spatial in one decode). Two decode paths:

  - ``full``: the official decode, every query group (101 object queries with class logits
    against a 134-class vocabulary, plus the groups the prompt switches on), image keys and
    values projected inside every layer;
  - ``fast``: only the groups the prompt needs (``{"spatial"}`` for visual prompts,
    ``{"grounding"}`` for text, both for text + click) with the cached
    :class:`ImageMemory`: the interactive path (same answer).

Peak RSS is the ``getrusage`` peak of a fresh process per variant (sizes run in ascending
order, so the figure after size ``S`` is the peak up to and including ``S``).

Run ``python -m benchmarks model-speed --help``; :func:`run` is the function API.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import (
    MIN_SAMPLES,
    Samples,
    add_no_isolate_argument,
    add_out_render_arguments,
    add_sizes_argument,
    header_lines,
    load_average,
    machine_info,
    markdown_table,
    peak_rss_bytes,
    rerender,
    sample,
    show_report,
    stderr,
    write_report,
)
from napari_seem.core.prompts import Box, Points, Scribble, VisualPrompt
from napari_seem.core.rasterize import rasterize_prompts
from napari_seem.model.build import build_seem
from napari_seem.model.decoder import DecoderOutput, ImageMemory, Task
from napari_seem.model.postprocess import best_grounding_queries, vl_similarity
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.model.tokenizer import ClipTokenizer, load_clip_tokenizer
from napari_seem.model.transforms import ModelFrame, make_frame, preprocess

__all__ = [
    "DEFAULT_SIZES",
    "DEFAULT_VARIANTS",
    "PATHS",
    "PROMPTS",
    "add_arguments",
    "main",
    "measure_variant",
    "render_markdown",
    "run",
    "write_outputs",
]

DEFAULT_VARIANTS = ("seem-focalt-v1", "seem-focall-v1")
DEFAULT_SIZES = (512, 1024)
PROMPTS = ("click", "box", "scribble", "text", "text+click")
PATHS = ("full", "fast")
# Most samples per figure, and seconds of sampling after which a figure stops (with at
# least 3 samples): Focal-L encoding at 1024 gets 3, a fast decode up to DEFAULT_REPEATS.
# Together they keep the default run under ~10 minutes on a 2-core CPU.
DEFAULT_REPEATS = 20
DEFAULT_BUDGET_S = 4.0
# COCO panoptic classes + background: the vocabulary of the official full decode
VOCABULARY_SIZE = 134
TEXT_QUERY = "the round cell in the middle"
# Logits outside a box prompt: far below the 0 threshold, finite so resampling stays finite
_OUTSIDE_BOX = -100.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"

Log = Callable[[str], None]


@dataclass(frozen=True)
class PromptCase:
    """One prompt kind, in level-0 ``(row, col)`` pixels of an ``S x S`` image.

    Attributes:
        name: one of :data:`PROMPTS`.
        visual: visual prompts (drawn with SEEM's box rule: a box is a click at its centre).
        text: referring text, or None.
        box: bound the answer by this box (the box prompt), or None.
        fast_tasks: the query groups of the fast path.
    """

    name: str
    visual: tuple[VisualPrompt, ...]
    text: str | None
    box: Box | None
    fast_tasks: frozenset[Task]


def prompt_cases(size: int) -> tuple[PromptCase, ...]:
    """The benchmarked prompts for an ``size x size`` image, near its centre."""
    c = size / 2
    click = Points.click(c - size / 20, c + size / 20)
    box = Box(c - size / 8, c - size / 6, c + size / 8, c + size / 6)
    steps = np.arange(8)
    # a zig-zag stroke a quarter of the image long
    vertices = np.stack(
        [c - size / 32 + (steps % 2) * size / 16, c - size / 8 + steps * size / 28], axis=1
    )
    scribble = Scribble(vertices, width=3.0)
    spatial: frozenset[Task] = frozenset({"spatial"})
    grounding: frozenset[Task] = frozenset({"grounding"})
    return (
        PromptCase("click", (click,), None, None, spatial),
        PromptCase("box", (box,), None, box, spatial),
        PromptCase("scribble", (scribble,), None, None, spatial),
        PromptCase("text", (), TEXT_QUERY, None, grounding),
        PromptCase("text+click", (click,), TEXT_QUERY, None, spatial | grounding),
    )


def _bound_to_box(logits: torch.Tensor, box: Box, padded_hw: tuple[int, int]) -> torch.Tensor:
    """Set ``(..., h, w)`` logits on the padded-frame grid outside ``box`` to far below 0.

    ``box`` is in padded-frame pixels: here level-0 pixels, as the benchmark never resizes.
    """
    h, w = logits.shape[-2:]
    # centre of logit cell i in padded-frame pixels (the grid spans the padded extent)
    rows = (torch.arange(h, dtype=torch.float32) + 0.5) * (padded_hw[0] / h) - 0.5
    cols = (torch.arange(w, dtype=torch.float32) + 0.5) * (padded_hw[1] / w) - 0.5
    inside_rows = (rows >= box.row_min - 0.5) & (rows <= box.row_max + 0.5)
    inside_cols = (cols >= box.col_min - 0.5) & (cols <= box.col_max + 0.5)
    inside = inside_rows[:, None] & inside_cols[None, :]
    return logits.masked_fill(~inside.to(logits.device), _OUTSIDE_BOX)


@dataclass(frozen=True)
class _Warm:
    """What one image leaves behind for its prompts."""

    model: SeemModel
    frame: ModelFrame
    features: ImageFeatures
    memory: ImageMemory
    tokenizer: ClipTokenizer | Any  # seem-lite: its MiniLM tokenizer
    vocabulary: torch.Tensor  # (VOCABULARY_SIZE, dim_proj) unit rows


def _prompt_step(warm: _Warm, case: PromptCase, path: str) -> dict[str, float]:
    """Encode ``case``, decode it on the warm features, pick the answer.

    Returns:
        ``{"prompt_encoding": seconds}`` (the part before the decode).
    """
    model, features = warm.model, warm.features
    padded_hw = warm.frame.padded_hw
    t0 = time.perf_counter()
    visual_prompts = None
    if case.visual:
        pos, neg = rasterize_prompts(
            case.visual, padded_hw, scale=warm.frame.scale, box_mode="center"
        )
        visual_prompts = model.encode_visual_prompts(
            features, torch.from_numpy(pos)[None, None], torch.from_numpy(neg)[None, None]
        )
    tokens = padding = sentence = None
    if case.text is not None:
        tokens, padding = model.text_encoder.grounding_tokens([case.text], warm.tokenizer)
        if not case.visual:  # with a visual prompt the spatial answer wins (official demo)
            sentence = model.text_encoder.sentence_embeddings([case.text], warm.tokenizer)
    encoded = time.perf_counter() - t0

    out: DecoderOutput
    if path == "full":
        out = model.decode(
            features,
            class_embeddings=warm.vocabulary,
            grounding_tokens=tokens,
            grounding_padding=padding,
            visual_prompts=visual_prompts,
        )
    else:
        out = model.decode(
            features,
            grounding_tokens=tokens,
            grounding_padding=padding,
            visual_prompts=visual_prompts,
            tasks=case.fast_tasks,
            image_memory=warm.memory,
        )
    _answer(out, case, sentence, model.text_encoder.logit_scale, padded_hw)
    return {"prompt_encoding": encoded}


def _answer(
    out: DecoderOutput,
    case: PromptCase,
    sentence: torch.Tensor | None,
    logit_scale: torch.Tensor,
    padded_hw: tuple[int, int],
) -> torch.Tensor:
    """The ``(H_pad/4, W_pad/4)`` answer logits of image 0 to ``case``."""
    if sentence is None:
        assert out.prev_mask is not None
        answer = out.prev_mask[0, 0]
        return answer if case.box is None else _bound_to_box(answer, case.box, padded_hw)
    assert out.pred_gtexts is not None and out.pred_gmasks is not None
    similarity = vl_similarity(out.pred_gtexts[0], sentence, logit_scale)
    return out.pred_gmasks[0, best_grounding_queries(similarity)[0]]


def _row(samples: Samples, **keys: Any) -> dict[str, Any]:
    """A result row: ``keys``, the :class:`Stats` fields, raw samples and the load seen."""
    return {
        **keys,
        **asdict(samples.stats()),
        "samples_s": samples.total,
        "load_1m": samples.load_1m,
    }


def measure_variant(
    variant: str,
    sizes: Sequence[int],
    *,
    repeats: int = DEFAULT_REPEATS,
    budget_s: float = DEFAULT_BUDGET_S,
    threads: int | None = None,
    log: Log | None = stderr,
    paths: Sequence[str] = PATHS,
    encode_repeats: int | None = None,
) -> dict[str, Any]:
    """Every measurement of one variant, in this process (decode ``paths``: of :data:`PATHS`;
    ``encode_repeats``: most samples of image encoding, default ``repeats``).

    Returns:
        ``{"model": {...}, "image": [rows], "prompts": [rows]}``: ``model`` has the
        parameter count and peak RSS per size; an ``image`` row per (size, stage) and a
        ``prompts`` row per (size, prompt, path), each with :class:`Stats` fields (seconds),
        the raw ``samples_s`` and, for prompts, ``prompt_encoding_p50_s``.
    """
    say = log or (lambda _message: None)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return _measure(
                variant,
                sorted(sizes),
                repeats=repeats,
                budget_s=budget_s,
                say=say,
                paths=paths,
                encode_repeats=encode_repeats,
            )
    finally:
        torch.set_num_threads(previous_threads)


def _measure(
    variant: str,
    sizes: Sequence[int],
    *,
    repeats: int,
    budget_s: float,
    say: Log,
    paths: Sequence[str] = PATHS,
    encode_repeats: int | None = None,
) -> dict[str, Any]:
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    # random weights: seem-lite's trained parts stay random too (speed does not depend on them)
    model = build_seem(variant, device="cpu", shipped_weights=False)
    built_s = time.perf_counter() - t0
    parameters = sum(p.numel() for p in model.parameters())
    say(f"[{variant}] built in {built_s:.1f} s, {parameters / 1e6:.1f} M parameters")
    # a text encoder that brings its own tokenizer (seem-lite's MiniLM) uses it
    bundled = getattr(model.text_encoder, "bundled_tokenizer", None)
    tokenizer = bundled() if bundled is not None else load_clip_tokenizer()
    generator = torch.Generator().manual_seed(0)
    vocabulary = torch.randn(VOCABULARY_SIZE, model.decoder.config.dim_proj, generator=generator)
    vocabulary = vocabulary / vocabulary.norm(dim=-1, keepdim=True)

    image_rows: list[dict[str, Any]] = []
    prompt_rows: list[dict[str, Any]] = []
    peak_per_size: dict[str, int] = {}

    def measure(fn: Callable[[], Mapping[str, float] | None]) -> Samples:
        return sample(fn, repeats=repeats, budget_s=budget_s)

    for size in sizes:
        frame = make_frame(
            (size, size), size_divisibility=model.size_divisibility, fixed_size=model.fixed_size
        )
        image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=generator)
        x = preprocess(image, frame, model.pixel_mean, model.pixel_std)
        keys = {"variant": variant, "size": size}

        # the last encoding is kept for the prompts; dropped first so that only one is alive
        held: dict[str, ImageFeatures] = {}

        def encode(x: torch.Tensor = x, held: dict[str, ImageFeatures] = held) -> None:
            held.clear()
            held["features"] = model.encode_image(x)

        encoded = sample(encode, repeats=encode_repeats or repeats, budget_s=budget_s)
        stats = encoded.stats()
        image_rows.append(_row(encoded, **keys, stage="encode_image"))
        say(f"[{variant} {size}] encode_image p50 {stats.p50_s:.3f} s (n={stats.n})")

        features = held.pop("features")

        def project(ms: Sequence[torch.Tensor] = features.multi_scale_features) -> None:
            model.decoder.project_image(ms)

        projected = measure(project)
        stats = projected.stats()
        image_rows.append(_row(projected, **keys, stage="project_image"))
        say(f"[{variant} {size}] project_image p50 {stats.p50_s * 1e3:.1f} ms (n={stats.n})")

        warm = _Warm(
            model,
            frame,
            features,
            model.decoder.project_image(features.multi_scale_features),
            tokenizer,
            vocabulary,
        )
        for case in prompt_cases(size):
            for path in paths:
                samples = measure(partial(_prompt_step, warm, case, path))
                stats = samples.stats()
                tasks = case.fast_tasks | {"object"} if path == "full" else case.fast_tasks
                prompt_rows.append(
                    _row(
                        samples,
                        **keys,
                        prompt=case.name,
                        path=path,
                        tasks=sorted(tasks),
                        prompt_encoding_p50_s=samples.stage_stats("prompt_encoding").p50_s,
                    )
                )
                say(
                    f"[{variant} {size}] {case.name:<10} {path:<4} p50 "
                    f"{stats.p50_s * 1e3:.1f} ms (n={stats.n})"
                )
        del warm, features
        peak_per_size[str(size)] = peak_rss_bytes()

    return {
        "model": {
            "variant": variant,
            "parameters": parameters,
            "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "build_s": built_s,
            "rss_before_build_bytes": rss_before,
            "peak_rss_bytes": peak_per_size,
        },
        "image": image_rows,
        "prompts": prompt_rows,
    }


def run(
    variants: Sequence[str] = DEFAULT_VARIANTS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    repeats: int = DEFAULT_REPEATS,
    budget_s: float = DEFAULT_BUDGET_S,
    threads: int | None = None,
    isolate: bool = True,
    log: Log | None = stderr,
    paths: Sequence[str] = PATHS,
    encode_repeats: int | None = None,
) -> dict[str, Any]:
    """Measure every variant; the JSON-ready result.

    Args:
        variants: names from :data:`napari_seem.model.build.VARIANTS`.
        sizes: square image sizes in pixels.
        repeats: most samples per figure (after one warm-up call).
        budget_s: seconds of sampling after which a figure stops (at least 3 samples,
            or ``repeats`` if fewer).
        threads: torch intra-op threads (None: torch's default here).
        isolate: measure each variant in a fresh process (clean peak RSS; the figures
            of one variant are not disturbed by the memory of the previous one).
        log: progress lines (None: silent).
    """
    if not variants or not sizes:
        raise ValueError("give at least one variant and one size")
    if any(s < 32 for s in sizes):
        raise ValueError(f"sizes must be at least 32 pixels, got {list(sizes)}")
    threads = threads or torch.get_num_threads()
    load_at_start = load_average()
    started = time.perf_counter()
    parts = []
    for variant in variants:
        kwargs: dict[str, Any] = {
            "repeats": repeats,
            "budget_s": budget_s,
            "threads": threads,
            "paths": tuple(paths),
            "encode_repeats": encode_repeats,
        }
        if isolate:
            # a fresh process per variant: its getrusage peak is this variant's alone
            context = multiprocessing.get_context("spawn")
            child_log = None if log is None else stderr  # a child can only print
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                future = pool.submit(measure_variant, variant, sizes, log=child_log, **kwargs)
                parts.append(future.result())
        else:
            parts.append(measure_variant(variant, sizes, log=log, **kwargs))
    return {
        "benchmark": "model-speed",
        "machine": machine_info(threads=threads),
        "settings": {
            "variants": list(variants),
            "sizes": sorted(sizes),
            "repeats": repeats,
            "budget_s": budget_s,
            "warmup": 1,
            "isolated": isolate,
            "paths": list(paths),
            "weights": "random",
            "text_query": TEXT_QUERY,
            "vocabulary_size": VOCABULARY_SIZE,
        },
        "wall_s": time.perf_counter() - started,
        # other processes on these cores slow every figure: a load above the thread count
        # at either end means the numbers are pessimistic
        "load_average": {"start": load_at_start, "end": load_average()},
        "models": [p["model"] for p in parts],
        "image": [row for p in parts for row in p["image"]],
        "prompts": [row for p in parts for row in p["prompts"]],
    }


# ----------------------------------------------------------------------------- report


def _load(values: Sequence[float] | None) -> str:
    return "n/a" if values is None else "/".join(f"{v:.2f}" for v in values)


def _max_load(*rows: Mapping[str, Any]) -> str:
    loads = [r["load_1m"] for r in rows if r.get("load_1m") is not None]
    return f"{max(loads):.1f}" if loads else "n/a"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def _spread(row: Mapping[str, Any], fmt: Callable[[float], str]) -> str:
    """``min / p50 / p95`` of a result row."""
    return " / ".join(fmt(row[key]) for key in ("min_s", "p50_s", "p95_s"))


def _header(result: Mapping[str, Any]) -> list[str]:
    settings, load = result["settings"], result.get("load_average", {})
    return [
        "# Model speed",
        "",
        *header_lines(result["machine"]),
        f"- Weights: {settings['weights']} (speed only). Images: square RGB of each size, no "
        "resize; the padded model frame is the image.",
        "- Timing: wall clock; 1 warm-up call, then at most "
        f"{settings['repeats']} samples, stopping early once {settings['budget_s']:g} s of "
        f"sampling have passed and there are at least {min(MIN_SAMPLES, settings['repeats'])}. "
        "`n` is the sample count of each figure; with few samples p95 is close to the maximum.",
        f"- Total run time: {_duration(result['wall_s'])}. Load average (1/5/15 min) at start "
        f"{_load(load.get('start'))}, at end {_load(load.get('end'))}.",
        "- `load`: the highest 1-minute load average seen while taking a figure. Above the "
        f"thread count ({result['machine']['torch_threads']}), other processes competed for "
        "the cores and that figure is pessimistic (min is then the better estimate).",
        "",
    ]


def _models_section(result: Mapping[str, Any]) -> list[str]:
    sizes = result["settings"]["sizes"]
    isolated = "fresh process per variant" if result["settings"]["isolated"] else "one process"
    rows = [
        [
            m["variant"],
            f"{m['parameters'] / 1e6:.1f} M",
            _mib(m["parameter_bytes"]),
            _mib(m["rss_before_build_bytes"]),
            *(_mib(m["peak_rss_bytes"][str(s)]) for s in sizes),
        ]
        for m in result["models"]
    ]
    headers = ["variant", "parameters", "fp32 weights", "RSS before build"]
    return [
        "## Models",
        "",
        markdown_table([*headers, *(f"peak RSS up to {s} px" for s in sizes)], rows),
        "",
        f"Peak RSS: `getrusage` peak ({isolated}; sizes in ascending order), including the "
        "Python/torch runtime (the RSS before build).",
        "",
    ]


def _image_section(result: Mapping[str, Any]) -> list[str]:
    image = {(r["variant"], r["size"], r["stage"]): r for r in result["image"]}
    rows = []
    for m in result["models"]:
        for s in result["settings"]["sizes"]:
            enc = image[(m["variant"], s, "encode_image")]
            mem = image[(m["variant"], s, "project_image")]
            rows.append(
                [
                    m["variant"],
                    s,
                    _spread(enc, lambda v: f"{v:.2f}"),
                    enc["n"],
                    _spread(mem, _ms),
                    mem["n"],
                    _max_load(enc, mem),
                ]
            )
    headers = [
        "variant",
        "size",
        "encode min / p50 / p95 (s)",
        "n",
        "ImageMemory min / p50 / p95 (ms)",
        "n",
        "load",
    ]
    return [
        "## Image side (once per image)",
        "",
        markdown_table(headers, rows),
        "",
        "Encode: backbone + pixel decoder on the preprocessed image (preprocessing excluded). "
        "ImageMemory: the cross-attention keys/values of every decoder layer, projected once "
        "per image for the fast path.",
        "",
    ]


def _prompt_section(result: Mapping[str, Any]) -> list[str]:
    settings = result["settings"]
    prompts = {(r["variant"], r["size"], r["prompt"], r["path"]): r for r in result["prompts"]}
    rows = []
    for m in result["models"]:
        for s in settings["sizes"]:
            for name in PROMPTS:
                full = prompts[(m["variant"], s, name, "full")]
                fast = prompts[(m["variant"], s, name, "fast")]
                rows.append(
                    [
                        m["variant"],
                        s,
                        name,
                        _ms(fast["prompt_encoding_p50_s"]),
                        _spread(full, _ms),
                        full["n"],
                        _spread(fast, _ms),
                        fast["n"],
                        f"{full['p50_s'] / fast['p50_s']:.1f}x",
                        _max_load(full, fast),
                    ]
                )
    headers = [
        "variant",
        "size",
        "prompt",
        "prompt encoding p50 (ms)",
        "full decode min / p50 / p95 (ms)",
        "n",
        "fast path min / p50 / p95 (ms)",
        "n",
        "full / fast (p50)",
        "load",
    ]
    return [
        "## Per prompt (warm image features)",
        "",
        markdown_table(headers, rows),
        "",
        "Each figure is the whole per-prompt cost with warm features: prompt encoding "
        "(rasterise + `encode_visual_prompts`; for text, tokenise + text encoder) + one decode "
        "+ picking the answer. Mask upsampling to the image is not included.",
        "",
        "- **full**: the official decode, all query groups (101 object queries with class "
        f"logits against a {settings['vocabulary_size']}-class vocabulary, plus the groups the "
        "prompt switches on), image keys/values projected in every layer.",
        '- **fast**: only the needed groups (`tasks={"spatial"}` for click/box/scribble, '
        '`{"grounding"}` for text, both for text + click) with the cached ImageMemory: the '
        "interactive path; same answer.",
        "- box: SEEM's rule, its centre as a click; the answer is then bounded by the box. "
        f'text: "{settings["text_query"]}", answered by the best grounding query.',
        "- prompt encoding p50 is from the fast-path samples.",
        "",
    ]


def render_markdown(result: Mapping[str, Any]) -> str:
    """The result as Markdown: header, then the model, image and per-prompt tables."""
    sections = (_header, _models_section, _image_section, _prompt_section)
    return "\n".join(line for section in sections for line in section(result))


def write_outputs(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``model_speed.json`` and ``model_speed.md`` into ``out_dir``."""
    return write_report(out_dir, "model_speed", result, render_markdown(result))


# -------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        metavar="VARIANT",
        help="model variants, random weights (default: %(default)s)",
    )
    add_sizes_argument(
        parser, list(DEFAULT_SIZES), "square image sizes in pixels (default: %(default)s)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="most samples per figure, after one warm-up call (default %(default)s)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help="stop sampling a figure after this long, with at least 3 samples "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's default)"
    )
    add_out_render_arguments(parser, "model_speed", RESULTS_DIR)
    add_no_isolate_argument(parser, "all variants ")


def main(args: argparse.Namespace) -> int:
    from napari_seem.model.build import VARIANTS

    if args.render is not None:
        result, md_path = rerender(args.render, args.out, "model_speed", render_markdown)
        print(render_markdown(result))
        stderr(f"wrote {md_path}")
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        stderr(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        return 2
    result = run(
        args.variants,
        args.sizes,
        repeats=args.repeats,
        budget_s=args.budget,
        threads=args.threads,
        isolate=args.isolate,
    )
    return show_report(result, write_outputs(result, args.out), render_markdown)
