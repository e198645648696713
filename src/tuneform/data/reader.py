"""Training data: read a run's sources, check every row, and turn them into canonical examples.

A run trains on whatever its files hold, so every row is checked before any GPU time is spent:
malformed rows are collected with their file, row number, field and a fix. A few are dropped and
reported (up to `data.max_bad_rows`, a fraction); more than that fails the load with the first
ones listed, because a file that is mostly broken is a mistake, not noise.

Every format becomes one of two canonical shapes: a conversation (`messages`, a list of
{role, content}) or plain `text`. Tokenisation and loss masks (train/format.py) then deal with
those two only. A prompt_completion row becomes the prompt turns (a string prompt is one user
turn) plus the completion as an assistant turn; an alpaca row a user turn (instruction, a blank
line, input) and an assistant turn (output). So every supervised format is rendered through the
model's chat template, as prompts are at inference. Row numbers follow the file: the 1-based
line for JSONL, the 1-based data row for
CSV (header excluded), Parquet and JSON arrays, the 1-based row of a Hub split.

Sampling (`max_samples`), shuffling and the eval split depend on `training.seed` alone, so the
same run file and data always train on the same rows in the same split.
"""

from __future__ import annotations

import csv
import difflib
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tuneform.core.errors import TuneformError
from tuneform.runfile import jsonsafe
from tuneform.runfile.spec import HubSource, LocalSource, RunSpec
from tuneform.runfile.trees import is_lfs_pointer

ROLES = ("system", "user", "assistant", "tool")
# ShareGPT's `from` values, and the OpenAI names some ShareGPT exports use instead.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# Fields a format cannot do without; alpaca's `input` may be absent.
REQUIRED_FIELDS = {
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
}
CANONICAL_NAMES = {name for names in REQUIRED_FIELDS.values() for name in names} | {"input"}
SHOWN_BAD_ROWS = 5

Source = LocalSource | HubSource


class DataError(TuneformError):
    """The data cannot be used as written; the message names the file, rows and the fix."""


@dataclass(frozen=True)
class Example:
    """One training example: a conversation or a text, and where it came from.

    `prompt_turns` counts leading messages that are never trained even when they are assistant
    turns: a prompt_completion row's prompt may hold an earlier assistant reply, but only the
    completion is the target.

    A preference row (`format: preference`) is a prompt and two answers to it: `messages` holds
    the prompt turns only (all of them `prompt_turns`), `chosen` and `rejected` the two answers'
    turns, which a preference trainer scores against each other after the same prompt.
    """

    source: str
    row: int
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    prompt_turns: int = 0
    chosen: list[dict[str, str]] | None = None
    rejected: list[dict[str, str]] | None = None

    @property
    def is_preference(self) -> bool:
        """Whether this is a prompt with a chosen and a rejected answer (format: preference)."""
        return self.chosen is not None and self.rejected is not None


ANSWERS = ("chosen", "rejected")
"""A preference pair's answers, in the order its sequences are counted, rendered and shown."""


def pair_sequences(example: Example) -> list[tuple[str, Example]]:
    """The sequences a preference pair trains as, labelled: its prompt followed by each answer, as
    one conversation whose prompt turns are never trained (the preference trainer scores the
    answer's tokens only). Rendering them with the chat template is what the token count and
    `tuneform preview` both do, so they agree on what a pair's sequences are."""
    prompt = example.messages or []
    answers = (example.chosen or [], example.rejected or [])
    return [
        (label, Example(example.source, example.row, messages=prompt + list(answer), prompt_turns=len(prompt)))
        for label, answer in zip(ANSWERS, answers)
    ]


@dataclass(frozen=True)
class BadRow:
    """A row left out of training, and what to change so it is not."""

    source: str
    row: int
    field: str | None
    problem: str
    fix: str
    unit: str = "row"  # "line" for JSONL, where the row number is the file's line

    def __str__(self) -> str:
        where = f"{self.source} {self.unit} {self.row}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.problem}: {self.fix}"


