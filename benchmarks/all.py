"""Every benchmark in one run: SEEM vs peers, whole images, GUI, GPU and quality.

``python -m benchmarks all`` (or ``napari-seem bench``) measures, on this machine, in one
process tree (each heavy part in a fresh child process, one after another):

1. **model speed** (:mod:`benchmarks.model_speed`): image encoding per tile and per-prompt
   decode latency with warm features (click, box, scribble, text, text + click) for
   ``seem-lite``, Focal-T and Focal-L at 512 and 1024 px (random weights: speed only);
2. **peers** (:mod:`benchmarks.peers`): SAM ViT-B and SAM 2 Hiera-T from transformers;
3. **whole image**: MP/s and peak memory for 2,000^2 / 8,000^2 / 20,000^2 zarr images with
   1 vs 2 Dask workers (:mod:`benchmarks.batch_throughput`) and in process vs through the
   model process (:mod:`benchmarks.whole_image`), bounded regions where said;
4. **GUI** (:mod:`benchmarks.gui_stall`): the longest Qt event-loop stall in napari while
   "segment everything" runs;
5. **GPU** (:mod:`benchmarks.gpu`): when CUDA is present, fp32 and bf16;
6. **quality** (:mod:`napari_seem.evaluation`): held-out BBBC007 and Landsat, seem-lite
   (when its trained weights ship) and the classical baselines.

Writes ``all.json`` into ``--out`` (default ``benchmarks/results``) and the generated
``RESULTS.md`` (default ``benchmarks/RESULTS.md``). ``--quick``: tiny sizes and the tiny
model, a smoke run of every code path in a minute or two (written under ``out/bench-quick``
unless told otherwise); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._report import (
    header_lines,
    load_average,
    machine_info,
    markdown_table,
    show_report,
    stderr,
    write_json,
)

__all__ = [
    "SECTIONS",
    "Plan",
    "add_arguments",
    "main",
    "render_markdown",
    "rerender_results",
    "run",
]

SECTIONS = ("model_speed", "peers", "whole_image", "gui", "gpu", "quality")
_ROOT = Path(__file__).resolve().parent
RESULTS_DIR = _ROOT / "results"
RESULTS_MD = _ROOT / "RESULTS.md"
QUICK_DIR = _ROOT.parent / "out" / "bench-quick"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """What one run measures (:meth:`full` or :meth:`quick`)."""

    variants: tuple[str, ...]
    sizes: tuple[int, ...]
    repeats: int
    budget_s: float
    paths: tuple[str, ...]
    encode_repeats: int
    peer_sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    batch_tile: int
    batch_max_megapixels: float
    whole_sizes: tuple[int, ...]
    whole_tile: int
    whole_max_megapixels: float
    gui_size: int
    eval_datasets: tuple[str, ...]
    eval_max_objects: int
    eval_max_clicks: int
    eval_random_model: str | None = None  # quick: exercise the SEEM path with random weights
    sections: tuple[str, ...] = field(default=SECTIONS)

    @classmethod
    def full(cls) -> Plan:
        return cls(
            variants=("seem-lite", "seem-focalt-v1", "seem-focall-v1"),
            sizes=(512, 1024),
            repeats=10,
            budget_s=1.0,
            paths=("fast",),
            encode_repeats=2,
            peer_sizes=(512, 1024),
            batch_sizes=(2000, 8000, 20000),
            batch_tile=2048,
            batch_max_megapixels=64.0,
            whole_sizes=(2000, 8000, 20000),
            whole_tile=1024,
            whole_max_megapixels=4.0,
            gui_size=768,
            eval_datasets=("bbbc007-heldout", "landsat-heldout"),
            eval_max_objects=10,
            eval_max_clicks=20,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            variants=("seem-tiny-focal",),
            sizes=(64,),
            repeats=2,
            budget_s=0.0,
            paths=("fast",),
            encode_repeats=2,
            peer_sizes=(64,),
            batch_sizes=(256,),
            batch_tile=256,
            batch_max_megapixels=0.1,
            whole_sizes=(256,),
            whole_tile=256,
            whole_max_megapixels=0.1,
            gui_size=128,
            eval_datasets=("bbbc007-heldout",),
            eval_max_objects=1,
            eval_max_clicks=5,
        )


def _section(name: str, fn: Callable[[], Any], say: Log) -> dict[str, Any]:
    """Run one section; its failure is recorded, the other sections still run."""
    say(f"== {name}")
    t0 = time.perf_counter()
    load = load_average()
    try:
        data, error = fn(), None
    except Exception as exc:
        data, error = None, f"{type(exc).__name__}: {exc}"
        say(f"== {name} failed: {error}")
    return {
        "wall_s": time.perf_counter() - t0,
        "load_start": load,
        "load_end": load_average(),
        "error": error,
        "data": data,
    }


def _model_speed(plan: Plan, threads: int, say: Log) -> dict[str, Any]:
    from benchmarks import model_speed

    return model_speed.run(
        plan.variants,
        plan.sizes,
        repeats=plan.repeats,
        budget_s=plan.budget_s,
        threads=threads,
        isolate=True,
        paths=plan.paths,
        encode_repeats=plan.encode_repeats,
        log=say,
    )


def _peers(plan: Plan, threads: int, say: Log) -> list[dict[str, Any]]:
    from benchmarks import peers

    return peers.run(
        sizes=plan.peer_sizes,
        repeats=plan.repeats,
        budget_s=plan.budget_s,
        threads=threads,
        encode_repeats=plan.encode_repeats,
        log=say,
    )


def _whole_image(plan: Plan, say: Log) -> dict[str, Any]:
    from benchmarks import batch_throughput, whole_image

    batch = batch_throughput.run(
        plan.batch_sizes,
        (1, 2),
        tile=plan.batch_tile,
        max_megapixels=plan.batch_max_megapixels,
        log=say,
    )
    engine = whole_image.run(
        plan.whole_sizes,
        tile=plan.whole_tile,
        max_megapixels=plan.whole_max_megapixels,
        log=say,
    )
    return {"batch": batch, "engine": engine}


def _gui(plan: Plan) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(_ROOT.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gui_stall", "--size", str(plan.gui_size)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=_ROOT.parent,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"gui_stall exited {proc.returncode}: {proc.stderr.strip()[-800:] or 'no output'}"
        )
    return dict(json.loads(lines[-1]))


def _gpu(plan: Plan, say: Log) -> dict[str, Any]:
    from benchmarks import gpu

    return gpu.run(plan.variants, plan.sizes, repeats=plan.repeats, budget_s=plan.budget_s, log=say)


def _quality(plan: Plan, threads: int, checkpoint: str | None, say: Log) -> dict[str, Any]:
    import torch

    from napari_seem.cli.eval import WeightsUnavailable, build_predictor
    from napari_seem.evaluation.data import load_builtin
    from napari_seem.evaluation.runner import evaluate

    torch.set_num_threads(threads)
    predictor = label = skipped = None
    variant = plan.eval_random_model or "seem-lite"
    try:
        predictor, label = build_predictor(
            variant,
            checkpoint=checkpoint,
            device="cpu",
            allow_random=plan.eval_random_model is not None,
        )
    except WeightsUnavailable:
        skipped = "seem-lite's trained weights are not shipped in this installation"
    results = []
    for dataset in plan.eval_datasets:
        say(f"quality: {dataset}")
        results.append(
            evaluate(
                load_builtin(dataset),
                dataset=dataset,
                predictor=predictor,
                model=label,
                seem_skipped=skipped,
                max_objects=plan.eval_max_objects,
                max_clicks=plan.eval_max_clicks,
                log=say,
            )
        )
    return {"evaluations": results}


def run(
    plan: Plan,
    *,
    threads: int = 2,
    checkpoint: str | None = None,
    note: str | None = None,
    log: Log | None = stderr,
    on_section: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every section of ``plan``; the JSON-ready result.

    ``on_section`` gets the partial result after each section (the command writes it, so a
    run that dies midway leaves what it measured).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    say = log or (lambda _m: None)
    started = time.perf_counter()
    load_at_start = load_average()
    runners: dict[str, Callable[[], Any]] = {
        "model_speed": lambda: _model_speed(plan, threads, say),
        "peers": lambda: _peers(plan, threads, say),
        "whole_image": lambda: _whole_image(plan, say),
        "gui": lambda: _gui(plan),
        "gpu": lambda: _gpu(plan, say),
        "quality": lambda: _quality(plan, threads, checkpoint, say),
    }
    sections: dict[str, Any] = {}
    result: dict[str, Any] = {
        "benchmark": "all",
        "machine": machine_info(threads=threads),
        "versions": _versions(),
        "note": note,
        "quick": plan.variants == Plan.quick().variants,
        "plan": dict(plan.__dict__),
        "sections": sections,
    }
    for name in plan.sections:
        sections[name] = _section(name, runners[name], say)
        result["wall_s"] = time.perf_counter() - started
        result["load_average"] = {"start": load_at_start, "end": load_average()}
        if on_section is not None:
            on_section(result)
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = {"start": load_at_start, "end": load_average()}
    return result


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "napari", "scikit-image", "zarr", "dask", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


# ----------------------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}" if seconds < 10 else f"{seconds * 1e3:,.0f}"


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _image_row(r: Mapping[str, Any]) -> list[Any]:
    """One row of the image-encoding table (SEEM variants and peers alike)."""
    return [
        r["variant"],
        "random",
        r["size"],
        _s(r["min_s"]),
        _s(r["p50_s"]),
        _s(r["p95_s"]),
        r["n"],
        _load(r),
    ]


def _load(row: Mapping[str, Any]) -> str:
    value = row.get("load_1m")
    return "n/a" if value is None else f"{value:.1f}"


def _failed(name: str, section: Mapping[str, Any]) -> list[str]:
    return [f"**{name} did not run**: {section['error']}", ""]


def _section_lines(
    section: Mapping[str, Any], name: str, render: Callable[[Mapping[str, Any]], list[str]]
) -> list[str]:
    """``render`` of the section's data; nothing if it was not asked for, the error if it failed."""
    if not section:
        return []
    if not section.get("data"):
        return _failed(name, section)
    return render(section["data"])


