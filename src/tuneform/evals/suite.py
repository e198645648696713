"""Eval suites: a YAML definition plus a JSONL of rows, loaded strictly, hashed, and gated.

A suite arrives in a pull request like a run file, so it is read with the same guarded YAML
loader and every problem names the file, the 1-based line and the field with a fix. Problems
are collected rather than raised one at a time, so a broken JSONL is fixed in one pass.

The suite hash keys eval results (model key + suite hash): it covers what changes a score
(generation settings, metrics, rows, SUITE_FORMAT) and nothing that does not (the suite's name,
where the JSONL lives, YAML formatting, row order).
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from tuneform.core.errors import TuneformError
from tuneform.evals.metrics import (
    METRICS,
    Expected,
    MetricError,
    compile_pattern,
    normalize,
)
from tuneform.runfile import jsonsafe, yamlsafe
from tuneform.runfile.diagnostics import Problem, did_you_mean
from tuneform.runfile.spec import check_relative_path
from tuneform.runfile.trees import Tree, TreeError, WorkTree

# Bumped by hand when a change to metrics or normalisation alters scores, so that every suite
# hash changes and old results are not reused for numbers that would now come out differently.
SUITE_FORMAT = 1

ROW_KEYS = ("id", "prompt", "messages", "expected")
MESSAGE_KEYS = ("role", "content")
ROLES = ("system", "user", "assistant", "tool")


class EvalFileError(TuneformError):
    """A suite, suite data or predictions file that cannot be used, with every problem found."""

    def __init__(self, path: Path, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.describe(p) for p in self.problems))

    def describe(self, problem: Problem) -> str:
        """One problem as `path:line:column: field: message`, the form editors and CI link to."""
        where = str(self.path)
        if problem.line is not None:
            where += f":{problem.line}"
            if problem.column is not None:
                where += f":{problem.column}"
        field = f" {problem.field}:" if problem.field else ""
        return f"{where}:{field} {problem.message}"

    @property
    def line(self) -> int | None:
        """Line of the first problem (1-based), for callers that show one error."""
        return self.problems[0].line

    @property
    def field(self) -> str | None:
        """Field of the first problem."""
        return self.problems[0].field

    @property
    def message(self) -> str:
        """Message of the first problem."""
        return self.problems[0].message


class SuiteError(EvalFileError):
    """The suite YAML or its JSONL rows are invalid; `path` is the file the problems are in."""


def _known_metric(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'{did_you_mean(name, METRICS)}")
    return name


class GenerationSpec(BaseModel):
    """How predictions are generated for the suite; greedy only, so a score is reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: StrictInt = Field(64, ge=1, description="Tokens generated per row at most.")
    temperature: float = Field(0.0, description="0 only (greedy decoding).")
    do_sample: StrictBool = Field(False, description="false only; accepted because transformers users write it.")
    stop: list[Annotated[StrictStr, Field(min_length=1)]] = Field(
        default_factory=list, description="Strings that end a generation (not included in the prediction)."
    )

    @field_validator("temperature")
    @classmethod
    def _greedy_temperature(cls, value: float) -> float:
        if value != 0:
            raise ValueError(
                f"temperature {value} is not supported: suites decode greedily (temperature: 0) so that a "
                "score depends only on the model and the suite; remove temperature or set it to 0"
            )
        return value

    @field_validator("do_sample")
    @classmethod
    def _greedy_sampling(cls, value: bool) -> bool:
        if value:
            raise ValueError("do_sample: true is not supported: suites decode greedily; remove do_sample or set it to false")
        return value


