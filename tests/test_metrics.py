"""Metrics and normalisation, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuneform.evals.metrics import (
    METRICS,
    MetricError,
    contains,
    evaluate,
    exact_match,
    json_valid,
    lcs_length,
    normalize,
    perplexity_from_loss,
    regex,
    rouge_l,
    token_f1,
    tokens,
)


def test_registry_names_the_six_metrics_of_the_contract() -> None:
    assert set(METRICS) == {"exact_match", "contains", "regex", "json_valid", "rouge_l", "token_f1"}
    assert METRICS["exact_match"] is exact_match
    assert [name for name, m in METRICS.items() if not m.needs_expected] == ["json_valid"]


# --- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("  PARIS  ", "paris"),
        ("Straße", "strasse"),  # casefold, not lower(): ß folds to ss
        ("ＡＢＣ１２３", "abc123"),  # NFKC: full-width letters and digits
        ("ﬁne", "fine"),  # NFKC: the fi ligature
        ("new\tyork\n\ncity", "new york city"),  # any whitespace run is one space
        ("new\u00a0york\u3000city", "new york city"),  # no-break and ideographic spaces
        ('"Paris"', "paris"),
        ("'Paris'", "paris"),
        ("`Paris`", "paris"),
        ("“Paris”", "paris"),  # Unicode initial/final quotes
        ("«Paris»", "paris"),
        ("„Paris“", "paris"),  # German quotes: „ is an opening (Ps) mark, listed explicitly
        ("「東京」", "東京"),  # Japanese corner brackets used as quotes
        ("**Paris**", "paris"),  # markdown bold
        ("Paris.", "paris"),
        ("Paris!?", "paris"),
        ("Paris…", "paris"),  # NFKC turns the ellipsis into "...", then trailing dots go
        ("東京。", "東京"),
        ("¿Qué?", "qué"),
        ('  "Paris." ', "paris"),  # quotes, punctuation and spaces interleaved: stripped until stable
        ("“Hi”!", "hi"),
        ("U.S.A.", "u.s.a"),  # inner punctuation is kept
        ("rock 'n' roll", "rock 'n' roll"),
        ("-1", "-1"),  # a sign is meaning, not noise
        ("1-", "1-"),
        (".5", ".5"),  # a leading point is part of the number
        ("5.", "5"),
        ("50%", "50%"),
        ("$5", "$5"),
        ("#3", "#3"),
        ("__init__", "__init__"),
        ("(a)", "(a)"),  # brackets are kept: [1, 2] is not 1, 2
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_recomposes_after_casefold() -> None:
    # casefold("ǰ") is "j" + U+030C; without the second NFKC "j" would be a substring of it.
    assert normalize("ǰ") == "\u01f0"
    assert normalize("J\u030c") == "\u01f0"
    assert contains("ǰ", "j") == 0.0
    assert exact_match("ǰ", "J\u030c") == 1.0


def test_tokens_delete_punctuation_like_squad() -> None:
    assert tokens("Levi's Stadium, in the S.F. Bay-Area!") == ["levis", "stadium", "in", "the", "sf", "bayarea"]
    assert tokens("Paris , France") == ["paris", "france"]  # a lone comma leaves no empty token
    assert tokens("¡Hola! ¿qué tal?") == ["hola", "qué", "tal"]  # Unicode punctuation (Po) too
    assert tokens("") == []


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


# --- exact_match / contains ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "expected", "score"),
    [
        ("refund", "refund", 1.0),
        (" Refund.\n", "refund", 1.0),
        ('"REFUND"', "refund", 1.0),
        ("refunds", "refund", 0.0),
        ("the refund", "refund", 0.0),  # articles are kept (unlike SQuAD EM)
        ("-1", "1", 0.0),
        ("", "", 1.0),
        ("", "refund", 0.0),
    ],
)
def test_exact_match(prediction: str, expected: str, score: float) -> None:
    assert exact_match(prediction, expected) == score


@pytest.mark.parametrize(
    ("prediction", "expected", "score"),
    [
        ("The capital of France is Paris.", "paris", 1.0),
        ("The capital is PARIS", '"Paris."', 1.0),  # the answer is normalised too
        ("the capital is lyon", "paris", 0.0),
        ("Pari", "Paris", 0.0),
        ("New  York\nCity", "new york city", 1.0),  # whitespace collapsed on both sides
        ("Parisian cafés", "paris", 1.0),  # a substring, not a word match: documented behaviour
    ],
)
def test_contains(prediction: str, expected: str, score: float) -> None:
    assert contains(prediction, expected) == score


# --- regex ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "pattern", "score"),
    [
        ("The total is 42.", r"\b42\b", 1.0),  # search, not fullmatch
        ("The total is 420.", r"\b42\b", 0.0),
        ("The total is 42.", r"\A\d+\Z", 0.0),  # anchors ask for the whole output
        ("  42\n", r"\A\d+\Z", 1.0),  # outer whitespace is stripped first
        ("PARIS", r"paris", 0.0),  # no normalisation: case is the pattern's business
        ("PARIS", r"(?i)paris", 1.0),
        ("order #90509", r"#\d{5}", 1.0),
    ],
)
def test_regex(prediction: str, pattern: str, score: float) -> None:
    assert regex(prediction, pattern) == score


def test_invalid_regex_raises_metric_error_not_re_error() -> None:
    with pytest.raises(MetricError, match="invalid regular expression '\\(unclosed'"):
        regex("anything", "(unclosed")


# --- json_valid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "score"),
    [
        ('{"intent": "refund", "confidence": 0.9}', 1.0),
        ("[1, 2, 3]", 1.0),
        ("42", 1.0),  # any JSON value (RFC 8259), not only objects
        ('"text"', 1.0),
        ("null", 1.0),
        ('  {"a": 1}\n', 1.0),
        ('```json\n{"a": 1}\n```', 1.0),
        ('```JSON\n{"a": [1,\n 2]}\n```', 1.0),
        ('```\n{"a": 1}\n```', 1.0),  # a fence without a language
        ('\n```json\n{"a": 1}```\n', 1.0),
        ('Here you go:\n```json\n{"a": 1}\n```', 0.0),  # prose around the fence
        ('```python\n{"a": 1}\n```', 0.0),
        ('{"a": 1,}', 0.0),  # trailing comma
        ("{'a': 1}", 0.0),  # single quotes
        ("NaN", 0.0),  # Python's json accepts these; JSON does not
        ('{"a": Infinity}', 0.0),
        ('{"a": 1} {"b": 2}', 0.0),  # two values
        ("", 0.0),
        ("```json\n```", 0.0),
        ("[" * 100_000 + "]" * 100_000, 0.0),  # a model's runaway output: too deep to parse, not a crash
    ],
)
def test_json_valid(prediction: str, score: float) -> None:
    assert json_valid(prediction) == score


def test_json_valid_ignores_expected() -> None:
    assert json_valid("{}", "anything") == 1.0
    assert json_valid("{}", {"exact_match": "x"}) == 1.0


# --- rouge_l --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "length"),
    [
        ("ABCBDAB", "BDCABA", 4),  # CLRS: BCBA
        ("AGGTAB", "GXTXAYB", 4),  # GTAB
        ("", "ABC", 0),
        ("ABC", "ABC", 3),
        ("ABC", "DEF", 0),
    ],
)
def test_lcs_length(a: str, b: str, length: int) -> None:
    assert lcs_length(list(a), list(b)) == length
    assert lcs_length(list(b), list(a)) == length


def test_rouge_l_lin_2004_examples() -> None:
    # Lin (2004) section 3.1, reference "police killed the gunman" (m = 4 words).
    # S2 "police kill the gunman": LCS = police, the, gunman = 3; R = 3/4, P = 3/4, F = 0.75.
    assert rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(0.75)
    # S3 "the gunman kill police": LCS = the, gunman = 2; R = 2/4, P = 2/4, F = 0.5.
    assert rouge_l("the gunman kill police", "police killed the gunman") == pytest.approx(0.5)


def test_rouge_l_unequal_lengths_worked_by_hand() -> None:
    # prediction "a b c d e" (n = 5), expected "a c e f" (m = 4); LCS = a, c, e = 3.
    # P = 3/5 = 0.6, R = 3/4 = 0.75, F = 2PR/(P+R) = 2*0.45/1.35 = 2/3.
    assert rouge_l("a b c d e", "a c e f") == pytest.approx(2 / 3)
    # Normalisation applies: case, punctuation and quotes do not cost anything.
    assert rouge_l('"A, B; C!"', "a b c") == 1.0
    # Order matters (unlike token_f1): reversed words share an LCS of 1; P = R = 1/3.
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3)
    assert rouge_l("z y x", "x y z") == pytest.approx(1 / 3)
    assert token_f1("z y x", "x y z") == 1.0


def test_rouge_l_edge_cases() -> None:
    assert rouge_l("", "") == 1.0
    assert rouge_l("", "something") == 0.0
    assert rouge_l("something", "") == 0.0
    assert rouge_l("x y", "z w") == 0.0


words = st.lists(st.sampled_from(["a", "b", "c", "the", "d"]), max_size=8).map(" ".join)


@given(words, words)
def test_rouge_l_is_symmetric_with_beta_one(a: str, b: str) -> None:
    assert rouge_l(a, b) == pytest.approx(rouge_l(b, a))


# --- token_f1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "expected", "score"),
    [
        ("Denver Broncos", "Denver Broncos", 1.0),
        ("the Denver Broncos", "Denver Broncos", 1.0),  # SQuAD drops articles
        # SQuAD dev example: prediction tokens [santa, clara, california] (3); answer tokens
        # [levis, stadium, in, san, francisco, bay, area, at, santa, clara, california] (11, "the"
        # dropped). Common = 3; P = 3/3, R = 3/11; F = 2*(3/11)/(1 + 3/11) = 6/14 = 3/7.
        ("Santa Clara, California", "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California.", 3 / 7),
        # [cat, sat] vs [cat, sat, on, mat]: common 2; P = 1, R = 1/2; F = 2/3.
        ("the cat sat", "a cat sat on the mat", 2 / 3),
        # Bag of words: [x, x, y] vs [x, y, y]: common = min(2,1) + min(1,2) = 2; P = R = 2/3.
        ("x x y", "x y y", 2 / 3),
        ("Denver", "Carolina Panthers", 0.0),
        ("", "", 1.0),  # SQuAD v2: two empty answers agree
        ("", "Denver", 0.0),
        ("Denver", "", 0.0),
        ("the", "an", 1.0),  # both empty once articles go (SQuAD v2 behaves the same)
        ("!!!", "Denver", 0.0),
    ],
)
def test_token_f1_squad_reference_cases(prediction: str, expected: str, score: float) -> None:
    assert token_f1(prediction, expected) == pytest.approx(score)


# --- alternatives, per-metric dicts, bounds -------------------------------------------------


def test_list_expectation_scores_best_alternative() -> None:
    assert exact_match("NYC", ["New York", "nyc", "New York City"]) == 1.0
    assert exact_match("Boston", ["New York", "nyc"]) == 0.0
    assert contains("I live in New York City", ["LA", "new york"]) == 1.0
    assert regex("id-77", [r"\d{3}", r"-\d\d$"]) == 1.0
    # rouge_l against [exact words in other order, a superset]: max(1/3, 2*1*0.75/1.75 = 6/7)
    assert rouge_l("a b c", ["c b a", "a b c d"]) == pytest.approx(6 / 7)
    assert token_f1("santa clara", ["clara", "santa clara california"]) == pytest.approx(0.8)


def test_dict_expectation_picks_the_metrics_entry() -> None:
    expected: dict[str, str | list[str]] = {"exact_match": "42", "regex": r"\A\d+\Z", "token_f1": ["forty two", "42"]}
    assert exact_match("42.", expected) == 1.0
    assert regex("42", expected) == 1.0
    assert token_f1("forty-two", expected) == 0.0  # "fortytwo" is neither alternative
    with pytest.raises(MetricError, match="no entry for metric 'contains'"):
        contains("42", expected)


@pytest.mark.parametrize("bad", [[], [1], None, 3, ["ok", None]])
def test_unusable_expectation_raises(bad: object) -> None:
    with pytest.raises(MetricError):
        exact_match("x", bad)  # type: ignore[arg-type]


@given(st.text(max_size=40), st.text(max_size=40))
def test_every_metric_scores_within_zero_and_one(prediction: str, expected: str) -> None:
    for name, metric in METRICS.items():
        if name == "regex":
            continue  # arbitrary text is rarely a valid pattern
        assert 0.0 <= metric(prediction, expected) <= 1.0


@given(st.text(max_size=40))
def test_a_prediction_scores_one_against_itself(text: str) -> None:
    for name in ("exact_match", "contains", "rouge_l", "token_f1"):
        assert METRICS[name](text, text) == 1.0


# --- aggregation and perplexity ----------------------------------------------------------------


def test_evaluate_means_over_rows_and_keeps_per_row_scores() -> None:
    result = evaluate("exact_match", [("a", "a"), ("b", "x"), ("c", ["z", "c"]), (None, "d")])
    assert result.name == "exact_match"
    assert result.per_row == (1.0, 0.0, 1.0, 0.0)  # None (no prediction) scores 0
    assert result.mean == pytest.approx(0.5)
    assert evaluate("token_f1", [("the cat sat", "a cat sat on the mat"), ("x", "x")]).mean == pytest.approx((2 / 3 + 1) / 2)


def test_evaluate_rejects_unknown_metric_and_no_rows() -> None:
    with pytest.raises(MetricError, match="unknown metric 'bleu'"):
        evaluate("bleu", [("a", "a")])
    with pytest.raises(MetricError, match="no rows"):
        evaluate("exact_match", [])


def test_perplexity_from_loss() -> None:
    assert perplexity_from_loss(0.0) == 1.0
    assert perplexity_from_loss(math.log(2)) == pytest.approx(2.0)
    assert perplexity_from_loss(2.0) == pytest.approx(7.389056, rel=1e-6)
    assert perplexity_from_loss(1e6) == math.inf  # a diverged run still reports (and fails gates)
    with pytest.raises(ValueError):
        perplexity_from_loss(float("nan"))
    with pytest.raises(ValueError):
        perplexity_from_loss(-0.1)
