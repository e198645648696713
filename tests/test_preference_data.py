"""Preference data before it trains: a pair counted as its two sequences, previewed with both
answers' trained spans, and checked for what only pairs get wrong (identical answers, length
bias, pairs leaking into held-out pairs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, demo_repo, jsonl
from tuneform.data.check import DataReport, check_data
from tuneform.data.reader import load_data
from tuneform.data.tokens import Counter, LocalTokenizer, count_source
from tuneform.runfile.settings import Settings
from tuneform.runfile.spec import LocalSource, load_run_text
from tuneform.runfile.trees import WorkTree

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


def test_a_pair_whose_prompt_fills_max_seq_length_is_not_counted() -> None:
    """TRL drops such a pair before training (no answer token would be left to compare)."""
    source = LocalSource(path="data/pairs.jsonl", format="preference")
    counter = Counter(TOKENIZER)
    [prompt_tokens] = counter.prompts(_examples([pair("word " * 200, "yes", "no")], source))
    rows = [*PAIRS[:2], pair("word " * 200, "yes", "no")]
    capped = count_source(jsonl(rows).encode(), source, counter, max_seq_length=prompt_tokens, seed=0)
    first_two = count_source(jsonl(PAIRS[:2]).encode(), source, counter, max_seq_length=prompt_tokens, seed=0)
    assert (capped.rows, capped.rows_read, capped.prompt_filled) == (2, 3, 1)
    assert capped.tokens == first_two.tokens
    room = count_source(jsonl(rows).encode(), source, counter, max_seq_length=prompt_tokens + 1, seed=0)
    assert (room.rows, room.prompt_filled, room.truncated_rows) == (3, 0, 1)


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


# ---------------------------------------------------------------------------------------------
# Data check

CHECK_RUN = """\
model: {id: ./models/tiny, max_seq_length: 512}
data:
  train: [{path: data/pairs.jsonl, format: preference}]
  eval: [{path: data/held.jsonl, format: preference}]
method: {type: dpo}
evals:
  - suite: evals/intents.yaml