class SuiteSpec(BaseModel):
    """The suite YAML file: `{name, data, generation, metrics}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr | None = Field(None, min_length=1, description="Name shown in reports; default: the file name.")
    data: StrictStr = Field(min_length=1, description="Repository-relative path of the JSONL rows.")
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: list[Annotated[StrictStr, AfterValidator(_known_metric)]] = Field(min_length=1, description=f"Any of: {', '.join(METRICS)}.")

    @field_validator("data")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({m for m in value if value.count(m) > 1})
        if repeated:
            raise ValueError(f"metric listed twice: {', '.join(repeated)}; list each once")
        return value


@dataclass(frozen=True)
class SuiteRow:
    """One validated row; exactly one of `prompt` and `messages` is set. `line` is 1-based."""

    id: str
    line: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    expected: Expected | None = None

    def canonical(self) -> dict[str, Any]:
        """What the suite hash sees: the row's content without its position in the file."""
        out: dict[str, Any] = {"id": self.id}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.messages is not None:
            out["messages"] = self.messages
        if self.expected is not None:
            out["expected"] = self.expected
        return out


def suite_hash(suite: SuiteSpec, rows: Sequence[SuiteRow]) -> str:
    """sha256 (hex) of everything that changes a score, so an eval-only change is detectable.

    Canonical JSON (sorted keys, no whitespace, UTF-8) of SUITE_FORMAT, the generation settings
    with defaults filled in, the sorted metric names and the rows sorted by id. The name and the
    data path are left out for the same reason the run key leaves out a run's name: renaming or
    moving a file does not change what is measured.
    """
    canonical = {
        "format": SUITE_FORMAT,
        "generation": suite.generation.model_dump(mode="json"),
        "metrics": sorted(suite.metrics),
        "rows": [row.canonical() for row in sorted(rows, key=lambda row: row.id)],
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its definition, where it came from, and its rows in file order."""

    spec: SuiteSpec
    name: str
    path: Path
    data_path: Path
    rows: tuple[SuiteRow, ...]

    @cached_property
    def hash(self) -> str:
        """suite_hash of this suite (computed once)."""
        return suite_hash(self.spec, self.rows)


def read_jsonl(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """`parse_jsonl` of a file on disk (predictions files, which are not part of the repository)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Problem(f"cannot read the file: {exc.strerror}")]
    return parse_jsonl(raw)


