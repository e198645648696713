"""Eval suite files, their rows, the suite hash, gates, and scoring predictions."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tuneform.evals.score import PredictionsError, load_predictions, score_predictions
from tuneform.evals.suite import (
    Gate,
    GateError,
    SuiteError,
    check_gates,
    load_suite,
    parse_gate,
    suite_hash,
)

SUITE_YAML = """\
name: capitals
data: evals/capitals.jsonl
generation:
  max_new_tokens: 16
metrics: [exact_match, contains]
"""

ROWS: list[dict[str, Any]] = [
    {"id": "fr", "prompt": "Capital of France?", "expected": "Paris"},
    {"id": "us", "messages": [{"role": "user", "content": "Capital of the USA?"}], "expected": ["Washington, D.C.", "Washington"]},
    {"id": 3, "prompt": "Capital of Japan?", "expected": "Tokyo"},
]


def write(repo: Path, yaml_text: str = SUITE_YAML, rows: list[Any] | str | None = None, data: str = "evals/capitals.jsonl") -> Path:
    """Write a suite YAML and its JSONL (rows as dicts, or raw text when a string) under `repo`."""
    suite = repo / "evals" / "capitals.yaml"
    suite.parent.mkdir(parents=True, exist_ok=True)
    suite.write_text(yaml_text, encoding="utf-8")
    if rows is None:
        rows = ROWS
    text = rows if isinstance(rows, str) else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (repo / data).parent.mkdir(parents=True, exist_ok=True)
    (repo / data).write_text(text, encoding="utf-8")
    return suite


def suite_error(repo: Path, **kwargs: Any) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(write(repo, **kwargs), repo)
    return info.value


def problems(error: SuiteError) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.field, p.message) for p in error.problems]


# --- loading a valid suite ------------------------------------------------------------------------


def test_load_valid_suite(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path), tmp_path)
    assert suite.name == "capitals"
    assert suite.data_path == Path("evals/capitals.jsonl")
    assert suite.spec.metrics == ["exact_match", "contains"]
    assert suite.spec.generation.max_new_tokens == 16
    assert suite.spec.generation.temperature == 0.0
    assert suite.spec.generation.stop == []
    assert [(r.id, r.line) for r in suite.rows] == [("fr", 1), ("us", 2), ("3", 3)]  # integer ids become strings
    assert suite.rows[0].prompt == "Capital of France?" and suite.rows[0].messages is None
    assert suite.rows[1].messages == [{"role": "user", "content": "Capital of the USA?"}]
    assert suite.rows[1].expected == ["Washington, D.C.", "Washington"]
    assert re.fullmatch(r"[0-9a-f]{64}", suite.hash)


def test_defaults_name_from_file_and_generation(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, "data: evals/capitals.jsonl\nmetrics: [exact_match]\n"), tmp_path)
    assert suite.name == "capitals"  # file stem
    assert suite.spec.generation.max_new_tokens == 64


def test_greedy_settings_written_out_are_accepted(tmp_path: Path) -> None:
    yaml_text = 'data: evals/capitals.jsonl\ngeneration: {max_new_tokens: 8, temperature: 0, do_sample: false, stop: ["\\n"]}\nmetrics: [exact_match]\n'
    generation = load_suite(write(tmp_path, yaml_text), tmp_path).spec.generation
    assert (generation.temperature, generation.do_sample, generation.stop) == (0.0, False, ["\n"])


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    text = "\n" + json.dumps(ROWS[0]) + "\n\n   \n" + json.dumps(ROWS[2]) + "\n"
    suite = load_suite(write(tmp_path, rows=text), tmp_path)
    assert [(r.id, r.line) for r in suite.rows] == [("fr", 2), ("3", 5)]


def test_line_separator_inside_a_json_string_does_not_split_the_row(tmp_path: Path) -> None:
    text = '{"id": "a", "prompt": "one\u2028two", "expected": "x"}\n{"id": "b", "prompt": "p", "expected": "y"}\n'
    suite = load_suite(write(tmp_path, rows=text), tmp_path)
    assert [(r.id, r.line) for r in suite.rows] == [("a", 1), ("b", 2)]
    assert suite.rows[0].prompt == "one\u2028two"


def test_json_valid_only_suite_needs_no_expected(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "Give JSON"}]
    suite = load_suite(write(tmp_path, "data: evals/capitals.jsonl\nmetrics: [json_valid]\n", rows=rows), tmp_path)
    assert suite.rows[0].expected is None


def test_per_metric_expected(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "2*21?", "expected": {"exact_match": "42", "regex": r"\b42\b"}}]
    suite = load_suite(write(tmp_path, "data: evals/capitals.jsonl\nmetrics: [exact_match, regex, json_valid]\n", rows=rows), tmp_path)
    assert suite.rows[0].expected == {"exact_match": "42", "regex": r"\b42\b"}


# --- errors in the suite YAML -------------------------------------------------------------------


def test_unknown_metric_suggests_and_points_at_the_item(tmp_path: Path) -> None:
    error = suite_error(tmp_path, yaml_text="name: x\ndata: evals/capitals.jsonl\nmetrics:\n  - exact_match\n  - rouge_1\n")
    assert error.path == Path("evals/capitals.yaml")
    assert (error.line, error.field) == (5, "metrics[1]")
    assert error.message == "unknown metric 'rouge_1': did you mean 'rouge_l'?"


def test_unknown_keys_suggest_the_right_one(tmp_path: Path) -> None:
    yaml_text = "data: evals/capitals.jsonl\nmetric: [exact_match]\ngeneration:\n  max_tokens: 8\n"
    error = suite_error(tmp_path, yaml_text=yaml_text)
    found = problems(error)
    assert (4, "generation.max_tokens", "unknown key 'max_tokens': did you mean 'max_new_tokens'?") in found
    assert (2, "metric", "unknown key 'metric': did you mean 'metrics'?") in found
    assert (1, "metrics", "missing required key 'metrics'") in found


@pytest.mark.parametrize(
    ("generation", "fragment"),
    [
        ("{temperature: 0.7}", "temperature 0.7 is not supported"),
        ("{do_sample: true}", "do_sample: true is not supported"),
        ("{max_new_tokens: 0}", "greater than or equal to 1"),
        ("{max_new_tokens: '8'}", "valid integer"),
        ("{stop: ['']}", "at least 1 character"),
    ],
)
def test_generation_settings_are_checked(tmp_path: Path, generation: str, fragment: str) -> None:
    error = suite_error(tmp_path, yaml_text=f"data: evals/capitals.jsonl\ngeneration: {generation}\nmetrics: [exact_match]\n")
    assert error.line == 2
    assert error.field is not None and error.field.startswith("generation.")
    assert fragment in error.message


def test_wrong_shapes(tmp_path: Path) -> None:
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: exact_match\ngeneration: 8\n")
    assert problems(error) == [
        (2, "metrics", "Input should be a valid list"),
        (3, "generation", "must be a mapping of settings (key: value)"),
    ]


def test_duplicate_metric(tmp_path: Path) -> None:
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [contains, contains]\n")
    assert (error.line, error.field) == (2, "metrics")
    assert "metric listed twice: contains" in error.message


def test_empty_metrics(tmp_path: Path) -> None:
    assert suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: []\n").field == "metrics"


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [exact_match\nname: x\n")
    assert error.line is not None and error.line >= 2
    assert "invalid YAML" in error.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [exact_match]\ndata: other.jsonl\n")
    assert error.line == 3 and "duplicate key 'data'" in error.message


def test_suite_that_is_not_a_mapping(tmp_path: Path) -> None:
    assert "YAML mapping" in suite_error(tmp_path, yaml_text="- exact_match\n").message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("/etc/passwd", "is absolute"),
        ("../outside.jsonl", "leaves its folder"),
        ("evals/missing.jsonl", "'evals/missing.jsonl' does not exist"),
    ],
)
def test_data_path_problems_point_at_the_data_key(tmp_path: Path, data: str, fragment: str) -> None:
    error = suite_error(tmp_path, yaml_text=f"name: x\ndata: {data}\nmetrics: [exact_match]\n")
    assert (error.line, error.field) == (2, "data")
    assert fragment in error.message


def test_data_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside.jsonl"
    outside.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    suite = write(repo, rows=[])
    (repo / "evals" / "capitals.jsonl").unlink()
    (repo / "evals" / "capitals.jsonl").symlink_to(outside)
    with pytest.raises(SuiteError, match="leads outside the repository"):
        load_suite(suite, repo)


# --- errors in rows -------------------------------------------------------------------------------


def test_row_errors_name_the_data_file_line_and_field(tmp_path: Path) -> None:
    text = "\n".join(
        [
            json.dumps({"id": "a", "prompt": "p", "expected": "x"}),  # 1 ok
            json.dumps({"prompt": "p", "expected": "x"}),  # 2 missing id
            json.dumps({"id": "b", "expected": "x"}),  # 3 neither messages nor prompt
            json.dumps({"id": "a", "prompt": "p", "expected": "x"}),  # 4 duplicate of line 1
            json.dumps({"id": "c", "prompt": "p"}),  # 5 missing expected
            '{"id": "d", "prompt": "p", "expected": "x"',  # 6 invalid JSON
            "",  # 7 blank
            json.dumps(["not", "an", "object"]),  # 8
            json.dumps({"id": "e", "prompt": "p", "expcted": "x"}),  # 9 typo
            json.dumps({"id": "f", "prompt": "p", "messages": [{"role": "user", "content": "p"}], "expected": "x"}),  # 10 both
            json.dumps({"id": "g", "messages": [{"role": "usr", "content": "p"}], "expected": "x"}),  # 11 role typo
            json.dumps({"id": "h", "prompt": "", "expected": "x"}),  # 12 empty prompt
            json.dumps({"id": True, "prompt": "p", "expected": "x"}),  # 13 boolean id
            json.dumps({"id": "i", "prompt": "p", "expected": []}),  # 14 no alternatives
        ]
    )
    error = suite_error(tmp_path, rows=text)
    assert error.path == Path("evals/capitals.jsonl")
    found = problems(error)
    assert (2, "id", 'missing id: give each row a unique "id"') in found
    assert (3, "messages", 'neither messages nor prompt: give the input as "prompt" (text) or "messages" (a chat)') in found
    assert (4, "id", "duplicate id 'a' (first on line 1): ids must be unique") in found
    assert (5, "expected", "missing expected: the answer that exact_match, contains compare the prediction with") in found
    assert (9, "expcted", "unknown key 'expcted': did you mean 'expected'?") in found
    assert (9, "expected", "missing expected: the answer that exact_match, contains compare the prediction with") in found
    assert (10, "prompt", "give either prompt or messages, not both") in found
    assert (11, "messages[0].role", "role must be one of system, user, assistant, tool: did you mean 'user'?") in found
    assert (12, "prompt", "prompt must be a non-empty string") in found
    assert (13, "id", "id must be a non-empty string or an integer") in found
    lines = [line or 0 for line, _, _ in found]
    assert lines == sorted(lines)
    assert {6, 8, 14} <= set(lines)
    assert 1 not in lines and 7 not in lines
    invalid_json = next(p for p in error.problems if p.line == 6)
    assert invalid_json.message.startswith("invalid JSON:") and invalid_json.column is not None
    assert f"{error.path}:2: id: missing id" in str(error)


def test_invalid_regex_is_a_suite_error_with_its_row(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "expected": r"\d+"}, {"id": "b", "prompt": "p", "expected": "(unclosed"}]
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [regex]\n", rows=rows)
    assert (error.line, error.field) == (2, "expected")
    assert error.message.startswith("regex: invalid regular expression '(unclosed'")


def test_empty_contains_answer_is_refused(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "expected": ["ok", " ... "]}]
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [contains]\n", rows=rows)
    assert error.line == 1 and "contained in every prediction" in error.message


def test_per_metric_expected_errors(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "p", "expected": {"exact_match": "x", "regx": "y"}},
        {"id": "b", "prompt": "p", "expected": {"exact_match": "x", "regex": "[", "json_valid": "z"}},
    ]
    error = suite_error(tmp_path, yaml_text="data: evals/capitals.jsonl\nmetrics: [exact_match, regex, json_valid]\n", rows=rows)
    found = problems(error)
    assert (1, "expected.regx", "'regx' is not a metric of this suite that takes an answer: did you mean 'regex'?") in found
    assert (1, "expected", "per-metric expected has no entry for 'regex': give one for each of exact_match, regex") in found
    assert any(line == 2 and field == "expected.regex" and "invalid regular expression" in msg for line, field, msg in found)
    assert any(line == 2 and field == "expected.json_valid" for line, field, _ in found)
    assert len(found) == 4


def test_empty_data_file(tmp_path: Path) -> None:
    assert "no rows" in suite_error(tmp_path, rows="\n\n").message


def test_data_that_is_not_utf8(tmp_path: Path) -> None:
    suite = write(tmp_path)
    (tmp_path / "evals" / "capitals.jsonl").write_bytes(json.dumps(ROWS[0]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(SuiteError) as info:
        load_suite(suite, tmp_path)
    assert info.value.line == 2 and "UTF-8" in info.value.message


# --- suite hash -----------------------------------------------------------------------------------


def hash_of(repo: Path, yaml_text: str = SUITE_YAML, rows: list[Any] | None = None, data: str = "evals/capitals.jsonl") -> str:
    suite = load_suite(write(repo, yaml_text, rows, data), repo)
    assert suite.hash == suite_hash(suite.spec, suite.rows)
    return suite.hash


def test_suite_hash_ignores_formatting_name_location_and_order(tmp_path: Path) -> None:
    base = hash_of(tmp_path / "a")
    reformatted = """\