@dataclass
class LoadedData:
    """Examples ready to tokenise, split into train and eval, plus the rows that were dropped."""

    train: list[Example]
    eval: list[Example]
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_read: int = 0


class RowProblem(TuneformError):
    """Raised while converting one row: the job turns it into a BadRow, the data check into a finding."""

    fix: str  # a row problem always says what to change

    def __init__(self, field: str | None, problem: str, fix: str) -> None:
        super().__init__(problem, fix=fix)
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Row:
    """One row of a file as read, before it is checked against the run's format."""

    number: int  # the file's line (JSONL) or 1-based data row (JSON array, CSV, Parquet)
    record: dict[str, Any] | None  # None when the row could not be parsed; then `error` says why
    error: str | None = None
    raw: str = ""  # the line as written, for JSONL (samples and duplicate hashing of bad rows)


class UnreadableFile(TuneformError):
    """A whole file cannot be read as rows; the message says why (without the file's name)."""


# ---------------------------------------------------------------------------------------------
# Loading a run's data


def load_data(spec: RunSpec, repo_root: Path) -> LoadedData:
    """Read, check, sample, shuffle and split the run's data; raise DataError when it is unusable."""
    seed = spec.training.seed
    bad: list[BadRow] = []
    rows_read = 0

    def read(sources: list[Source]) -> list[Example]:
        nonlocal rows_read
        examples: list[Example] = []
        for src in sources:
            got, dropped, count = _load_source(src, repo_root, seed)
            examples.extend(got)
            bad.extend(dropped)
            rows_read += count
        return examples

    train = read(list(spec.data.train))
    held_out = read(list(spec.data.eval))

    check_bad_rows(bad, rows_read, spec.data.max_bad_rows)
    if not train:
        raise DataError(NO_TRAINING_ROWS)

    random.Random(seed).shuffle(train)
    if spec.data.eval:
        return LoadedData(train, held_out, bad, rows_read)
    n_eval = eval_count(len(train), spec.data.eval_split or 0.0)
    return LoadedData(train[n_eval:], train[:n_eval], bad, rows_read)


def eval_count(n: int, fraction: float) -> int:
    """Rows held out: the fraction rounded, at least one, and never the whole training set."""
    if n < 2 or fraction <= 0:
        return 0
    return min(max(1, round(n * fraction)), n - 1)


def source_label(src: Source) -> str:
    """How a source is named in messages: its repository path, or hub:owner/name."""
    return src.path if isinstance(src, LocalSource) else f"hub:{src.dataset}"


def _load_source(src: Source, repo_root: Path, seed: int) -> tuple[list[Example], list[BadRow], int]:
    label = source_label(src)
    if isinstance(src, LocalSource):
        unit, rows = _read_local(repo_root, src.path)
    else:
        unit, rows = "row", _read_hub(src)
    examples, bad = convert_rows(src, label, unit, rows)
    return sample_examples(examples, src.max_samples, seed), bad, len(rows)


def convert_rows(src: Source, label: str, unit: str, rows: list[Row]) -> tuple[list[Example], list[BadRow]]:
    """Rows through the format's converter: the examples kept and the rows dropped, with why.

    The one place rows become examples: the job, the plan's token count and the data check all
    call it, so they keep and drop the same rows. Raises DataError when a required column is in
    no row (a naming problem, said once, rather than every row reported bad).
    """
    _check_columns(src, label, rows)
    convert = CONVERTERS[src.format]
    examples: list[Example] = []
    bad: list[BadRow] = []
    for row in rows:
        if row.record is None:
            bad.append(BadRow(label, row.number, None, row.error or "unreadable", _parse_fix(unit), unit))
            continue
        try:
            examples.append(convert(row.record, src.columns, label, row.number))
        except RowProblem as problem:
            bad.append(BadRow(label, row.number, problem.field, problem.problem, problem.fix, unit))
    return examples, bad


