"""tuneform calibrate: the estimator corrected by the repository's own finished runs.

End to end on the local backend: real CPU training of the demo writes the manifest, calibrate
reads it back, the printed table goes into pyproject.toml, the next plan applies it, and the next
calibration takes it back out instead of compounding it. The edge cases (other GPU, other batch,
manifests from before) are checked on manifests edited from a real one.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Repo, demo_repo
from tuneform.core.manifest import Manifest
from tuneform.estimate import calibrate

# 20 steps (2 s on 2 cores) learn too little to pass the demo's gate, which is not under test here.
SHORT = (ROOT / "runs/demo.yaml").read_text().replace("num_train_epochs: 3", "max_steps: 20").replace('">= 0.85"', '">= 0"')


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    return demo_repo(tmp_path / "demo", SHORT)


def manifests(repo: Repo) -> list[dict[str, Any]]:
    versions = repo.path.parent / "registry/tuneform-demo/demo/versions"
    return [json.loads(p.read_text()) for p in sorted(versions.glob("*/manifest.json"))]


def test_calibration_round_trip_through_pyproject(demo: Repo) -> None:
    assert demo.cli("apply", "runs/demo.yaml").exit_code == 0
    [manifest] = manifests(demo)
    training, estimate = manifest["training"], manifest["estimate"]
    assert training["device"] == "cpu" and estimate["calibration"] == {"gpu": "cpu", "speed": 1.0, "memory": 1.0}
    # 20 steps: the steady rate starts after step 4, so warm-up is left out of it
    assert training["steady_tokens_per_second"] > 0
    # what the loop spent beyond its tokens at that rate, recorded apart; no compilation on trl
    assert 0 <= training["warmup_seconds"] < training["seconds"] and training["settings"]["compile"] == "n/a"

    code, first = demo.json("calibrate", "--format", "json")
    assert code == 0 and first["skipped"] == [] and first["invalid"] == []
    [record] = first["records"]
    assert record["gpu"] == "cpu" and record["steady"] and record["memory"] is None  # RSS is not a GPU peak
    assert record["estimated_tokens_per_second"] == pytest.approx(estimate["tokens_per_second"])
    assert record["speed"] == pytest.approx(training["steady_tokens_per_second"] / estimate["tokens_per_second"])
    found = first["factors"]["cpu"]["speed"]
    assert found == pytest.approx(record["speed"], abs=0.0005)
    # What the table writes is clamped to what settings accept: this machine's speed (a busy CI
    # machine measures far below the estimate) decides which side of the clamp it lands on.
    speed = float(f"{calibrate.clamp_factor(found):g}")

    # The printed table is valid settings, and the next plan's speed follows it.
    table = first["toml"]
    assert tomllib.loads(table)["tool"]["tuneform"]["calibration"]["speed"] == {"cpu": speed}
    before = demo.json("plan", "runs/demo.yaml", "--format", "json")[1]["runs"][0]["estimate"]
    # Settings are read from the plan's base, like budgets: the table lands on main first.
    demo.write("pyproject.toml", (demo.path / "pyproject.toml").read_text() + "\n" + table)
    demo.commit("calibrate the estimator")
    demo.write("runs/demo.yaml", SHORT.replace("seed: 42", "seed: 43"))  # a new key, the same workload
    demo.commit("reseed")
    after = demo.json("plan", "runs/demo.yaml", "--format", "json", "--base", "HEAD~1")[1]["runs"][0]["estimate"]
    assert after["tokens_per_second"] == pytest.approx(before["tokens_per_second"] * speed, rel=1e-3)
    assert after["calibration"]["speed"] == speed
    shown = demo.cli("plan", "runs/demo.yaml", "--base", "HEAD~1", "--format", "markdown").output
    assert f"calibrated for cpu from this repo's runs: speed x{speed:g}" in shown

    # Train with it applied: the second record is priced without the factor, so calibrating
    # again measures against the same baseline instead of multiplying factors.
    assert demo.cli("apply", "runs/demo.yaml").exit_code == 0
    code, second = demo.json("calibrate", "--format", "json")
    assert len(second["records"]) == 2
    assert sorted(m["estimate"]["calibration"]["speed"] for m in manifests(demo)) == sorted([1.0, speed])
    first_estimate, second_estimate = (r["estimated_tokens_per_second"] for r in second["records"])
    assert second_estimate == pytest.approx(first_estimate, rel=1e-4)  # the plan rounds tokens/s to 0.1
    text = demo.cli("calibrate")
    assert text.exit_code == 0 and "[tool.tuneform.calibration]" in text.output and 'speed = {"cpu" =' in text.output


def test_versions_that_cannot_calibrate_are_named_with_why(demo: Repo) -> None:
    assert demo.cli("apply", "runs/demo.yaml").exit_code == 0
    [real] = manifests(demo)

    def edited(change: Any) -> dict[str, Any]:
        manifest = copy.deepcopy(real)
        change(manifest)
        return manifest

    on_gpu = edited(lambda m: m["estimate"].update(flavor="l4x1", calibration={"gpu": "L4", "speed": 1.0, "memory": 1.0}))
    on_gpu["training"].update(device="NVIDIA L40S", peak_memory_kind="cuda_max_allocated")
    other_batch = edited(lambda m: m["training"]["settings"].update(batch_size=4))
    old = edited(lambda m: m.pop("estimate"))
    nothing_trained = edited(lambda m: m.update(training=None))
    versions = [("a", on_gpu), ("b", other_batch), ("c", old), ("d", nothing_trained)]
    records, skipped = calibrate.collect([(run, Manifest.read(m)) for run, m in versions])
    assert records == []
    reasons = {s.run: s.reason for s in skipped}
    assert reasons["a"] == "planned for L4 (l4x1) but trained on NVIDIA L40S"  # L4 is not L40S
    assert reasons["b"] == "trained with batch 4, estimated for batch 16"
    assert "trained before tuneform recorded them" in reasons["c"]
    assert "d" not in reasons  # an eval-only version has nothing to say about training speed

    # The same GPU, named as the driver names it, with a factor applied at plan time: the
    # factor is taken out of both speed and memory.
    l4 = edited(
        lambda m: m["estimate"].update(
            flavor="l4x1",
            peak_vram_gb=10.5,
            calibration={"gpu": "L4", "speed": 2.0, "memory": 1.25},
            breakdown={"memory_gb": {"cuda_context": 0.5}},
        )
    )
    l4["training"].update(device="NVIDIA L4", peak_memory_kind="cuda_max_allocated", peak_memory_gb=9.0, steady_tokens_per_second=None)
    [record], _ = calibrate.collect([("e", Manifest.read(l4))])
    assert record.estimated_tokens_per_second == pytest.approx(real["estimate"]["tokens_per_second"] / 2.0)
    assert record.measured_tokens_per_second == real["training"]["tokens_per_second"] and not record.steady
    assert record.estimated_peak_gb == pytest.approx(8.0) and record.memory == pytest.approx(9.0 / 8.0)
    [factors] = calibrate.factors([record])
    assert factors.gpu == "L4" and factors.memory == pytest.approx(1.125)
    assert tomllib.loads(calibrate.toml_table([factors]))["tool"]["tuneform"]["calibration"]["memory"] == {"L4": 1.125}


def test_factors_are_a_geometric_mean_for_speed_and_the_worst_case_for_memory() -> None:
    def record(speed: float, memory: float) -> calibrate.Record:
        return calibrate.Record("r", "run-x", "H200", "NVIDIA H200", 1000.0, 1000.0 * speed, True, 10.0, 10.0 * memory)

    [found] = calibrate.factors([record(2.0, 0.9), record(0.5, 1.1)])
    assert found.speed == 1.0 and found.memory == 1.1 and found.runs == 2
    # Settings accept 0.25..4: the table clamps rather than writing what pyproject would refuse.
    [wild] = calibrate.factors([record(9.0, 1.0)])
    assert '"H200" = 4' in calibrate.toml_table([wild])


def test_calibrate_with_nothing_trained_says_what_to_do(demo: Repo) -> None:
    result = demo.cli("calibrate")
    assert result.exit_code == 0 and "apply a run, then calibrate" in result.output
    code, out = demo.json("calibrate", "--format", "json")
    assert code == 0 and out["records"] == [] and out["toml"] is None


def test_pyproject_refuses_a_factor_out_of_range(demo: Repo) -> None:
    demo.write("pyproject.toml", "[tool.tuneform.calibration]\nspeed = {H200 = 9}\n")
    code, out = demo.json("validate", "--format", "json")
    assert code == 1
    assert "calibration.speed.H200" in json.dumps(out)
