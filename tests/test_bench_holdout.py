"""bench/holdout.py: the estimator's error on shapes it was not calibrated on, from recorded GPU runs.

No GPU: the recorded results (bench/results/gpu-*.json) are the input, so CI runs the holdout on
the committed results as a smoke test, and a synthetic set made from a known law checks the fit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tuneform.estimate.catalog import Flavor, known_model
from tuneform.estimate.estimator import DEFAULT_CALIBRATION, Workload, estimate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _holdout() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_holdout", ROOT / "bench" / "holdout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_holdout"] = module
    spec.loader.exec_module(module)
    return module


H100 = Flavor("h100x1-bench", "1x H100", "H100", 1, 80.0, 0.0, True)
H200 = Flavor("h200", "H200", "H200", 1, 141.0, 5.0, True)
SHAPES = {
    "llama-1b": "meta-llama/Llama-3.2-1B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "lfm2-1.2b": "LiquidAI/LFM2-1.2B",
}


def _lawful_points(holdout: ModuleType, flavor: Flavor, speed: float, memory: float, warmup_offset: float) -> list:
    """Points whose measurements follow a known law: the estimate's rate times `speed`, its peak
    times `memory`, its warm-up plus `warmup_offset`, at two batches and two compile settings."""
    points = []
    for name, model_id in SHAPES.items():
        shape = known_model(model_id)
        assert shape is not None
        for batch, compile in ((8, "on"), (16, "off")):
            workload = Workload(
                shape=shape,
                train_tokens=1_000_000,
                batch_size=batch,
                gradient_checkpointing=False,
                mean_example_tokens=405,
                max_example_tokens=1062,
                compile=compile,  # type: ignore[arg-type]
            )
            base = estimate(workload, flavor)
            steady = base.tokens_per_second * speed
            warmup = base.seconds_breakdown["warmup"] + warmup_offset
            peak = (base.peak_vram_gb - base.memory_breakdown["cuda_context"]) * memory
            points.append(
                holdout.Point(
                    source=f"synthetic: {name} b{batch}",
                    card=flavor.gpu_model,
                    shape=name,
                    workload=workload,
                    flavor=flavor,
                    steady_tokens_per_second=steady,
                    loop_seconds=warmup + workload.train_tokens / steady,
                    peak_gib=peak,
                )
            )
    return points


def test_fitting_points_of_a_known_law_recovers_it_and_predicts_held_out_shapes_exactly() -> None:
    holdout = _holdout()
    h100 = _lawful_points(holdout, H100, speed=0.8, memory=1.1, warmup_offset=-3.0)
    h200 = _lawful_points(holdout, H200, speed=1.3, memory=0.9, warmup_offset=7.0)
    fitted = holdout.fit("H100", [p for p in h100 if p.shape != "lfm2-1.2b"])
    assert fitted.speed == pytest.approx(0.8, abs=1e-3)  # calibrate.factors rounds to 3 decimals
    assert fitted.memory == pytest.approx(1.1, abs=1e-3)
    assert fitted.warmup_offset_s == pytest.approx(-3.0)
    assert fitted.shapes == ("llama-1b", "qwen3-0.6b")

    errors = holdout.leave_one_shape_out(h100 + h200)
    assert len(errors) == len(h100) + len(h200)
    for error in errors:
        assert error.fit is not None and error.fit.card == error.point.card  # one card at a time
        assert error.point.shape not in error.fit.shapes  # never fitted on the shape it predicts
        assert error.fit.speed == pytest.approx(0.8 if error.point.card == "H100" else 1.3, abs=1e-3)
        for value in (error.steady, error.loop, error.peak):
            assert value == pytest.approx(0.0, abs=2e-3)


def test_a_law_the_estimator_misses_shows_as_held_out_error() -> None:
    """One shape twice as slow as the law the others follow: its error is what the fit cannot know."""
    holdout = _holdout()
    points = _lawful_points(holdout, H100, speed=0.8, memory=1.0, warmup_offset=0.0)
    slow = [dataclasses.replace(p, steady_tokens_per_second=p.steady_tokens_per_second / 2) for p in points if p.shape == "qwen3-0.6b"]
    errors = holdout.leave_one_shape_out([p for p in points if p.shape != "qwen3-0.6b"] + slow)
    held_out = [e for e in errors if e.point.shape == "qwen3-0.6b"]
    assert held_out and all(e.steady == pytest.approx(1.0, abs=2e-3) for e in held_out)  # predicted twice the measured


def test_holdout_runs_on_the_committed_results(tmp_path: Path) -> None:
    """The smoke test CI runs: every committed GPU result is priced or listed with why, one card
    at a time, and the table the docs quote is written."""
    holdout = _holdout()
    assert holdout.main(["--results", str(RESULTS), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "holdout.md").read_text()
    report = json.loads((tmp_path / "holdout.json").read_text())
    assert {"H100 unsloth", "H200 unsloth"} <= set(report["summary"])
    assert "| card, engine | points | shapes | steady rate | whole loop | peak memory | setup |" in text
    files = sorted(RESULTS.glob("gpu-*.json"))
    results = sum(len(json.loads(path.read_text())["results"]) for path in files)
    assert len(report["points"]) + len(report["skipped"]) == results  # nothing silently dropped
    for point in report["points"]:
        assert math.isfinite(point["steady"]["error"])
        fitted = point["fitted_on"]
        if fitted is not None:
            assert point["shape"] not in fitted["shapes"]
            card_shapes = {p["shape"] for p in report["points"] if p["card"] == point["card"]}
            assert set(fitted["shapes"]) <= card_shapes


def test_new_result_files_are_read_without_code_changes(tmp_path: Path) -> None:
    holdout = _holdout()
    shutil.copy(RESULTS / "gpu-llama-layout.json", tmp_path / "gpu-llama-layout.json")
    before, _ = holdout.load(tmp_path)
    report = json.loads((RESULTS / "gpu-qwen3-0.6b-2026-12-06.json").read_text())
    (tmp_path / "gpu-qwen3-0.6b-2026-12-06-shapes1.json").write_text(json.dumps(report))
    after, _ = holdout.load(tmp_path)
    assert {p.shape for p in before} == {"llama-1b"}
    assert {p.shape for p in after} == {"llama-1b", "qwen3-0.6b"}


def test_what_the_estimator_cannot_price_is_skipped_with_why(tmp_path: Path) -> None:
    holdout = _holdout()
    report = json.loads((RESULTS / "gpu-llama-layout.json").read_text())
    ran = report["results"][0]
    report["results"] = [
        ran,
        {**ran, "config": "failed", "status": "failed (exit 1)"},
        {**ran, "config": "segments", "attention": "segments"},
    ]
    report["environment"] = {"UNSLOTH_COMPILE_DISABLE": "1"}
    path = tmp_path / "gpu-x.json"
    path.write_text(json.dumps(report))
    points, skipped = holdout.points_of(path)
    assert [p.source for p in points] == ["gpu-x: tuneform-default"]
    assert points[0].workload.compile_mode == "none"  # read from the recorded environment
    assert dict(skipped) == {
        "gpu-x: failed": "the job did not finish (failed (exit 1))",
        "gpu-x: segments": "attention route 'segments': the estimator prices the varlen route",
    }


def test_card_names_are_gpu_models() -> None:
    holdout = _holdout()
    assert holdout.card_of("NVIDIA H100 80GB HBM3") == "H100"
    assert holdout.card_of("NVIDIA H200") == "H200"
    assert holdout.card_of("NVIDIA A100-SXM4-80GB") == "A100"
    assert DEFAULT_CALIBRATION.speed_by_gpu == {}  # the fit never changes the shipped calibration


def test_lfm2_runs_with_nothing_compiled_before_the_fused_kernels_are_skipped(tmp_path: Path) -> None:
    """An eager LFM2 job now runs Unsloth's fused kernels (settings.kernels: fused), which the
    estimator prices; the eager runs recorded before them measured another path."""
    holdout = _holdout()
    report = json.loads((RESULTS / "gpu-lfm2.5-1.2b-auto-2026-12-06.json").read_text())
    ran = report["results"][0]
    fused = {**ran, "config": "fused", "settings": {**ran["settings"], "kernels": "fused"}}
    report["results"] = [ran, fused]
    path = tmp_path / "gpu-x.json"
    path.write_text(json.dumps(report))
    points, skipped = holdout.points_of(path)
    assert [p.source for p in points] == ["gpu-x: fused"]
    assert dict(skipped) == {
        f"gpu-x: {ran['config']}": "nothing compiled, before LFM2's fused kernels (train/fused_lfm2.py), which the estimator prices"
    }


def test_an_eager_lfm2_run_is_priced_only_where_its_kernels_are_the_estimates(tmp_path: Path) -> None:
    """The skip asks the estimator's own rule (fused_when_uncompiled): full fine-tuning is priced
    unfused, so its eager run (no kernels recorded) is a point; QLoRA too, so a 4-bit run that
    recorded fused kernels (its feed-forwards and norms) is not."""
    holdout = _holdout()
    report = json.loads((RESULTS / "gpu-lfm2.5-1.2b-auto-2026-12-06.json").read_text())
    ran = report["results"][0]
    for method, settings, priced in (("full", ran["settings"], True), ("qlora", {**ran["settings"], "kernels": "fused"}, False)):
        path = tmp_path / f"gpu-{method}.json"
        path.write_text(json.dumps({**report, "method": method, "results": [{**ran, "settings": settings}]}))
        points, skipped = holdout.points_of(path)
        assert (len(points), len(skipped)) == ((1, 0) if priced else (0, 1)), (method, skipped)
