"""The benchmark code paths on the tiny random variant (speed figures are not checked)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import model_speed
from benchmarks.__main__ import build_parser
from benchmarks._report import Stats, markdown_table, sample

VARIANT = "seem-tiny-focal"
SIZE = 64
STAT_FIELDS = ("p50_s", "p95_s", "mean_s", "min_s")


def _positive_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    result = model_speed.run(
        [VARIANT], [SIZE], repeats=2, budget_s=0.0, threads=1, isolate=False, log=None
    )
    out = tmp_path_factory.mktemp("model_speed")
    json_path, md_path = model_speed.write_outputs(result, out)
    assert (json_path, md_path) == (out / "model_speed.json", out / "model_speed.md")
    return json.loads(json_path.read_text(encoding="utf-8")), md_path.read_text(encoding="utf-8")


def test_json_has_every_row_with_positive_finite_numbers(
    outputs: tuple[dict[str, Any], str],
) -> None:
    data, _ = outputs
    assert data["benchmark"] == "model-speed"
    machine = data["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu_model"] and machine["torch_version"]

    (model,) = data["models"]
    assert model["variant"] == VARIANT
    assert isinstance(model["parameters"], int) and model["parameters"] > 0
    assert _positive_finite(model["peak_rss_bytes"][str(SIZE)])

    stages = {(r["variant"], r["size"], r["stage"]) for r in data["image"]}
    assert stages == {(VARIANT, SIZE, "encode_image"), (VARIANT, SIZE, "project_image")}
    prompts = {(r["variant"], r["size"], r["prompt"], r["path"]) for r in data["prompts"]}
    expected = {(VARIANT, SIZE, p, path) for p in model_speed.PROMPTS for path in ("full", "fast")}
    assert prompts == expected
    assert len(data["prompts"]) == len(expected)

    for row in [*data["image"], *data["prompts"]]:
        assert row["n"] == 2 and len(row["samples_s"]) == 2
        for name in STAT_FIELDS:
            assert _positive_finite(row[name]), (row, name)
        assert row["min_s"] <= row["p50_s"] <= row["p95_s"]
    for row in data["prompts"]:
        assert _positive_finite(row["prompt_encoding_p50_s"])
        assert row["prompt_encoding_p50_s"] < row["p50_s"]
        assert ("object" in row["tasks"]) == (row["path"] == "full")


def test_markdown_has_every_row(outputs: tuple[dict[str, Any], str]) -> None:
    _, text = outputs
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(f"| {VARIANT} |")]
    model_rows = [r for r in rows if r[1].endswith(" M")]
    image_rows = [r for r in rows if r[1] == str(SIZE) and len(r) == 7]
    prompt_rows = [r for r in rows if r[1] == str(SIZE) and len(r) == 10]
    assert len(model_rows) == 1 and len(image_rows) == 1
    assert sorted(r[2] for r in prompt_rows) == sorted(model_speed.PROMPTS)
    numbers = [*image_rows[0][2].split(" / "), *image_rows[0][4].split(" / ")]
    for row in prompt_rows:
        numbers += [row[3], *row[4].split(" / "), *row[6].split(" / "), row[8].rstrip("x")]
    assert numbers and all(_positive_finite(float(cell)) for cell in numbers), numbers
    assert "CPU:" in text and "torch" in text


def test_render_rewrites_markdown_from_json(
    outputs: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    data, text = outputs
    source = tmp_path / "earlier.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    args = build_parser().parse_args(
        ["model-speed", "--render", str(source), "--out", str(tmp_path / "md")]
    )
    assert args.main(args) == 0
    assert (tmp_path / "md" / "model_speed.md").read_text(encoding="utf-8") == text


def test_sample_stops_at_repeats_or_budget() -> None:
    calls: list[int] = []

    def work() -> dict[str, float]:
        calls.append(1)
        return {"stage": 1e-3}

    taken = sample(work, repeats=5, budget_s=1e9)
    assert len(taken.total) == 5 and len(calls) == 6  # one warm-up
    assert taken.stage_stats("stage").n == 5
    assert len(sample(work, repeats=10, budget_s=0.0).total) == 3  # budget spent: the minimum
    with pytest.raises(ValueError):
        sample(work, repeats=0, budget_s=1.0)


def test_stats_and_table() -> None:
    stats = Stats.of([3.0, 1.0, 2.0])
    assert (stats.n, stats.p50_s, stats.min_s, stats.mean_s) == (3, 2.0, 1.0, 2.0)
    assert 2.0 < stats.p95_s <= 3.0
    table = markdown_table(["name", "value"], [["a", "1.5"]])
    assert table.splitlines()[1] == "| --- | ---: |"


def test_cli_lists_model_speed(tmp_path: Path) -> None:
    parser = build_parser()
    assert "model-speed" in parser.format_help()
    args = parser.parse_args(
        ["model-speed", "--sizes", "64", "--repeats", "2", "--out", str(tmp_path)]
    )
    assert args.sizes == [64] and args.repeats == 2 and args.out == tmp_path
    assert args.variants == list(model_speed.DEFAULT_VARIANTS) and args.isolate
    assert args.main is model_speed.main


@pytest.mark.slow
def test_engine_benchmark_smoke(tmp_path: Path) -> None:
    """``python -m benchmarks engine`` on tiny sizes with an in-thread server."""
    from benchmarks import engine_latency

    result = engine_latency.run(
        sizes=(400, 512), clicks=3, areas=1, tile=128, halo=16, server="thread", log=None
    )
    json_path, md_path = engine_latency.write_outputs(result, tmp_path)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["benchmark"] == "engine"
    for group in ("click_warm", "first_click"):
        for row in data[group].values():
            assert row["n"] >= 1 and _positive_finite(row["p50_s"])
            assert row["min_s"] <= row["p50_s"] <= row["p95_s"]
    assert set(data["click_warm"]) == {"in_process", "through_server"}
    assert set(data["first_click"]) == {"no_prefetch", "after_prefetch"}
    assert [m["size"] for m in data["server_memory"]] == [400, 512]
    assert all(_positive_finite(m["peak_rss_bytes"]) for m in data["server_memory"])
    assert "Per click" in md_path.read_text(encoding="utf-8")
    assert "engine" in build_parser().format_help()


def test_batch_benchmark_smoke(tmp_path: Path) -> None:
    from benchmarks import batch_throughput

    result = batch_throughput.run(
        [600],
        [1],
        tile=256,
        halo=32,
        short_side=128,
        max_megapixels=0.25,
        isolate=False,
        log=None,
    )
    (row,) = result["runs"]
    assert row["region"] == [50, 50, 550, 550] and row["megapixels"] == 0.25  # bounded region
    assert _positive_finite(row["megapixels_per_s"]) and _positive_finite(row["peak_rss_bytes"])
    json_path, md_path = batch_throughput.write_outputs(result, tmp_path)
    assert json.loads(json_path.read_text())["benchmark"] == "batch"
    assert "| 600^2 | 1 | central 500^2 region |" in md_path.read_text()
    assert build_parser().parse_args(["batch", "--quick"]).main is batch_throughput.main


# ---------------------------------------------------------------- benchmarks all --quick


@pytest.mark.slow
def test_all_quick_runs_every_section_and_writes_results(tmp_path: Path) -> None:
    from benchmarks import all as all_benchmarks

    result = all_benchmarks.run(all_benchmarks.Plan.quick(), threads=1, log=None)
    json_path, md_path = all_benchmarks.write_outputs(result, tmp_path, tmp_path / "RESULTS.md")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    sections = data["sections"]
    assert set(sections) == set(all_benchmarks.SECTIONS)
    failed = {name: s["error"] for name, s in sections.items() if s["error"]}
    assert not failed, failed
    speed = sections["model_speed"]["data"]
    assert {r["prompt"] for r in speed["prompts"]} == set(model_speed.PROMPTS)
    peers = sections["peers"]["data"]
    assert [p["variant"] for p in peers] == ["sam-vit-b", "sam2-hiera-t"]
    for peer in peers:
        assert peer.get("error") is None and {r["prompt"] for r in peer["prompts"]} == {
            "click",
            "box",
            "scribble",
        }
    whole = sections["whole_image"]["data"]
    assert {r["workers"] for r in whole["batch"]["runs"]} == {1, 2}
    assert {r["path"] for r in whole["engine"]} == {"in_process", "model_process"}
    assert all(_positive_finite(r["megapixels_per_s"]) for r in whole["engine"])
    gui = sections["gui"]["data"]
    assert gui["finished"] and not gui["errors"]
    assert _positive_finite(gui["during_job"]["max_gap_s"])
    gpu = sections["gpu"]["data"]
    import torch

    assert gpu["available"] == torch.cuda.is_available()
    (evaluation,) = sections["quality"]["data"]["evaluations"]
    assert 0.0 <= evaluation["methods"]["watershed"]["everything"]["f1"] <= 1.0

    text = md_path.read_text(encoding="utf-8")
    assert text.startswith("# napari-seem benchmark results") and "--quick" in text
    for heading in ("Model speed", "Whole-image", "GUI responsiveness", "GPU", "Quality"):
        assert f"## {heading}" in text
    assert "| sam-vit-b | random | 64 |" in text and "n/a (no text prompt" in text
    if not torch.cuda.is_available():
        assert "no CUDA on this machine" in text
    assert "| watershed |" in text