def parse_jsonl(raw: bytes) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """Parsed JSON values with their 1-based line numbers, and a problem for each bad line.

    Blank lines are skipped but still counted, so numbers match an editor's. Lines are split on
    "\\n" only: JSON strings may legally hold U+2028, which str.splitlines() would cut.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Problem("not UTF-8 text: save the file as UTF-8", line=raw[: exc.start].count(b"\n") + 1)]
    records: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, jsonsafe.loads(line)))
        except jsonsafe.JsonError as exc:
            fix = exc.fix or "one JSON object per line"
            problems.append(Problem(f"invalid JSON: {exc.message} ({fix})", line=number, column=exc.column))
    return records, problems


def _field_name(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _keys_at(loc: Sequence[str | int]) -> list[str]:
    """Field names of the model found at `loc` inside SuiteSpec (for did-you-mean on unknown keys)."""
    model: type[BaseModel] = SuiteSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _spec_problems(exc: ValidationError, document: yamlsafe.Document) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        line, column = document.locate(tuple(loc))
        if error["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), _keys_at(loc[:-1]))}"
        elif error["type"] == "missing":
            message = f"missing required key '{loc[-1]}'"
        elif error["type"] == "value_error":
            message = str(error["ctx"]["error"])
        elif error["type"] == "model_type":
            message = "must be a mapping of settings (key: value)"
        else:
            message = error["msg"]
        problems.append(Problem(message, line=line, column=column, field=_field_name(loc)))
    return problems


def _load_spec(tree: Tree, path: str) -> tuple[SuiteSpec, yamlsafe.Document]:
    try:
        document = yamlsafe.load(tree.read(path))
    except TreeError as exc:
        raise SuiteError(Path(path), [Problem(str(exc))]) from None
    except yamlsafe.YamlError as exc:
        field = _field_name(exc.path) or None
        raise SuiteError(Path(path), [Problem(exc.message, line=exc.line, column=exc.column, field=field)]) from None
    if not isinstance(document.data, dict):
        raise SuiteError(Path(path), [Problem("a suite file is a YAML mapping with keys name, data, generation, metrics", line=1)])
    try:
        return SuiteSpec.model_validate(document.data), document
    except ValidationError as exc:
        raise SuiteError(Path(path), sorted(_spec_problems(exc, document), key=lambda p: p.line or 0)) from None


def _answer_problems(answer: Any, metrics: Sequence[str]) -> list[str]:
    """What is wrong with one expectation (a string or alternatives) for the given metrics."""
    if not (isinstance(answer, str) or (isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer))):
        return ["expected must be a string, a non-empty list of alternative strings, or an object of those keyed by metric"]
    messages = []
    for alternative in [answer] if isinstance(answer, str) else answer:
        if "regex" in metrics:
            try:
                compile_pattern(alternative)
            except MetricError as exc:
                messages.append(f"regex: {exc}")
        if "contains" in metrics and not normalize(alternative):
            messages.append("contains: an empty answer is contained in every prediction; write the text to look for")
    return messages


def _expected_problems(record: dict[str, Any], metrics: Sequence[str]) -> list[tuple[str, str]]:
    """(field, message) pairs for the row's `expected` against the suite's metrics."""
    needed = [m for m in metrics if METRICS[m].needs_expected]
    if "expected" not in record:
        if needed:
            return [("expected", f"missing expected: the answer that {', '.join(needed)} compare the prediction with")]
        return []
    value = record["expected"]
    if not isinstance(value, dict):
        return [("expected", message) for message in _answer_problems(value, needed)]
    problems = []
    for key, answer in value.items():
        if key in needed:
            problems += [(f"expected.{key}", message) for message in _answer_problems(answer, [key])]
        else:
            problems.append((f"expected.{key}", f"'{key}' is not a metric of this suite that takes an answer{did_you_mean(key, needed)}"))
    for metric in needed:
        if metric not in value:
            problems.append(("expected", f"per-metric expected has no entry for '{metric}': give one for each of {', '.join(needed)}"))
    return problems


def _input_problems(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) pairs for the row's model input: a prompt or a chat."""
    if "prompt" in record and "messages" in record:
        return [("prompt", "give either prompt or messages, not both")]
    if "prompt" in record:
        prompt = record["prompt"]
        return [] if isinstance(prompt, str) and prompt.strip() else [("prompt", "prompt must be a non-empty string")]
    if "messages" not in record:
        return [("messages", 'neither messages nor prompt: give the input as "prompt" (text) or "messages" (a chat)')]
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return [("messages", 'messages must be a non-empty list of {"role", "content"} objects')]
    problems = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append((where, 'a message is an object {"role", "content"}'))
            continue
        for key in message:
            if key not in MESSAGE_KEYS:
                problems.append((f"{where}.{key}", f"unknown key '{key}'{did_you_mean(key, MESSAGE_KEYS)}"))
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            problems.append(
                (f"{where}.role", f"role must be one of {', '.join(ROLES)}" + (did_you_mean(role, ROLES) if isinstance(role, str) else ""))
            )
        if not isinstance(message.get("content"), str):
            problems.append((f"{where}.content", "content must be a string"))
    return problems


def _id_problems(record: dict[str, Any], line: int, seen: dict[str, int]) -> list[tuple[str, str]]:
    if "id" not in record:
        return [("id", 'missing id: give each row a unique "id"')]
    raw = record["id"]
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
        return [("id", "id must be a non-empty string or an integer")]
    row_id = str(raw)
    if row_id in seen:
        return [("id", f"duplicate id '{row_id}' (first on line {seen[row_id]}): ids must be unique")]
    seen[row_id] = line
    return []


def _parse_rows(records: list[tuple[int, Any]], metrics: Sequence[str]) -> tuple[list[SuiteRow], list[Problem]]:
    rows: list[SuiteRow] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, record in records:
        if not isinstance(record, dict):
            problems.append(Problem('a row is a JSON object {"id", "messages" | "prompt", "expected"}', line=line))
            continue
        found = [(key, f"unknown key '{key}'{did_you_mean(key, ROW_KEYS)}") for key in record if key not in ROW_KEYS]
        found += _id_problems(record, line, seen) + _input_problems(record) + _expected_problems(record, metrics)
        if found:
            problems += [Problem(message, line=line, field=field) for field, message in found]
            continue
        rows.append(
            SuiteRow(
                id=str(record["id"]),
                line=line,
                prompt=record.get("prompt"),
                messages=record.get("messages"),
                expected=record.get("expected"),
            )
        )
    return rows, problems


