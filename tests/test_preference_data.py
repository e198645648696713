"""Preference data before it trains: a pair counted as its two sequences, previewed with both
answers' trained spans, and checked for what only pairs get wrong (identical answers, length
bias, pairs leaking into held-out pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, demo_repo, jsonl
from tuneform.data.tokens import Counter, LocalTokenizer, count_source
from tuneform.runfile.spec import LocalSource

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo-tiny"
TOKENIZER = LocalTokenizer((DEMO / "tokenizer.json").read_bytes(), (DEMO / "tokenizer_config.json").read_bytes())


def pair(prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def conversation(prompt: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


PAIRS = [
    pair("Capital of France?", "Paris.", "Lyon, I think, or maybe Marseille."),
    pair("Two plus two?", "Four.", "Five."),
    pair("Name a colour.", "Blue " + "and more blue " * 40, "Red."),
]


# ---------------------------------------------------------------------------------------------
# Token counting


def test_a_pair_counts_as_its_two_sequences() -> None:
    """A pair's tokens are those of prompt + chosen and prompt + rejected, each rendered as the
    conversation it is: the same count as those two conversations written as chat rows."""
    source = LocalSource(path="data/pairs.jsonl", format="preference")
    pairs = count_source(jsonl(PAIRS).encode(), source, Counter(TOKENIZER), max_seq_length=4096, seed=0)
    chats = [conversation(p["prompt"], p[answer]) for p in PAIRS for answer in ("chosen", "rejected")]
    as_chats = count_source(jsonl(chats).encode(), LocalSource(path="data/chat.jsonl"), Counter(TOKENIZER), max_seq_length=4096, seed=0)
    assert (pairs.rows, pairs.rows_read) == (3, 3) and as_chats.rows == 6
    assert pairs.tokens == as_chats.tokens and pairs.longest == as_chats.longest
    assert pairs.truncated_rows == 0


def test_each_sequence_of_a_pair_is_capped_on_its_own() -> None:
    """TRL's DPO collator truncates prompt + chosen and prompt + rejected separately (keep_start):
    only the long answer is cut, and the pair counts once among the truncated rows."""
    source = LocalSource(path="data/pairs.jsonl", format="preference")
    counter = Counter(TOKENIZER)
    [(short_chosen, short_rejected), (_, _), (long_chosen, long_rejected)] = counter.sequences(_examples(PAIRS, source))
    limit = long_chosen - 1
    assert long_rejected < limit and short_chosen < limit and short_rejected < limit
    capped = count_source(jsonl(PAIRS).encode(), source, counter, max_seq_length=limit, seed=0)
    full = count_source(jsonl(PAIRS).encode(), source, counter, max_seq_length=4096, seed=0)
    assert capped.truncated_rows == 1 and capped.tokens == full.tokens - 1 and capped.longest == limit


def _examples(rows: list[dict[str, Any]], source: LocalSource) -> list[Any]:
    from tuneform.data.reader import convert_rows, parse_source

    unit, parsed = parse_source(jsonl(rows).encode(), source.path)
    examples, bad = convert_rows(source, source.path, unit, parsed)
    assert not bad
    return examples


# ---------------------------------------------------------------------------------------------
# Preview

DPO_RUN = """\
model: {id: ./models/demo-tiny, max_seq_length: 256}
data:
  train: [{path: data/pairs.jsonl, format: preference}]
  eval_split: 0.2
method: {type: dpo}
training: {max_steps: 2}
"""


@pytest.fixture
def dpo_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """The demo repository (its tiny model has a ChatML template) with a DPO run on pairs."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    repo = demo_repo(tmp_path / "demo", DPO_RUN)
    repo.write("data/pairs.jsonl", jsonl([pair(f"Question {i}?", f"Good answer {i}.", f"Bad {i}.") for i in range(10)]))
    repo.commit("pairs")
    return repo


def test_preview_shows_both_answers_with_their_trained_spans(dpo_repo: Repo) -> None:
    code, samples = dpo_repo.json("preview", "runs/demo.yaml", "-n", "2", "--format", "json")
    assert code == 0 and len(samples) == 4
    assert [(s["row"], s["answer"]) for s in samples] == [(1, "chosen"), (1, "rejected"), (2, "chosen"), (2, "rejected")]
    for sample, answer in zip(samples, ["Good answer 0.", "Bad 0.", "Good answer 1.", "Bad 1."]):
        assert [sample["text"][start:end] for start, end in sample["trained_spans"]] == [f"{answer}<|im_end|>"]
        assert sample["trained_tokens"] < sample["tokens"] and not sample["truncated"]
    chosen, rejected = samples[0]["text"], samples[1]["text"]
    prompt_end = samples[0]["trained_spans"][0][0]
    assert chosen[:prompt_end] == rejected[:prompt_end] and "Question 0?" in chosen[:prompt_end]  # the prompt is context only

    text = dpo_repo.cli("preview", "runs/demo.yaml", "-n", "1")
    assert text.exit_code == 0, text.output
    assert text.output.count("Question 0?") == 1  # the prompt once, above both answers
    assert "--- chosen:" in text.output and "--- rejected:" in text.output
    assert text.output.index("⟦Good answer 0.<|im_end|>⟧") < text.output.index("⟦Bad 0.<|im_end|>⟧")


def test_sft_preview_samples_name_no_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    run = "model: {id: ./models/demo-tiny, max_seq_length: 128}\ndata: {train: [{path: data/support.jsonl}]}\n"
    code, samples = demo_repo(tmp_path / "demo", run).json("preview", "runs/demo.yaml", "-n", "1", "--format", "json")
    assert code == 0 and len(samples) == 1 and samples[0]["answer"] is None
