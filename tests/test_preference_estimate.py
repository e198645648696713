"""Pricing preference runs: a row is two sequences in the micro-batch, plus the reference model's
forward passes (in every step, once when precomputed, none for ORPO). Relations only: the
estimator's constants move, the order of these costs must not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import LLAMA_1B_CONFIG, SETTINGS, Repo, jsonl
from tuneform.estimate.catalog import FLAVORS, known_model
from tuneform.estimate.estimator import NoFlavorFits, Workload, choose_flavor, estimate, reference_passes
from tuneform.runfile.spec import load_run_text

LLAMA_1B = known_model("meta-llama/Llama-3.2-1B-Instruct")
H200 = FLAVORS["h200"]
# Sequences of 300 tokens on average, 600 at most; 2,000,000 tokens counting both of a pair's.
SFT = Workload(
    shape=LLAMA_1B,
    train_tokens=2_000_000,
    seq_len=1024,
    batch_size=8,
    gradient_checkpointing=False,
    packing=False,
    engine="trl",
    mean_example_tokens=300,
    max_example_tokens=600,
)
DPO = replace(SFT, method="dpo", reference_data_tokens=2_000_000)


def test_a_dpo_run_costs_more_than_sft_on_the_same_sequences() -> None:
    """8 pairs a micro-batch are 16 sequences: the work of SFT's batch 16, and a reference pass."""
    sft, dpo = estimate(replace(SFT, batch_size=16), H200), estimate(DPO, H200)
    assert dpo.seconds_breakdown["train"] > sft.seconds_breakdown["train"]  # the reference model's forward
    assert dpo.seconds > sft.seconds and dpo.usd >= sft.usd
    assert dpo.flops_per_token.reference > 0 == sft.flops_per_token.reference
    assert dpo.memory_breakdown["activations"] == pytest.approx(sft.memory_breakdown["activations"])
    assert dpo.memory_breakdown["logits"] > sft.memory_breakdown["logits"]  # kept for the backward pass
    # a batch of 8 pairs holds twice the sequences of a batch of 8 rows
    assert estimate(replace(SFT, batch_size=8), H200).memory_breakdown["activations"] * 2 == pytest.approx(
        dpo.memory_breakdown["activations"]
    )
    assert "reference" not in sft.seconds_breakdown  # SFT estimates keep their shape


def test_auto_batch_fits_fewer_pairs_than_rows() -> None:
    tight = FLAVORS["t4-small"]
    sft = estimate(replace(SFT, batch_size=None), tight)
    dpo = estimate(replace(DPO, batch_size=None), tight)
    assert sft.fits and dpo.fits and dpo.batch_size < sft.batch_size


def test_a_precomputed_reference_is_cheaper_over_several_epochs() -> None:
    """Two epochs: the reference scores the data once instead of twice, before training."""
    in_step = estimate(replace(DPO, reference_data_tokens=1_000_000), H200)
    precomputed = estimate(replace(DPO, reference_data_tokens=1_000_000, precompute_reference=True), H200)
    assert precomputed.seconds_breakdown["reference"] > 0 == in_step.seconds_breakdown["reference"]
    assert precomputed.seconds_breakdown["train"] < in_step.seconds_breakdown["train"]
    assert precomputed.seconds < in_step.seconds
    # scoring alone (an evaluate job) trains nothing and scores no reference
    assert precomputed.evaluate_seconds == pytest.approx(in_step.evaluate_seconds)


def test_orpo_has_no_reference_and_kto_scores_a_kl_sequence_too() -> None:
    dpo = estimate(DPO, H200)
    orpo = estimate(replace(DPO, method="orpo"), H200)
    kto = estimate(replace(DPO, method="kto"), H200)
    assert orpo.seconds < dpo.seconds < kto.seconds
    assert orpo.flops_per_token.reference == 0
    assert reference_passes("orpo", True) == (0.0, 0.0) and reference_passes("lora", False) == (0.0, 0.0)
    # precomputing moves the reference's passes out of the steps, never adds any
    for method in ("dpo", "kto"):
        step, once = reference_passes(method, True)  # type: ignore[arg-type]
        assert step + once == sum(reference_passes(method, False))  # type: ignore[arg-type]


def test_precompute_ref_log_probs_applies_to_reference_methods_only() -> None:
    base = "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/pairs.jsonl, format: preference}]}\n"
    loaded = load_run_text(base + "method: {type: dpo, precompute_ref_log_probs: true}\n", "runs/a.yaml")
    assert loaded.spec is not None and loaded.spec.method.precompute_ref_log_probs is True
    [problem] = load_run_text(base + "method: {type: orpo, precompute_ref_log_probs: true}\n", "runs/a.yaml").problems
    assert problem.field == "method.precompute_ref_log_probs" and "orpo has none" in problem.message


# ---------------------------------------------------------------------------------------------
# Through the plan

