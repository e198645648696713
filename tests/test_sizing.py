"""Plan sizing of unpacked runs: the counted rows' mean and longest lengths reach the estimator.

Through the real CLI on a real git repository: a local model of Llama-3.2-1B's shape (its
config.json; no tokenizer.json, so rows are counted at bytes/4 and their lengths are known
here exactly) and chat rows of three known lengths, priced on the H200 like the GPU bench.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import LLAMA_1B_CONFIG, SETTINGS, Repo, jsonl
from tuneform.data.tokens import BYTES_PER_TOKEN, TEMPLATE_TOKENS_PER_MESSAGE
from tuneform.estimate.catalog import FLAVORS, known_model
from tuneform.estimate.estimator import Workload, estimate

LLAMA_1B = known_model("meta-llama/Llama-3.2-1B-Instruct")
# Answers of 4 x n bytes: with "q\n" before them, (2 + 4n) / 4 rounds to n + 1 tokens (bytes/4,
# half up), plus the template's tokens for two messages.
ANSWER_UNITS = {40: 300, 4: 100}  # row count -> answer length in 4-byte units
LONGEST_UNITS = 1000  # one row
RUN = """\
model:
  id: ./models/llama-1b
  max_seq_length: 2048
data:
  train:
    - path: data/chat.jsonl
  eval:
    - path: data/heldout.jsonl
method: {type: lora, r: 16, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
training:
  num_train_epochs: 1
  per_device_train_batch_size: 8
  gradient_checkpointing: true
  packing: false
compute: {flavor: h200, engine: trl}
"""


def _row_tokens(units: int) -> int:
    return int((2 + 4 * units) / BYTES_PER_TOKEN + 0.5) + 2 * TEMPLATE_TOKENS_PER_MESSAGE


def _rows(units: int, count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"{i:04d}" * units}]} for i in range(count)]


@pytest.fixture
def sized_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = Repo.init(tmp_path / "repo")
    repo.write("pyproject.toml", SETTINGS)
    repo.write("models/llama-1b/config.json", json.dumps(LLAMA_1B_CONFIG))
    rows = [row for count, units in ANSWER_UNITS.items() for row in _rows(units, count)] + _rows(LONGEST_UNITS, 1)
    repo.write("data/chat.jsonl", jsonl(rows))
    repo.write("data/heldout.jsonl", jsonl(_rows(3, 2)))
    repo.write("runs/unpacked.yaml", RUN)
    repo.commit("base")
    return repo


def _plan_estimate(repo: Repo, counted_by: str = "bytes/4") -> dict:
    code, plan = repo.json("plan", "runs/unpacked.yaml", "--backend", "hf-jobs", "--format", "json")
    assert code == 0, plan
    [run] = plan["runs"]
    assert run["tokens_counted_by"] == counted_by
    return run["estimate"]


def test_plan_sizes_unpacked_rows_by_the_counted_mean_and_longest(sized_repo: Repo) -> None:
    lengths = [_row_tokens(units) for count, units in ANSWER_UNITS.items() for _ in range(count)] + [_row_tokens(LONGEST_UNITS)]
    total = sum(lengths)
    counted = Workload(
        shape=LLAMA_1B,
        train_tokens=total,
        seq_len=2048,
        batch_size=8,
        gradient_checkpointing=True,
        packing=False,
        engine="trl",
        mean_example_tokens=round(total / len(lengths)),
        max_example_tokens=max(lengths),
    )
    expected = estimate(counted, FLAVORS["h200"]).as_json()
    planned = _plan_estimate(sized_repo)
    assert planned["tokens"] == total
    for key in ("tokens_per_second", "peak_vram_gb", "seconds", "batch_size"):
        assert planned[key] == expected[key], key
    # Without the lengths every row would be sized at max_seq_length: micro-batches of 8 full
    # rows, which keep the GPU busier than 8 rows of ~300 real tokens (the bench's unpacked
    # runs were that much slower), padded to 2048 tokens.
    at_max = estimate(replace(counted, mean_example_tokens=None, max_example_tokens=None), FLAVORS["h200"]).as_json()
    assert planned["tokens_per_second"] < 0.7 * at_max["tokens_per_second"]
    assert planned["breakdown"]["memory_gb"]["activations"] == pytest.approx(
        at_max["breakdown"]["memory_gb"]["activations"] * max(lengths) / 2048, rel=1e-2
    )


def test_plan_pads_to_the_longest_row_and_works_on_the_mean(sized_repo: Repo) -> None:
    before = _plan_estimate(sized_repo)
    # A longer longest row: more padding (memory), the mean and the speed almost unchanged.
    sized_repo.write("data/chat.jsonl", sized_repo.path.joinpath("data/chat.jsonl").read_text() + jsonl(_rows(1500, 1)))
    sized_repo.commit("one longer row")
    after = _plan_estimate(sized_repo)
    assert after["breakdown"]["memory_gb"]["activations"] == pytest.approx(
        before["breakdown"]["memory_gb"]["activations"] * _row_tokens(1500) / _row_tokens(LONGEST_UNITS), rel=1e-3
    )
    assert after["tokens_per_second"] == pytest.approx(before["tokens_per_second"], rel=0.05)


def test_rows_not_counted_one_by_one_are_sized_at_max_seq_length(sized_repo: Repo) -> None:
    """A Hub dataset is not read by plan: its rows' lengths are unknown, so the run is sized
    at max_seq_length, the safe side for memory (2048-token padding)."""
    before = _plan_estimate(sized_repo)
    sized_repo.write(
        "runs/unpacked.yaml",
        RUN.replace("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n    - {dataset: acme/chats, max_samples: 10}\n"),
    )
    sized_repo.commit("a Hub source")
    planned = _plan_estimate(sized_repo, "bytes/4 + max_samples")
    activations = planned["breakdown"]["memory_gb"]["activations"]
    assert activations == pytest.approx(before["breakdown"]["memory_gb"]["activations"] * 2048 / _row_tokens(LONGEST_UNITS), rel=1e-3)