def _model_label(row: Mapping[str, Any]) -> str:
    """SEEM's official full decode gets its own row; the interactive fast path is the default."""
    return f"{row['variant']} (full decode)" if row.get("path") == "full" else row["variant"]


def _speed_tables(sections: Mapping[str, Any]) -> list[str]:
    speed = sections.get("model_speed", {})
    peers = sections.get("peers", {})
    lines: list[str] = []
    image_rows: list[list[object]] = []
    prompt_rows: dict[tuple[str, int], dict[str, str]] = {}
    notes: list[str] = []
    if speed.get("data"):
        for r in speed["data"]["image"]:
            if r["stage"] == "encode_image":
                image_rows.append(_image_row(r))
        for r in speed["data"]["prompts"]:
            cell = f"{_ms(r['p50_s'])} / {_ms(r['p95_s'])} (n={r['n']})"
            prompt_rows.setdefault((_model_label(r), r["size"]), {})[r["prompt"]] = cell
    elif speed:
        lines += _failed("model speed", speed)
    from benchmarks.peers import UNSUPPORTED

    for part in peers.get("data") or []:
        for r in part.get("image", []):
            image_rows.append(_image_row(r))
        for r in part.get("prompts", []):
            cell = f"{_ms(r['p50_s'])} / {_ms(r['p95_s'])} (n={r['n']})"
            prompt_rows.setdefault((r["variant"], r["size"]), {})[r["prompt"]] = cell
        for size in sorted({r["size"] for r in part.get("prompts", [])}):
            for prompt, why in UNSUPPORTED.items():
                prompt_rows[(part["variant"], size)][prompt] = f"n/a ({why})"
        if part.get("error"):
            notes.append(f"- **{part['variant']} could not run**: {part['error']}")
    if peers and peers.get("error"):
        lines += _failed("peers", peers)
    prompts = ("click", "box", "scribble", "text", "text+click")
    lines += [
        "### Image encoding per tile (s)",
        "",
        markdown_table(
            ["model", "weights", "model input px", "min", "p50", "p95", "n", "load"],
            image_rows or [["(none)", "", "", "", "", "", "", ""]],
        ),
        "",
        "### Per-prompt latency with warm features (ms, p50 / p95)",
        "",
        markdown_table(
            ["model", "weights", "model input px", *prompts],
            [
                [variant, "random", size, *(cells.get(p, "not measured") for p in prompts)]
                for (variant, size), cells in prompt_rows.items()
            ]
            or [["(none)", "", "", "", "", "", "", ""]],
        ),
        "",
        "SEEM rows: prompt encoding + one decode on the interactive (fast) path "
        "(only the query groups the prompt needs, cached image keys/values) + picking the "
        "answer; box = SEEM's rule (its centre as a click, answer bounded by the box). "
        "Peers: prompt encoder + mask decoder on cached embeddings, one mask; scribble = the "
        "stroke's 8 vertices as positive points. All weights random: the time of a forward "
        "pass does not depend on the weights, so these are the architectures' speeds at "
        "that model input size (not the quality of any trained model; seem-lite's "
        "whole-image speed with its shipped weights is in the first section).",
        *notes,
        "",
    ]
    return lines


