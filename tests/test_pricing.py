"""Spending the plan can see: eval suites and evaluate jobs priced, unknown costs never $0, Hub
models sized from their config.json and safetensors headers (issue 13, "Spending enforced")."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from typing import Any

import pytest

from conftest import SUITE, Repo, jsonl, sub
from tuneform.core.manifest import Manifest
from tuneform.estimate.catalog import FLAVORS, KNOWN_MODELS
from tuneform.estimate.estimator import Workload, estimate
from tuneform.plan.planner import make_plan
from tuneform.plan.render import render_plan_markdown
from tuneform.runfile.resolve import HubResolver

HF_JOBS = ("--backend", "hf-jobs")


def plan_json(repo: Repo, *args: str) -> tuple[int, dict[str, Any]]:
    return repo.json("plan", "--format", "json", *args)


def suite_rows(n: int) -> str:
    return jsonl(
        [
            {"id": f"r{i}", "messages": [{"role": "user", "content": f"which team handles case {i}?"}], "expected": "billing"}
            for i in range(n)
        ]
    )


def test_suite_rows_are_priced(repo: Repo) -> None:
    """Finding: a 1-row suite and a 20,000-row suite both estimated the same cost."""
    estimates = {}
    for rows in (1, 20_000):
        repo.write("evals/intents.jsonl", suite_rows(rows))
        code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
        [run] = plan["runs"]
        assert code == 0 and run["usd_status"] == "known", run
        estimates[rows] = run["estimate"]
    small, large = estimates[1], estimates[20_000]
    assert large["flavor"] == small["flavor"]
    assert large["eval_seconds"] > small["eval_seconds"] and large["eval_usd"] > small["eval_usd"]
    assert large["usd"] > small["usd"] and large["seconds"] - small["seconds"] >= large["eval_seconds"] - small["eval_seconds"] - 1
    assert large["breakdown"]["seconds"]["evaluate"] == pytest.approx(large["eval_seconds"], abs=0.5)


def test_generated_tokens_are_priced(repo: Repo) -> None:
    """The same rows cost more when the suite lets each answer run longer (max_new_tokens)."""
    repo.write("evals/intents.jsonl", suite_rows(200))
    costs = []
    for new_tokens in (8, 256):
        repo.write("evals/intents.yaml", SUITE.replace("max_new_tokens: 8", f"max_new_tokens: {new_tokens}"))
        code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
        costs.append(plan["runs"][0]["estimate"]["eval_seconds"])
    assert costs[1] > costs[0] > 0


def test_evaluate_is_priced_and_bound_by_the_run_cap(repo: Repo) -> None:
    """Finding: evaluate re-scorings are GPU jobs priced $0 that skip every cap."""
    settings = repo.path / "pyproject.toml"
    repo.write("evals/intents.jsonl", suite_rows(2_000))
    repo.commit("a bigger suite")
    code, before = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    training = before["runs"][0]["estimate"]
    assert 0 < training["evaluate_usd"] <= training["usd"] and training["evaluate_seconds"] <= training["seconds"]

    cap = training["evaluate_usd"] / 2
    settings.write_text(settings.read_text().replace("max_usd_per_run = 20", f"max_usd_per_run = {cap}"))
    repo.commit("a cap below what scoring costs")
    repo.git("checkout", "-q", "-b", "pr")
    repo.write("runs/support.yaml", sub('">= 0.5"', '">= 0.9"'))  # a gate change: same key, evals changed
    code, plan = plan_json(repo, *HF_JOBS)
    [run] = plan["runs"]
    assert run["action"] == "evaluate" and run["usd"] == training["evaluate_usd"] and run["usd_status"] == "known"
    assert code == 1 and plan["ok"] is False and run["budget_ok"] is False
    [error] = run["errors"]
    assert "to score the version again (evaluate) is over [tool.tuneform] max_usd_per_run" in error["message"]
    assert plan["total_usd"] == run["usd"]


def test_evaluate_counts_against_the_pr_cap(repo: Repo) -> None:
    repo.write("evals/intents.jsonl", suite_rows(2_000))
    repo.commit("a bigger suite")
    code, before = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    evaluate_usd = before["runs"][0]["estimate"]["evaluate_usd"]
    settings = repo.path / "pyproject.toml"
    settings.write_text(settings.read_text().replace("max_usd_per_pr = 30", f"max_usd_per_pr = {evaluate_usd / 2}"))
    repo.commit("a PR cap below what scoring costs")
    repo.git("checkout", "-q", "-b", "pr")
    repo.write("runs/support.yaml", sub('">= 0.5"', '">= 0.9"'))
    code, plan = plan_json(repo, *HF_JOBS)
    assert plan["runs"][0]["action"] == "evaluate" and code == 1
    assert any("over [tool.tuneform] max_usd_per_pr" in error["message"] for error in plan["errors"])


def test_misspelt_model_is_an_error_with_did_you_mean(repo: Repo) -> None:
    """Finding: an unknown or misspelt model id was priced $0, budget_ok true, exit 0."""
    repo.write("runs/support.yaml", sub("SmolLM2-135M-Instruct", "SmolLM2-135M-Instrct"))
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert code == 1 and plan["ok"] is False and run["action"] == "invalid"
    [error] = [e for e in run["errors"] if e["field"] == "model.id"]
    assert "did you mean 'HuggingFaceTB/SmolLM2-135M-Instruct'?" in error["message"] and error["line"] == 2


def test_unknown_cost_fails_the_budget_and_no_label_lifts_it(repo: Repo) -> None:
    """A run whose size cannot be known (a Hub dataset of unknown length) costs `unknown`: the
    plan fails with the fix, and the approval label, which approves an amount, does not pass it."""
    repo.write("runs/support.yaml", sub("    - path: data/chat.jsonl", "    - dataset: acme/tickets"))
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert run["action"] == "update" and run["usd"] is None and run["usd_status"] == "unknown"
    assert code == 1 and plan["ok"] is False and run["budget_ok"] is False
    [error] = run["errors"]
    assert error["message"].startswith("cost unknown: dataset acme/tickets cannot be sized offline: set max_samples")
    assert error["field"] == "data.train[0]"

    approved = make_plan(repo.path, paths=["runs/support.yaml"], backend="hf-jobs", labels=["budget-approved"])
    assert approved.ok is False and approved.runs[0].budget_ok is False
    markdown = render_plan_markdown(approved)
    assert "| unknown |" in markdown and "cost unknown: dataset acme/tickets" in markdown


def test_local_backend_is_free_whatever_the_model(repo: Repo) -> None:
    """The local backend trains on this machine at $0: a model it cannot size is a warning, not an unknown cost."""
    repo.write("runs/support.yaml", sub("HuggingFaceTB/SmolLM2-135M-Instruct", "acme/not-in-the-catalog"))
    code, plan = plan_json(repo, "runs/support.yaml")
    [run] = plan["runs"]
    assert run["usd"] == 0 and run["usd_status"] == "known" and run["budget_ok"] is True
    assert any("acme/not-in-the-catalog" in w["message"] for w in run["warnings"])


def test_markdown_shows_the_eval_share(repo: Repo) -> None:
    repo.write("evals/intents.jsonl", suite_rows(2_000))
    repo.write("runs/support.yaml", sub("r: 8", "r: 16"))  # a new key: it trains
    plan = make_plan(repo.path, paths=["runs/support.yaml"], backend="hf-jobs")
    [run] = plan.runs
    assert run.usd is not None and run.head is not None and run.head.sizing is not None and run.head.sizing.estimate is not None
    eval_usd = run.head.sizing.estimate.eval_usd
    assert f"(evals ${eval_usd:.2f})" in render_plan_markdown(plan)


# ---------------------------------------------------------------------------------------------
# Models the catalog lacks, sized from the Hub


def safetensors(tensors: dict[str, list[int]]) -> bytes:
    """A safetensors file: 8-byte little-endian header length, the JSON header, the data (zeros)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + bytes(offset)


TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "tie_word_embeddings": True,
}
# Stored tensors whose count differs from the config's computed one: the header is what counts.
TINY_TENSORS = {"model.embed_tokens.weight": [1000, 256], "model.layers.0.mlp.up_proj.weight": [512, 256]}


@pytest.fixture
def hub_model(fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    fake_hub.add_repo("acme/tiny-llama", {"config.json": json.dumps(TINY_CONFIG), "model.safetensors": safetensors(TINY_TENSORS)})
    return fake_hub


def test_hub_model_is_read_from_config_and_safetensors_header(hub_model: Any) -> None:
    answer = HubResolver(offline=False).model("acme/tiny-llama", "main")
    assert answer.exists is True and answer.config == TINY_CONFIG
    assert answer.params == 1000 * 256 + 512 * 256
    gets = hub_model.requests_to("GET", r"/acme/tiny-llama/resolve/.*/model\.safetensors")
    assert gets and all("range" in {k.lower() for k in request.headers} for request in gets)  # the header only, never the weights


def test_hub_model_outside_the_catalog_is_priced(repo: Repo, hub_model: Any) -> None:
    repo.write(
        "runs/support.yaml",
        sub(
            "HuggingFaceTB/SmolLM2-135M-Instruct", "acme/tiny-llama", "revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: main"
        ),
    )
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert run["action"] == "update" and run["usd_status"] == "known" and run["usd"] > 0, run
    weights_gib = (1000 * 256 + 512 * 256) * 2 / 2**30
    assert run["estimate"]["breakdown"]["memory_gb"]["weights"] == round(weights_gib, 3)


def test_model_the_hub_does_not_have_is_an_error(repo: Repo, hub_model: Any) -> None:
    repo.write(
        "runs/support.yaml",
        sub(
            "HuggingFaceTB/SmolLM2-135M-Instruct", "acme/tiny-lama", "revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: main"
        ),
    )
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert code == 1 and run["action"] == "invalid"
    [error] = [e for e in run["errors"] if e["field"] == "model.id"]
    assert "acme/tiny-lama is not on the Hub and is not in tuneform's catalog" in error["message"]


def test_hub_model_without_config_costs_unknown(repo: Repo, hub_model: Any) -> None:
    hub_model.add_repo("acme/weights-only", {"model.safetensors": safetensors(TINY_TENSORS)})
    repo.write(
        "runs/support.yaml",
        sub(
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "acme/weights-only",
            "revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2",
            "revision: main",
        ),
    )
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert code == 1 and run["usd"] is None and run["usd_status"] == "unknown" and run["budget_ok"] is False
    assert any("cost unknown: cannot size acme/weights-only: the repository has no config.json" in e["message"] for e in run["errors"])


def adapter_version(hub: Any, base: str = "acme/tiny-llama") -> str:
    """A tuneform adapter version of `base` (no config.json, as a LoRA save has none) in
    acme/support-sft, tagged as the registry tags it; returns its tag."""
    key = "5" * 64
    manifest = Manifest(run_key=key, name="support", output_repo="acme/support-sft", spec={"model": {"id": base, "revision": "main"}})
    files = {"adapter_config.json": json.dumps({"base_model_name_or_path": base, "r": 8}), "adapter_model.safetensors": b"weights"}
    hub.add_repo("acme/support-sft", {**files, "tuneform/manifest.json": manifest.text()})
    hub.tag("acme/support-sft", f"run-{key[:12]}")
    return f"run-{key[:12]}"


def test_an_adapter_version_is_sized_as_the_model_it_was_trained_on(repo: Repo, hub_model: Any) -> None:
    """A run starting from a tuneform adapter version (DPO after SFT) is priced on the Hub: the
    version's manifest names its base, whose config.json gives the shape."""
    tag = adapter_version(hub_model)
    answer = HubResolver(offline=False).model("acme/support-sft", tag)
    assert answer.exists is True and answer.config == TINY_CONFIG
    repo.write(
        "runs/support.yaml", sub("HuggingFaceTB/SmolLM2-135M-Instruct", "acme/support-sft", "93efa2f097d58c2a74874c7e644dbc9b0cee75a2", tag)
    )
    code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
    [run] = plan["runs"]
    assert run["usd_status"] == "known" and run["usd"] > 0, run
    # a version whose base is a local folder stays unpriced: only the job that trained it could read it
    hub_model.add_repo(
        "acme/local-sft", {"tuneform/manifest.json": Manifest(run_key="6" * 64, spec={"model": {"id": "./models/x"}}).text()}
    )
    assert HubResolver(offline=False).model("acme/local-sft", "main").reason == "the repository has no config.json"


def test_decode_steps_cost_a_weight_read_each_and_evaluate_skips_training() -> None:
    """The estimator's eval term: a decode step reads every weight, so a GPU with more memory
    bandwidth generates faster; an evaluate job's cost does not grow with the training data."""
    shape = KNOWN_MODELS["huggingfacetb/smollm2-135m-instruct"]
    small = Workload(shape=shape, train_tokens=10_000, eval_decode_steps=0)
    large = replace(small, eval_decode_steps=50_000)
    slow, fast = FLAVORS["t4-small"], FLAVORS["h200"]
    extra = {f.name: estimate(large, f).eval_seconds - estimate(small, f).eval_seconds for f in (slow, fast)}
    assert extra["t4-small"] > extra["h200"] > 0
    assert estimate(large, slow).evaluate_usd > estimate(small, slow).evaluate_usd
    longer = replace(large, train_tokens=10_000_000)
    assert estimate(longer, slow).usd > estimate(large, slow).usd
    assert estimate(longer, slow).evaluate_seconds == pytest.approx(estimate(large, slow).evaluate_seconds, rel=0.05)


def test_lfm2_5_is_priced_offline_like_the_lfm2_shape_it_shares(repo: Repo) -> None:
    """The model the Unsloth + HF Jobs recipe starts from is in the catalog: plan prices it with no
    network, the same as LFM2-1.2B, whose shape it has (issue 14)."""
    plans = {}
    for model_id in ("LiquidAI/LFM2.5-1.2B-Instruct", "LiquidAI/LFM2-1.2B"):
        repo.write("runs/support.yaml", sub("HuggingFaceTB/SmolLM2-135M-Instruct", model_id))
        code, plan = plan_json(repo, "runs/support.yaml", *HF_JOBS)
        [run] = plan["runs"]
        assert code == 0 and run["usd_status"] == "known" and run["usd"] > 0, run
        assert not [w for w in run["warnings"] if model_id in w["message"]]
        plans[model_id] = run["estimate"]
    lfm25, lfm2 = plans.values()
    assert lfm25 == lfm2
    assert lfm25["engine"] == "unsloth" and lfm25["breakdown"]["seconds"]["warmup"] > 0