def read_suite(tree: Tree, path: str) -> Suite:
    """Load and validate a suite YAML and its JSONL rows from a repository tree.

    Raises SuiteError naming every problem. `data` is repository-relative, like every path in a
    run file, and the tree refuses paths that leave the repository (suites come from untrusted
    PRs). Reading through a Tree lets plan load the base revision's suites from git.
    """
    spec, document = _load_spec(tree, path)
    line, column = document.locate(("data",))
    try:
        raw = tree.read(spec.data)
    except TreeError as exc:
        raise SuiteError(
            Path(path), [Problem(f"data file: {exc} (paths are relative to the repository root)", line=line, column=column, field="data")]
        ) from None
    records, problems = parse_jsonl(raw)
    rows, row_problems = _parse_rows(records, spec.metrics)
    problems += row_problems
    if not problems and not rows:
        problems.append(Problem("no rows: a suite needs at least one JSON object line"))
    if problems:
        raise SuiteError(Path(spec.data), sorted(problems, key=lambda p: p.line or 0))
    return Suite(spec=spec, name=spec.name or Path(path).stem, path=Path(path), data_path=Path(spec.data), rows=tuple(rows))


def load_suite(path: Path, repo_root: Path) -> Suite:
    """`read_suite` of a suite file on disk inside `repo_root` (paths reported repository-relative)."""
    try:
        relative = path.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        raise SuiteError(path, [Problem("the suite file is outside the repository: keep suites in it (e.g. evals/)")]) from None
    return read_suite(WorkTree(repo_root), relative)


class GateError(TuneformError, ValueError):
    """A gate that cannot be evaluated: malformed condition or a metric the eval does not produce."""


_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
_GATE = re.compile(r"\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*")


@dataclass(frozen=True)
class Gate:
    """A condition a metric must meet for a version to ship, e.g. `>= 0.85` or `<= 2.0` (loss)."""

    op: str
    threshold: float

    def passes(self, value: float) -> bool:
        """Whether `value` meets the condition; NaN never does."""
        return bool(_OPERATORS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.op} {self.threshold}"


def parse_gate(expr: str) -> Gate:
    """Parse `OP NUMBER` with OP one of >=, >, <=, <, == (the forms a run file's `gate` accepts)."""
    match = _GATE.fullmatch(expr) if isinstance(expr, str) else None
    if not match:
        raise GateError(f"'{expr}' is not a condition like '>= 0.85' or '< 2.5'")
    return Gate(match.group(1), float(match.group(2)))


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate on one metric value."""

    metric: str
    gate: Gate
    value: float
    passed: bool


def check_gates(gates: Mapping[str, str], metrics: Mapping[str, float]) -> list[GateResult]:
    """Verdicts of every gate, in the gates' order; raises GateError before judging any if one is bad.

    A gate on a metric the eval did not produce is an error rather than a pass or a fail: either
    would silently ship or block a version because of a typo.
    """
    parsed = []
    for metric, expr in gates.items():
        if metric not in metrics:
            raise GateError(f"gate on unknown metric '{metric}'{did_you_mean(metric, metrics)}")
        try:
            parsed.append((metric, parse_gate(expr)))
        except GateError as exc:
            raise GateError(f"gate for '{metric}': {exc}") from None
    return [GateResult(metric, gate, metrics[metric], gate.passes(metrics[metric])) for metric, gate in parsed]


def read_suite_once(tree: Tree, path: str) -> Suite:
    """read_suite, remembered per tree: many runs of a plan share a suite."""
    cache = tree.memo.setdefault("suites", {})
    if path not in cache:
        try:
            cache[path] = read_suite(tree, path)
        except (TreeError, SuiteError) as exc:
            cache[path] = exc
    if isinstance(cache[path], Exception):
        raise cache[path]
    return cache[path]
