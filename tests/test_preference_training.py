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

from conftest import Repo, demo_repo, jsonl, sub
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
training: {max_steps: 8, learning_rate: 5.0e-3, lr_scheduler_type: constant, per_device_train_batch_size: 8, seed: 3}
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
    card = (tmp_path / "registry/tuneform-demo/bot/versions" / dpo_key / "model/README.md").read_text()
    assert f"started from tuneform version `tuneform-demo/bot` `run-{sft_key[:12]}` (merged)" in card

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


def test_a_reward_gate_validates_for_preference_runs_only(repo: Repo) -> None:
    """The plan accepts a gate on reward_accuracy where the job will measure it, and names the
    metrics it can gate on where it will not."""
    repo.write("data/pairs.jsonl", jsonl(pairs(8)))
    dpo = sub("path: data/chat.jsonl", "path: data/pairs.jsonl\n      format: preference", "{type: lora, r: 8}", "{type: dpo, r: 8}")
    repo.write("runs/dpo.yaml", dpo.replace("exact_match:", "reward_accuracy:"))
    repo.write("runs/sft.yaml", sub("exact_match:", "reward_accuracy:"))
    code, out = repo.json("validate", "runs/dpo.yaml", "runs/sft.yaml", "--format", "json")
    by_path = {f["path"]: f for f in out["files"]}
    assert by_path["runs/dpo.yaml"]["ok"], by_path["runs/dpo.yaml"]
    [error] = by_path["runs/sft.yaml"]["errors"]
    assert code == 1 and error["field"] == "evals[0].gate.reward_accuracy" and "does not compute" in error["message"]
    # orpo is in the contract but not trained yet: the plan says so before anything is spent
    repo.write("runs/dpo.yaml", dpo.replace("type: dpo", "type: orpo"))
    code, out = repo.json("validate", "runs/dpo.yaml", "--format", "json")
    [error] = out["files"][0]["errors"]
    assert code == 1 and error["field"] == "method.type" and "set method.type: dpo" in error["message"]


def test_preference_runs_refuse_what_they_cannot_train() -> None:
    """train_on all is a run-file error; orpo and kto are refused before a model is loaded."""
    from tuneform.train.engine import TrainError, check_runnable

    run = "model: {id: ./models/demo-tiny}\ndata: {train: [{path: data/pairs.jsonl, format: preference}]}\nmethod: {type: dpo}\n"
    loaded = load_run_text(run + "training: {train_on: all}\n", "runs/dpo.yaml")
    assert loaded.spec is None and loaded.problems[0].field == "training.train_on" and "remove train_on" in loaded.problems[0].message
    spec = load_run_text(run + "training: {packing: true}\n", "runs/dpo.yaml").spec
    assert spec is not None  # packing is ignored for pairs, not refused
    check_runnable(spec, engine="trl", cuda=False)
    orpo = load_run_text(run.replace("dpo", "orpo"), "runs/orpo.yaml").spec
    assert orpo is not None
    with pytest.raises(TrainError, match="set method.type: dpo"):
        check_runnable(orpo, engine="trl", cuda=False)


def test_pair_log_probs_are_the_held_out_loss_of_each_answer() -> None:
    """The log-probabilities rewards are made of score the answer tokens after the prompt, the
    same tokens the held-out loss scores, batched or not."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuneform.job.evaluate import heldout_loss, pair_log_probs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(ROOT / "models/demo-tiny"), dtype=torch.float32)
    batch = [([1, 5, 9, 4], [7, 8], [3]), ([2, 6], [11, 12, 13], [14, 15])]
    together = pair_log_probs(model, batch, batch_size=4)
    alone = [pair_log_probs(model, [pair], batch_size=1)[0] for pair in batch]
    assert [x for pair in together for x in pair] == pytest.approx([x for pair in alone for x in pair], abs=1e-4)
    for (prompt, chosen, rejected), logps in zip(batch, together):
        for answer, logp in zip((chosen, rejected), logps):
            ids = prompt + answer
            mask = [0] * len(prompt) + [1] * len(answer)
            assert logp == pytest.approx(-heldout_loss(model, [(ids, mask)]) * len(answer), abs=1e-4)


def test_reward_gates_resolve_like_the_loss_with_several_suites() -> None:
    """reward_accuracy is a metric of the run: bare or prefixed by any suite, like eval_loss."""
    from tuneform.evals.suite import GateError
    from tuneform.job.evaluate import ModelScores, compare

    base = ModelScores({}, pair_logps=[(-10.0, -10.0), (-10.0, -10.0)])
    new = ModelScores({}, pair_logps=[(-8.0, -12.0), (-11.0, -10.0)])
    table = compare(base, None, new, {"reward_accuracy": ">= 0.5", "reward_margin": "> 0"}, beta=0.5)
    values = {row.metric: (row.base, row.new) for row in table.rows}
    assert values == {"reward_accuracy": (None, 0.5), "reward_margin": (None, pytest.approx(0.5 * (4.0 - 1.0) / 2))}
    assert table.passed
    assert not compare(base, None, new, {"reward_accuracy": ">= 0.9"}, beta=0.5).passed
    with pytest.raises(GateError):  # an SFT run measures no rewards: its gate cannot pass silently
        compare(base, None, new, {"reward_accuracy": ">= 0.5"})
