"""bench/gpu.py end to end on the CPU: a tiny random model trained by `tuneform job`.

The GPU comparison itself runs on a lent GPU (docs/calibration.md); this keeps its plumbing
honest where CI runs: data and model built offline, run files checked and bundled by tuneform,
the job run as a subprocess, and the report's tokens counted by the bench matching the job's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("torch")
pytest.importorskip("trl")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    return module


def test_conversations_are_deterministic_and_spread() -> None:
    bench = _bench()
    rows = bench.conversations(400, seed=1)
    assert rows == bench.conversations(400, seed=1)
    words = [sum(len(m["content"].split()) for m in row["messages"]) for row in rows]
    assert 65 <= min(words) < 100 and 600 < max(words) <= 805  # 70-800 words, log-uniform
    assert sorted(words)[len(words) // 2] < sum(words) / len(words)  # skewed short, as chat data is
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)


def test_tiny_cpu_bench_runs_through_tuneform_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    out = tmp_path / "results"
    # What no run file says but changes what runs is recorded (bench/holdout.py reads it).
    monkeypatch.setenv("UNSLOTH_COMPILE_DISABLE", "1")
    code = bench.main(
        [
            "--tiny",
            "--cpu",
            "--configs",
            "tuneform-default,unsloth-notebook",
            "--examples",
            "4",
            "--eval-examples",
            "2",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--name",
            "tiny",
        ]
    )
    assert code == 0, (out / "tiny.md").read_text()
    report = json.loads((out / "tiny.json").read_text())
    assert report["device"] == "cpu"
    assert report["environment"] == {"UNSLOTH_COMPILE_DISABLE": "1"}
    assert report["skipped"] == [{"config": "unsloth-notebook", "reason": "needs a CUDA GPU"}]
    (result,) = report["results"]
    assert result["config"] == "tuneform-default" and result["status"] == "ok" and result["engine"] == "trl"
    measured = result["measured"]
    # The bench counts tokens itself; tuneform's job counted the same tokens.
    assert measured["tokens_bench"] == measured["tokens_job"] == report["data"]["tokens"] > 0
    assert measured["tokens_per_second"] > 0 and measured["train_loop_seconds"] > 0
    assert measured["model_gflop_per_token"] > 0
    assert result["predicted"]["flavor"] == "local" and result["predicted"]["train_seconds"] > 0
    log = (out / "tiny-logs" / "tuneform-default.log").read_text()
    assert log.startswith("$ tuneform job ") and "published run-" in log
    table = (out / "tiny.md").read_text()
    assert "| tuneform-default | trl |" in table


def test_steady_rate_skips_warm_up_and_the_partial_last_step() -> None:
    bench = _bench()
    # 10 steps of 1,000 tokens: step 1 compiles for 20 s, then 2 s a step; the last step is short.
    times = [20.0 + 2.0 * (step - 1) for step in range(1, 10)] + [37.5]
    steps = [(t, step, 10) for step, t in enumerate(times, start=1)]
    rate, first, last = bench.steady_rate(steps, 10_000)
    assert (first, last) == (2, 9)
    assert rate == 500.0  # 1,000 tokens / 2 s
    assert bench.steady_rate(steps[:2], 10_000) == (None, None, None)


def test_any_catalog_model_is_a_bench_shape_of_the_size_the_catalog_prices(tmp_path: Path) -> None:
    """`--shape MODEL_ID` builds each catalog architecture from its published config keys: the
    built model's parameter count is the one the estimator prices (no weights: config only)."""
    import dataclasses

    from tuneform.estimate import catalog

    bench = _bench()
    rows = bench.conversations(20, seed=1)
    table = json.loads((ROOT / "src" / "tuneform" / "estimate" / "models.json").read_text())
    for model_id in table["models"]:
        shape = dataclasses.replace(bench.shape_named(model_id), tokenizer_vocab=300)
        built = bench.build_model_folder(tmp_path / shape.name, shape, rows, cuda=False, weights=False)
        assert built["params"] == catalog.known_model(model_id).params, model_id
        assert built["config"]["model_type"] == shape.family
    assert bench.shape_named("liquidai/lfm2.5-1.2b-base").name == "lfm2.5-1.2b-instruct"  # aliases, any case
    with pytest.raises(ValueError, match="unknown shape 'nope/nope'"):
        bench.shape_named("nope/nope")
