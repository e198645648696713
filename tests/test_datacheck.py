"""The data check: each finding on a crafted file with the exact rows it must name, leakage into
suites and the eval split, the diff of two git revisions, policies, renderers and the command.

Runs here use a local model folder that holds no tokenizer.json, so tokens are bytes/4 (the
stated approximation) and every count below can be worked out by hand; one test builds a real
tokenizer.json offline to check the tokenizer path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from conftest import RUN, Repo, jsonl
from markdown_check import assert_inert
from tuneform.core.markup import md_text
from tuneform.data.check import (
    DataReport,
    Finding,
    check_data,
    data_check_run,
    normalize_text,
    render_data_markdown,
    render_data_text,
)
from tuneform.data.reader import load_data
from tuneform.plan.planner import make_plan, plan_data_section
from tuneform.plan.runcheck import check_run
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import Settings, SettingsError, parse_settings
from tuneform.runfile.spec import RunSpec, load_run_text
from tuneform.runfile.trees import GitTree, WorkTree

MODEL = "./models/tiny"  # no tokenizer.json there: bytes/4


def chat(user: str, answer: str = "billing", system: str | None = None) -> dict[str, Any]:
    turns = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]
    return {"messages": turns}


def run_yaml(
    data: str = "    - path: data/train.jsonl\n",
    *,
    extra_data: str = "",
    evals: bool = True,
    model: str = MODEL,
    max_seq_length: int = 512,
    seed: int = 3407,
) -> str:
    text = f"model:\n  id: {model}\n  max_seq_length: {max_seq_length}\ndata:\n  train:\n{data}{extra_data}training:\n  seed: {seed}\n"
    return text + ("evals:\n  - suite: evals/intents.yaml\n" if evals else "")


def setup(repo: Repo, rows: list[Any], run: str | None = None, path: str = "data/train.jsonl") -> None:
    """Write the training file (objects as JSON, strings as they are) and runs/check.yaml."""
    repo.write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    repo.write("runs/check.yaml", run or run_yaml())


def spec_of(repo: Repo, path: str = "runs/check.yaml") -> RunSpec:
    loaded = load_run_text((repo.path / path).read_bytes(), path)
    assert loaded.spec is not None, loaded.problems
    return loaded.spec


def check(repo: Repo, settings: Settings | None = None, path: str = "runs/check.yaml") -> DataReport:
    return check_data(spec_of(repo, path), WorkTree(repo.path), settings or Settings(), run=path)


def rows_of(finding: Finding | None) -> list[int]:
    assert finding is not None
    return [hit.ref.row for hit in finding.hits]


def only(report: DataReport, rule: str) -> Finding:
    found = [f for f in report.findings if f.rule == rule]
    assert len(found) == 1, [f.rule for f in report.findings]
    return found[0]


def bytes4(*contents: str) -> int:
    """Tokens of a chat row by the bytes/4 rule: its contents joined, plus 4 per message."""
    return int(len("\n".join(contents).encode()) / 4 + 0.5) + 4 * len(contents)


# ---------------------------------------------------------------------------------------------
# Row findings


ROW_FLAWS: list[Any] = [
    chat("a fine question"),  # 1
    '{"messages": [{"role": "user", "content": "cut',  # 2: not JSON
    "[1, 2]",  # 3: not an object
    {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]},
            {"role": "assistant", "content": "a cat"},
        ]
    },  # 4
    {"messages": [{"role": "user", "content": "anyone there?"}]},  # 5: no assistant
    {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "hello"}]},  # 6: empty user turn (kept)
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " \n"}]},  # 7: empty answer (dropped)
    {"messages": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}, {"role": "assistant", "content": "x"}]},  # 8
    {
        "messages": [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "ok"}, {"role": "assistant", "content": "y"}]
    },  # 9
    {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "late"}, {"role": "assistant", "content": "z"}]},  # 10
    chat("colour \x1b[31mred"),  # 11: control character
    chat("a cafÃ© au lait"),  # 12: mojibake of "café"
    chat("bad \ufffd byte"),  # 13: replacement character
    "",  # 14: a blank line is not a row, but it is a line
    {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "and then?"}]},  # 15
    {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "b"}]},  # 16: unknown role
]


def test_each_row_rule_names_exactly_its_rows(repo: Repo) -> None:
    setup(repo, ROW_FLAWS)
    report = check(repo)
    assert rows_of(only(report, "unparsable")) == [2, 3, 16]
    assert rows_of(only(report, "non_text")) == [4]
    assert rows_of(only(report, "missing_assistant")) == [5]
    assert rows_of(only(report, "empty_turns")) == [6, 7]
    assert rows_of(only(report, "role_order")) == [8, 9, 10, 15]
    assert rows_of(only(report, "encoding")) == [11, 12, 13]
    assert all(hit.ref.unit == "line" and hit.ref.source == "data/train.jsonl" for f in report.findings for hit in f.hits)

    details = {hit.ref.row: hit.detail for f in report.findings for hit in f.hits if f.rule != "max_bad_rows"}
    assert "not valid JSON" in details[2] and "a row must be a JSON object, not a list" in details[3]
    assert details[4].startswith("messages[0].content: must be a string")
    assert "no assistant message" in details[5]
    assert details[6] == "turn 1 (user) is empty"
    assert "the assistant's content is empty" in details[7]
    assert details[8] == "turns 1-2: two user turns in a row"
    assert details[9] == "turn 1: the assistant speaks before the user"
    assert details[10] == "turn 2 is a system turn: the system prompt goes first"
    assert details[15] == "turn 3: the last turn is a user turn, which gets no answer"
    assert details[11] == "control character U+001B"
    assert details[12] == "mojibake 'Ã©' (UTF-8 decoded as Latin-1 or cp1252)"
    assert details[13].startswith("U+FFFD")
    encoding = {hit.ref.row: hit.sample for hit in only(report, "encoding").hits}
    assert "\\x1b[31mred" in encoding[11] and "cafÃ©" in encoding[12]

    # 6 of the 15 rows are dropped by the job: more than max_bad_rows (1%), so the job would stop
    bad = only(report, "max_bad_rows")
    assert bad.level == "fail" and (bad.count, bad.total) == (6, 15)
    assert rows_of(bad) == [2, 3, 4, 5, 7, 16]
    assert report.failed and report.rows == 9
    assert {f.rule: f.level for f in report.findings if f.rule != "max_bad_rows"} == dict.fromkeys(
        ["unparsable", "non_text", "missing_assistant", "empty_turns", "role_order", "encoding"], "warn"
    )


def test_dropped_rows_are_the_rows_the_job_drops(repo: Repo) -> None:
    """The check and the job cannot disagree: the job's loader drops exactly the rows reported."""
    setup(repo, ROW_FLAWS, run_yaml(extra_data="  max_bad_rows: 0.5\n"))
    report = check(repo)
    loaded = load_data(spec_of(repo), repo.path)
    dropped = [h.ref.row for rule in ("unparsable", "non_text", "missing_assistant") for h in only(report, rule).hits]
    dropped.append(7)  # the empty answer: the job drops it, the check reports it under empty_turns
    assert sorted(b.row for b in loaded.bad_rows) == sorted(dropped)
    assert report.rows == len(loaded.train) + len(loaded.eval) == 9
    assert report.finding("max_bad_rows") is None  # 40% tolerated here


