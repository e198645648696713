"""Score predictions against a suite: the step shared by `tuneform score` and the job's eval.

Generation (which needs a model) and scoring (which does not) are separate so that scores can
be recomputed, tested and reported on any machine from a JSONL of predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.evals.metrics import evaluate
from tuneform.evals.suite import EvalFileError, Suite, read_jsonl
from tuneform.runfile.diagnostics import Problem, did_you_mean

PREDICTION_KEYS = ("id", "prediction")
_IDS_SHOWN = 20


class PredictionsError(EvalFileError):
    """A predictions JSONL that cannot be scored, with every problem and its line."""


@dataclass(frozen=True)
class RowScore:
    """One suite row's prediction (None when missing) and its score under each metric."""

    id: str
    line: int
    prediction: str | None
    scores: dict[str, float]


@dataclass(frozen=True)
class ScoreReport:
    """Per-metric means over all suite rows, per-row details, and what was wrong with the input.

    Errors mean the means are not trustworthy as a model's score (rows were missing and counted
    as 0); warnings do not affect the numbers.
    """

    suite: str
    suite_hash: str
    metrics: dict[str, float]
    rows: list[RowScore]
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        """True when every suite row had a prediction."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--format json`."""
        return {
            "suite": self.suite,
            "suite_hash": self.suite_hash,
            "ok": self.ok,
            "metrics": self.metrics,
            "rows": [{"id": r.id, "line": r.line, "prediction": r.prediction, "scores": r.scores} for r in self.rows],
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _id_list(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_IDS_SHOWN])
    return shown + (f" and {len(ids) - _IDS_SHOWN} more" if len(ids) > _IDS_SHOWN else "")


def score_predictions(suite: Suite, predictions: Mapping[str, str]) -> ScoreReport:
    """Score `predictions` (suite row id -> generated text) with each of the suite's metrics.

    A suite row without a prediction scores 0 under every metric and is named in `errors`;
    predictions for ids the suite does not have are ignored and named in `warnings` (usually a
    predictions file made for another version of the suite).
    """
    missing = [row.id for row in suite.rows if row.id not in predictions]
    suite_ids = {row.id for row in suite.rows}
    extra = sorted(i for i in predictions if i not in suite_ids)
    errors = [f"no prediction for {len(missing)} of {len(suite.rows)} rows (scored 0): {_id_list(missing)}"] if missing else []
    warnings = [f"{len(extra)} predictions for ids not in suite '{suite.name}' (ignored): {_id_list(extra)}"] if extra else []
    results = [evaluate(name, [(predictions.get(row.id), row.expected) for row in suite.rows]) for name in suite.spec.metrics]
    rows = [
        RowScore(row.id, row.line, predictions.get(row.id), {result.name: result.per_row[i] for result in results})
        for i, row in enumerate(suite.rows)
    ]
    return ScoreReport(
        suite=suite.name,
        suite_hash=suite.hash,
        metrics={result.name: result.mean for result in results},
        rows=rows,
        errors=errors,
        warnings=warnings,
    )


def load_predictions(path: Path) -> dict[str, str]:
    """Read a JSONL of `{"id", "prediction"}`; raise PredictionsError naming each bad line.

    Integer ids are read as their decimal string, the same rule suite rows follow.
    """
    records, problems = read_jsonl(path)
    predictions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, record in records:
        if not isinstance(record, dict):
            problems.append(Problem('a line is a JSON object {"id", "prediction"}', line=line))
            continue
        found = [(key, f"unknown key '{key}'{did_you_mean(key, PREDICTION_KEYS)}") for key in record if key not in PREDICTION_KEYS]
        raw_id = record.get("id")
        if "id" not in record:
            found.append(("id", "missing id: the id of the suite row this prediction answers"))
        elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
            found.append(("id", "id must be a non-empty string or an integer"))
        elif str(raw_id) in first_line:
            found.append(("id", f"duplicate id '{raw_id}' (first on line {first_line[str(raw_id)]}): one prediction per row"))
        if "prediction" not in record:
            found.append(("prediction", "missing prediction: the generated text"))
        elif not isinstance(record["prediction"], str):
            found.append(("prediction", "prediction must be a string"))
        if found:
            problems += [Problem(message, line=line, field=field) for field, message in found]
            continue
        first_line[str(raw_id)] = line
        predictions[str(raw_id)] = record["prediction"]
    if problems:
        raise PredictionsError(path, sorted(problems, key=lambda p: p.line or 0))
    return predictions