def _whole_tables(data: Mapping[str, Any]) -> list[str]:
    batch, engine = data["batch"], data["engine"]
    rows: list[list[object]] = []
    for r in batch["runs"]:
        where = (
            "whole image"
            if r["region"] is None
            else f"central {r['region'][2] - r['region'][0]:,}^2"
        )
        path = "in process" if r["workers"] == 1 else "Dask, 2 workers"
        rows.append(
            [
                f"{r['size']:,}^2",
                f"batch `segment_image`, {path}",
                where,
                f"{r['megapixels']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['megapixels_per_s']:.2f}",
                _mib(r["peak_rss_bytes"]),
            ]
        )
    for r in engine:
        label = "engine job, " + r["path"].replace("_", " ")
        if "error" in r:
            rows.append([f"{r['size']:,}^2", label, f"failed: {r['error']}", "", "", "", ""])
            continue
        where = (
            "whole image"
            if r["region"] is None
            else f"central {r['region'][2] - r['region'][0]:,}^2"
        )
        rows.append(
            [
                f"{r['size']:,}^2",
                label,
                where,
                f"{r['megapixels']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['megapixels_per_s']:.2f}",
                _mib(r["peak_rss_bytes"]),
            ]
        )
    s = batch["settings"]
    return [
        markdown_table(["image", "path", "segmented", "MP", "wall (s)", "MP/s", "peak RSS"], rows),
        "",
        f"Model `{s['variant']}`, random weights, text search {s['task']}: plumbing speed, "
        "not a trained model's and not the default model's. Batch: tiles "
        f"{s['tile']} px, each encoded at {s['short_side']} px, 1 torch thread per worker; "
        "2 workers = Dask LocalCluster in the measured "
        "process. Engine: the same text search as a `segment` job writing a labels zarr, "
        "in a fresh process vs through a `napari-seem serve` child (HTTP on 127.0.0.1; "
        "peak RSS is the server's). Large sizes run on a central region (the table says "
        "which): peak memory depends on the tile, not on the image. Batch and engine rows "
        "differ in tiling (batch: 2,048-px tiles shrunk to 256 px; engine: 1,024-px tiles, "
        "halo 64, at the model's own input size): compare 1 vs 2 workers within the batch "
        "rows and in process vs model process within the engine rows.",
        "",
    ]