def test_other_formats_number_rows_and_map_to_rules(repo: Repo) -> None:
    repo.write("data/pc.jsonl", jsonl([{"prompt": "2+2?", "completion": "4"}, {"prompt": "hi", "completion": ""}, {"prompt": "x"}]))
    repo.write(
        "data/alpaca.json",
        json.dumps(
            [{"instruction": "Sum", "input": "1 2", "output": "3"}, {"instruction": "Do", "input": ""}, {"instruction": "N", "output": 5}]
        ),
    )
    repo.write("data/text.csv", 'text\n"hello there"\n""\n')
    data = (
        "    - path: data/pc.jsonl\n      format: prompt_completion\n    - path: data/alpaca.json\n      format: alpaca\n"
        "    - path: data/text.csv\n      format: text\n"
    )
    repo.write("runs/check.yaml", run_yaml(data, extra_data="  max_bad_rows: 0.5\n", evals=False))
    report = check(repo)
    assert [str(h.ref) for h in only(report, "empty_turns").hits] == ["data/pc.jsonl:2", "data/text.csv row 2"]
    assert [str(h.ref) for h in only(report, "missing_assistant").hits] == ["data/pc.jsonl:3", "data/alpaca.json row 2"]
    assert [str(h.ref) for h in only(report, "non_text").hits] == ["data/alpaca.json row 3"]
    assert report.rows == 3 and [s.kept for s in report.sources] == [1, 1, 1]


def test_missing_column_is_one_failure_with_the_rename(repo: Repo) -> None:
    setup(repo, [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}] * 3)
    report = check(repo)
    [finding] = report.findings
    assert finding.rule == "unreadable" and finding.level == "fail"
    assert "no column 'messages'" in finding.message and "columns found: conversations" in finding.message
    assert "columns: {messages: conversations} (its ShareGPT turns are converted" in finding.message