def sample_examples(examples: list[Example], max_samples: int | None, seed: int) -> list[Example]:
    """The rows a source's `max_samples` keeps: a seeded sample, in file order."""
    if max_samples is None or len(examples) <= max_samples:
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), max_samples))
    return [examples[i] for i in keep]


def check_bad_rows(bad: list[BadRow], rows_read: int, max_bad_rows: float) -> None:
    """Raise DataError when more rows are malformed than data.max_bad_rows allows, listing the first."""
    if not bad or len(bad) <= max_bad_rows * rows_read:
        return
    shown = "\n".join(f"  {row}" for row in bad[:SHOWN_BAD_ROWS])
    more = f"\n  ... and {len(bad) - SHOWN_BAD_ROWS} more" if len(bad) > SHOWN_BAD_ROWS else ""
    raise DataError(
        f"{len(bad)} of {rows_read} rows are malformed ({len(bad) / rows_read:.1%}), more than "
        f"data.max_bad_rows ({max_bad_rows:.1%}):\n{shown}{more}\n"
        "Fix these rows, or raise data.max_bad_rows to drop them."
    )


NO_TRAINING_ROWS = "the training sources hold no usable rows: check data.train"


def _parse_fix(unit: str) -> str:
    if unit == "line":
        return "each line of a JSONL file must be one JSON object"
    return "each row must be an object with the format's fields"


# ---------------------------------------------------------------------------------------------
# Reading files and Hub datasets into rows


def _read_local(repo_root: Path, rel: str) -> tuple[str, list[Row]]:
    """Rows of a repository file, numbered as the file's reader would see them."""
    path = repo_root / rel
    if not path.is_file():
        raise DataError(f"{rel}: file not found (data paths are relative to the repository root, {repo_root})")
    return parse_source(path.read_bytes(), rel)


def parse_source(data: bytes, rel: str) -> tuple[str, list[Row]]:
    """parse_rows, with a file that cannot be read as rows raised as the job's DataError."""
    try:
        return parse_rows(data, rel)
    except UnreadableFile as exc:
        raise DataError(f"{rel}: {exc}") from None


RowUnit = Literal["line", "row"]
"""How a file's rows are numbered in messages: JSON Lines by line, the other formats by row."""


def parse_rows(data: bytes, rel: str) -> tuple[RowUnit, list[Row]]:
    """Rows of a data file's bytes and how they are numbered ("line" or "row").

    The one reader of training files: the job and the plan's data check both use it, so a row
    number in a plan comment is the row the job will report. Raises UnreadableFile.
    """
    if is_lfs_pointer(data[:100]):
        raise UnreadableFile("the file is a Git LFS pointer, not the data: check out with LFS (actions/checkout with lfs: true)")
    suffix = Path(rel).suffix.lower()
    text = jsonsafe.decode_text(data) if suffix in (".jsonl", ".json", ".csv") else ""
    if suffix == ".jsonl":
        return "line", _jsonl_rows(text)
    if suffix == ".json":
        try:
            value = jsonsafe.loads(text)
        except jsonsafe.JsonError as exc:
            first = next((line for line in text.splitlines() if line.strip()), "")
            if exc.column is None or not _is_json(first):  # too deep or a huge number: no row can be read
                where = f" at line {exc.line}, column {exc.column}" if exc.column else ""
                raise UnreadableFile(f"not valid JSON ({exc.message}{where})" if where else f"not valid JSON: {exc}") from None
            return "line", _jsonl_rows(text)  # JSON Lines named .json (common on the Hub)
        if not isinstance(value, list):
            raise UnreadableFile(f"the JSON file holds {_kind(value)}: it must hold a list of row objects (or use JSON Lines, .jsonl)")
        return "row", [_as_row(number, item) for number, item in enumerate(value, start=1)]
    if suffix == ".csv":
        return "row", _csv_rows(text)
    if suffix == ".parquet":
        return "row", _parquet_rows(data)
    raise UnreadableFile(f"unknown file type '{suffix}': use one of {', '.join(SUFFIXES)}")


