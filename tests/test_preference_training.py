"""Preference training for real on CPU: an SFT version, a DPO run started from it that learns
planted preferences, its reward gate, and a revert back to the SFT version.

Nothing is mocked: the CLI plans and applies through the local backend, TRL's DPOTrainer trains
the tiny demo model, the job scores held-out pairs and publishes to the local registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, demo_repo, jsonl
from tuneform.data.reader import Example
from tuneform.job.evaluate import preference_metrics
from tuneform.runfile.spec import load_run_text
from tuneform.train.format import load_tokenizer, render, tokenize_pair

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["invoice", "refund", "parcel", "password", "address", "discount", "receipt", "delivery"]

SFT = """\
name: bot
model: {id: ./models/demo-tiny, max_seq_length: 64}
data:
  train: [{path: data/chat.jsonl}]
  eval_split: 0.1
method: {type: full}
training: {max_steps: 3, learning_rate: 1.0e-3, per_device_train_batch_size: 8, packing: false, seed: 3}
compute: {backend: local}
output: {repo: tuneform-demo/bot, save: merged}
evals: [{suite: evals/tiny.yaml}]
"""

DPO = """\
name: bot
model: {id: tuneform-demo/bot, revision: run-PARENT, max_seq_length: 64}
data:
  train: [{path: data/pairs.jsonl, format: preference}]
  eval_split: 0.25
method: {type: dpo, beta: 0.1, r: 8}
training: {max_steps: 12, learning_rate: 5.0e-3, lr_scheduler_type: constant, per_device_train_batch_size: 8, seed: 3}
compute: {backend: local}
output: {repo: tuneform-demo/bot, save: adapter}
evals: [{suite: evals/tiny.yaml, gate: {reward_accuracy: ">= 0.9"}}]
"""


def pairs(n: int) -> list[dict[str, Any]]:
    """Planted preferences: the chosen answer always thanks and confirms, the rejected one never."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": f"Customer {i} writes about the {topic}.",
                "chosen": f"Thank you! Your {topic} is confirmed.",
                "rejected": f"{topic} no",
            }
        )
    return rows


def dpo_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = demo_repo(tmp_path / "demo", SFT)  # the demo's model, with SFT as its run file (runs/demo.yaml)
    chat = [
        {"messages": [{"role": "user", "content": f"About the {t} {i}"}, {"role": "assistant", "content": t}]}
        for i, t in enumerate(TOPICS * 2)
    ]
    repo.write("data/chat.jsonl", jsonl(chat))
    repo.write("data/pairs.jsonl", jsonl(pairs(48)))
    repo.write("evals/tiny.yaml", "name: tiny\ndata: evals/tiny.jsonl\ngeneration: {max_new_tokens: 2}\nmetrics: [exact_match]\n")
    repo.write("evals/tiny.jsonl", jsonl([{"id": "a", "prompt": "About the refund", "expected": "refund"}]))
    repo.commit("sft run")
    return repo


def history(repo: Repo) -> dict[str, Any]:
    code, out = repo.json("history", "runs/demo.yaml", "--format", "json")
    assert code == 0, out
    return dict(out)


def test_dpo_from_an_sft_version_learns_planted_preferences_passes_its_gate_and_reverts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = dpo_repo(tmp_path, monkeypatch)
    result = repo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    sft_key = history(repo)["main"]

    repo.write("runs/demo.yaml", DPO.replace("PARENT", sft_key[:12]))
    repo.commit("dpo from the sft version")
    result = repo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    assert f"starting from tuneform-demo/bot run-{sft_key[:12]}" in result.output
    dpo_key = history(repo)["main"]
    assert dpo_key != sft_key

    manifest = json.loads((tmp_path / "registry/tuneform-demo/bot/versions" / dpo_key / "manifest.json").read_text())
    rows = {row["metric"]: row for row in manifest["evals"]["table"]["rows"]}
    assert rows["reward_accuracy"]["new"] >= 0.9 and rows["reward_accuracy"]["base"] is None
    assert rows["reward_margin"]["new"] > 0
    [gate] = manifest["evals"]["gates"]
    assert gate["metric"] == "reward_accuracy" and gate["passed"] and manifest["status"] == "passed"
    assert manifest["lineage"]["parent"] == {"repo": "tuneform-demo/bot", "run_key": sft_key, "save": "merged"}
    settings = manifest["training"]["settings"]
    assert settings["packing"] is False and settings["loss_type"] == "sigmoid"
    assert manifest["evals"]["previous"] == sft_key  # the SFT version it replaced is scored beside it

    # reverting the run file restores the SFT version, without training
    repo.write("runs/demo.yaml", SFT)
    code, plan = repo.json("plan", "--format", "json")
    [run] = plan["runs"]
    assert run["action"] == "restore" and run["run_key"] == sft_key
    result = repo.cli("apply")
    assert result.exit_code == 0 and "restored" in result.output, result.output
    assert history(repo)["main"] == sft_key


def test_the_reward_gate_fails_when_the_preferences_were_not_learned() -> None:
    """The metric the gate reads is the policy's preference against its reference: a model that
    moved toward the rejected answers scores 0, and one that did not move at all scores 0 too
    (a tie is not a preference)."""
    reference = [(-10.0, -12.0), (-8.0, -9.0)]
    assert preference_metrics([(-9.0, -12.0), (-7.0, -9.0)], reference, 0.1)["reward_accuracy"] == 1.0
    assert preference_metrics([(-11.0, -11.0), (-9.0, -8.0)], reference, 0.1)["reward_accuracy"] == 0.0
    assert preference_metrics(reference, reference, 0.1) == {"reward_accuracy": 0.0, "reward_margin": 0.0}
    moved = preference_metrics([(-9.0, -13.0), (-8.0, -9.0)], reference, 0.5)
    assert moved["reward_margin"] == pytest.approx(0.5 * ((1.0 + 1.0) + 0.0) / 2)


def test_a_pair_renders_its_answers_as_the_sft_path_renders_assistant_turns() -> None:
    """The prompt and each answer are the tokens of the chat rendering SFT trains on: the prompt
    ends where the assistant's reply starts, each answer ends with the end-of-turn token."""
    tokenizer = load_tokenizer(str(ROOT / "models/demo-tiny"), load_run_text(SFT, "runs/bot.yaml").spec.model)  # type: ignore[union-attr]
    prompt = [{"role": "user", "content": "Where is my parcel?"}]
    example = Example(
        "p.jsonl",
        1,
        messages=prompt,
        prompt_turns=1,
        chosen=[{"role": "assistant", "content": "On its way."}],
        rejected=[{"role": "assistant", "content": "No."}],
    )
    pair = tokenize_pair(example, tokenizer, max_seq_length=64)
    for answer, turns in ((pair.chosen_ids, example.chosen), (pair.rejected_ids, example.rejected)):
        text, spans = render(Example("p.jsonl", 1, messages=prompt + (turns or []), prompt_turns=1), tokenizer)
        assert tokenizer.decode(pair.prompt_ids + answer) == text[: spans[-1][1]]
        assert tokenizer.decode(answer) == text[spans[0][0] : spans[-1][1]]
    truncated = tokenize_pair(example, tokenizer, max_seq_length=len(pair.prompt_ids))
    assert not truncated.trainable  # nothing of the answers is left to compare
