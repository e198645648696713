"""Fuzzing the run-file loader and checker: bad input becomes located problems, never a traceback.

(a) `load_run_text` on random text, random YAML documents and random bytes;
(b) `check_run` (schema, files, evals, key, sizing) on random mutations of the valid run, in a
    real repository with data and an eval suite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import CHAT_ROWS, RUN, SETTINGS, SUITE, SUITE_ROWS, Repo, jsonl, sub
from tuneform.plan.runcheck import check_run
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import parse_settings
from tuneform.runfile.spec import RunSpec, load_run_text
from tuneform.runfile.trees import WorkTree

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Every field name of the schema, so random documents reach past "unknown key" into validation.
def _field_names(model: Any, out: set[str]) -> set[str]:
    for name, info in getattr(model, "model_fields", {}).items():
        out.add(name)
        for arg in _flatten(info.annotation):
            if isinstance(arg, type) and hasattr(arg, "model_fields") and arg is not model:
                _field_names(arg, out)
    return out


def _flatten(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None) or ()
    return [annotation] + [x for a in args for x in _flatten(a)]


KEYS = sorted(_field_names(RunSpec, set()))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "auto",
            "lora",
            "qlora",
            "full",
            "messages",
            "data/chat.jsonl",
            "evals/intents.yaml",
            "a/b",
            "./models/x",
            "/etc/passwd",
            "../x.jsonl",
            "90m",
            ">= 0.5",
            "hf-jobs",
            "2e-4",
            "yes",
        ]
    )
)
keys = st.sampled_from(KEYS) | st.text(max_size=12)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6), max_leaves=30)
run_shaped = st.fixed_dictionaries(
    {}, optional={k: documents for k in ("name", "model", "data", "method", "training", "compute", "output", "evals", "budget")}
)


def _assert_problems(loaded: Any) -> None:
    """The contract of load_run_text: a spec, or problems that explain why not; never both empty."""
    assert isinstance(loaded.problems, list)
    for p in loaded.problems:
        assert isinstance(p.message, str) and p.message.strip(), p
        assert p.line is None or p.line >= 1
        assert p.column is None or p.column >= 1
        if loaded.document is not None and loaded.document.data is not None:
            assert p.line is not None, p  # the YAML parsed: every problem points somewhere
    if loaded.spec is None:
        assert loaded.problems, "an invalid file must say why"
    else:
        assert not any(p.severity == "error" for p in loaded.problems)


# --------------------------------------------------------------------------------------------
# (a) the loader


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=300))  # surrogates included
@example("a: \ud800")  # a lone surrogate cannot be encoded as UTF-8
@example("a: 1\x00")  # control characters: libyaml reports a byte offset, no mark
@example("!!int model: 1")  # an explicit core tag on a value that is not one
@example("a: !!bool maybe")
def test_random_text_never_raises(text: str) -> None:
    _assert_problems(load_run_text(text, "runs/x.yaml"))


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{},&*!?|>'\"#%@` \n\t0123456789.<")), max_size=200))
def test_yaml_punctuation_soup_never_raises(text: str) -> None:
    _assert_problems(load_run_text(text, "runs/x.yaml"))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    _assert_problems(load_run_text(data, "runs/x.yaml"))


@FUZZ
@given(documents | run_shaped, st.booleans(), st.booleans())
def test_random_yaml_documents_never_raise(value: Any, flow: bool, unicode: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=unicode)
    _assert_problems(load_run_text(text, "runs/x.yaml"))
    _assert_problems(load_run_text(text.encode("utf-8"), "runs/x.yaml"))


# --------------------------------------------------------------------------------------------
# (b) check_run on mutations of the valid run


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> WorkTree:
    root = tmp_path_factory.mktemp("fuzzrepo")
    for rel, text in {
        "pyproject.toml": SETTINGS,
        "data/chat.jsonl": jsonl(CHAT_ROWS),
        "evals/intents.yaml": SUITE,
        "evals/intents.jsonl": jsonl(SUITE_ROWS),
        "runs/support.yaml": RUN,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return WorkTree(root)


def _run_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping key or list item in the parsed run."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out += _run_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(prefix + (i,))
            out += _run_paths(v, prefix + (i,))
    return out


BASE = yaml.safe_load(RUN)
PATHS = _run_paths(BASE)


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _typo(word: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, max(len(word) - 1, 0)))
    kind = data.draw(st.sampled_from(["drop", "swap", "insert", "case"]))
    if kind == "drop" and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if kind == "swap" and len(word) > 1:
        j = min(i + 1, len(word) - 1)
        chars = list(word)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if kind == "case":
        return word.upper()
    return word[:i] + data.draw(st.sampled_from("aeiorst_-")) + word[i:]


TAGS = [
    "!!python/object/apply:os.system ['touch pwned'] ",
    "!!python/name:os.system ",
    "!foo ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!str ",
    "!!int ",
    "!!float ",
    "*nope ",
    "&anchor ",
    "<<: ",
    "? ",
    "--- ",
    "... ",
    "%YAML 1.1\n",
]


@st.composite
def mutated_runs(draw: st.DrawFn) -> str:
    data = draw(st.data())
    kind = draw(st.sampled_from(["delete", "rename", "retype", "duplicate_line", "truncate", "insert_tag", "alias", "several"]))
    rounds = draw(st.integers(2, 4)) if kind == "several" else 1
    text = RUN
    for _ in range(rounds):
        step = kind if kind != "several" else draw(st.sampled_from(["delete", "rename", "retype", "duplicate_line", "insert_tag"]))
        text = _mutate(text, step, data)
    return text


def _mutate(text: str, kind: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if kind in ("delete", "rename", "retype"):
        try:  # an earlier step may have left text that is not YAML (or not plain data) any more
            value = yaml.safe_load(text)
        except Exception:  # PyYAML's own loader raises ValueError for `!!int model`
            return text
        paths = _run_paths(value)
        if not isinstance(value, dict) or not paths:
            return text
        path = data.draw(st.sampled_from(paths))
        parent = _parent(value, path)
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "rename" and isinstance(parent, dict):
            parent[_typo(str(path[-1]), data)] = parent.pop(path[-1])
        else:
            old = parent[path[-1]]
            new = data.draw(scalars | st.lists(scalars, max_size=3) | st.dictionaries(keys, scalars, max_size=3))
            parent[path[-1]] = new if type(new) is not type(old) else [new]
        return yaml.safe_dump(value, default_flow_style=data.draw(st.sampled_from([False, None])), allow_unicode=True, sort_keys=False)
    if kind == "duplicate_line":
        i = data.draw(st.integers(0, len(lines) - 1))
        return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    if kind == "truncate":
        return text[: data.draw(st.integers(0, len(text)))]
    if kind == "alias":  # anchor a value and refer to it from elsewhere (legal YAML, odd places)
        i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
        lines = list(lines)
        lines[i] = re.sub(r":( |$)", r": &a\1", lines[i], count=1)
        lines[j] = re.sub(r":\s.*$", ": *a", lines[j].rstrip("\n"), count=1) + "\n"
        return "".join(lines)
    # insert a tag, alias, anchor or directive at a random point of a random line
    i = data.draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    colon = line.find(": ")
    at = colon + 2 if colon >= 0 and data.draw(st.booleans()) else data.draw(st.integers(0, len(line)))
    lines = list(lines)
    lines[i] = line[:at] + data.draw(st.sampled_from(TAGS)) + line[at:]
    return "".join(lines)


RUN_SETTINGS = parse_settings(SETTINGS)


def _check(tree: WorkTree, text: str) -> None:
    result = check_run(tree, "runs/x.yaml", RUN_SETTINGS, HubResolver(offline=True), text=text.encode("utf-8"))
    parsed = result.loaded is not None and result.loaded.document is not None and result.loaded.document.data is not None
    for p in result.problems + result.budget_problems:
        assert isinstance(p.message, str) and p.message.strip(), p
        assert "Traceback" not in p.message
        if parsed and p.severity == "error":
            assert p.line is not None and p.line >= 1, p
            assert p.column is not None and p.column >= 1, p
            assert p.line <= text.count("\n") + 1, (p, text)
    if result.spec is None:
        assert result.errors, "an invalid run must say why"
        assert result.key is None
    elif not result.errors:
        assert result.key is not None and re.fullmatch(r"[0-9a-f]{64}", result.key)


def test_the_unmutated_run_is_valid(tree: WorkTree) -> None:
    result = check_run(tree, "runs/x.yaml", RUN_SETTINGS, HubResolver(offline=True), text=RUN.encode())
    assert result.ok and not result.problems and not result.budget_problems
    assert re.fullmatch(r"[0-9a-f]{64}", result.key or "")


@FUZZ
@given(text=mutated_runs())
@example(text="!!int " + RUN)
@example(text=RUN.replace("max_seq_length: 512", "max_seq_length: !!float big"))
@example(text=RUN.replace("method: {type: lora, r: 8}", "method: {type: lora, r: 8, target_modules: []}"))
@example(text=RUN + "compute: {timeout: yes}\n")
def test_mutated_runs_never_raise(tree: WorkTree, text: str) -> None:
    _check(tree, text)


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(PATHS), data=st.data())
def test_every_single_key_deleted(tree: WorkTree, path: tuple[Any, ...], data: st.DataObject) -> None:
    value = yaml.safe_load(RUN)
    del _parent(value, path)[path[-1]]
    _check(tree, yaml.safe_dump(value, sort_keys=data.draw(st.booleans())))


def test_mutations_are_not_all_trivially_valid(tree: WorkTree) -> None:
    """Guard for the fuzzer itself: deleting `model` or truncating the file must be reported."""
    for text in (RUN.replace(RUN[: RUN.index("data:")], ""), RUN[:30]):
        result = check_run(tree, "runs/x.yaml", RUN_SETTINGS, HubResolver(offline=True), text=text.encode())
        assert result.errors


# Plausible values per section: variations that pass the schema and reach the file checks, the
# key and the sizing (flavors, methods, data formats, extreme lengths), where a crash would hide.
PLAUSIBLE: dict[tuple[str, ...], list[Any]] = {
    ("model", "id"): ["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-7B-Instruct", "unknown/model", "./models/none"],
    ("model", "max_seq_length"): [16, 17, 4096, 262144],
    ("method",): [
        {"type": "qlora"},
        {"type": "full"},
        {"type": "lora", "r": 1024, "alpha": 4096, "target_modules": ["q_proj", "v_proj"]},
        {"type": "lora", "use_rslora": True, "dropout": 0.99},
    ],
    ("training",): [
        {"max_steps": 10_000_000},
        {"num_train_epochs": 100},
        {"num_train_epochs": 0.0001},
        {"per_device_train_batch_size": 4096, "gradient_accumulation_steps": 1024},
        {"packing": False, "gradient_checkpointing": True, "precision": "fp16"},
        {"learning_rate": 1, "warmup_steps": 5},
    ],
    ("compute",): [
        {"backend": "hf-jobs"},
        {"backend": "hf-jobs", "flavor": "t4-small"},
        {"backend": "hf-jobs", "flavor": "h200x8"},
        {"backend": "hf-jobs", "flavor": "cpu-basic"},
        {"backend": "local", "flavor": "h200"},
        {"engine": "unsloth", "timeout": 60},
    ],
    ("data",): [{"train": [{"path": "data/chat.jsonl", "format": fmt}]} for fmt in ("messages", "text", "alpaca", "prompt_completion")]
    + [
        {"train": [{"dataset": "a/b"}]},
        {"train": [{"dataset": "a/b", "max_samples": 10**9}]},
        {"train": [{"path": "data/chat.jsonl", "max_samples": 1}], "eval": [{"path": "data/chat.jsonl"}]},
        {"train": [{"path": "data/chat.jsonl", "columns": {"messages": "absent"}}]},
    ],
    ("output",): [{"save": "merged"}, {"repo": "a/b", "private": False}],
    ("budget",): [{"max_usd": 0.0001}, {"max_usd": 1_000_000}],
}


@FUZZ
@given(choices=st.dictionaries(st.sampled_from(sorted(PLAUSIBLE)), st.integers(0, 100), min_size=1, max_size=5))
def test_plausible_variations_never_raise(tree: WorkTree, choices: dict[tuple[str, ...], int]) -> None:
    value = yaml.safe_load(RUN)
    for path, pick in choices.items():
        section = value
        for part in path[:-1]:
            section = section.setdefault(part, {})
        options = PLAUSIBLE[path]
        section[path[-1]] = options[pick % len(options)]
    _check(tree, yaml.safe_dump(value))


# --------------------------------------------------------------------------------------------
# (c) hostile inputs found by fuzzing, through the real commands


DEEP = "[" * 100_000 + "]" * 100_000  # far past Python's recursion limit
HUGE = "9" * 5_000  # past Python's int-string conversion limit (4,300 digits)
LONG = "a" * 900_000  # far past any file name the OS accepts
CSV_RUN = sub("- path: data/chat.jsonl", "- path: data/chat.csv\n      format: prompt_completion")


def _csv_field(r: Repo) -> None:
    r.write("data/chat.csv", "prompt,completion\n" + "x" * 200_000 + ",billing\n" + "".join(f"q{i},billing\n" for i in range(40)))
    r.write("runs/support.yaml", CSV_RUN)


def _symlink_loop(r: Repo) -> None:
    (r.path / "runs/support.yaml").unlink()
    (r.path / "runs/support.yaml").symlink_to("support.yaml")


def _model_symlink(r: Repo, name: str, outside: str) -> None:
    """A local model folder holding a symlink `name` to `outside`, a file or folder beside the repository."""
    r.write("models/tiny/config.json", "{}")
    (r.path / "models/tiny" / name).symlink_to(outside)
    r.write("runs/support.yaml", sub("id: HuggingFaceTB/SmolLM2-135M-Instruct", "id: ./models/tiny"))


def _outside_folder(r: Repo, outside: str) -> None:
    Path(outside).mkdir()
    (Path(outside) / "secret.txt").write_text("not for the bundle")
    _model_symlink(r, "extra", outside)


def _inside_folder(r: Repo, outside: str) -> None:
    """A folder of the repository linked into the model folder: the run key would not hash its
    files (a walk does not enter links), while a bundle's copy would follow the link."""
    r.write("models/shared/extra.bin", "weights the key never saw")
    _model_symlink(r, "extra", "../shared")


