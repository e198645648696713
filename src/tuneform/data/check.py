"""Data quality of a run: catch bad training data in the plan, before it costs GPU time.

For each run, its local files are read the way the job reads them, and so is each Hub dataset
when the Hub answers (below), and the report gives:

- rows, tokens (the model's tokenizer.json when it is already on this machine, else bytes/4,
  and the report says which), the length distribution and how many rows exceed max_seq_length;
- rows the job will drop, with the job's own reason: data/reader.py's converters decide, so this check
  cannot disagree with training. Categorised as unparsable, non_text, missing_assistant or
  empty_turns, and a `max_bad_rows` failure when they are more than data.max_bad_rows allows,
  because the job would then stop after the GPU was already paid for;
- rows the job keeps but that look wrong: empty turns, roles out of order, encoding damage
  (control characters, U+FFFD, mojibake such as 'Ã©');
- duplicates and eval leakage, by hashing normalised text (below);
- the label distribution when the answers are a small set (a classification-like task);
- for preference pairs (format: preference): chosen identical to rejected up to whitespace,
  empty answers (rows the job drops), duplicated pairs, held-out pairs whose prompt and chosen
  answer are a trained pair's (pairs that share only a prompt are common and fine), suite prompts
  as for any row, and length bias: the chosen answer longer than the rejected one in more pairs
  than the policy allows. Lengths and truncation count a pair's two sequences separately.
- against the git base, what changed: rows added and removed by content, duplicates and leakage
  then and now, so a PR comment can say "+1,204 rows, 3% duplicates (was 0.4%)".

Near duplicates are rows that are equal once NFKC-normalised, case-folded, stripped of
punctuation (Unicode category P) and with whitespace collapsed. That is one hash per row: linear,
never a false positive a reviewer has to second-guess, and a 100,000-row file is checked in a
few seconds on one core (bench/data_check.py). MinHash over shingles would also catch
paraphrases, but costs tens of microseconds per row in Python and answers with probabilities;
a gate in a pull request is better served by findings that are always true. Leakage uses the
same normalisation on prompts: the user turns of a row (for `text` rows, the whole text), joined,
and each user turn of a multi-turn row on its own.

Each finding is judged by a policy: DATA_RULE_DEFAULTS (runfile/spec.py), then
[tool.tuneform.data_policy], then the run's data.policy. A finding whose share of the rows
exceeds `max` gets the rule's level (warn or fail); at or under it, `info`. A run may tighten a
rule that the repository sets to fail, never relax it: plan reads settings from the base branch
so that a pull request cannot lower its own bar, and a run file is part of the pull request.
Findings that predict a job failure (an unreadable source, too many bad rows) are always `fail`.

Hub datasets are checked when the huggingface_hub client is not offline and the dataset answers:
the data files of the split (and config) are picked from the repository's files by the Hub's usual
layouts (`data/train-00000-of-00001.parquet`, `train.jsonl`, `<config>/train-*.parquet`), downloaded
through the client (at most HUB_MAX_BYTES in all) and read with the same parse_rows as local files;
rows are named `hub:owner/name/<file>` and their line or row. Never through `datasets`: plan stays
light. Rows of a private (or gated) dataset are counted and numbered, never quoted. A dataset that
cannot be checked (offline, not found, gated without access, no matching files, too large) is
listed with the reason.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import unicodedata
from collections import Counter as Multiset
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from tuneform.core.errors import EXIT_FAIL, EXIT_OK, TuneformError
from tuneform.core.hub import hub_failures
from tuneform.core.markup import html_text, md_code, md_text
from tuneform.data.reader import (
    ANSWERS,
    CONVERTERS,
    SUFFIXES,
    Example,
    Row,
    RowProblem,
    UnreadableFile,
    eval_count,
    missing_column,
    parse_rows,
)
from tuneform.data.tokens import (
    Counter,
    local_tokenizer,
    token_counter,
)
from tuneform.evals.suite import SuiteError, read_suite_once
from tuneform.runfile.settings import PYPROJECT, Settings, SettingsError, parse_settings
from tuneform.runfile.spec import (
    DATA_RULE_DEFAULTS,
    PREFERENCE_METHODS,
    DataPolicy,
    HubSource,
    LocalSource,
    RunSpec,
    load_run_text,
)
from tuneform.runfile.trees import Tree, TreeError, WorkTree, argument_path

Level = Literal["fail", "warn", "info"]
PolicyLevel = Literal["off", "warn", "fail"]

DATA_SCHEMA_VERSION = 1
SAMPLE_CHARS = 160  # a sample is a glimpse of the row, not the row
MAX_ROWS = 100  # rows listed per finding in JSON; `count` has the total
SHOWN_ROWS = 5  # rows shown, with samples, per finding in text and markdown
NORM_CACHE = 4096  # normalised texts remembered per file (the repeated ones come early)
# Classification-like: at least this many rows, and the LABEL_TOP most common answers cover
# LABEL_COVER of them (with fewer rows any answers "cover" the set).
LABEL_MIN_ROWS = 50
LABEL_TOP = 20
LABEL_COVER = 0.9
# Actions of a plan that train, hence whose data is checked.
CHECKED_ACTIONS = ("create", "update")
# Hub datasets: the most plan downloads for one source's split, and what it says when offline.
MB = 1024 * 1024
HUB_MAX_BYTES = 200 * MB
HUB_OFFLINE_NOTE = "Hub dataset: not checked offline"

# Control characters other than tab and newlines, C1 controls, U+FFFD, and the marks UTF-8 leaves
# when decoded as Latin-1 or cp1252: 'Ã' or 'Â' before a cp1252 high character ('Ã©' for 'é',
# 'Â ' for a no-break space), and 'â€' (the start of '’', '“', '—' and friends).
_CP1252_HIGH = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_ODD = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]|[ÃÂ][{_CP1252_HIGH}]|â€")
# What a sample shows instead of invisible characters.
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))}


@cache
def _punctuation() -> dict[int, None]:
    """str.translate table deleting Unicode punctuation (category P) of the BMP; built once, on use."""
    return {c: None for c in range(0x10000) if unicodedata.category(chr(c))[0] == "P"}


def normalize_text(text: str) -> str:
    """The text that duplicates and leakage compare: NFKC, case-folded, no punctuation, single spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().translate(_punctuation()).split())


# ---------------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True)
class RowRef:
    """Where a row is: JSONL rows by their 1-based line (as an editor shows it), others by 1-based row."""

    source: str
    row: int
    unit: Literal["line", "row"] = "line"

    def __str__(self) -> str:
        return f"{self.source}:{self.row}" if self.unit == "line" else f"{self.source} row {self.row}"

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "row": self.row, "unit": self.unit}


@dataclass(frozen=True)
class Hit:
    """One affected row: where, what is wrong with it, and a glimpse of it (shown only when quoting)."""

    ref: RowRef
    detail: str
    sample: str
    quoted: bool = True  # False for rows of a private dataset: never shown, whatever the caller asks

    def as_json(self, quote: bool) -> dict[str, Any]:
        return {**self.ref.as_json(), "detail": self.detail, "sample": self.sample if quote and self.quoted else None}