def _csv_rows(text: str) -> list[Row]:
    """Rows of a CSV file under its header; a file the csv module gives up on is unreadable,
    with the line where it stopped (a field over its size limit, a NUL byte, broken quoting)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames:
            raise UnreadableFile("the CSV file has no header row: its first line must name the columns")
        # Cells past the header's width land under the key None; they are not a column anyone named.
        return [Row(number, {k: v for k, v in record.items() if k is not None}) for number, record in enumerate(reader, start=1)]
    except csv.Error as exc:
        where = f"CSV line {reader.line_num + 1}"  # line_num counts the lines read before the failing one
        if "field limit" in str(exc):
            limit = csv.field_size_limit()
            raise UnreadableFile(
                f"{where}: a field is longer than {limit:,} characters, csv's limit: use JSON Lines (.jsonl) for long texts"
            ) from None
        raise UnreadableFile(f"{where}: {exc}: quote fields that hold commas, quotes or line breaks") from None


def _jsonl_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.isspace():
            continue  # blank lines (a trailing newline, spacing) are not rows, but count for numbering
        try:
            value = jsonsafe.loads(line)
        except jsonsafe.JsonError as exc:
            rows.append(Row(number, None, _json_problem(exc), line))
            continue
        row = _as_row(number, value)
        rows.append(Row(row.number, row.record, row.error, line))
    return rows


def _is_json(text: str) -> bool:
    try:
        jsonsafe.loads(text)
    except jsonsafe.JsonError:
        return False
    return True


def _json_problem(exc: jsonsafe.JsonError) -> str:
    """A JSON failure as a row's problem: the parser's position, or what to change."""
    return f"not valid JSON ({exc.message} at column {exc.column})" if exc.column else f"not valid JSON: {exc}"


def _parquet_rows(data: bytes) -> list[Row]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UnreadableFile("pyarrow is not installed here, so Parquet cannot be read (pip install pyarrow)") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise UnreadableFile(f"cannot read it as Parquet ({exc})") from None
    return [Row(number, record) for number, record in enumerate(table.to_pylist(), start=1)]


def _read_hub(src: HubSource) -> list[Row]:
    """A Hub dataset split, through `datasets`; any failure to get it becomes one clear error."""
    import datasets

    try:
        ds = datasets.load_dataset(src.dataset, name=src.name, revision=src.revision, split=src.split)
    except Exception as exc:  # not found, offline, gated, bad split or config: all mean "cannot read it"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        config = f", name {src.name}" if src.name else ""
        raise DataError(
            f"hub:{src.dataset}: cannot load the dataset (revision {src.revision}{config}, split {src.split}): {detail}. "
            "Check the id, name and split, that the machine can reach the Hub, and HF_TOKEN for a private or gated dataset."
        ) from exc
    return [_as_row(number, record) for number, record in enumerate(ds, start=1)]


def _as_row(number: int, value: Any) -> Row:
    if isinstance(value, dict):
        return Row(number, value)
    return Row(number, None, f"a row must be a JSON object, not {_kind(value)}")


def _check_columns(src: Source, label: str, rows: list[Row]) -> None:
    """A required column no row has is a naming problem, not a thousand bad rows: say which rename fixes it."""
    problem = missing_column(src, [row.record for row in rows if row.record is not None])
    if problem:
        raise DataError(f"{label}: {problem}")


def missing_column(src: Source, records: list[dict[str, Any]]) -> str | None:
    """The job's message for a required column that no row has, with the rename that fixes it.

    A ShareGPT file (`conversations` of {from, value} turns) is not guessed silently: the run
    names the column, and the message says its turns are then converted (_message).
    """
    if not records:
        return None
    present: dict[str, Any] = {}
    for record in records:
        for key, value in record.items():
            present.setdefault(key, value)
    for name in REQUIRED_FIELDS[src.format]:
        column = src.columns.get(name, name)
        if column in present:
            continue
        found = ", ".join(sorted(present)) or "none"
        guess = _guess_column(name, present, set(src.columns.values()))
        sharegpt = ""
        if guess in present and _is_sharegpt(present[guess]):
            sharegpt = " (its ShareGPT turns are converted: {from, value} read as {role, content}, human as user, gpt as assistant)"
        return (
            f"no column '{column}' for the {name} field of format {src.format} (columns found: {found}). "
            f"Name the column in the run file: columns: {{{name}: {guess}}}{sharegpt}"
        )
    return None


def _is_sharegpt(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "from" in value[0] and "role" not in value[0]


def _guess_column(name: str, present: dict[str, Any], taken: set[str]) -> str:
    free = [column for column in present if column not in taken and column not in CANONICAL_NAMES]
    if name == "messages":
        lists = [column for column in free if isinstance(present[column], list)]
        if lists:
            return lists[0]
    close = difflib.get_close_matches(name, free, n=1, cutoff=0.5)
    if close:
        return close[0]
    return free[0] if len(free) == 1 else "<column>"


# ---------------------------------------------------------------------------------------------
# Rows to canonical examples, one converter per format


def _messages_example(record: dict[str, Any], columns: dict[str, str], label: str, number: int) -> Example:
    column = columns.get("messages", "messages")
    messages = _conversation(_field(record, column, "messages"), column, need_assistant=True)
    return Example(label, number, messages=messages)


def _prompt_completion_example(record: dict[str, Any], columns: dict[str, str], label: str, number: int) -> Example:
    prompt_column = columns.get("prompt", "prompt")
    completion_column = columns.get("completion", "completion")
    prompt = _field(record, prompt_column, "prompt")
    completion = _field(record, completion_column, "completion")
    if isinstance(prompt, str) and not _parsed_list(prompt):
        prompt_messages = [{"role": "user", "content": _text(prompt, prompt_column)}]
    else:
        prompt_messages = _conversation(prompt, prompt_column, need_assistant=False)
    if isinstance(completion, str) and not _parsed_list(completion):
        completion_messages = [{"role": "assistant", "content": _text(completion, completion_column)}]
    else:
        completion_messages = _conversation(completion, completion_column, need_assistant=True)
    return Example(label, number, messages=prompt_messages + completion_messages, prompt_turns=len(prompt_messages))


def _preference_example(record: dict[str, Any], columns: dict[str, str], label: str, number: int) -> Example:
    """A prompt (text or turns) and two answers to it (text or assistant turns)."""
    prompt_column = columns.get("prompt", "prompt")
    prompt = _field(record, prompt_column, "prompt")
    if isinstance(prompt, str) and not _parsed_list(prompt):
        prompt_messages = [{"role": "user", "content": _text(prompt, prompt_column)}]
    else:
        prompt_messages = _conversation(prompt, prompt_column, need_assistant=False)
    answers = [_answer(record, columns.get(name, name), name) for name in ("chosen", "rejected")]
    return Example(label, number, messages=prompt_messages, prompt_turns=len(prompt_messages), chosen=answers[0], rejected=answers[1])


def _answer(record: dict[str, Any], column: str, name: str) -> list[dict[str, str]]:
    """One answer of a preference pair: a string is one assistant turn; a list must end with one."""
    value = _field(record, column, name)
    if isinstance(value, str) and not _parsed_list(value):
        return [{"role": "assistant", "content": _text(value, column)}]
    turns = _conversation(value, column, need_assistant=True)
    if turns[-1]["role"] != "assistant":
        raise RowProblem(column, "does not end with an assistant message", "end the answer with the assistant's reply")
    return turns


def _alpaca_example(record: dict[str, Any], columns: dict[str, str], label: str, number: int) -> Example:
    instruction_column = columns.get("instruction", "instruction")
    input_column = columns.get("input", "input")
    output_column = columns.get("output", "output")
    instruction = _text(_field(record, instruction_column, "instruction"), instruction_column)
    extra = record.get(input_column)
    if extra is not None and not isinstance(extra, str):
        raise RowProblem(input_column, f"must be a string, not {_kind(extra)}", "give the input as text, or leave it empty")
    output = _text(_field(record, output_column, "output"), output_column)
    # The common Alpaca layout: the input follows the instruction after a blank line.
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return Example(label, number, messages=[{"role": "user", "content": user}, {"role": "assistant", "content": output}])


def _text_example(record: dict[str, Any], columns: dict[str, str], label: str, number: int) -> Example:
    column = columns.get("text", "text")
    return Example(label, number, text=_text(_field(record, column, "text"), column))


CONVERTERS = {
    "messages": _messages_example,
    "prompt_completion": _prompt_completion_example,
    "alpaca": _alpaca_example,
    "text": _text_example,
    "preference": _preference_example,
}


def _field(record: dict[str, Any], column: str, name: str) -> Any:
    value = record.get(column)
    if value is None:
        rename = "" if column != name else f" (or name its column with columns: {{{name}: <column>}})"
        raise RowProblem(column, "missing", f"give every row a '{column}' value{rename}")
    return value


def _text(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise RowProblem(column, f"must be a string, not {_kind(value)}", "give it as text")
    if not value.strip():
        raise RowProblem(column, "is empty", "give it some text, or remove the row")
    return value


def _parsed_list(value: str) -> list[Any] | None:
    """A CSV cell holding a JSON list (a conversation written as text), parsed; else None."""
    stripped = value.strip()
    if not stripped.startswith("["):
        return None
    try:
        parsed = jsonsafe.loads(stripped)
    except jsonsafe.JsonError:
        return None
    return parsed if isinstance(parsed, list) else None


def _conversation(value: Any, column: str, *, need_assistant: bool) -> list[dict[str, str]]:
    """A list of OpenAI/ChatML {role, content} or ShareGPT {from, value} turns, as {role, content}."""
    if isinstance(value, str):
        parsed = _parsed_list(value)
        if parsed is None:
            raise RowProblem(column, "is text, not a list of messages", 'give a JSON list like [{"role": "user", "content": "..."}]')
        value = parsed
    if not isinstance(value, list):
        raise RowProblem(column, f"must be a list of messages, not {_kind(value)}", 'give a list like [{"role": "user", "content": "..."}]')
    if not value:
        raise RowProblem(column, "is an empty list", "give at least a user and an assistant message")
    messages = [_message(item, f"{column}[{i}]") for i, item in enumerate(value)]
    if need_assistant:
        assistant = [m for m in messages if m["role"] == "assistant"]
        if not assistant:
            raise RowProblem(column, "has no assistant message, so nothing would be trained", "add the assistant's reply")
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and not m["content"].strip():
            raise RowProblem(f"{column}[{i}].content", "the assistant's content is empty", "give the reply text, or remove the row")
    return messages


def _message(item: Any, where: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise RowProblem(where, f"must be an object with role and content, not {_kind(item)}", 'write {"role": "...", "content": "..."}')
    role: Any
    if "from" in item and "role" not in item:  # ShareGPT
        role, content_key = _sharegpt_role(item.get("from"), where), "value"
    else:
        role, content_key = item.get("role"), "content"
        if not isinstance(role, str) or role not in ROLES:
            raise RowProblem(f"{where}.role", _role_problem(role), f"use one of {', '.join(ROLES)}")
    if content_key not in item:
        raise RowProblem(f"{where}.{content_key}", "missing", f"give every message a {content_key}")
    return {"role": role, "content": _content(item[content_key], f"{where}.{content_key}")}


def _sharegpt_role(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in SHAREGPT_ROLES:
        raise RowProblem(f"{where}.from", _role_problem(value), f"use one of {', '.join(SHAREGPT_ROLES)} (ShareGPT)")
    return SHAREGPT_ROLES[value]


def _role_problem(value: Any) -> str:
    return "missing" if value is None else f"'{value}' is not a known role"


def _content(value: Any, where: str) -> str:
    """Text content; OpenAI's list of text parts is joined, other parts (images, audio) are not trainable here."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise RowProblem(where, f"must be a string, not {_kind(value)}", "give the message content as text")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