RUN = """\
model: {id: ./models/llama-1b, max_seq_length: 1024}
data:
  train: [{path: data/pairs.jsonl, format: preference}]
  eval_split: 0.1
method: {type: dpo}
training: {num_train_epochs: 2, per_device_train_batch_size: 4}
compute: {flavor: h200, engine: trl}
"""
PAIRS = [
    {"prompt": f"Question {i} about the invoice?", "chosen": "A careful answer. " * (5 + i % 7), "rejected": "No. " * (3 + i % 5)}
    for i in range(400)
]


@pytest.fixture
def pair_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = Repo.init(tmp_path / "repo")
    repo.write("pyproject.toml", SETTINGS)
    repo.write("models/llama-1b/config.json", json.dumps(LLAMA_1B_CONFIG))
    repo.write("data/pairs.jsonl", jsonl(PAIRS))
    chats = [
        {"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[answer]}]}
        for p in PAIRS
        for answer in ("chosen", "rejected")
    ]
    repo.write("data/chats.jsonl", jsonl(chats))
    repo.write("runs/dpo.yaml", RUN)
    sft = RUN.replace("pairs.jsonl, format: preference", "chats.jsonl").replace("method: {type: dpo}", "method: {type: lora}")
    repo.write("runs/sft.yaml", sft.replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 8, packing: false"))
    repo.write("runs/precomputed.yaml", RUN.replace("{type: dpo}", "{type: dpo, precompute_ref_log_probs: true}"))
    repo.write("runs/unpacked.yaml", RUN.replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 4, packing: false"))
    repo.commit("base")
    return repo


def test_plan_prices_pairs_as_two_sequences_and_the_reference(pair_repo: Repo) -> None:
    names = [f"runs/{name}.yaml" for name in ("dpo", "sft", "precomputed", "unpacked")]
    code, plan = pair_repo.json("plan", *names, "--backend", "hf-jobs", "--format", "json")
    assert code == 0, plan
    runs = {run["name"]: run for run in plan["runs"]}
    dpo, sft = runs["dpo"], runs["sft"]
    # the same 800 sequences: 400 pairs of batch 4 hold as many tokens as 800 chats of batch 8
    assert dpo["estimate"]["tokens"] == sft["estimate"]["tokens"]
    assert (dpo["method"], dpo["rows"], dpo["sequences"]) == ("dpo", 400, 800)
    assert (sft["method"], sft["rows"], sft["sequences"]) == ("lora", 800, 800)
    assert dpo["estimate"]["seconds"] >= sft["estimate"]["seconds"] and dpo["usd"] >= sft["usd"]  # both rounded

    def work(run: dict) -> float:
        """Seconds of training and of reference passes (the rest, start and upload, are alike)."""
        phases = run["estimate"]["breakdown"]["seconds"]
        return phases["train"] + phases.get("reference", 0.0)

    assert work(dpo) > work(sft)
    precomputed = runs["precomputed"]["estimate"]["breakdown"]["seconds"]
    assert precomputed["reference"] > 0 == dpo["estimate"]["breakdown"]["seconds"]["reference"]
    assert precomputed["train"] < dpo["estimate"]["breakdown"]["seconds"]["train"]  # the steps do no reference pass
    # pairs are never packed (the preference trainer pads each batch), whatever training.packing says
    assert runs["unpacked"]["estimate"] == dpo["estimate"]


def test_a_pair_that_fits_nowhere_names_its_sequences_not_qlora() -> None:
    """DPO trains LoRA adapters in tuneform's contract: qlora is no way out, a shorter sequence is."""
    huge = replace(DPO, batch_size=64, seq_len=8192, mean_example_tokens=8192, max_example_tokens=8192)
    with pytest.raises(NoFlavorFits) as caught:
        choose_flavor(huge, ["t4-small"])
    assert "dpo (a pair's two sequences: a shorter max_seq_length needs less)" in str(caught.value)
    assert "qlora" not in str(caught.value)


def test_a_hub_dataset_of_pairs_is_sized_as_two_sequences_a_row(pair_repo: Repo) -> None:
    """Offline, a Hub dataset is sized by max_samples at half of max_seq_length a sequence."""
    hub = RUN.replace(
        "{path: data/pairs.jsonl, format: preference}",
        "{dataset: acme/pairs, revision: " + "0a" * 20 + ", max_samples: 100, format: preference}",
    )
    pair_repo.write("runs/hub.yaml", hub)
    code, plan = pair_repo.json("plan", "runs/hub.yaml", "--backend", "hf-jobs", "--format", "json")
    assert code == 0, plan["runs"][0]["errors"]
    [run] = plan["runs"]
    assert (run["rows"], run["sequences"]) == (100, 200)
    chats = hub.replace(", format: preference", "").replace("{type: dpo}", "{type: lora}")
    pair_repo.write("runs/hub.yaml", chats)
    code, plan = pair_repo.json("plan", "runs/hub.yaml", "--backend", "hf-jobs", "--format", "json")
    assert code == 0 and plan["runs"][0]["rows"] == plan["runs"][0]["sequences"] == 100
    assert run["estimate"]["tokens"] == 2 * plan["runs"][0]["estimate"]["tokens"]
