"""validate: check run files in the working tree, with no git history and no registry needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.plan.runcheck import RUN_SUFFIXES, RUNS_DIR, RunCheck, check_run, check_shared_outputs
from tuneform.runfile.diagnostics import Problem
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import PYPROJECT, Settings, SettingsError, load_settings
from tuneform.runfile.trees import TreeError, WorkTree, argument_path, shown


@dataclass
class Validation:
    files: list[RunCheck]
    problems: list[tuple[str, Problem]]  # not in a run file: (where, problem) for settings, missing paths

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.ok and not f.budget_problems and not f.trust_problems for f in self.files)

    def as_json(self) -> dict[str, Any]:
        files = [f.as_json() for f in self.files]
        for where in dict.fromkeys(where for where, _ in self.problems):
            errors = [p.as_json() for w, p in self.problems if w == where]
            files.append({"path": where, "ok": False, "errors": errors, "warnings": []})
        return {"files": files, "ok": self.ok}


def expand_paths(root: Path, paths: list[str]) -> tuple[list[str], list[tuple[str, Problem]]]:
    """Repository-relative run files for the given files or folders (default runs/), and a
    problem for each argument that is not one, reported under the argument as typed."""
    tree = WorkTree(root)
    found: list[str] = []
    problems: list[tuple[str, Problem]] = []
    for raw in paths or [RUNS_DIR]:
        try:
            rel = argument_path(tree.root, raw)
        except TreeError as exc:  # a symlink loop, a name too long
            problems.append((shown(raw), Problem(str(exc))))
            continue
        if rel is None:
            problems.append((raw, Problem(f"outside the repository at {tree.root.name}/: run tuneform from the training repository")))
            continue
        absolute = tree.root / rel
        if absolute.is_dir():
            found.extend(tree.list("" if rel == "." else rel, RUN_SUFFIXES) if rel != "." else tree.list(RUNS_DIR, RUN_SUFFIXES))
        elif tree.exists(rel):
            found.append(rel)
        else:
            problems.append((raw, Problem("no such file or folder: pass run files or folders in the repository (default runs/)")))
    return list(dict.fromkeys(found)), problems


def validate(root: Path, paths: list[str], *, backend: str | None = None, hub: HubResolver | None = None) -> Validation:
    tree = WorkTree(root)
    hub = hub or HubResolver()
    files, problems = expand_paths(root, paths)
    try:
        settings = load_settings(tree)
    except SettingsError as exc:
        problems.append((PYPROJECT, exc.problem))
        settings = Settings()
    checks = [check_run(tree, f, settings, hub, backend=backend) for f in files]
    check_shared_outputs(checks)
    return Validation(checks, problems)
