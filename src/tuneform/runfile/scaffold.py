"""`tuneform init`: lay out a new training repository from the templates shipped in the package.

Existing files are never overwritten: init into a repository that already has some of them
adds only what is missing, appends the settings table to an existing pyproject.toml and the
missing ignore patterns to an existing .gitignore.

The workflows install the tuneform that init runs as: their templates carry placeholders that
`render_workflow` fills with core/distribution.py's install spec.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from tuneform.core.distribution import InstallSpec, install_spec
from tuneform.core.errors import TuneformError, UsageError
from tuneform.runfile.spec import SCHEMA_FILE, json_schema

SETTINGS_TEMPLATE = "tuneform.toml"
# Shipped without its dot: a live .gitignore inside the package would ignore files of tuneform's
# own source tree, and package-data globs skip dot-files.
GITIGNORE_TEMPLATE = "gitignore"
WORKFLOWS = ".github/workflows/"
# Placeholders in the workflow templates: each `env:` value is replaced, quoted, by render_workflow.
PLACEHOLDERS = ("__TUNEFORM_REQUIREMENT__", "__TUNEFORM_SHA256__")
# What a value written into a workflow must not contain: a quote or backslash (ends or escapes the
# YAML string), `$`, `{` and `}` (a GitHub expression `${{ }}`, evaluated inside `env:` values),
# a backtick, or a control character.
_UNSAFE = frozenset('"\\$`{}') | {chr(c) for c in range(32)} | {chr(127)}


class ScaffoldError(TuneformError):
    """The target cannot be scaffolded (e.g. it is a file)."""


# A Hub user or organization name, as output repo ids spell their first half (runfile/spec.py).
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def check_namespace(namespace: str) -> str:
    """`namespace` when it can name a Hub user or org; a UsageError with the rule otherwise (it
    is written into pyproject.toml as is, so nothing else may reach that file)."""
    if not NAMESPACE.match(namespace):
        raise UsageError(
            f"namespace {namespace!r} is not a Hub user or organization name",
            fix="use letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. --namespace acme)",
        )
    return namespace


def _files(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_files(entry, rel + "/"))
        else:
            found.append((rel, entry))
    return found


def render_workflow(template: str, spec: InstallSpec) -> str:
    """A workflow template with its install placeholders filled in as double-quoted YAML strings.
    Refuses a value that could escape its quotes or that GitHub would evaluate as an expression."""
    for value in (spec.requirement, spec.sha256):
        bad = sorted(set(value) & _UNSAFE)
        if bad:
            raise ScaffoldError(f"cannot write the install requirement {value!r} into a workflow: it contains {bad!r}")
    text = template
    for placeholder, value in zip(PLACEHOLDERS, (spec.requirement, spec.sha256), strict=True):
        text = text.replace(placeholder, json.dumps(value))
    return text


def scaffold(directory: Path, *, namespace: str | None = None, install: InstallSpec | None = None) -> list[str]:
    """Write the starter files into `directory`; returns the paths written (relative). The
    workflows install `install` (default: the install spec of the running tuneform)."""
    install = install or install_spec()
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} is a file: pass a folder")
    if namespace:
        check_namespace(namespace)  # before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    template = resources.files("tuneform") / "templates" / "init"
    settings_text = ""
    for rel, entry in _files(template):
        if rel == SETTINGS_TEMPLATE:
            settings_text = entry.read_text(encoding="utf-8")
            continue
        if rel == GITIGNORE_TEMPLATE:
            written.extend(_merge_gitignore(directory / ".gitignore", entry.read_text(encoding="utf-8")))
            continue
        target = directory / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith(WORKFLOWS):
            target.write_text(render_workflow(entry.read_text(encoding="utf-8"), install), encoding="utf-8")
        else:
            target.write_bytes(entry.read_bytes())
        written.append(rel)
    schema_file = directory / SCHEMA_FILE
    if not schema_file.exists():
        schema_file.parent.mkdir(parents=True, exist_ok=True)
        schema_file.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
        written.append(SCHEMA_FILE)
    if namespace:
        settings_text = settings_text.replace('# namespace = "your-hub-user-or-org"', f'namespace = "{namespace}"')
    pyproject = directory / "pyproject.toml"
    if not pyproject.exists():
        pyproject.write_text(settings_text, encoding="utf-8")
        written.append("pyproject.toml")
    elif "[tool.tuneform]" not in pyproject.read_text(encoding="utf-8"):
        with open(pyproject, "a", encoding="utf-8") as handle:
            handle.write("\n" + settings_text)
        written.append("pyproject.toml ([tool.tuneform] appended)")
    return written


def _merge_gitignore(target: Path, template: str) -> list[str]:
    """Write .gitignore from `template`, or append the patterns an existing one lacks, so that
    `.tuneform/` (model weights) and virtualenvs never show up in `git status`. Returns what was
    written, as scaffold reports it: nothing when every pattern is already there."""
    if not target.exists():
        target.write_text(template, encoding="utf-8")
        return [".gitignore"]
    existing = target.read_text(encoding="utf-8", errors="replace")
    have = {_pattern(line) for line in existing.splitlines()}
    missing = [line for line in template.splitlines() if line.strip() and not line.startswith("#") and _pattern(line) not in have]
    if not missing:
        return []
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(("" if not existing or existing.endswith("\n") else "\n") + "# added by tuneform init\n" + "\n".join(missing) + "\n")
    return [f".gitignore ({', '.join(missing)} appended)"]


def _pattern(line: str) -> str:
    """A .gitignore line as compared for "already there": `.tuneform`, `/.tuneform/` and
    `.tuneform/` all ignore the folder init means."""
    return line.strip().strip("/")