@dataclass(frozen=True)
class Finding:
    """One rule's verdict: how many rows (of `total`) it concerns, and the first of them."""

    rule: str
    level: Level
    message: str
    count: int
    total: int
    hits: tuple[Hit, ...]
    eval_ids: tuple[str, ...] = ()  # leakage: the eval rows whose prompts are in the training data

    @property
    def rate(self) -> float:
        return self.count / self.total if self.total else 0.0

    def as_json(self, quote: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "level": self.level,
            "message": self.message,
            "count": self.count,
            "total": self.total,
            "rate": round(self.rate, 6),
            "rows": [hit.as_json(quote) for hit in self.hits],
            "sample": self.hits[0].sample if quote and self.hits and self.hits[0].quoted else None,
        }
        if self.rule == "leakage":
            out["eval_ids"] = list(self.eval_ids[:MAX_ROWS])
        return out


@dataclass(frozen=True)
class Limit:
    """A rule's threshold after the policy layers are applied."""

    max: float
    level: PolicyLevel


def resolve_policy(repository: DataPolicy, run: DataPolicy) -> tuple[dict[str, Limit], list[str]]:
    """Each rule's limit: defaults, then the repository's, then the run's; and notes on what a
    run asked for but may not have (relaxing a rule the repository sets to fail)."""
    limits: dict[str, Limit] = {}
    notes: list[str] = []
    for rule, (most, level) in DATA_RULE_DEFAULTS.items():
        repo_rule, run_rule = getattr(repository, rule), getattr(run, rule)
        if repo_rule is not None:
            most = most if repo_rule.max is None else repo_rule.max
            level = repo_rule.level or level
        if run_rule is not None:
            wanted_max = most if run_rule.max is None else run_rule.max
            wanted_level = run_rule.level or level
            if level == "fail":
                if wanted_level != "fail" or wanted_max > most:
                    notes.append(
                        f"data.policy.{rule}: the repository sets {rule} to fail above {_pct(most)}; a run may tighten that, not relax it"
                    )
                most = min(most, wanted_max)
            else:
                most, level = wanted_max, wanted_level
        limits[rule] = Limit(most, level)
    return limits, notes


def _judge(
    limits: dict[str, Limit], rule: str, count: int, total: int, message: str, hits: list[Hit], eval_ids: Sequence[str] = ()
) -> Finding | None:
    """A finding at the policy's level when over the limit, `info` when not, None when nothing or off."""
    limit = limits[rule]
    if count == 0 or limit.level == "off":
        return None
    over = total > 0 and count / total > limit.max
    level: Level = limit.level if over else "info"
    if over and limit.max > 0:
        message += f", over the {_pct(limit.max)} allowed"
    return Finding(rule, level, message, count, total, tuple(hits[:MAX_ROWS]), tuple(eval_ids))


# ---------------------------------------------------------------------------------------------
# Reading one source the way the job does


@dataclass(slots=True)
class _Kept:
    """What the checks need from a row the job keeps: hashes and keys, and its turns for samples."""

    number: int
    content: int  # hash of the turns as written
    norm: int  # hash of the normalised turns
    prompts: tuple[str, ...]  # normalised prompt keys: user turns joined, then each user turn
    label: str | None  # the final answer, stripped
    turns: tuple[tuple[str, str], ...]  # (role, content); role "text" for a text row; "chosen"/"rejected" for a pair's answers
    tokens: int = 0
    file: int = 0  # index into its scan's `files`
    sequences: tuple[int, ...] = ()  # tokens of each sequence: one, or a pair's prompt + chosen and prompt + rejected
    pair: str | None = None  # a preference pair's normalised prompt and chosen answer: what leaks into held-out pairs
    answer_chars: tuple[int, int] | None = None  # a pair's chosen and rejected answers, in characters
    prompt_tokens: int = 0  # a pair's prompt: when it fills max_seq_length the trainer drops the pair

    @property
    def prompt(self) -> str:
        """The user turns as written (exact versus near leakage)."""
        return "\n".join(c for r, c in self.turns if r in ("user", "text")).strip()

    @property
    def held_out_key(self) -> str:
        """What an eval split or eval source row is matched on: its normalised prompt, or a
        preference pair's prompt and chosen answer (pairs that share a prompt are not a leak)."""
        return self.pair if self.pair is not None else self.prompts[0]

    @property
    def held_out_raw(self) -> str:
        """The same as written (exact versus near leakage)."""
        if self.pair is None:
            return self.prompt
        return self.prompt + "\0" + "\n".join(c for r, c in self.turns if r == "chosen").strip()

    @property
    def preview(self) -> str:
        if self.turns[0][0] == "text":
            return self.turns[0][1][: SAMPLE_CHARS * 2]
        return " | ".join(f"{r}: {c[:SAMPLE_CHARS]}" for r, c in self.turns)


@dataclass
class _Scan:
    """One source (a local file, or the files of a Hub split): its rows the job keeps, and the rows
    each rule flagged (first MAX_ROWS)."""

    path: str
    unit: Literal["line", "row"] = "line"
    files: list[tuple[str, Literal["line", "row"]]] = field(default_factory=list)  # (name in row refs, unit)
    quote: bool = True  # False: rows of a private dataset, never quoted
    exact: bool = True  # False: the rows are not exactly those the job draws (a sliced Hub split)
    rows: int = 0  # rows read, kept or dropped
    kept: list[_Kept] = field(default_factory=list)
    contents: Multiset[int] = field(default_factory=Multiset)  # every row's content hash, for the diff
    counts: Multiset[str] = field(default_factory=Multiset)  # rule -> rows flagged
    hits: dict[str, list[Hit]] = field(default_factory=dict)
    dropped: list[Hit] = field(default_factory=list)  # rows the job drops (first MAX_ROWS)
    dropped_count: int = 0
    error: str | None = None  # the job cannot read the file at all

    def ref(self, kept: _Kept) -> RowRef:
        name, unit = self.files[kept.file] if self.files else (self.path, self.unit)
        return RowRef(name, kept.number, unit)

    def flag(self, rule: str, hit: Hit) -> None:
        self.counts[rule] += 1
        shown = self.hits.setdefault(rule, [])
        if len(shown) < MAX_ROWS:
            shown.append(hit)

    def drop(self, rule: str, hit: Hit) -> None:
        self.flag(rule, hit)
        self.dropped_count += 1
        if len(self.dropped) < MAX_ROWS:
            self.dropped.append(hit)


