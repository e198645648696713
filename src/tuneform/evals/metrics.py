"""Metrics: pure functions from (prediction, expected) to a score in [0, 1].

Scores decide whether a version ships (gates), so each metric is a few lines of stdlib code that
can be checked by hand, and its text normalisation is spelled out here rather than borrowed from a
library whose defaults may change between versions.

Normalisation (`normalize`), applied by exact_match, contains, rouge_l and token_f1:

1. Unicode NFKC (full-width letters and digits become ASCII, ligatures split, "…" becomes "..."),
   then `str.casefold()` (stronger than lower(): "Straße" equals "STRASSE"), then NFKC again
   because case folding can leave decomposed sequences ("ǰ" folds to "j" + combining caron;
   recomposing stops "j" from counting as a substring of it).
2. Whitespace runs (any Unicode whitespace, newlines included) become one space.
3. Surrounding noise is stripped, repeatedly, together with whitespace:
   - at both ends: quotes (`"`, `'`, backtick, every Unicode initial/final quote such as “ ” ‘ ’
     « » ‹ ›, and „ ‚ 「 」 『 』) and markdown bold/italic `*`;
   - at the end only: sentence punctuation `. , ; : ! ?` and `。 、`;
   - at the start only: `¡ ¿`.
   Signs, brackets, `_`, `%`, `#` and currency symbols are kept: "-1" is not "1", "50%" is not
   "50", "__init__" is not "init", and ".5" keeps its leading point. Punctuation inside the text is kept ("u.s.a", "rock 'n' roll").

Tokens (`tokens`), used by rouge_l and token_f1: the normalised text with every punctuation
character (ASCII `string.punctuation` and Unicode categories P*) deleted, as in the SQuAD
evaluation script ("levi's" becomes "levis"), then split on whitespace. token_f1 also drops the
English articles "a", "an", "the" (SQuAD); rouge_l keeps them (Lin 2004 counts every word).
Whitespace tokenisation means text without spaces (Chinese, Japanese) is one token per run.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from tuneform.core.errors import TuneformError

# What a row may expect: one answer, alternatives (the best one counts), or one of those per metric.
Answer: TypeAlias = str | list[str]
Expected: TypeAlias = str | list[str] | dict[str, str | list[str]]


class MetricError(TuneformError, ValueError):
    """An expectation a metric cannot use (bad regex, empty alternatives, missing per-metric key)."""


_WRAPPERS = frozenset("\"'`„‚「」『』*")
_TRAILING = frozenset(".,;:!?。、")
_LEADING = frozenset("¡¿")
_ARTICLES = frozenset({"a", "an", "the"})


def _is_wrapper(char: str) -> bool:
    return char in _WRAPPERS or unicodedata.category(char) in ("Pi", "Pf")


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """Canonical form for comparing answers; see the module docstring for each rule and why."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    text = " ".join(text.split())
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or _is_wrapper(text[start]) or text[start] in _LEADING):
        start += 1
    while end > start and (text[end - 1].isspace() or _is_wrapper(text[end - 1]) or text[end - 1] in _TRAILING):
        end -= 1
    return text[start:end]


def tokens(text: str) -> list[str]:
    """Normalised words with punctuation deleted (SQuAD's rule, so "levi's" matches "levis")."""
    return "".join(c for c in normalize(text) if not _is_punctuation(c)).split()


@dataclass(frozen=True)
class Metric:
    """A registered metric: scores one answer, and handles alternatives and per-metric dicts.

    `needs_expected` is False for metrics that judge the prediction alone (json_valid); rows of a
    suite using only those may leave `expected` out.
    """

    name: str
    score_one: Callable[[str, str], float]
    needs_expected: bool = True

    def __call__(self, prediction: str, expected: Expected | None = None) -> float:
        """Score one row: a dict picks this metric's entry, a list scores its best alternative."""
        if not self.needs_expected:
            return self.score_one(prediction, "")
        if isinstance(expected, dict):
            if self.name not in expected:
                raise MetricError(f"expected has no entry for metric '{self.name}'")
            expected = expected[self.name]
        if isinstance(expected, str):
            return self.score_one(prediction, expected)
        if isinstance(expected, list) and expected and all(isinstance(e, str) for e in expected):
            return max(self.score_one(prediction, e) for e in expected)
        raise MetricError(f"{self.name} needs expected as a string or a non-empty list of strings, got {expected!r}")


METRICS: dict[str, Metric] = {}


def _register(name: str, *, needs_expected: bool = True) -> Callable[[Callable[[str, str], float]], Metric]:
    def decorator(fn: Callable[[str, str], float]) -> Metric:
        metric = Metric(name, fn, needs_expected)
        METRICS[name] = metric
        return metric

    return decorator


@_register("exact_match")
def exact_match(prediction: str, expected: str) -> float:
    """1.0 when both normalise to the same text (articles are kept, unlike SQuAD's EM)."""
    return float(normalize(prediction) == normalize(expected))