# case -> (how to break the fixture repo, the run argument, the file each message names, the fix it gives)
HOSTILE: dict[str, tuple[Any, str, str, str]] = {
    "deep JSON data": (
        lambda r, o: r.write("data/chat.jsonl", '{"messages": ' + DEEP + "}\n"),
        "runs/support.yaml",
        "data/chat.jsonl",
        "flatten",
    ),
    "deep JSON suite": (
        lambda r, o: r.write("evals/intents.jsonl", '{"id": ' + DEEP + "}\n"),
        "runs/support.yaml",
        "evals/intents.jsonl",
        "flatten",
    ),
    "huge int data": (
        lambda r, o: r.write("data/chat.jsonl", '{"messages": ' + HUGE + "}\n"),
        "runs/support.yaml",
        "data/chat.jsonl",
        "in quotes",
    ),
    "huge int suite": (
        lambda r, o: r.write("evals/intents.jsonl", '{"id": ' + HUGE + "}\n"),
        "runs/support.yaml",
        "evals/intents.jsonl",
        "in quotes",
    ),
    "CSV field over 128 KB": (lambda r, o: _csv_field(r), "runs/support.yaml", "data/chat.csv: CSV line 2", "use JSON Lines"),
    "tool = 1 in pyproject.toml": (
        lambda r, o: r.write("pyproject.toml", "tool = 1\n"),
        "runs/support.yaml",
        "pyproject.toml",
        "[tool] section",
    ),
    "tool.tuneform = 1": (
        lambda r, o: r.write("pyproject.toml", "[tool]\ntuneform = 1\n"),
        "runs/support.yaml",
        "pyproject.toml",
        "[tool.tuneform] section",
    ),
    "huge int in pyproject.toml": (
        lambda r, o: r.write("pyproject.toml", SETTINGS + f"x = {HUGE}\n"),
        "runs/support.yaml",
        "pyproject.toml",
        "in quotes",
    ),
    "deep array in pyproject.toml": (
        lambda r, o: r.write("pyproject.toml", SETTINGS + f"x = {DEEP}\n"),
        "runs/support.yaml",
        "pyproject.toml",
        "flatten",
    ),
    "900 KB path in a run file": (
        lambda r, o: r.write("runs/support.yaml", sub("data/chat.jsonl", f"data/{LONG}.jsonl")),
        "runs/support.yaml",
        "runs/support.yaml",
        "use a shorter path",
    ),
    "file name over 255 bytes in a run file": (
        lambda r, o: r.write("runs/support.yaml", sub("data/chat.jsonl", f"data/{LONG[:300]}.jsonl")),
        "runs/support.yaml",
        "runs/support.yaml",
        "use a shorter path",
    ),
    "900 KB path on the command line": (lambda r, o: None, LONG, "(900,000 characters)", "use a shorter path"),
    "symlink loop as the run file": (lambda r, o: _symlink_loop(r), "runs/support.yaml", "runs/support.yaml", "point the link at a file"),
    "symlink out of a model folder": (
        lambda r, o: _model_symlink(r, "weights.bin", o),
        "runs/support.yaml",
        "models/tiny/weights.bin",
        "use a file inside it",
    ),
    "symlinked folder out of a model folder": (_outside_folder, "runs/support.yaml", "models/tiny/extra", "use a file inside it"),
    "symlinked folder inside a model folder": (
        _inside_folder,
        "runs/support.yaml",
        "models/tiny/extra",
        "replace the link with the folder",
    ),
}
# Data check reads neither eval suites (validate reports them) nor models: there it must only not fail.
NOT_DATA = {
    "deep JSON suite",
    "huge int suite",
    "symlink out of a model folder",
    "symlinked folder out of a model folder",
    "symlinked folder inside a model folder",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_inputs_give_located_errors(repo: Repo, tmp_path: Path, case: str) -> None:
    """validate, plan and data check on each class of hostile input: exit 1 or 2 with an error that
    names the file and says the fix, never a traceback (repo.cli lets exceptions through)."""
    breaks, run, names, fix = HOSTILE[case]
    breaks(repo, str(tmp_path / "outside.bin"))
    repo.commit("hostile input")  # on main: plan reads settings from the base branch
    for args in (["validate", run], ["plan", "--offline", "--base", "HEAD", run], ["data", "check", run]):
        result = repo.cli(*args)
        if args[0] == "data" and case in NOT_DATA:
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code in (1, 2), (args[0], result.output)
        said = " ".join(result.output.split())  # plan's table wraps long lines
        assert names in said and fix in said, (args[0], result.output[:2000])
        assert "Traceback" not in result.output and len(result.output) < 20_000


def test_a_bom_does_not_drop_the_first_row(repo: Repo) -> None:
    """Editors on Windows start files with a byte order mark; run files ignore it, and so do data
    files: every row is read and none is reported broken."""
    repo.write("data/chat.jsonl", "\ufeff" + jsonl(CHAT_ROWS))
    repo.write("data/chat.csv", "\ufeffprompt,completion\n" + "".join(f"q{i},billing\n" for i in range(40)))
    for run in (RUN, CSV_RUN):
        repo.write("runs/support.yaml", run)
        assert repo.cli("validate").exit_code == 0
        code, report = repo.json("data", "check", "runs/support.yaml", "--format", "json")
        assert code == 0, report
        assert [(s["rows"], s["kept"]) for s in report["sources"]] == [(len(CHAT_ROWS), len(CHAT_ROWS))], report


def test_plan_reports_a_run_file_it_cannot_read(repo: Repo) -> None:
    """A run file under runs/ that is a symlink loop is an invalid run in the plan, not skipped as
    if it were not there (plan would otherwise say "no changes")."""
    (repo.path / "runs/loop.yaml").symlink_to("loop.yaml")
    result = repo.cli("plan", "--offline")
    assert result.exit_code == 1, result.output
    assert "runs/loop.yaml" in result.output and "point the link at a file" in " ".join(result.output.split())


def test_an_unparseable_model_config_is_a_warning_not_a_traceback(repo: Repo) -> None:
    """A local model's config.json nested too deep to parse: no memory estimate, said as a warning
    that names the file and the fix; the run is otherwise valid."""
    repo.write("models/tiny/config.json", '{"hidden_size": ' + DEEP + "}")
    repo.write("runs/support.yaml", sub("id: HuggingFaceTB/SmolLM2-135M-Instruct", "id: ./models/tiny"))
    result = repo.cli("validate")
    assert result.exit_code == 0, result.output
    assert "config.json" in result.output and "flatten the value" in result.output