def _visible(text: str, limit: int = SAMPLE_CHARS) -> str:
    """A one-line sample: control characters shown as escapes, whitespace collapsed, clipped."""
    text = " ".join(text[: limit * 2].translate(_VISIBLE).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rejected_rule(problem: RowProblem, src: LocalSource | HubSource) -> str:
    """Which rule a row the job refuses breaks, from the job's own reason."""
    text = problem.problem
    answer_columns = {src.columns.get(name, name) for name in ("completion", "output", *ANSWERS)}
    if text.startswith("must be a string"):
        return "non_text"
    if "no assistant message" in text or text == "is an empty list" or (text == "missing" and problem.field in answer_columns):
        return "missing_assistant"
    if text == "is empty" or "content is empty" in text:
        return "empty_turns"
    return "unparsable"


def _role_order(roles: list[str]) -> str | None:
    """The first way the turns are out of order, or None."""
    for i, role in enumerate(roles):
        if role == "system" and i > 0:
            return f"turn {i + 1} is a system turn: the system prompt goes first"
    previous = "system"
    for i, role in enumerate(roles):
        if previous == "system" and role == "assistant":
            return f"turn {i + 1}: the assistant speaks before the user"
        if role == previous and role in ("user", "assistant"):
            return f"turns {i}-{i + 1}: two {role} turns in a row"
        if role == "tool" and previous not in ("assistant", "tool"):
            return f"turn {i + 1}: a tool turn that does not follow an assistant turn"
        previous = role
    if roles and roles[-1] == "user":
        return f"turn {len(roles)}: the last turn is a user turn, which gets no answer"
    return None


def _oddity(match: re.Match[str]) -> str:
    found = match.group()
    if found == "\ufffd":
        return "U+FFFD replacement character (bytes that were not UTF-8)"
    if len(found) == 1:
        return f"control character U+{ord(found):04X}"
    return f"mojibake '{found}' (UTF-8 decoded as Latin-1 or cp1252)"


def _context(text: str, start: int) -> str:
    """The text around an oddity, so the sample shows it rather than the row's opening words."""
    begin = max(0, start - 40)
    return ("…" if begin else "") + _visible(text[begin:], SAMPLE_CHARS)


def _scan(data: bytes, src: LocalSource, counter: Counter) -> _Scan:
    """Read one local file row by row, as the job will, and keep what the checks need."""
    scan = _Scan(src.path)
    try:
        scan.unit, records = parse_rows(data, src.path)
    except UnreadableFile as exc:
        scan.error = str(exc)
        return scan
    return _scan_rows(scan, [(src.path, scan.unit, records)], src, counter)


def _scan_rows(
    scan: _Scan, files: Sequence[tuple[str, Literal["line", "row"], list[Row]]], src: LocalSource | HubSource, counter: Counter
) -> _Scan:
    """The rows of one source's files (name in row refs, unit, rows), through the job's converters."""
    convert = CONVERTERS[src.format]
    examples: list[Example] = []  # the kept rows' examples, counted as the plan's estimate counts them
    norms_seen: dict[str, str] = {}  # system prompts and labels repeat on every row: normalise them once
    records = [row for _, _, rows in files for row in rows]
    scan.files = [(name, unit) for name, unit, _ in files]

    def normal(text: str) -> str:
        found = norms_seen.get(text)
        if found is None:
            found = normalize_text(text)
            if len(norms_seen) < NORM_CACHE:
                norms_seen[text] = found
        return found

    def hit(number: int, detail: str, sample: str) -> Hit:
        """A hit on a row of the file being read (`name`, `unit` of the loop below); no text when private."""
        return Hit(RowRef(name, number, unit), detail, sample if scan.quote else "", scan.quote)

    for file, (name, unit, rows) in enumerate(files):  # noqa: B007 (hit() above reads name and unit)
        for row in rows:
            _scan_row(scan, row, file, src, convert, hit, normal, examples)
    for kept, sequences in zip(scan.kept, counter.sequences(examples)):
        kept.tokens, kept.sequences = sum(sequences), sequences
    if src.format == "preference":
        for kept, prompt in zip(scan.kept, counter.prompts(examples)):
            kept.prompt_tokens = prompt
    if records and not scan.kept:
        scan.error = missing_column(src, [r.record for r in records if r.record is not None])
        if scan.error:  # the job stops on the column before it looks at any row
            scan.counts.clear()
            scan.hits.clear()
            scan.dropped.clear()
            scan.dropped_count = 0
    return scan


def _scan_row(
    scan: _Scan,
    row: Row,
    file: int,
    src: LocalSource | HubSource,
    convert: Any,
    hit: Any,
    normal: Any,
    examples: list[Example],
) -> None:
    """One row: dropped with the job's reason, or kept with its hashes, keys and the rules it breaks."""
    number, record, raw = row.number, row.record, row.raw
    scan.rows += 1
    if record is None:
        detail = row.error or "unreadable"
        scan.contents[hash(("raw", raw))] += 1
        scan.drop("unparsable", hit(number, detail, _visible(raw)))
        return
    try:
        example = convert(record, src.columns, scan.files[file][0], number)
    except RowProblem as problem:
        raw = raw or json.dumps(record, ensure_ascii=False, default=str)
        scan.contents[hash(("raw", raw))] += 1
        where = f"{problem.field}: " if problem.field else ""
        scan.drop(_rejected_rule(problem, src), hit(number, f"{where}{problem.problem}: {problem.fix}", _visible(raw)))
        return
    if example.messages is not None:
        roles = [m["role"] for m in example.messages]
        contents = [m["content"] for m in example.messages]
    else:
        roles, contents = ["text"], [example.text or ""]
    answers = [c for r, c in zip(roles, contents) if r == "assistant"]
    label = answers[-1].strip() if answers else None
    orders = [roles] if example.messages is not None else []
    if example.is_preference:  # the prompt's turns, then each answer's, labelled by answer
        pair = {"chosen": example.chosen or [], "rejected": example.rejected or []}
        orders = [roles + [m["role"] for m in pair[name]] for name in ANSWERS]
        roles = roles + [name for name in ANSWERS for _ in pair[name]]
        contents = contents + [m["content"] for name in ANSWERS for m in pair[name]]
        label = None  # two answers to compare, not a label to learn
    norms = [normal(c) for c in contents]
    users = [i for i, r in enumerate(roles) if r in ("user", "text")]
    joined = " ".join(norms[i] for i in users if norms[i])
    prompts = (joined, *(norms[i] for i in users if norms[i])) if len(users) > 1 else (joined,)
    turns = tuple(zip(roles, contents))
    kept = _Kept(number, hash(turns), hash(tuple(zip(roles, norms))), prompts, label, turns, file=file)
    if example.is_preference:
        _scan_pair(scan, kept, norms, hit)
    for i, c in enumerate(contents):
        if not c or c.isspace():
            scan.flag("empty_turns", hit(number, f"turn {i + 1} ({roles[i]}) is empty", _visible(kept.preview)))
            break
    for order in filter(None, map(_role_order, orders)):
        scan.flag("role_order", hit(number, order, _visible(kept.preview)))
        break
    for c in contents:
        odd = None if c.isascii() and c.isprintable() else _ODD.search(c)  # the fast path covers most text
        if odd:
            scan.flag("encoding", hit(number, _oddity(odd), _context(c, odd.start())))
            break
    scan.contents[kept.content] += 1
    examples.append(example)
    scan.kept.append(kept)


def _scan_pair(scan: _Scan, kept: _Kept, norms: list[str], hit: Any) -> None:
    """What only a preference pair can get wrong: two answers that say the same thing. Also keeps
    its prompt-and-chosen key (leakage into held-out pairs) and its answers' lengths (length bias)."""
    prompt = [n for (role, _), n in zip(kept.turns, norms) if role not in ANSWERS]
    chosen, rejected = ("\n".join(c for role, c in kept.turns if role == name) for name in ANSWERS)
    kept.pair = " ".join(n for n in prompt if n) + "\0" + normalize_text(chosen)
    kept.answer_chars = (len(chosen), len(rejected))
    if chosen.split() == rejected.split():
        scan.flag(
            "identical_answers",
            hit(
                kept.number,
                "chosen and rejected are the same text: write a worse rejected answer, or drop the pair",
                _visible(kept.preview),
            ),
        )


# Scans by content: (file sha256, path, source settings, tokenizer). A plan reads
# the same file at the base and in the working tree, and many runs share one file.
_SCANS: dict[tuple[Any, ...], _Scan] = {}


def _scan_source(tree: Tree, src: LocalSource, tokenizer_id: str, counter: Counter) -> _Scan:
    try:
        tree.size(src.path)  # a missing file is a TreeError that says so; sha256 would not
        key = (tree.sha256(src.path), src.path, src.model_dump_json(), tokenizer_id)
    except (TreeError, OSError) as exc:
        return _Scan(src.path, error=f"{exc} (data paths are relative to the repository root)")
    if key not in _SCANS:
        _SCANS[key] = _scan(tree.read(src.path), src, counter)
    return _SCANS[key]


def _split_name(split: str) -> str:
    """'train' of 'train[:10%]': the split whose files hold the rows."""
    return split.split("[", 1)[0].strip()


def hub_data_files(files: Sequence[str], split: str, name: str | None = None) -> list[str]:
    """The data files of a split (and config `name`) among a Hub dataset's files, by the Hub's
    usual layouts: the split as a folder (`<name>/train/0000.parquet`) or as the start of the file
    name (`data/train-00000-of-00001.parquet`, `train.jsonl`), with a suffix parse_rows reads.
    With `name`, only files under a folder of that name (config "default" may also be the root)."""
    split = split.casefold()
    start = re.compile(rf"{re.escape(split)}(?:[-._ 0-9]|$)")
    chosen: list[str] = []
    for path in sorted(files):
        parts = path.split("/")
        folders, filename = [p.casefold() for p in parts[:-1]], parts[-1].casefold()
        if Path(filename).suffix not in SUFFIXES or any(p.startswith(".") for p in parts):
            continue
        if split in folders or start.match(filename):
            chosen.append(path)
    if name is None:
        return chosen
    in_config = [path for path in chosen if name.casefold() in [p.casefold() for p in path.split("/")[:-1]]]
    return in_config if in_config or name != "default" else chosen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scan_hub(src: HubSource, tokenizer_id: str, counter: Counter) -> _Scan | str:
    """A Hub dataset's split read through huggingface_hub (never `datasets`), or why it was not."""
    from tuneform.core.hub import hub_api, hub_offline

    if hub_offline():
        return HUB_OFFLINE_NOTE
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"hub:{src.dataset}"
    split = _split_name(src.split)
    what = f"revision {src.revision}{f', name {src.name}' if src.name else ''}, split {split}"
    try:
        api = hub_api()
        info = api.dataset_info(src.dataset, revision=src.revision)
        revision = info.sha or src.revision
        files = hub_data_files(api.list_repo_files(src.dataset, repo_type="dataset", revision=revision), split, src.name)
        if not files:
            return (
                f"Hub dataset: not checked: no {', '.join(SUFFIXES)} files of {what} in the Hub's usual layouts "
                f"(data/{split}-*.parquet, {split}.jsonl, <name>/{split}-*)"
            )
        sizes = {
            entry.path: getattr(entry, "size", 0) or 0
            for entry in api.get_paths_info(src.dataset, files, repo_type="dataset", revision=revision)
        }
        total = sum(sizes.get(path, 0) for path in files)
        if total > HUB_MAX_BYTES:
            return f"Hub dataset: not checked: {len(files)} files of {what} are {total / MB:,.0f} MB, too large to check in plan (over {HUB_MAX_BYTES // MB} MB)"
        quote = not info.private and not info.gated
        key = ("hub", api.endpoint, src.dataset, revision, quote, src.model_dump_json(), tokenizer_id)
        if key in _SCANS:
            return _SCANS[key]
        parsed: list[tuple[str, Literal["line", "row"], list[Row]]] = []
        for path in files:
            local = api.hf_hub_download(src.dataset, path, repo_type="dataset", revision=revision)
            try:
                unit, rows = parse_rows(Path(local).read_bytes(), path)
            except UnreadableFile as exc:
                return f"Hub dataset: not checked: {path} cannot be read here ({exc})"
            parsed.append((f"{label}/{path}", unit, rows))
    except GatedRepoError:
        return (
            f"Hub dataset: not checked: gated, and this token has not been granted access (request it on the Hub, or set HF_TOKEN) ({what})"
        )
    except RevisionNotFoundError:
        return f"Hub dataset: not checked: revision {src.revision} not found"
    except RepositoryNotFoundError:
        return "Hub dataset: not checked: not found, or private and HF_TOKEN cannot read it"
    except hub_failures() as exc:  # unreachable, timed out, refused: plan goes on without it
        return f"Hub dataset: not checked: the Hub did not answer ({type(exc).__name__}: {_first_line(exc)})"
    scan = _Scan(label, quote=quote, exact=split == src.split.strip())
    _SCANS[key] = _scan_rows(scan, parsed, src, counter)
    return scan


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class SourceSummary:
    """One data source of the run, and whether it was checked."""

    source: str  # repository path, or hub:owner/name
    role: Literal["train", "eval"]
    format: str
    rows: int | None  # rows read (None: not checked)
    kept: int | None  # rows the job keeps
    checked: bool
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "role": self.role,
            "format": self.format,
            "rows": self.rows,
            "kept": self.kept,
            "checked": self.checked,
            "note": self.note,
        }