@_register("contains")
def contains(prediction: str, expected: str) -> float:
    """1.0 when the normalised answer occurs in the normalised prediction (chatty but right)."""
    return float(normalize(expected) in normalize(prediction))


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a regex expectation once; raises MetricError so a suite can report the row."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MetricError(f"invalid regular expression {pattern!r}: {exc}") from None


@_register("regex")
def regex(prediction: str, expected: str) -> float:
    """1.0 when the pattern is found (re.search) in the prediction stripped of outer whitespace.

    search, not fullmatch, because generations wrap answers in prose ("The total is 42."); a
    suite that wants the whole output anchors its pattern with \\A...\\Z. The prediction is not
    otherwise normalised: the pattern decides about case (use (?i)) and punctuation.
    """
    return float(compile_pattern(expected).search(prediction.strip()) is not None)


_FENCE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL | re.IGNORECASE)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


@_register("json_valid", needs_expected=False)
def json_valid(prediction: str, expected: str) -> float:
    """1.0 when the prediction is one JSON value (RFC 8259; NaN/Infinity rejected).

    A prediction that is exactly one fenced block (```json ... ``` or ``` ... ```) is judged by the
    block's content, since chat models fence JSON by habit; text around the fence fails, because
    a caller parsing the output would fail too. `expected` is not used.
    """
    text = prediction.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than a Python caller can parse either
        return 0.0
    return 1.0


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, two rows of memory)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _f_measure(overlap: int, n_prediction: int, n_expected: int) -> float:
    """F1 with the conventions shared by rouge_l and token_f1: two empty texts agree (1.0)."""
    if n_prediction == 0 or n_expected == 0:
        return float(n_prediction == n_expected)
    if overlap == 0:
        return 0.0
    precision = overlap / n_prediction
    recall = overlap / n_expected
    return 2 * precision * recall / (precision + recall)


@_register("rouge_l")
def rouge_l(prediction: str, expected: str) -> float:
    """ROUGE-L F-measure (Lin 2004, beta=1) over `tokens`: rewards the answer's words in order.

    R = LCS/len(expected), P = LCS/len(prediction), F = (1+b^2)RP/(R+b^2 P) = 2RP/(R+P).
    Single reference per call; alternatives are handled by taking the best (Metric.__call__).
    """
    predicted, reference = tokens(prediction), tokens(expected)
    return _f_measure(lcs_length(predicted, reference), len(predicted), len(reference))


@_register("token_f1")
def token_f1(prediction: str, expected: str) -> float:
    """SQuAD v2 token F1: bag-of-words overlap of `tokens` without articles, order ignored.

    Empty against empty is 1.0 and empty against non-empty 0.0, as in the SQuAD v2 script.
    """
    predicted = [t for t in tokens(prediction) if t not in _ARTICLES]
    reference = [t for t in tokens(expected) if t not in _ARTICLES]
    overlap = sum((Counter(predicted) & Counter(reference)).values())
    return _f_measure(overlap, len(predicted), len(reference))


@dataclass(frozen=True)
class MetricResult:
    """One metric over a suite: the mean (what gates compare) and each row's score (for reports)."""

    name: str
    mean: float
    per_row: tuple[float, ...]


def evaluate(name: str, rows: Iterable[tuple[str | None, Expected | None]]) -> MetricResult:
    """Score (prediction, expected) pairs with metric `name` and average them over rows.

    A row whose prediction is None (the model produced nothing for it) scores 0.0 rather than
    being left out, so missing rows can only lower a mean, never flatter it.
    """
    if name not in METRICS:
        raise MetricError(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})")
    metric = METRICS[name]
    per_row = tuple(0.0 if prediction is None else metric(prediction, expected) for prediction, expected in rows)
    if not per_row:
        raise MetricError(f"{name}: no rows to score")
    return MetricResult(name, math.fsum(per_row) / len(per_row), per_row)


def perplexity_from_loss(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token, natural log): the held-out loss as perplexity.

    Overflow (a diverged run) gives inf rather than an exception so it can still be reported and
    fail a gate; NaN or a negative NLL means the loss itself is broken and raises.
    """
    if math.isnan(mean_nll) or mean_nll < 0:
        raise ValueError(f"mean NLL must be a non-negative number, got {mean_nll}")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


LOSS_METRICS = ("eval_loss", "perplexity")
"""Run-level metrics every job measures on its held-out examples (no suite computes them)."""
PREFERENCE_METRICS = ("reward_accuracy", "reward_margin")
"""Run-level metrics a preference run (method dpo, orpo, kto) measures on its held-out pairs:
the fraction of pairs whose chosen answer the trained model's implicit reward prefers, and the
mean reward margin (job/evaluate.py `preference_metrics`)."""


def run_metrics(preference: bool) -> tuple[str, ...]:
    """The run-level metrics a gate may name beside a suite's: the loss always, rewards for a
    preference run."""
    return LOSS_METRICS + (PREFERENCE_METRICS if preference else ())
