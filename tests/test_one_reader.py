"""One reader of training rows: validate, plan, the data check and the job read a file alike.

The plan's token count goes through data/reader.py's parsing and converters (data/tokens.py),
so a file the job rejects is rejected by validate and plan with the job's message, and the
tokens the plan prices are the tokens the job trains on. The job here is the real one: the
demo's tiny model through the local pipeline (transformers + TRL on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, Repo, demo_repo, jsonl
from tuneform.job.bundle import build_bundle, git_facts
from tuneform.plan.runcheck import check_run
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import load_settings
from tuneform.runfile.trees import WorkTree

SHAREGPT_ROWS = [
    {"conversations": [{"from": "human", "value": f"where is order {i}?"}, {"from": "gpt", "value": f"order {i} ships today"}]}
    for i in range(12)
]
SHAREGPT_RUN = """\
name: sharegpt
model: {id: ./models/demo-tiny, max_seq_length: 64}
data:
  train:
    - path: data/sharegpt.jsonl
      format: messages
method: {type: full}
training: {num_train_epochs: 1, per_device_train_batch_size: 4}
compute: {backend: local}
output: {repo: tuneform-demo/sharegpt}
"""
# What the job says, word for word (data/reader.py's missing_column): validate, plan and the
# data check must say the same.
JOB_MESSAGE = (
    "data/sharegpt.jsonl: no column 'messages' for the messages field of format messages (columns found: conversations). "
    "Name the column in the run file: columns: {messages: conversations} (its ShareGPT turns are converted: "
    "{from, value} read as {role, content}, human as user, gpt as assistant)"
)


@pytest.fixture
def sharegpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = demo_repo(tmp_path / "demo", SHAREGPT_RUN)
    repo.write("data/sharegpt.jsonl", jsonl(SHAREGPT_ROWS))
    repo.commit("sharegpt data")
    return repo


def run_job(repo: Repo, tmp_path: Path) -> tuple[int, str]:
    """Bundle runs/demo.yaml as apply would (even though validate rejects it) and run the real job."""
    tree = WorkTree(repo.path)
    check = check_run(tree, "runs/demo.yaml", load_settings(tree), HubResolver(offline=True))
    bundle = build_bundle(check, tree, tmp_path / "bundle", git=git_facts(repo.path, check.path, None), action="create", expected_main=None)
    result = repo.cli("job", str(bundle.path), "--registry", str(tmp_path / "registry"))
    return result.exit_code, result.output


def test_a_sharegpt_column_is_rejected_alike_by_validate_plan_data_check_and_the_job(sharegpt: Repo, tmp_path: Path) -> None:
    code, validated = sharegpt.json("validate", "runs/demo.yaml", "--format", "json")
    [entry] = validated["files"]
    assert code == 1 and [e["message"] for e in entry["errors"]] == [JOB_MESSAGE]
    assert entry["errors"][0]["field"] == "data.train[0].path" and entry["errors"][0]["line"] == 5  # located at the source

    code, plan = sharegpt.json("plan", "--format", "json")
    [run] = plan["runs"]
    assert code == 1 and JOB_MESSAGE in [e["message"] for e in run["errors"]] and run["estimate"] is None

    code, checked = sharegpt.json("data", "check", "runs/demo.yaml", "--format", "json")
    failing = [f for f in checked["findings"] if f["level"] == "fail"]
    assert code == 1 and [f["message"] for f in failing] == [JOB_MESSAGE]

    code, output = run_job(sharegpt, tmp_path)
    assert code == 1 and f"error: {JOB_MESSAGE}" in output


def test_the_job_s_rejection_is_reported_even_when_the_run_is_not_priced(sharegpt: Repo) -> None:
    """A run the estimator cannot price (a LoRA module it does not know) still has its data read."""
    sharegpt.write("runs/demo.yaml", SHAREGPT_RUN.replace("method: {type: full}", "method: {type: lora, target_modules: [experts]}"))
    code, validated = sharegpt.json("validate", "runs/demo.yaml", "--format", "json")
    [entry] = validated["files"]
    assert code == 1 and [e["message"] for e in entry["errors"]] == [JOB_MESSAGE]
    assert any("experts" in w["message"] for w in entry["warnings"])


def test_the_rename_the_message_names_makes_all_four_accept_it(sharegpt: Repo, tmp_path: Path) -> None:
    """The fix the message gives works: ShareGPT's from/value turns are converted, and train."""
    renamed = SHAREGPT_RUN.replace("      format: messages\n", "      format: messages\n      columns: {messages: conversations}\n")
    sharegpt.write("runs/demo.yaml", renamed)
    code, validated = sharegpt.json("validate", "runs/demo.yaml", "--format", "json")
    assert code == 0, validated
    code, plan = sharegpt.json("plan", "--format", "json")
    assert code == 0 and plan["runs"][0]["estimate"]["tokens"] > 0
    code, checked = sharegpt.json("data", "check", "runs/demo.yaml", "--format", "json")
    assert code == 0 and checked["rows"] == len(SHAREGPT_ROWS)
    code, output = run_job(sharegpt, tmp_path)
    assert code == 0, output
    assert f"{len(SHAREGPT_ROWS) - 1} train and 1 eval examples (0 bad rows dropped)" in output  # eval_split 0.05: one row


TEXTS = [" ".join(["refund"] * (i % 7 + 1) + [f"ticket {i}"] + ["please"] * (i * 3 % 11)) for i in range(18)]
COUNT_RUN = """\
name: count
model: {id: ./models/demo-tiny, max_seq_length: 16}
data:
  train:
    - path: data/text.jsonl
      format: text
  eval:
    - path: data/held.jsonl
      format: text
  max_bad_rows: 0.2
method: {type: full}
training: {num_train_epochs: 1, per_device_train_batch_size: 4}
compute: {backend: local}
output: {repo: tuneform-demo/count}
"""


def test_the_plans_tokens_are_the_tokens_the_job_trains_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text file with the model's tokenizer at hand (rows longer than max_seq_length, and a row
    the job drops): the plan's estimate prices exactly the tokens the job feeds the model."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = demo_repo(tmp_path / "demo", (ROOT / "runs/demo.yaml").read_text())
    repo.git("checkout", "-q", "-b", "pr")  # the run is new on this branch, so plan shows it
    repo.write("runs/count.yaml", COUNT_RUN)
    repo.write("data/text.jsonl", jsonl([{"text": t} for t in TEXTS] + [{"text": ""}]))  # the last row is dropped
    repo.write("data/held.jsonl", jsonl([{"text": "held out text"}]))
    repo.commit("text data")
    code, plan = repo.json("plan", "--format", "json")
    assert code == 0, plan
    [run] = plan["runs"]
    assert run["tokens_counted_by"] == "tokenizer"
    planned = run["estimate"]["tokens"]

    result = repo.cli("apply", "runs/count.yaml")
    assert result.exit_code == 0, result.output
    registry = tmp_path / "registry" / "tuneform-demo" / "count" / "versions"
    [version] = list(registry.iterdir())
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["data"]["train_rows"] == len(TEXTS) and manifest["data"]["bad_rows"] == 1
    assert manifest["training"]["tokens"] == planned
    assert 0 < run["estimate"]["tokens"] < len(TEXTS) * 16  # rows longer than max_seq_length are capped, as the job caps them