def test_missing_file_and_lfs_pointer_fail(repo: Repo) -> None:
    repo.write("runs/check.yaml", run_yaml())
    assert "does not exist" in only(check(repo), "unreadable").message
    repo.write("data/train.jsonl", "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    assert "Git LFS pointer" in only(check(repo), "unreadable").message


# ---------------------------------------------------------------------------------------------
# Tokens, lengths, truncation, labels


def test_lengths_and_truncation_by_bytes_over_4(repo: Repo) -> None:
    users = ["a" * 8, "b" * 40, "c" * 100, "d" * 400]
    setup(repo, [chat(u, "ok") for u in users], run_yaml(max_seq_length=32, evals=False))
    report = check(repo)
    lengths = sorted(bytes4(u, "ok") for u in users)
    assert report.token_method == "bytes/4"
    assert report.lengths == {"min": lengths[0], "median": lengths[1], "p95": lengths[3], "max": lengths[3]}
    assert report.tokens == sum(lengths) and report.tokens_trained == sum(min(n, 32) for n in lengths)
    truncated = only(report, "truncated")
    assert rows_of(truncated) == [3, 4] and truncated.level == "warn"  # 50% > 10%
    assert truncated.hits[0].detail == f"{bytes4('c' * 100, 'ok')} tokens"
    assert report.truncated == 2


def test_tokens_from_a_local_tokenizer_json(repo: Repo) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    repo.write("models/tiny/tokenizer.json", tokenizer.to_str())
    setup(repo, [chat("one two three", "four"), chat("five", "six seven")], run_yaml(evals=False))
    report = check(repo)
    assert report.token_method == "tokenizer"
    assert report.lengths == {"min": 3 + 8, "median": 3 + 8, "p95": 4 + 8, "max": 4 + 8}


def test_label_distribution_when_answers_are_a_small_set(repo: Repo) -> None:
    rows = [chat(f"message {i}", ["billing", "refund", "other"][i % 3]) for i in range(60)]
    setup(repo, rows, run_yaml(evals=False))
    report = check(repo)
    assert report.labels == [("billing", 20), ("refund", 20), ("other", 20)]
    assert "classification-like: 3 distinct answers" in render_data_text(report)

    setup(repo, [chat(f"message {i}", f"a long free-form answer number {i}") for i in range(60)], run_yaml(evals=False))
    assert check(repo).labels is None


# ---------------------------------------------------------------------------------------------
# Duplicates


def test_exact_and_near_duplicates(repo: Repo) -> None:
    rows = [
        chat("Where is my order?"),
        chat("Reset my password"),
        chat("Where is my order?"),
        chat("  where is my ORDER!! "),
        chat("Where is my order?", "refund"),
        chat("Reset  my password."),
    ]
    setup(repo, rows, run_yaml(evals=False))
    report = check(repo)
    duplicates = only(report, "duplicates")
    assert [(h.ref.row, h.detail) for h in duplicates.hits] == [
        (3, "exact duplicate of data/train.jsonl:1"),
        (4, "near duplicate of data/train.jsonl:1"),
        (6, "near duplicate of data/train.jsonl:2"),
    ]
    assert (report.duplicates, report.exact_duplicates) == (3, 1)
    assert duplicates.level == "warn" and "over the 5% allowed" in duplicates.message
    assert normalize_text("  Where’s   my ORDER?! ") == normalize_text("wheres my order")


def test_duplicates_across_files_and_under_the_threshold(repo: Repo) -> None:
    repo.write("data/a.jsonl", jsonl([chat(f"question {i}") for i in range(30)]))
    repo.write("data/b.jsonl", jsonl([chat("QUESTION 7")]))
    repo.write("runs/check.yaml", run_yaml("    - path: data/a.jsonl\n    - path: data/b.jsonl\n", evals=False))
    report = check(repo)
    duplicates = only(report, "duplicates")
    assert duplicates.level == "info"  # 1 of 31 rows is 3.2%, under 5%
    assert [(str(h.ref), h.detail) for h in duplicates.hits] == [("data/b.jsonl:1", "near duplicate of data/a.jsonl:8")]


# ---------------------------------------------------------------------------------------------
# Leakage


def test_suite_prompts_in_training_data_are_named_with_their_training_rows(repo: Repo) -> None:
    # the fixture's suite asks "eval 0", "eval 1", "eval 2" (ids r0, r1, r2)
    rows = [chat(f"question {i}") for i in range(20)] + [chat("eval 1"), chat("EVAL 2!"), chat("eval 1", "refund")]
    setup(repo, rows, run_yaml(extra_data="  eval: [{path: data/held.jsonl}]\n"))
    repo.write("data/held.jsonl", jsonl([chat("unrelated")]))
    report = check(repo)
    leak = only(report, "leakage")
    assert leak.eval_ids == ("r1", "r2") and (leak.count, leak.total) == (2, 3)
    assert [(h.ref.row, h.detail) for h in leak.hits] == [
        (21, "prompt of eval row r1 (evals/intents.jsonl:2, exact)"),
        (23, "prompt of eval row r1 (evals/intents.jsonl:2, exact)"),
        (22, "prompt of eval row r2 (evals/intents.jsonl:3, near)"),
    ]
    assert "(1 exactly, 1 up to case, spacing or punctuation)" in leak.message
    assert [(s.kind, s.rows, s.leaked) for s in report.leakage] == [("suite", 3, 2), ("source", 1, 0)]


def test_eval_split_leakage_matches_the_jobs_split(repo: Repo) -> None:
    """Rows 1-20 and 21-40 ask the same questions: every held-out row leaks, and the held-out rows
    named are the ones the job's own loader holds out."""
    rows = [chat(f"question {i % 20}", "a" if i < 20 else "b") for i in range(40)]
    setup(repo, rows, run_yaml(extra_data="  eval_split: 0.1\n", evals=False, seed=11))
    report = check(repo)
    held_out = sorted(e.row for e in load_data(spec_of(repo), repo.path).eval)
    leak = only(report, "leakage")
    assert sorted(int(i.split(":")[1]) for i in leak.eval_ids) == held_out and len(held_out) == 4
    twin = {row: row + 20 if row <= 20 else row - 20 for row in held_out}
    assert sorted((h.ref.row, h.detail) for h in leak.hits) == sorted(
        (twin[r], f"prompt of eval row data/train.jsonl:{r} (exact)") for r in held_out
    )
    assert report.leakage[0].kind == "split"


def test_eval_split_with_max_samples_follows_the_job(repo: Repo) -> None:
    rows = [chat(f"question {i % 25}") for i in range(50)]
    setup(
        repo, rows, run_yaml("    - path: data/train.jsonl\n      max_samples: 30\n", extra_data="  eval_split: 0.2\n", evals=False, seed=5)
    )
    report = check(repo)
    loaded = load_data(spec_of(repo), repo.path)
    trained_prompts = {e.messages[0]["content"] for e in loaded.train}  # type: ignore[index]
    expected = sorted(f"data/train.jsonl:{e.row}" for e in loaded.eval if e.messages[0]["content"] in trained_prompts)  # type: ignore[index]
    assert report.leakage[0].rows == len(loaded.eval) == 6
    assert sorted(report.leakage[0].ids) == expected


def test_text_rows_leak_by_whole_text(repo: Repo) -> None:
    repo.write("data/t.jsonl", jsonl([{"text": "Eval 0."}, {"text": "something else"}]))
    repo.write("runs/check.yaml", run_yaml("    - path: data/t.jsonl\n      format: text\n"))
    assert only(check(repo), "leakage").eval_ids == ("r0",)


# ---------------------------------------------------------------------------------------------
# Policies


def test_policy_from_settings_fails_by_rule(repo: Repo) -> None:
    setup(repo, [chat("same")] * 3 + [chat("other")], run_yaml(evals=False))
    settings = parse_settings('[tool.tuneform.data_policy]\nduplicates = {max = 0.05, level = "fail"}\n')
    report = check(repo, settings)
    assert [f.rule for f in report.findings if f.level == "fail"] == ["duplicates"] and report.failed
    assert report.policy["duplicates"].level == "fail" and report.policy["truncated"].max == 0.1
    assert not check(repo, parse_settings('[tool.tuneform.data_policy]\nduplicates = {max = 0.6, level = "fail"}\n')).failed
    assert check(repo, parse_settings('[tool.tuneform.data_policy]\nduplicates = {level = "off"}\n')).finding("duplicates") is None


def test_run_policy_tightens_but_cannot_relax_a_repository_fail(repo: Repo) -> None:
    setup(
        repo,
        [chat(f"q {i}") for i in range(20)] + [chat("q 1")],
        run_yaml(extra_data="  policy: {duplicates: {max: 0.01, level: fail}}\n", evals=False),
    )
    report = check(repo)  # 1 of 21 rows (4.8%): under the default 5%, over the run's 1%
    assert only(report, "duplicates").level == "fail"

    settings = parse_settings('[tool.tuneform.data_policy]\nduplicates = {max = 0.01, level = "fail"}\n')
    setup(
        repo,
        [chat(f"q {i}") for i in range(20)] + [chat("q 1")],
        run_yaml(extra_data="  policy: {duplicates: {max: 0.5, level: warn}}\n", evals=False),
    )
    report = check(repo, settings)
    assert only(report, "duplicates").level == "fail"
    assert any("a run may tighten that, not relax it" in note for note in report.notes)

    setup(repo, [chat("eval 0")], run_yaml(extra_data="  policy: {leakage: {level: fail}}\n"))
    assert only(check(repo), "leakage").level == "fail"


def test_policy_does_not_change_the_run_key(repo: Repo) -> None:
    hub = HubResolver(offline=True)
    settings = parse_settings((repo.path / "pyproject.toml").read_text())
    with_policy = RUN.replace("data:\n", "data:\n  policy:\n    duplicates: {max: 0.01, level: fail}\n    leakage: {level: off}\n")
    plain = check_run(WorkTree(repo.path), "runs/support.yaml", settings, hub, text=RUN.encode())
    strict = check_run(WorkTree(repo.path), "runs/support.yaml", settings, hub, text=with_policy.encode())
    assert strict.ok and strict.spec is not None and strict.spec.data.policy.duplicates is not None
    assert plain.key is not None and plain.key == strict.key


def test_policy_schema_errors_name_the_fix() -> None:
    with pytest.raises(SettingsError, match="did you mean 'duplicates'"):
        parse_settings("[tool.tuneform.data_policy]\nduplicats = {max = 0.05}\n")
    with pytest.raises(SettingsError, match=r"write 0\.05 for 5%"):
        parse_settings("[tool.tuneform.data_policy]\nduplicates = {max = 5}\n")
    loaded = load_run_text(
        f"model: {{id: {MODEL}}}\ndata:\n  train: [{{path: d.jsonl}}]\n  policy: {{leakge: {{level: fail}}, truncated: {{level: never}}}}\n",
        "runs/x.yaml",
    )
    messages = [(p.field, p.message) for p in loaded.problems]
    assert ("data.policy.leakge", "unknown key 'leakge': did you mean 'leakage'?") in messages
    assert any(field == "data.policy.truncated.level" and "'never' is not allowed" in message for field, message in messages)


# ---------------------------------------------------------------------------------------------
# What changed since the git base


def test_diff_against_the_base_revision_through_plan(repo: Repo) -> None:
    """The fixture's 40 rows at main; the PR drops 2, adds 10 new, 3 repeats and an eval prompt."""
    repo.git("checkout", "-q", "-b", "pr")
    rows = [json.loads(line) for line in (repo.path / "data/chat.jsonl").read_text().splitlines()]
    rows = rows[2:] + [chat(f"new question {i}") for i in range(10)] + rows[5:8] + [chat("eval 1")]
    repo.write("data/chat.jsonl", jsonl(rows))
    plan = make_plan(repo.path, hub=HubResolver(offline=True))
    [planned] = plan.runs
    assert planned.action == "update"
    section = plan_data_section(plan.runs, repo.path, plan.base_rev, plan.settings)
    report = section.reports["runs/support.yaml"]
    diff = report.diff
    assert diff is not None
    assert (diff.rows_then, diff.rows_now, diff.added, diff.removed) == (40, 52, 14, 2)
    suite = next(s for s in report.leakage if s.kind == "suite")
    assert suite.ids == ("r1",) and diff.leaked_then == 0 and diff.leaked_now == report.leaked >= 1  # repeats may straddle the split too
    assert (
        diff.summary()
        == f"+14 rows, -2 rows, 5.8% duplicates (was 0%), {report.leaked} eval prompt{'s' * (report.leaked > 1)} in train (was 0)"
    )
    assert "**vs base:** +14 rows" in section.render("markdown")
    assert section.as_json()["runs/support.yaml"]["diff"]["rows"] == {"then": 40, "now": 52, "added": 14, "removed": 2}
    assert not section.failed  # duplicates over 5% and leakage warn by default


def test_diff_follows_a_run_that_switches_files(repo: Repo) -> None:
    base_rev = repo.git("rev-parse", "HEAD")
    before = spec_of(repo, "runs/support.yaml")
    repo.write("data/v2.jsonl", (repo.path / "data/chat.jsonl").read_text() + json.dumps(chat("one more")) + "\n")
    repo.write("runs/support.yaml", RUN.replace("data/chat.jsonl", "data/v2.jsonl"))
    report = check_data(
        spec_of(repo, "runs/support.yaml"), WorkTree(repo.path), Settings(), base_tree=GitTree(repo.path, base_rev), base_spec=before
    )
    assert report.diff is not None and (report.diff.added, report.diff.removed) == (1, 0)


def test_plan_section_checks_only_runs_that_train(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "pr")
    repo.write("runs/other.yaml", RUN.replace("r: 8", "r: 16"))
    plan = make_plan(repo.path, hub=HubResolver(offline=True))
    section = plan_data_section(plan.runs, repo.path, plan.base_rev, plan.settings)
    assert [r.action for r in plan.runs] == ["create"] and list(section.reports) == ["runs/other.yaml"]
    assert section.reports["runs/other.yaml"].diff is None


# ---------------------------------------------------------------------------------------------
# Hub datasets, rendering, the command, staying light


def test_hub_datasets_are_not_checked_offline(repo: Repo) -> None:
    hub = "    - dataset: acme/chats\n      max_samples: 100\n"
    setup(repo, [chat(f"q {i}") for i in range(10)], run_yaml("    - path: data/train.jsonl\n" + hub))
    report = check(repo)
    assert [(s.source, s.checked, s.note) for s in report.sources] == [
        ("data/train.jsonl", True, None),
        ("hub:acme/chats", False, "Hub dataset: not checked offline"),
    ]
    assert any("eval split not checked" in note for note in report.notes)
    repo.write("runs/check.yaml", run_yaml(hub))
    only_hub = check(repo)
    assert not only_hub.checked and only_hub.summary() == "not checked offline (Hub datasets only)"
    assert "not checked offline" in render_data_markdown(only_hub)


def test_quote_false_leaves_row_text_out(repo: Repo) -> None:
    setup(repo, [chat("secret customer text", "refund")] * 2, run_yaml(evals=False))
    report = check(repo)
    hidden = json.dumps(report.as_json(quote=False))
    assert "secret customer text" not in hidden and "secret customer text" in json.dumps(report.as_json())
    assert "secret" not in render_data_text(report, quote=False) and "secret" not in render_data_markdown(report, quote=False)
    assert only(report, "duplicates").as_json(quote=False)["rows"][0] == {
        "source": "data/train.jsonl",
        "row": 2,
        "unit": "line",
        "detail": "exact duplicate of data/train.jsonl:1",
        "sample": None,
    }


def test_markdown_is_collapsed_and_escapes_row_text(repo: Repo) -> None:
    setup(repo, [chat("@octocat <img src=x> | `tick`")] * 2, run_yaml(evals=False))
    markdown = render_data_markdown(check(repo))
    assert "<details><summary>:warning: **warn** <code>duplicates</code>" in markdown and "</details>" in markdown
    assert_inert(markdown, ["@octocat <img src=x> | `tick`"])


def test_data_check_command_formats_and_exit_codes(repo: Repo) -> None:
    setup(repo, [chat("same")] * 4, run_yaml(evals=False))
    result = repo.cli("data", "check", "runs/check.yaml")
    assert (
        result.exit_code == 0
        and "warn duplicates: 3 of 4 rows (75%)" in result.output
        and "data/train.jsonl:2: exact duplicate of data/train.jsonl:1" in result.output
    )
    code, report = repo.json("data", "check", str(repo.path / "runs/check.yaml"), "--format", "json")
    assert code == 0 and report["ok"] and report["run"] == "runs/check.yaml"
    duplicates = next(f for f in report["findings"] if f["rule"] == "duplicates")
    assert (duplicates["level"], [r["row"] for r in duplicates["rows"]], duplicates["sample"]) == (
        "warn",
        [2, 3, 4],
        "user: same | assistant: billing",
    )
    assert {f["rule"] for f in report["findings"]} == {"duplicates", "leakage"}  # copies of the held-out row are in train

    repo.write("pyproject.toml", '[tool.tuneform.data_policy]\nduplicates = {level = "fail"}\n')
    assert data_check_run(repo.path, str(repo.path / "runs/check.yaml")).exit_code == 1  # the report decides the exit code
    result = repo.cli("data", "check", "runs/check.yaml")
    assert result.exit_code == 1 and "FAIL duplicates" in result.output
    result = repo.cli("data", "check", "runs/check.yaml", "--format", "markdown")
    assert result.exit_code == 1 and ":x: **fail** <code>duplicates</code>" in result.output

    result = repo.cli("data", "check", "runs/nope.yaml")
    assert (result.exit_code, result.output) == (
        1,
        "error: no run file runs/nope.yaml: did you mean 'runs/check.yaml'?: pass a run file or the name of one in runs/\n",
    )
    repo.write("runs/bad.yaml", "model: {id: a/b}\ndata: {train: [{path: x.jsonl}], lerning: 1}\n")
    code, error = repo.json("data", "check", "runs/bad.yaml", "--format", "json")
    assert code == 1 and error["ok"] is False and "runs/bad.yaml:2:" in error["error"] and "unknown key 'lerning'" in error["error"]
    assert error["fix"] == "tuneform validate lists every problem"
    assert repo.cli("data", "check", "runs/check.yaml", "--format", "yaml").exit_code == 2


def test_check_stays_torch_free(repo: Repo) -> None:
    setup(repo, [chat(f"q {i}") for i in range(5)])
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from tuneform.data.check import data_check_run\n"
        "report = data_check_run(Path('.'), 'runs/check.yaml')\n"
        "assert report.exit_code == 0, report.as_json()\n"
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft') if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# Hub datasets, when the Hub answers (the local fake Hub, through the real huggingface_hub client)


def hub_env(fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakehub import USER_TOKEN

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)


def hub_run(dataset: str, extra: str = "") -> str:
    return run_yaml(f"    - dataset: {dataset}\n{extra}", evals=False)


def test_hub_data_files_follow_the_hubs_layouts() -> None:
    from tuneform.data.check import hub_data_files

    files = [
        "README.md",
        ".gitattributes",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "data/test-00000-of-00001.parquet",
        "train.jsonl",
        "trainer.jsonl",
        "train.txt",
        "en/train/0000.parquet",
        "fr/train-00000.csv",
        "fr/validation.json",
        "extra/train_notes.md",
    ]
    assert hub_data_files(files, "train") == [
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "en/train/0000.parquet",
        "fr/train-00000.csv",
        "train.jsonl",
    ]
    assert hub_data_files(files, "validation") == ["fr/validation.json"]
    assert hub_data_files(files, "train", "fr") == ["fr/train-00000.csv"]
    assert hub_data_files(files, "train", "de") == []
    assert hub_data_files(["data/train.jsonl"], "train", "default") == ["data/train.jsonl"]


def test_public_hub_dataset_is_checked_with_hub_row_refs(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_env(fake_hub, monkeypatch)
    first = jsonl([chat("how do I pay my invoice"), chat("where is my parcel"), chat("how do I pay my invoice")])
    second = jsonl([chat("change my address"), {"messages": [{"role": "user", "content": "anyone there?"}]}])
    fake_hub.add_repo(
        "acme/chats",
        {
            "README.md": "# chats\n",
            "data/train-00000-of-00002.jsonl": first,
            "data/train-00001-of-00002.jsonl": second,
            "data/test-00000-of-00001.jsonl": jsonl([chat("a test row")] * 3),  # another split: not read
        },
        repo_type="dataset",
    )
    setup(repo, [], hub_run("acme/chats"))
    report = check(repo)

    a, b = "hub:acme/chats/data/train-00000-of-00002.jsonl", "hub:acme/chats/data/train-00001-of-00002.jsonl"
    assert [(s.source, s.checked, s.rows, s.kept, s.note) for s in report.sources] == [("hub:acme/chats", True, 5, 4, None)]
    assert report.checked and (report.rows, report.rows_read) == (4, 5)
    duplicates = only(report, "duplicates")
    assert [(str(h.ref), h.detail) for h in duplicates.hits] == [(f"{a}:3", f"exact duplicate of {a}:1")]
    missing = only(report, "missing_assistant")
    assert [str(h.ref) for h in missing.hits] == [f"{b}:2"] and missing.count == 1
    assert only(report, "max_bad_rows").level == "fail"  # 1 of 5 dropped, over the default max_bad_rows
    markdown = render_data_markdown(report)
    assert f"`{a}:3`" in markdown and "how do I pay my invoice" in markdown  # public: quoted
    assert not any("not checked" in note for note in report.notes)
    # the files came through the client's own download route, at the commit the revision names
    assert fake_hub.requests_to("GET", r"/datasets/acme/chats/resolve/[0-9a-f]{40}/data/train-0000[01]-of-00002\.jsonl")
    assert not fake_hub.requests_to("GET", r"/resolve/.*/data/test-")


def test_private_hub_dataset_is_checked_but_never_quoted(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_env(fake_hub, monkeypatch)
    rows = [chat(f"secret customer text {i}", "confidential-answer") for i in range(60)] + [
        chat("secret customer text 0", "confidential-answer")
    ]
    fake_hub.add_repo("acme/secret", {"train.jsonl": jsonl(rows)}, repo_type="dataset", private=True)
    setup(repo, [], hub_run("acme/secret"))
    report = check(repo)

    assert [(s.source, s.checked, s.rows) for s in report.sources] == [("hub:acme/secret", True, 61)]
    duplicates = only(report, "duplicates")
    assert duplicates.count == 1 and [str(h.ref) for h in duplicates.hits] == ["hub:acme/secret/train.jsonl:61"]
    assert report.labels == [("confidential-answer", 61)]
    markdown, text, as_json = render_data_markdown(report), render_data_text(report), json.dumps(report.as_json())
    for out in (markdown, text, as_json):
        assert "secret customer text" not in out and "confidential-answer" not in out
        assert "hub:acme/secret/train.jsonl" in out and "61" in out  # counts and row numbers only
    assert duplicates.as_json()["rows"][0]["sample"] is None and duplicates.as_json()["sample"] is None
    assert any("hub:acme/secret is private" in note for note in report.notes)


def test_private_rows_stay_unquoted_next_to_quoted_local_rows(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_env(fake_hub, monkeypatch)
    fake_hub.add_repo(
        "acme/secret", {"data/train-00000-of-00001.jsonl": jsonl([chat("private words")] * 2)}, repo_type="dataset", private=True
    )
    setup(repo, [chat("public words")] * 2, run_yaml("    - path: data/train.jsonl\n    - dataset: acme/secret\n", evals=False))
    markdown = render_data_markdown(check(repo))
    assert "public words" in markdown and "private words" not in markdown
    secret = "hub:acme/secret/data/train-00000-of-00001.jsonl"
    assert f"- `{secret}:2` exact duplicate of {secret}:1\n" in markdown  # the row, without its text
    assert f"- `{secret}:2` prompt of eval row {secret}:1 (exact)\n" in markdown  # the eval split draws Hub rows too


def test_hub_datasets_that_cannot_be_checked_say_why(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneform.data import check as datacheck

    hub_env(fake_hub, monkeypatch)
    fake_hub.add_repo("bob/gated", {"train.jsonl": jsonl([chat("q")])}, repo_type="dataset", gated="manual")
    fake_hub.add_repo("acme/images", {"train/0001.png": b"\x89PNG", "README.md": "# no rows\n"}, repo_type="dataset")
    fake_hub.add_repo("acme/big", {"train.jsonl": jsonl([chat(f"q {i}") for i in range(50)])}, repo_type="dataset")

    def note_of(dataset: str, extra: str = "") -> str | None:
        setup(repo, [], hub_run(dataset, extra))
        report = check(repo)
        assert not report.checked and report.summary() == "not checked (Hub datasets only, none could be read: each source says why)"
        assert "no training data checked" in report.notes[-1]
        (source,) = report.sources
        assert not source.checked and source.note and md_text(source.note) in render_data_markdown(report)
        return source.note

    assert note_of("acme/nowhere") == "Hub dataset: not checked: not found, or private and HF_TOKEN cannot read it"
    assert "gated, and this token has not been granted access" in (note_of("bob/gated") or "")
    assert "no .jsonl, .json, .csv, .parquet files of revision main, split train" in (note_of("acme/images") or "")
    assert note_of("acme/big", "      revision: v9\n") == "Hub dataset: not checked: revision v9 not found"
    monkeypatch.setattr(datacheck, "HUB_MAX_BYTES", 100)
    assert "too large to check in plan (over 0 MB)" in (note_of("acme/big") or "")
    assert not fake_hub.requests_to("GET", r"/datasets/acme/(big|images)/resolve/")  # nothing downloaded when too large or no files


def test_unreachable_hub_dataset_is_not_checked_with_the_reason(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fake Hub the client is offline (conftest): no request is made, and the note says so."""
    from tuneform.core.hub import hub_offline

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there; offline mode must not even try
    assert hub_offline()
    setup(repo, [chat(f"q {i}") for i in range(5)], run_yaml("    - path: data/train.jsonl\n    - dataset: acme/chats\n", evals=False))
    report = check(repo)
    assert [(s.source, s.checked, s.note) for s in report.sources] == [
        ("data/train.jsonl", True, None),
        ("hub:acme/chats", False, "Hub dataset: not checked offline"),
    ]
    assert "- `hub:acme/chats`: Hub dataset: not checked offline" in render_data_markdown(report)
    assert "hub:acme/chats (messages): Hub dataset: not checked offline" in render_data_text(report)


def test_hub_check_stays_torch_and_datasets_free(repo: Repo, fake_hub: Any) -> None:
    fake_hub.add_repo("acme/chats", {"train.jsonl": jsonl([chat("q 1"), chat("q 1")])}, repo_type="dataset")
    setup(repo, [], hub_run("acme/chats"))
    script = (
        "import sys, json\nfrom pathlib import Path\n"
        "from tuneform.data.check import data_check_run\n"
        "report = data_check_run(Path('.'), 'runs/check.yaml').as_json()\n"
        "assert report['ok'] and report['sources'][0]['checked'], report\n"
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft') if m in sys.modules)))\n"
    )
    import os

    env = {**os.environ, **fake_hub.client_env(), "HF_HUB_CACHE": str(repo.path.parent / "hf-cache")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo.path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip() == ""