def _gui_lines(g: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            "idle viewer (2 s)",
            g["idle"]["ticks"],
            _ms(g["idle"]["p50_gap_s"]),
            _ms(g["idle"]["p99_gap_s"]),
            _ms(g["idle"]["max_gap_s"]),
        ],
        [
            f"during the job ({g['job_s']:.1f} s)",
            g["during_job"]["ticks"],
            _ms(g["during_job"]["p50_gap_s"]),
            _ms(g["during_job"]["p99_gap_s"]),
            _ms(g["during_job"]["max_gap_s"]),
        ],
    ]
    return [
        markdown_table(
            ["phase", "ticks", "p50 gap (ms)", "p99 gap (ms)", "longest stall (ms)"], rows
        ),
        "",
        f"A {g['tick_ms']} ms QTimer in napari's GUI thread (shown viewer on Xvfb, software "
        f"OpenGL); job: {g['job']} on a {g['image']} image, {g['model']}. Finished: "
        f"{g['finished']}; widget errors: {g['errors'] or 'none'}.",
        "",
    ]


def _gpu_lines(g: Mapping[str, Any]) -> list[str]:
    if not g.get("available"):
        return [f"Not run (no GPU lent to this session; {g['reason']}).", ""]
    rows = []
    for r in g["rows"]:
        what = r.get("stage") or r.get("prompt")
        rows.append(
            [r["variant"], r["size"], r["dtype"], what, _ms(r["p50_s"]), _ms(r["p95_s"]), r["n"]]
        )
    lines = [
        f"Device: {g['device']}.",
        "",
        markdown_table(["model", "px", "dtype", "what", "p50 ms", "p95 ms", "n"], rows),
        "",
    ]
    lines += [f"- {variant} failed: {error}" for variant, error in g["errors"].items()]
    return lines


def _quality_lines(data: Mapping[str, Any]) -> list[str]:
    from napari_seem.evaluation.runner import render_markdown as render_eval

    lines: list[str] = []
    for result in data["evaluations"]:
        lines += (
            render_eval(result, title=f"Quality: {result['dataset']}")
            .replace("## ", "### ")
            .splitlines()
        )
        lines.append("")
    return lines