# the same suite, written differently
metrics:
  - contains          # order of metrics does not matter
  - exact_match
generation: {temperature: 0.0, max_new_tokens: 16, stop: [], do_sample: false}
data: "data/elsewhere.jsonl"
name: renamed
"""
    assert hash_of(tmp_path / "b", reformatted, list(reversed(ROWS)), data="data/elsewhere.jsonl") == base
    # The rows' JSON formatting does not matter either, only their values.
    repo = tmp_path / "c"
    suite = write(repo, rows="".join(json.dumps(r, indent=None, separators=(",", ":"), sort_keys=True) + "\n" for r in ROWS))
    assert load_suite(suite, repo).hash == base


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows[0].update(expected="Lyon"),
        lambda rows: rows[0].update(prompt="Capital of France? One word."),
        lambda rows: rows[1]["messages"].insert(0, {"role": "system", "content": "Be brief."}),
        lambda rows: rows.append({"id": "de", "prompt": "Capital of Germany?", "expected": "Berlin"}),
        lambda rows: rows.pop(),
        lambda rows: rows[0].update(id="france"),
    ],
)
def test_suite_hash_changes_with_any_row(tmp_path: Path, change: Any) -> None:
    rows = json.loads(json.dumps(ROWS))
    change(rows)
    assert hash_of(tmp_path / "changed", rows=rows) != hash_of(tmp_path / "base")


@pytest.mark.parametrize(
    "yaml_text",
    [
        SUITE_YAML.replace("max_new_tokens: 16", "max_new_tokens: 17"),
        SUITE_YAML.replace("max_new_tokens: 16", "max_new_tokens: 16\n  stop: ['\\n']"),
        SUITE_YAML.replace("[exact_match, contains]", "[exact_match]"),
    ],
)
def test_suite_hash_changes_with_generation_or_metrics(tmp_path: Path, yaml_text: str) -> None:
    assert hash_of(tmp_path / "changed", yaml_text) != hash_of(tmp_path / "base")


# --- gates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "op", "threshold"),
    [
        (">= 0.85", ">=", 0.85),
        (">0.5", ">", 0.5),
        ("<= 2.0", "<=", 2.0),
        (" < 1e-3 ", "<", 0.001),
        ("== 1", "==", 1.0),
        (">= .9", ">=", 0.9),
        (">= -1", ">=", -1.0),
    ],
)
def test_parse_gate(expr: str, op: str, threshold: float) -> None:
    assert parse_gate(expr) == Gate(op, threshold)


@pytest.mark.parametrize("expr", ["0.85", "≥ 0.85", ">= abc", ">= nan", ">= inf", "=> 0.8", ">= 0.8 0.9", "", ">= 1_000"])
def test_parse_gate_rejects(expr: str) -> None:
    with pytest.raises(GateError, match="is not a condition like '>= 0.85'"):
        parse_gate(expr)


def test_gate_verdicts_at_and_around_the_threshold() -> None:
    assert parse_gate(">= 0.85").passes(0.85) is True
    assert parse_gate(">= 0.85").passes(0.8499) is False
    assert parse_gate("> 0.85").passes(0.85) is False
    assert parse_gate("<= 2.0").passes(2.0) is True
    assert parse_gate("< 2.0").passes(2.0) is False
    assert parse_gate("<= 2.0").passes(math.inf) is False
    for expr in (">= 0", "<= 1", "== 0"):
        assert parse_gate(expr).passes(math.nan) is False
    assert str(parse_gate(">=0.85")) == ">= 0.85"


def test_check_gates() -> None:
    metrics = {"exact_match": 0.9, "token_f1": 0.6, "loss": 2.5}
    results = check_gates({"exact_match": ">= 0.85", "token_f1": "> 0.7", "loss": "<= 2.0"}, metrics)
    assert [(r.metric, str(r.gate), r.value, r.passed) for r in results] == [
        ("exact_match", ">= 0.85", 0.9, True),
        ("token_f1", "> 0.7", 0.6, False),
        ("loss", "<= 2.0", 2.5, False),
    ]
    assert check_gates({}, metrics) == []


def test_check_gates_errors() -> None:
    with pytest.raises(GateError, match="gate on unknown metric 'exact_mach': did you mean 'exact_match'?"):
        check_gates({"exact_mach": ">= 0.8"}, {"exact_match": 0.9})
    with pytest.raises(GateError, match="gate for 'loss': '2.0' is not a condition"):
        check_gates({"loss": "2.0"}, {"loss": 1.0})


# --- scoring predictions --------------------------------------------------------------------------


def test_score_predictions_means_and_rows(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path), tmp_path)
    predictions = {"fr": "Paris.", "us": "It is Washington", "3": "Kyoto"}
    report = score_predictions(suite, predictions)
    # exact_match: fr 1, us 0 ("it is washington" is neither alternative), 3 0 -> 1/3
    # contains:    fr 1, us 1 ("washington" is in it), 3 0                  -> 2/3
    assert report.metrics == pytest.approx({"exact_match": 1 / 3, "contains": 2 / 3})
    assert [(r.id, r.line, r.scores) for r in report.rows] == [
        ("fr", 1, {"exact_match": 1.0, "contains": 1.0}),
        ("us", 2, {"exact_match": 0.0, "contains": 1.0}),
        ("3", 3, {"exact_match": 0.0, "contains": 0.0}),
    ]
    assert report.ok and report.errors == [] and report.warnings == []
    assert report.suite == "capitals" and report.suite_hash == suite.hash
    assert json.loads(json.dumps(report.to_json()))["metrics"]["contains"] == pytest.approx(2 / 3)


def test_missing_predictions_are_errors_scored_zero_and_extra_ones_warnings(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path), tmp_path)
    report = score_predictions(suite, {"fr": "Paris", "de": "Berlin", "it": "Rome"})
    assert not report.ok
    assert report.errors == ["no prediction for 2 of 3 rows (scored 0): us, 3"]
    assert report.warnings == ["2 predictions for ids not in suite 'capitals' (ignored): de, it"]
    assert report.metrics["exact_match"] == pytest.approx(1 / 3)
    assert report.rows[1].prediction is None and report.rows[1].scores == {"exact_match": 0.0, "contains": 0.0}


def test_score_with_per_metric_expectations(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "p", "expected": {"regex": r"\A\d+\Z", "rouge_l": "police killed the gunman"}},
        {"id": "b", "prompt": "p", "expected": {"regex": r"\A\d+\Z", "rouge_l": "a b c"}},
    ]
    suite = load_suite(write(tmp_path, "data: evals/capitals.jsonl\nmetrics: [regex, rouge_l, json_valid]\n", rows=rows), tmp_path)
    report = score_predictions(suite, {"a": "police kill the gunman", "b": "12"})
    # regex: a 0, b 1; rouge_l: a 0.75 (Lin's S2), b 0; json_valid: a 0, b 1 ("12" is a JSON number)
    assert report.metrics == pytest.approx({"regex": 0.5, "rouge_l": 0.375, "json_valid": 0.5})


def write_predictions(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_predictions(tmp_path: Path) -> None:
    path = write_predictions(
        tmp_path / "p.jsonl", [json.dumps({"id": "fr", "prediction": "Paris"}), "", json.dumps({"id": 3, "prediction": ""})]
    )
    assert load_predictions(path) == {"fr": "Paris", "3": ""}


def test_load_predictions_errors_name_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "prediction": "x"}),
        "not json",
        json.dumps({"id": "b"}),
        json.dumps({"id": "a", "prediction": "y"}),
        json.dumps({"id": "c", "prediction": None}),
        json.dumps({"id": "d", "predicton": "x"}),
        json.dumps("just a string"),
    ]
    with pytest.raises(PredictionsError) as info:
        load_predictions(write_predictions(tmp_path / "p.jsonl", lines))
    error = info.value
    assert error.path == tmp_path / "p.jsonl"
    found = [(p.line, p.field, p.message) for p in error.problems]
    assert found[0][0] == 2 and found[0][2].startswith("invalid JSON")
    assert (3, "prediction", "missing prediction: the generated text") in found
    assert (4, "id", "duplicate id 'a' (first on line 1): one prediction per row") in found
    assert (5, "prediction", "prediction must be a string") in found
    assert (6, "predicton", "unknown key 'predicton': did you mean 'prediction'?") in found
    assert (7, None, 'a line is a JSON object {"id", "prediction"}') in found


def test_predictions_file_round_trip_through_score(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path), tmp_path)
    path = write_predictions(tmp_path / "p.jsonl", [json.dumps({"id": r.id, "prediction": "Tokyo"}) for r in suite.rows])
    report = score_predictions(suite, load_predictions(path))
    assert report.metrics == pytest.approx({"exact_match": 1 / 3, "contains": 1 / 3})