@dataclass(frozen=True)
class LeakSet:
    """One eval set (a suite, the eval split, or the eval sources) against the training data."""

    name: str
    kind: Literal["suite", "split", "source"]
    rows: int
    leaked: int
    ids: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"eval": self.name, "kind": self.kind, "rows": self.rows, "leaked": self.leaked, "ids": list(self.ids[:MAX_ROWS])}


@dataclass(frozen=True)
class DataDiff:
    """What changed in a run's training data between the git base and the working tree."""

    rows_then: int  # rows in the training files, kept or dropped
    rows_now: int
    added: int  # rows whose content is new (by content hash, counting repeats)
    removed: int
    duplicates_then: float
    duplicates_now: float
    leaked_then: int  # eval prompts found in the training data
    leaked_now: int
    tokens_then: int
    tokens_now: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.leaked_then != self.leaked_now or self.duplicates_then != self.duplicates_now)

    def summary(self) -> str:
        """'+1,204 rows, -3 rows, 3.0% duplicates (was 0.4%), 12 eval prompts in train (was 0)'."""
        if not self.changed:
            return "no change to the training data"
        parts = [f"+{self.added:,} rows"] + ([f"-{self.removed:,} rows"] if self.removed else [])
        parts.append(
            f"{_pct(self.duplicates_now)} duplicates"
            + (f" (was {_pct(self.duplicates_then)})" if self.duplicates_then != self.duplicates_now else "")
        )
        leak = f"{self.leaked_now} eval prompt{'s' if self.leaked_now != 1 else ''} in train"
        parts.append(leak + (f" (was {self.leaked_then})" if self.leaked_then != self.leaked_now else ""))
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": {"then": self.rows_then, "now": self.rows_now, "added": self.added, "removed": self.removed},
            "duplicates": {"then": round(self.duplicates_then, 6), "now": round(self.duplicates_now, 6)},
            "leaked_eval_prompts": {"then": self.leaked_then, "now": self.leaked_now},
            "tokens": {"then": self.tokens_then, "now": self.tokens_now},
            "summary": self.summary(),
        }