"""


def check(repo: Repo, rows: list[Any], held: list[Any], run: str = CHECK_RUN) -> DataReport:
    repo.write("data/pairs.jsonl", "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    repo.write("data/held.jsonl", jsonl(held))
    repo.write("runs/dpo.yaml", run)
    loaded = load_run_text((repo.path / "runs/dpo.yaml").read_bytes(), "runs/dpo.yaml")
    assert loaded.spec is not None, loaded.problems
    return check_data(loaded.spec, WorkTree(repo.path), Settings(), run="runs/dpo.yaml")


def hits(report: DataReport, rule: str) -> list[tuple[int, str]]:
    finding = report.finding(rule)
    assert finding is not None, [f.rule for f in report.findings]
    return [(hit.ref.row, hit.detail) for hit in finding.hits]


def balanced(n: int) -> list[dict[str, Any]]:
    """Pairs whose chosen answer is the shorter one half the time."""
    return [pair(f"question {i}", "yes" if i % 2 else "a longer yes", "a longer no" if i % 2 else "no") for i in range(n)]


def test_identical_and_empty_answers_are_named_by_row_with_the_fix(repo: Repo) -> None:
    rows = [*balanced(6), pair("q7", "Same  answer.", "Same answer.\n"), pair("q8", "", "no"), pair("q9", "yes", "  ")]
    report = check(repo, rows, [])
    assert hits(report, "identical_answers") == [
        (7, "chosen and rejected are the same text: write a worse rejected answer, or drop the pair")
    ]
    assert report.finding("identical_answers").level == "warn"  # type: ignore[union-attr]
    empty = hits(report, "empty_turns")
    assert [row for row, _ in empty] == [8, 9]
    assert empty[0][1].startswith("chosen: is empty") and empty[1][1].startswith("rejected: is empty")
    assert report.rows == 7 and report.rows_read == 9  # the job drops the empty ones


def test_a_pair_without_an_answer_has_nothing_to_learn(repo: Repo) -> None:
    report = check(repo, [*balanced(6), {"prompt": "q7", "chosen": "yes"}], [])
    [(row, detail)] = hits(report, "missing_assistant")
    assert row == 7 and detail.startswith("rejected: missing")


def test_role_order_is_checked_on_the_prompt_followed_by_each_answer(repo: Repo) -> None:
    """A pair's prompt ends with the user's turn, which the answer follows: no finding there."""
    assert check(repo, balanced(6), []).finding("role_order") is None
    two_replies = [{"role": "assistant", "content": "yes"}, {"role": "assistant", "content": "and yes"}]
    report = check(repo, [*balanced(6), {"prompt": "q7", "chosen": "yes", "rejected": two_replies}], [])
    assert hits(report, "role_order") == [(7, "turns 2-3: two assistant turns in a row")]


def test_duplicated_pairs_but_not_pairs_sharing_a_prompt(repo: Repo) -> None:
    rows = [*balanced(6), pair("question 1", "YES", "a longer no!"), pair("question 1", "another yes", "another no")]
    report = check(repo, rows, [])
    assert hits(report, "duplicates") == [(7, "near duplicate of data/pairs.jsonl:2")]


def test_length_bias_warns_when_the_chosen_answer_is_nearly_always_longer(repo: Repo) -> None:
    assert check(repo, balanced(8), []).finding("length_bias").level == "info"  # type: ignore[union-attr]
    longer = [pair(f"question {i}", "a long and careful answer " * (i + 1), "short") for i in range(8)]
    finding = check(repo, longer, []).finding("length_bias")
    assert finding is not None and finding.level == "warn" and (finding.count, finding.total) == (8, 8)
    assert "longer is better" in finding.message and "over the 75% allowed" in finding.message
    assert (
        finding.hits[0].ref.row == 8
        and finding.hits[0].detail == f"chosen {len('a long and careful answer ' * 8):,} characters, rejected 5"
    )
    strict = CHECK_RUN.replace("method:", "  policy: {length_bias: {max: 0.4, level: fail}}\nmethod:")
    assert check(repo, balanced(8), [], strict).finding("length_bias").level == "fail"  # type: ignore[union-attr]


def test_held_out_pairs_leak_by_prompt_and_chosen_answer(repo: Repo) -> None:
    # the fixture's suite asks "eval 0", "eval 1", "eval 2" (ids r0, r1, r2)
    rows = [*balanced(6), pair("eval 1", "an answer", "no answer")]
    held = [pair("question 2", "a longer yes", "something else"), pair("QUESTION 3", "Yes!", "x"), pair("question 4", "other", "x")]
    report = check(repo, rows, held)
    [suite, source] = report.leakage
    assert (suite.kind, suite.leaked, suite.ids) == ("suite", 1, ("r1",))
    assert (source.kind, source.rows, source.leaked) == ("source", 3, 2)
    assert source.ids == ("data/held.jsonl:1", "data/held.jsonl:2")  # row 3 shares a prompt only: not a leak
    leak = next(f for f in report.findings if f.rule == "leakage" and "eval sources" in f.message)
    assert "2 of 3 pairs (prompt and chosen answer)" in leak.message and "(1 exactly, 1 up to" in leak.message
    assert "drop it from one side" in leak.message
    assert [(h.ref.row, h.detail) for h in leak.hits] == [
        (3, "pair of eval row data/held.jsonl:1 (exact)"),
        (4, "pair of eval row data/held.jsonl:2 (near)"),
    ]


def test_the_eval_split_leaks_by_pair_not_by_shared_prompt(repo: Repo) -> None:
    """Rows 1-20 and 21-40 are the same pairs (other rejected answers): every held-out pair leaks.
    Rows that only share prompts with the training pairs are how preference data often looks."""
    split = CHECK_RUN.replace("  eval: [{path: data/held.jsonl, format: preference}]\n", "  eval_split: 0.2\n").replace(
        "evals:\n  - suite: evals/intents.yaml\n", ""
    )
    same = [pair(f"question {i}", f"answer {i}", "no") for i in range(20)]
    report = check(repo, same + [pair(f"question {i}", f"answer {i}", "nope") for i in range(20)], [], split)
    loaded = load_run_text(split, "runs/dpo.yaml").spec
    assert loaded is not None
    held_out = {e.row for e in load_data(loaded, repo.path).eval}  # the job's own split
    trained_twin = sorted(row for row in held_out if (row + 20 if row <= 20 else row - 20) not in held_out)
    [leak] = report.leakage
    assert leak.kind == "split" and leak.rows == len(held_out) == 8
    assert sorted(int(i.split(":")[1]) for i in leak.ids) == trained_twin and trained_twin
    shared_prompts = same + [pair(f"question {i}", f"another answer {i}", "no") for i in range(20)]
    [leak] = check(repo, shared_prompts, [], split).leakage
    assert leak.rows == 8 and leak.leaked == 0


def test_truncation_and_lengths_are_per_sequence(repo: Repo) -> None:
    rows = [*balanced(4), pair("q", "word " * 300, "no"), pair("word " * 300, "yes", "no")]
    report = check(repo, rows, [], CHECK_RUN.replace("max_seq_length: 512", "max_seq_length: 128"))
    [(row, detail), (dropped, why)] = hits(report, "truncated")
    assert row == 5 and detail.endswith(" tokens") and " and " in detail
    assert dropped == 6 and "the prompt alone is" in why and "the trainer drops this pair" in why
    assert report.lengths is not None and report.lengths["max"] > 128 > report.lengths["min"]
    assert report.tokens_trained < report.tokens


# ---------------------------------------------------------------------------------------------
# validate and plan, end to end offline


def test_validate_and_plan_a_dpo_run_in_the_demo_repository(dpo_repo: Repo) -> None:
    code, validation = dpo_repo.json("validate", "runs/demo.yaml", "--format", "json")
    assert code == 0 and validation["ok"], validation
    code, plan = dpo_repo.json("plan", "runs/demo.yaml", "--format", "json")
    assert code == 0, plan
    [run] = plan["runs"]
    assert run["action"] == "create" and run["usd_status"] == "known" and not run["errors"]
    assert (run["method"], run["rows"], run["sequences"]) == ("dpo", 10, 20)
    assert "reference" in run["estimate"]["breakdown"]["seconds"]
    assert run["data"]["summary"].startswith("10 pairs, ") and "per sequence" in run["data"]["summary"]
    text = dpo_repo.cli("plan", "runs/demo.yaml")
    assert text.exit_code == 0, text.output
    assert "dpo on 10 pairs (20 sequences)" in text.output and "10 pairs, " in text.output