def render_markdown(result: Mapping[str, Any]) -> str:
    sections = result["sections"]
    plan = result["plan"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    load = result["load_average"]
    header = [
        "# napari-seem benchmark results",
        "",
        "Generated by `python -m benchmarks all`"
        + (" --quick (smoke run: the figures mean nothing)" if result.get("quick") else "")
        + "; do not edit by hand.",
        "",
        *header_lines(result["machine"]),
        f"- Versions: {versions}",
        f"- Total run time {result['wall_s'] / 60:.1f} min; load average (1/5/15 min) at start "
        f"{load['start']}, at end {load['end']} (above {result['machine']['usable_cores']}, "
        "other processes competed for the cores and the figures are pessimistic).",
    ]
    if result.get("note"):
        header.append(f"- Note: {result['note']}")
    header.append(
        "- Timing: wall clock; 1 warm-up call, then up to "
        f"{plan['repeats']} samples, stopping after {plan['budget_s']:g} s of sampling once "
        f"there are 3; image encoders: 1 warm-up + {plan['encode_repeats']} samples; `n` is "
        "each figure's sample count."
    )
    section_times = ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in sections.items())
    header += [f"- Sections: {section_times}.", ""]
    everything = _everything_result(result)
    body = [
        *(_everything_lines(everything) if everything else []),
        "## Model speed: SEEM and peers (CPU, random weights)",
        "",
        *_speed_tables(sections),
        "## Plumbing on the random tiny model (speed of the code paths, not of a model)",
        "",
        "Rows in this section run `seem-tiny-focal` with random weights: they measure the "
        "batch runner, Dask, the engine and napari around a model that costs almost "
        "nothing. They are not what a user of the default model gets (first section).",
        "",
        "### Whole-image throughput and peak memory (plumbing, tiny random model)",
        "",
        *_section_lines(sections.get("whole_image", {}), "whole image", _whole_tables),
        "### GUI responsiveness (napari; plumbing, tiny random model)",
        "",
        *_section_lines(sections.get("gui", {}), "GUI", _gui_lines),
        "## GPU",
        "",
        *_section_lines(sections.get("gpu", {}), "GPU", _gpu_lines),
        "## Quality on held-out data",
        "",
        *_section_lines(sections.get("quality", {}), "quality", _quality_lines),
    ]
    return "\n".join(header + body).rstrip() + "\n"


def _everything_result(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The default-model benchmark (``benchmarks everything``) to show first, if measured."""
    given = result.get("everything")
    if given is not None:
        return dict(given)
    path = RESULTS_DIR / "everything.json"
    if result.get("quick") or not path.exists():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _everything_lines(everything: Mapping[str, Any]) -> list[str]:
    from benchmarks.everything_throughput import render_section

    return render_section(everything)


def rerender_results(out_dir: Path, md_path: Path | None = None) -> Path:
    """Rewrite ``RESULTS.md`` from ``out_dir/all.json`` and ``out_dir/everything.json``."""
    md = md_path or RESULTS_MD
    everything = json.loads((out_dir / "everything.json").read_text(encoding="utf-8"))
    all_json = out_dir / "all.json"
    if all_json.exists():
        result = dict(json.loads(all_json.read_text(encoding="utf-8")))
        result["everything"] = everything
        text = render_markdown(result)
    else:
        text = "# napari-seem benchmark results\n\n" + "\n".join(_everything_lines(everything))
    md.write_text(text.rstrip() + "\n", encoding="utf-8")
    return md


def write_outputs(result: Mapping[str, Any], out_dir: Path, md_path: Path) -> tuple[Path, Path]:
    json_path = write_json(out_dir / "all.json", result)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render_markdown(result), encoding="utf-8")
    return json_path, md_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which sections (default: all)",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="also time SEEM's official full decode (every query group) per prompt",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores)"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="seem-lite weights for the quality section"
    )
    parser.add_argument(
        "--note", default=None, help="a line for the report header (e.g. machine load)"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder of all.json")
    parser.add_argument("--markdown", type=Path, default=None, help="path of RESULTS.md")
    parser.add_argument(
        "--render", type=Path, default=None, metavar="JSON", help="measure nothing: re-render JSON"
    )


def main(args: argparse.Namespace) -> int:
    out = args.out or (QUICK_DIR if args.quick else RESULTS_DIR)
    md = args.markdown or ((out / "RESULTS.md") if args.quick else RESULTS_MD)
    if args.render is not None:
        result = json.loads(args.render.read_text(encoding="utf-8"))
        md.write_text(render_markdown(result), encoding="utf-8")
        stderr(f"wrote {md}")
        return 0
    plan = Plan.quick() if args.quick else Plan.full()
    paths = ("full", "fast") if args.full_decode else plan.paths
    plan = Plan(**{**plan.__dict__, "sections": tuple(args.sections), "paths": paths})
    threads = args.threads or len(os.sched_getaffinity(0))
    result = run(
        plan,
        threads=threads,
        checkpoint=args.checkpoint,
        note=args.note,
        on_section=lambda partial: write_outputs(partial, out, md),
    )
    return show_report(result, write_outputs(result, out, md), render_markdown)