@dataclass
class DataReport:
    """The data check of one run: what its data is, what is wrong with it, and what changed."""

    run: str
    sources: list[SourceSummary]
    max_seq_length: int
    token_method: str
    rows: int = 0  # training rows the job keeps, local files only
    rows_read: int = 0  # training rows in the local files, kept or dropped
    tokens: int = 0  # their tokens as written
    tokens_trained: int = 0  # after truncation to max_seq_length
    lengths: dict[str, int] | None = None  # min, median, p95, max tokens per row
    truncated: int = 0
    duplicates: int = 0
    exact_duplicates: int = 0
    labels: list[tuple[str, int]] | None = None  # classification-like: the answers and their rows
    leakage: list[LeakSet] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    policy: dict[str, Limit] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    diff: DataDiff | None = None
    contents: Multiset[int] = field(default_factory=Multiset, repr=False)  # training rows read, by content, for a diff
    quote_labels: bool = True  # False when a training source is private: its answers are row text
    pairs: bool = False  # preference pairs: a row is a pair of sequences, lengths are per sequence

    @property
    def failed(self) -> bool:
        """A finding at level fail: the plan cannot be applied as it stands."""
        return any(f.level == "fail" for f in self.findings)

    @property
    def exit_code(self) -> int:
        """`tuneform data check`'s exit code: 1 when a finding fails, else 0."""
        return EXIT_FAIL if self.failed else EXIT_OK

    @property
    def checked(self) -> bool:
        return any(s.checked for s in self.sources)

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.rows if self.rows else 0.0

    @property
    def leaked(self) -> int:
        return sum(s.leaked for s in self.leakage)

    def finding(self, rule: str) -> Finding | None:
        """The first finding of a rule (tests and callers that gate on one rule)."""
        return next((f for f in self.findings if f.rule == rule), None)

    def summary(self) -> str:
        """One line: rows, tokens, lengths, truncation, duplicates, leakage."""
        if not self.checked:
            if any(s.note == HUB_OFFLINE_NOTE for s in self.sources):
                return "not checked offline (Hub datasets only)"
            return "not checked (Hub datasets only, none could be read: each source says why)"
        dropped = f" ({self.rows_read - self.rows:,} dropped)" if self.rows_read != self.rows else ""
        parts = [f"{self.rows:,} {'pairs' if self.pairs else 'rows'}{dropped}", f"{self.tokens:,} tokens ({self.token_method})"]
        if self.lengths:
            each = " per sequence" if self.pairs else ""
            parts.append("length {min}/{median}/{p95}/{max} (min/median/p95/max)".format(**self.lengths) + each)
        parts.append(f"{self.truncated:,} over max_seq_length {self.max_seq_length}")
        parts.append(f"{_pct(self.duplicate_rate)} duplicates")
        if self.leakage:
            parts.append(f"{self.leaked} eval prompt{'s' if self.leaked != 1 else ''} in train")
        return ", ".join(parts)

    def as_json(self, quote: bool = True) -> dict[str, Any]:
        """JSON for tools; `quote=False` leaves row text out (rows of private datasets are never quoted)."""
        return {
            "schema_version": DATA_SCHEMA_VERSION,
            "run": self.run,
            "ok": not self.failed,
            "checked": self.checked,
            "summary": self.summary(),
            "sources": [s.as_json() for s in self.sources],
            "rows": self.rows,
            "rows_read": self.rows_read,
            "tokens": self.tokens,
            "tokens_trained": self.tokens_trained,
            "tokens_counted_by": self.token_method,
            "lengths": self.lengths,
            "max_seq_length": self.max_seq_length,
            "truncated": self.truncated,
            "duplicates": {
                "rows": self.duplicates,
                "exact": self.exact_duplicates,
                "near": self.duplicates - self.exact_duplicates,
                "rate": round(self.duplicate_rate, 6),
            },
            "labels": None
            if self.labels is None
            else [{"label": label if quote and self.quote_labels else None, "rows": n} for label, n in self.labels],
            "leakage": [s.as_json() for s in self.leakage],
            "findings": [f.as_json(quote) for f in self.findings],
            "policy": {rule: {"max": limit.max, "level": limit.level} for rule, limit in self.policy.items()},
            "notes": self.notes,
            "diff": self.diff.as_json() if self.diff else None,
        }


def _pct(rate: float) -> str:
    if rate == 0:
        return "0%"
    if rate < 0.001:
        return "<0.1%"
    return f"{rate:.1%}".replace(".0%", "%")


def _rows_of(count: int, total: int) -> str:
    return f"{count:,} of {total:,} rows ({_pct(count / total if total else 0.0)})"


# The rules a row can break, and how a finding on each reads.
_ROW_RULES = {
    "unparsable": "cannot be read as rows of their format (the job drops them)",
    "non_text": "hold content that is not text (the job drops them)",
    "missing_assistant": "have no assistant turn, so nothing to learn (the job drops them)",
    "empty_turns": "have an empty or whitespace-only turn",
    "role_order": "have turns out of order",
    "encoding": "have encoding damage (control characters, U+FFFD or mojibake)",
    "identical_answers": "are preference pairs whose chosen and rejected answers are the same up to whitespace, so there is nothing to prefer",
}


def check_data(
    spec: RunSpec,
    tree: Tree,
    settings: Settings,
    *,
    base_tree: Tree | None = None,
    base_spec: RunSpec | None = None,
    run: str = "",
) -> DataReport:
    """Check a run's data in `tree`; with `base_tree`, also what changed since then.

    `base_spec` is the run as it was at the base (default: `spec`), so a run that switches data
    files is compared with the files it used to train on. `run` names the run in the output.
    """
    report = _check(spec, tree, settings, run)
    if base_tree is not None:
        base = _check(base_spec or spec, base_tree, settings, run)
        report.diff = DataDiff(
            rows_then=base.rows_read,
            rows_now=report.rows_read,
            added=sum((report.contents - base.contents).values()),
            removed=sum((base.contents - report.contents).values()),
            duplicates_then=base.duplicate_rate,
            duplicates_now=report.duplicate_rate,
            leaked_then=base.leaked,
            leaked_now=report.leaked,
            tokens_then=base.tokens,
            tokens_now=report.tokens,
        )
    return report


@dataclass
class _Row:
    """A kept training row with the file it is in."""

    scan: _Scan
    kept: _Kept

    @property
    def ref(self) -> RowRef:
        return self.scan.ref(self.kept)

    def hit(self, detail: str) -> Hit:
        quoted = self.scan.quote
        return Hit(self.ref, detail, _visible(self.kept.preview) if quoted else "", quoted)


def _check(spec: RunSpec, tree: Tree, settings: Settings, run: str) -> DataReport:
    limits, notes = resolve_policy(settings.data_policy, spec.data.policy)
    tokenizer_id, counter = token_counter(local_tokenizer(spec, tree))
    report = DataReport(
        run, [], spec.model.max_seq_length, counter.method, policy=limits, notes=notes, pairs=spec.method.type in PREFERENCE_METHODS
    )
    findings: list[Finding | None] = []

    def read(
        sources: Sequence[LocalSource | HubSource], role: Literal["train", "eval"]
    ) -> tuple[list[tuple[LocalSource | HubSource, _Scan]], bool]:
        """Scans of the sources that could be read, and whether they are all of the job's rows."""
        scans: list[tuple[LocalSource | HubSource, _Scan]] = []
        for src in sources:
            if isinstance(src, HubSource):
                hub = _scan_hub(src, tokenizer_id, counter)
                if isinstance(hub, str):
                    report.sources.append(SourceSummary(f"hub:{src.dataset}", role, src.format, None, None, False, hub))
                    continue
                scan = hub
                if not scan.exact:
                    report.notes.append(f"{scan.path}: split {src.split} is sliced: the whole split {_split_name(src.split)} was checked")
                if not scan.quote:
                    report.notes.append(f"{scan.path} is private or gated: its rows are counted and numbered, never quoted")
            else:
                scan = _scan_source(tree, src, tokenizer_id, counter)
            scans.append((src, scan))
            report.sources.append(SourceSummary(scan.path, role, src.format, scan.rows, len(scan.kept), True, scan.error))
            if scan.error:
                findings.append(Finding("unreadable", "fail", f"{scan.path}: {scan.error}", 1, 1, ()))
        return scans, len(scans) == len(sources) and all(scan.exact for _, scan in scans)

    train_scans, train_complete = read(spec.data.train, "train")
    eval_scans, eval_complete = read(spec.data.eval, "eval")
    scans = [scan for _, scan in train_scans + eval_scans]
    if not train_scans:
        offline = any(s.note == HUB_OFFLINE_NOTE for s in report.sources)
        report.notes.append(
            "no local training files: only Hub datasets, which plan does not download"
            if offline
            else "no training data checked: the Hub datasets could not be read here (each source says why)"
        )
        report.findings = [f for f in findings if f]
        return report

    # rules a single row breaks, over every local file the job reads (train and eval)
    read_rows = sum(scan.rows for scan in scans)
    for rule, meaning in _ROW_RULES.items():
        count = sum(scan.counts[rule] for scan in scans)
        hits = [hit for scan in scans for hit in scan.hits.get(rule, [])]
        findings.append(_judge(limits, rule, count, read_rows, f"{_rows_of(count, read_rows)} {meaning}", hits))
    dropped = sum(scan.dropped_count for scan in scans)
    if dropped and dropped > spec.data.max_bad_rows * read_rows:
        partial = "" if train_complete and eval_complete else " of the files checked"
        findings.append(
            Finding(
                "max_bad_rows",
                "fail",
                f"the job will stop: {_rows_of(dropped, read_rows)}{partial} are malformed, more than data.max_bad_rows ({_pct(spec.data.max_bad_rows)}) allows: fix them, or raise data.max_bad_rows to drop them",
                dropped,
                read_rows,
                tuple(hit for scan in scans for hit in scan.dropped)[:MAX_ROWS],
            )
        )

    rows = [_Row(scan, kept) for _, scan in train_scans for kept in scan.kept]
    for _, scan in train_scans:
        report.rows_read += scan.rows
        report.contents.update(scan.contents)
        report.quote_labels &= scan.quote
    if train_complete and not rows and not any(scan.error for _, scan in train_scans):
        findings.append(Finding("unreadable", "fail", "the training files hold no usable rows: the job will stop", 1, 1, ()))
    _stats(report, rows, limits, findings)
    trained, held_out = _split(spec, train_scans, train_complete, report)
    _leakage(spec, tree, report, rows, trained, held_out, eval_scans, eval_complete, limits, findings)
    order = {"fail": 0, "warn": 1, "info": 2}
    report.findings = sorted((f for f in findings if f), key=lambda f: order[f.level])
    return report


def _stats(report: DataReport, rows: list[_Row], limits: dict[str, Limit], findings: list[Finding | None]) -> None:
    """Rows, tokens, lengths, truncation, duplicates and labels of the kept training rows.

    Lengths and truncation are per sequence, what max_seq_length caps: a preference pair is two,
    prompt + chosen and prompt + rejected, and is truncated when either is."""
    report.rows = len(rows)
    lengths = sorted(n for row in rows for n in row.kept.sequences)
    report.tokens = sum(lengths)
    report.tokens_trained = sum(min(n, report.max_seq_length) for n in lengths)
    if lengths:
        p95 = lengths[min(len(lengths) - 1, max(0, -(-95 * len(lengths) // 100) - 1))]  # nearest rank
        report.lengths = {"min": lengths[0], "median": int(statistics.median_low(lengths)), "p95": p95, "max": lengths[-1]}
    long_rows = [row for row in rows if max(row.kept.sequences) > report.max_seq_length]
    report.truncated = len(long_rows)
    findings.append(
        _judge(
            limits,
            "truncated",
            len(long_rows),
            len(rows),
            f"{_rows_of(len(long_rows), len(rows))} are longer than max_seq_length {report.max_seq_length} ({report.token_method}) and will be truncated",
            [_truncated_hit(row, report.max_seq_length) for row in long_rows[:MAX_ROWS]],
        )
    )
    findings.append(_length_bias(rows, limits))

    first: dict[int, _Row] = {}
    hits: list[Hit] = []
    for row in rows:
        seen = first.setdefault(row.kept.norm, row)
        if seen is row:
            continue
        report.duplicates += 1
        exact = seen.kept.content == row.kept.content
        report.exact_duplicates += exact
        if len(hits) < MAX_ROWS:
            hits.append(row.hit(f"{'exact' if exact else 'near'} duplicate of {seen.ref}"))
    near = report.duplicates - report.exact_duplicates
    findings.append(
        _judge(
            limits,
            "duplicates",
            report.duplicates,
            len(rows),
            f"{_rows_of(report.duplicates, len(rows))} repeat an earlier row ({report.exact_duplicates:,} exactly, {near:,} up to case, spacing or punctuation)",
            hits,
        )
    )

    labels = Multiset(row.kept.label for row in rows if row.kept.label is not None)
    top = labels.most_common(LABEL_TOP)
    if len(rows) >= LABEL_MIN_ROWS and sum(n for _, n in top) >= LABEL_COVER * len(rows):
        report.labels = [(label, n) for label, n in top if label is not None]


def _truncated_hit(row: _Row, max_seq_length: int) -> Hit:
    """A row over max_seq_length: its sequences' tokens; a pair whose prompt alone fills it is
    dropped by the trainer (TRL keeps only pairs with room for an answer token), which it says."""
    if row.kept.pair is not None and row.kept.prompt_tokens >= max_seq_length:
        return row.hit(
            f"the prompt alone is {row.kept.prompt_tokens:,} tokens: the trainer drops this pair; shorten the prompt or raise max_seq_length"
        )
    return row.hit(" and ".join(f"{n:,}" for n in row.kept.sequences) + " tokens")


def _length_bias(rows: list[_Row], limits: dict[str, Limit]) -> Finding | None:
    """Pairs whose chosen answer is longer than the rejected one. A data set where the chosen
    answer is almost always the longer one teaches DPO that length is what is preferred (the
    best-known way preference tuning goes wrong), so past the limit the plan says so, naming the
    pairs with the largest gap first."""
    pairs = [(row, *row.kept.answer_chars) for row in rows if row.kept.answer_chars is not None]
    longer = sorted((item for item in pairs if item[1] > item[2]), key=lambda item: -item[1] / max(1, item[2]))
    if not longer:
        return None
    ratio = statistics.median(chosen / max(1, rejected) for _, chosen, rejected in pairs)
    message = (
        f"{len(longer):,} of {len(pairs):,} pairs ({_pct(len(longer) / len(pairs))}) have a chosen answer longer than the rejected one "
        f"(median chosen/rejected length {ratio:.2f}x)"
    )
    hits = [row.hit(f"chosen {chosen:,} characters, rejected {rejected:,}") for row, chosen, rejected in longer[:MAX_ROWS]]
    finding = _judge(limits, "length_bias", len(longer), len(pairs), message, hits)
    if finding is None or finding.level == "info":
        return finding
    fix = ": the model may learn that longer is better; add pairs whose chosen answer is the shorter one"
    return replace(finding, message=finding.message + fix)


def _split(
    spec: RunSpec, train_scans: list[tuple[LocalSource | HubSource, _Scan]], complete: bool, report: DataReport
) -> tuple[list[int], list[int]]:
    """Indices into `rows` that train and that are held out, drawn exactly as data.load_data does:
    max_samples per source (seeded sample), one seeded shuffle, then the first eval_split rows."""
    seed = spec.training.seed
    chosen: list[int] = []
    offset = 0
    for src, scan in train_scans:
        n = len(scan.kept)
        if src.max_samples is not None and n > src.max_samples:
            chosen += [offset + i for i in sorted(random.Random(seed).sample(range(n), src.max_samples))]
        else:
            chosen += range(offset, offset + n)
        offset += n
    if spec.data.eval or not spec.data.eval_split:
        return chosen, []
    if not complete:
        report.notes.append(
            "eval split not checked for leakage: not every training row was read here (a Hub dataset not checked, or a sliced split), so the held-out rows cannot be drawn"
        )
        return chosen, []
    random.Random(seed).shuffle(chosen)
    n_eval = eval_count(len(chosen), spec.data.eval_split)
    return chosen[n_eval:], chosen[:n_eval]


@dataclass(frozen=True)
class _EvalRow:
    id: str  # a suite row's id, or where a held-out row is
    key: str  # normalised prompt
    raw: str
    where: str | None = None  # a suite row's file and line


def _prompt(messages: Sequence[dict[str, Any]] | None, prompt: str | None) -> tuple[str, str]:
    """(normalised, raw) prompt of an eval row: its prompt, or its user turns joined."""
    if prompt is not None:
        return normalize_text(prompt), prompt.strip()
    users = [m.get("content", "") for m in messages or () if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return " ".join(n for n in (normalize_text(u) for u in users) if n), "\n".join(users).strip()


def _leakage(
    spec: RunSpec,
    tree: Tree,
    report: DataReport,
    rows: list[_Row],
    trained: list[int],
    held_out: list[int],
    eval_scans: list[tuple[LocalSource | HubSource, _Scan]],
    eval_complete: bool,
    limits: dict[str, Limit],
    findings: list[Finding | None],
) -> None:
    """Eval rows (suites, the eval split, eval sources) whose prompt is also a training prompt; for
    preference pairs held out (split, sources), whose prompt and chosen answer are a trained pair's."""
    index: dict[str, list[int]] = {}
    held: dict[str, list[int]] = {}
    for i in trained:
        for key in rows[i].kept.prompts:
            if key:
                index.setdefault(key, []).append(i)
        held.setdefault(rows[i].kept.held_out_key, []).append(i)

    def check(name: str, kind: Literal["suite", "split", "source"], items: list[_EvalRow]) -> None:
        leaked: list[str] = []
        hits: list[Hit] = []
        exact = 0
        found = index if kind == "suite" else held
        pairs = kind != "suite" and any(rows[i].kept.pair is not None for i in trained)
        unit, units = ("pair", "pairs (prompt and chosen answer)") if pairs else ("prompt", "prompts")
        for item in items:
            matches = found.get(item.key, []) if item.key else []
            if not matches:
                continue
            leaked.append(item.id)
            same = any((rows[i].kept.prompt if kind == "suite" else rows[i].kept.held_out_raw) == item.raw for i in matches)
            exact += same
            what = (
                f"{item.id} ({item.where}, {'exact' if same else 'near'})" if item.where else f"{item.id} ({'exact' if same else 'near'})"
            )
            hits += [rows[i].hit(f"{unit} of eval row {what}") for i in matches[: MAX_ROWS - len(hits)]]
        report.leakage.append(LeakSet(name, kind, len(items), len(leaked), tuple(leaked)))
        message = f"{len(leaked):,} of {len(items):,} {units} of {name} are in the training data ({exact} exactly, {len(leaked) - exact} up to case, spacing or punctuation)"
        if pairs:
            message += ": a held-out pair that was trained on scores the model on what it memorised; drop it from one side"
        findings.append(_judge(limits, "leakage", len(leaked), len(items), message, hits, leaked))

    for ref in spec.evals:
        try:
            suite = read_suite_once(tree, ref.suite)
        except (TreeError, SuiteError):
            report.notes.append(f"eval suite {ref.suite} not checked for leakage: it does not load (validate says why)")
            continue
        items = [_EvalRow(row.id, *_prompt(row.messages, row.prompt), f"{suite.data_path.as_posix()}:{row.line}") for row in suite.rows]
        check(f"eval suite {ref.suite}", "suite", items)
    if held_out:
        items = [_EvalRow(str(rows[i].ref), rows[i].kept.held_out_key, rows[i].kept.held_out_raw) for i in held_out]
        check(f"the eval split ({_pct(spec.data.eval_split or 0.0)} held out, seed {spec.training.seed})", "split", items)
    if spec.data.eval:
        items = []
        for src, scan in eval_scans:
            chosen: Sequence[int] = range(len(scan.kept))
            if src.max_samples is not None and len(scan.kept) > src.max_samples:
                chosen = sorted(random.Random(spec.training.seed).sample(range(len(scan.kept)), src.max_samples))
            items += [_EvalRow(str(scan.ref(scan.kept[i])), scan.kept[i].held_out_key, scan.kept[i].held_out_raw) for i in chosen]
        if not eval_complete:
            report.notes.append("eval sources not read here (a Hub dataset) or sliced are not fully checked for leakage")
        if items:
            check("the eval sources (data.eval)", "source", items)


# ---------------------------------------------------------------------------------------------
# Rendering: text for people, markdown for the PR comment, JSON (as_json) for tools

_MARKS = {"fail": "FAIL", "warn": "warn", "info": "info"}
_MD_MARKS = {"fail": ":x: **fail**", "warn": ":warning: **warn**", "info": ":information_source: info"}


def _labels_text(report: DataReport, quote: bool) -> str | None:
    if not report.labels:
        return None
    quote = quote and report.quote_labels
    shown = ", ".join(f"{label if quote else f'answer {i + 1}'} {_pct(n / report.rows)}" for i, (label, n) in enumerate(report.labels[:8]))
    more = f", and {len(report.labels) - 8} more" if len(report.labels) > 8 else ""
    return f"classification-like: {len(report.labels)} distinct answers: {shown}{more}"


def render_data_text(report: DataReport, quote: bool = True) -> str:
    """The data check of one run for a terminal."""
    out = [f"Data check of {report.run or 'the run'}: {report.summary()}"]
    for src in report.sources:
        state = f"{src.rows:,} rows, {src.kept:,} kept" if src.checked and src.rows is not None else (src.note or "not checked")
        out.append(f"  {src.role:5} {src.source} ({src.format}): {state}")
    labels = _labels_text(report, quote)
    if labels:
        out.append(f"  {labels}")
    for leak in report.leakage:
        out.append(f"  leakage: {leak.name}: {leak.leaked} of {leak.rows} eval prompts in train")
    if report.diff:
        out.append(f"  vs base: {report.diff.summary()}")
    for note in report.notes:
        out.append(f"  note: {note}")
    for finding in report.findings:
        out.append(f"{_MARKS[finding.level]} {finding.rule}: {finding.message}")
        for hit in finding.hits[:SHOWN_ROWS]:
            sample = f": {hit.sample}" if quote and hit.quoted else ""
            out.append(f"    {hit.ref}: {hit.detail}{sample}")
        if finding.count > SHOWN_ROWS and finding.hits:
            out.append(f"    ... {finding.count - min(SHOWN_ROWS, len(finding.hits)):,} more (--format json lists up to {MAX_ROWS})")
    if report.failed:
        out.append("Data check failed: fix the data or change the policy ([tool.tuneform.data_policy], data.policy).")
    return "\n".join(out) + "\n"


def render_data_markdown(report: DataReport, quote: bool = True) -> str:
    """The data check of one run for a PR comment: a summary, then each finding collapsed."""
    out = [f"#### Data: {md_code(report.run)}" if report.run else "#### Data", "", md_text(report.summary())]
    if report.diff:
        out += ["", f"**vs base:** {md_text(report.diff.summary())}"]
    labels = _labels_text(report, quote)
    if labels:
        out += ["", md_text(labels)]
    skipped = [s for s in report.sources if not s.checked]
    for src in skipped:
        out += ["", f"- {md_code(src.source)}: {md_text(src.note or 'not checked')}"]
    for note in report.notes:
        out += ["", f"_{md_text(note)}_"]
    for finding in report.findings:
        out += ["", f"<details><summary>{_MD_MARKS[finding.level]} <code>{finding.rule}</code>: {html_text(finding.message)}</summary>", ""]
        for hit in finding.hits[:SHOWN_ROWS]:
            sample = f" {md_code(hit.sample)}" if quote and hit.quoted and hit.sample else ""
            out.append(f"- {md_code(hit.ref)} {md_text(hit.detail)}{sample}")
        if finding.count > SHOWN_ROWS and finding.hits:
            out.append(f"- ... {finding.count - min(SHOWN_ROWS, len(finding.hits)):,} more (`tuneform data check --format json`)")
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Entry points for the CLI and for plan


@dataclass
class DataSection:
    """The data checks of a plan: one report per created or updated run, by run path."""

    reports: dict[str, DataReport] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.reports.values())

    def as_json(self, quote: bool = True) -> dict[str, Any]:
        return {path: report.as_json(quote) for path, report in self.reports.items()}

    def render(self, fmt: str, quote: bool = True) -> str:
        """text or markdown; empty when no run's data was checked."""
        if not self.reports:
            return ""
        if fmt == "markdown":
            return "### Data checks\n\n" + "\n".join(render_data_markdown(r, quote) for r in self.reports.values())
        return "\n".join(render_data_text(r, quote) for r in self.reports.values())


class DataCheckError(TuneformError):
    """`tuneform data check` cannot check a run: the run file or pyproject.toml is unreadable or invalid."""


def data_check_run(root: Path, run_path: str) -> DataReport:
    """`tuneform data check RUN`: the data report of one run file (its `exit_code` is the command's).

    `run_path` is relative to the working directory or absolute. Settings come from the working
    tree's pyproject.toml: this is the author's own check. Raises TreeError when the run file
    cannot be read and DataCheckError when it or the settings are invalid.
    """
    tree = WorkTree(root)
    rel = argument_path(tree.root, run_path) or run_path
    loaded = load_run_text(tree.read(rel), rel)
    try:
        settings = parse_settings(tree.read(PYPROJECT) if tree.exists(PYPROJECT) else None)
    except SettingsError as exc:
        raise DataCheckError(f"{PYPROJECT}: {exc.problem.message}") from None
    if loaded.spec is None:
        first = loaded.problems[0]
        where = f"{rel}:{first.line}:{first.column}" if first.line else rel
        field_name = f"{first.field}: " if first.field else ""
        raise DataCheckError(f"{where}: {field_name}{first.message}", fix="tuneform validate lists every problem")
    return check_data(loaded.spec, tree, settings, run=rel)
