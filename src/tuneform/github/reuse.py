"""Registry lookups for a plan that could not read its registry (a private Hub repo, tokenless PR job).

`plan.yml` plans a pull request without any token, so a run whose output repo is a private Hub
model repo is planned from git alone (`"registry": "unknown"`): a revert shows `create` or
`update` where apply will `restore`. `comment.yml` (trusted, never runs PR code) finishes that
lookup from the artifact's plan.json with a read-only Hub token and appends a section to the
plan comment.

plan.json comes from the pull request's own job, so every value in it is untrusted data: run
keys must be 64 hex characters, repo ids `owner/name`, paths printable; anything else is skipped,
and every text that reaches the comment is escaped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.core.errors import TuneformError
from tuneform.core.hub import hub_failures
from tuneform.core.markup import md_code, md_text
from tuneform.estimate.sizing import usd_text
from tuneform.registry.local import FAILED_GATES, PASSED, RegistryError

RUN_KEY = re.compile(r"^[0-9a-f]{64}$")
REPO_ID = re.compile(r"^[\w.-]{1,96}/[\w.-]{1,96}$", re.ASCII)
COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOOKUP_ACTIONS = ("create", "update")
MAX_RUNS = 100  # an artifact cannot make the comment job read the Hub without end
MAX_PATH = 300


@dataclass(frozen=True)
class Reuse:
    """One run of the plan that the registry knows better than git did.

    kind: "restore" (a passed version: apply restores it, $0), "blocked" (a failed_gates
    version: apply refuses to train it again) or "unreadable" (the token cannot read the repo).
    """

    kind: str
    path: str
    repo: str
    key: str
    usd: float | None = None  # what the plan (from git) said the run would cost
    commit: str | None = None
    pr: int | None = None
    note: str | None = None  # why, for "unreadable"


def _valid_repo(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(REPO_ID.match(value))
        and ".." not in value
        and not any(part in (".", "..") or part.startswith(".") for part in value.split("/"))
    )


def _valid_path(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_PATH and value.isprintable()


def _usd(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def candidates(plan_json: Any) -> list[dict[str, Any]]:
    """The runs of plan.json worth a lookup: hf-jobs, registry not read, create/update, with a
    valid key and repo. Anything malformed is skipped, never trusted."""
    runs = plan_json.get("runs") if isinstance(plan_json, dict) else None
    if not isinstance(runs, list):
        return []
    found = []
    for run in runs[:MAX_RUNS]:
        if not isinstance(run, dict):
            continue
        if run.get("backend") != "hf-jobs" or run.get("registry") == "read" or run.get("action") not in LOOKUP_ACTIONS:
            continue
        key, repo, path = run.get("run_key"), run.get("output_repo"), run.get("path")
        if not (isinstance(key, str) and RUN_KEY.match(key)) or not _valid_repo(repo) or not _valid_path(path):
            continue
        found.append({"path": path, "key": key, "repo": repo, "usd": _usd(run.get("usd"))})
    return found


def lookup_reuse(plan_json: dict[str, Any], *, registry: Any) -> list[Reuse]:
    """Look each candidate run's key up in its output repo (`registry.get(repo, key)`).

    A passed version -> "restore", a failed_gates version -> "blocked", a repo the token cannot
    read -> "unreadable" (once per repo); an unknown key -> nothing."""
    found: list[Reuse] = []
    unreadable: dict[str, str] = {}
    for run in candidates(plan_json):
        repo, key = run["repo"], run["key"]
        if repo in unreadable:
            continue
        try:
            version = registry.get(repo, key)
        except hub_failures() + (RegistryError,) as exc:  # RegistryError says what to do; a Hub failure: its type only
            note = str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__} reading the Hub"
            unreadable[repo] = note
            found.append(Reuse("unreadable", run["path"], repo, key, run["usd"], note=note))
            continue
        if version is None or getattr(version, "key", None) != key:
            continue
        status = getattr(version, "status", None)
        if status not in (PASSED, FAILED_GATES):
            continue
        git = version.manifest.git
        commit = git.commit if git.commit and COMMIT.match(git.commit) else None
        pr = git.pr if git.pr is not None and git.pr > 0 else None
        kind = "restore" if status == PASSED else "blocked"
        found.append(Reuse(kind, run["path"], repo, key, run["usd"], commit, pr))
    return found


def _path_md(path: str) -> str:
    """The path in a code span, cut to MAX_PATH characters."""
    return md_code(path, limit=MAX_PATH)


def _trained_in(found: Reuse) -> str:
    if found.pr is not None:
        return f"#{found.pr}"
    if found.commit is not None:
        return f"commit {found.commit[:12]}"
    return "an earlier apply"


def render_reuse_markdown(found: list[Reuse]) -> str:
    """The "Registry lookup" section appended to the plan comment; "" when nothing was found."""
    if not found:
        return ""
    lines = [
        "### Registry lookup",
        "",
        "The plan job has no Hub token, so it planned these runs from git alone; a read-only token looked their run keys up:",
        "",
    ]
    for item in found:
        where = _path_md(item.path)
        tag = f"run-{item.key[:12]}"
        if item.kind == "restore":
            cost = f" (not {usd_text(item.usd)})" if item.usd else ""
            lines.append(f"- {where}: {tag} was trained in {_trained_in(item)}: apply will restore it, $0{cost}")
        elif item.kind == "blocked":
            lines.append(
                f"- {where}: {tag} was trained in {_trained_in(item)} and failed its gates: apply will refuse to train it again (change the run to try again)"
            )
        else:
            lines.append(
                f"- {where}: {md_code(item.repo)} could not be read ({md_text(item.note or 'unknown error', limit=200)}): its runs stay planned from git"
            )
    return "\n".join(lines) + "\n"


class PlanJsonError(TuneformError, ValueError):
    """A plan.json that cannot be read, or is not a tuneform plan."""


def read_plan_json(path: Path) -> dict[str, Any]:
    """plan.json as a dict; PlanJsonError (with a message) when it is unreadable or not a plan."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PlanJsonError(f"{path}: cannot read the plan ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs", []), list):
        raise PlanJsonError(f"{path}: not a tuneform plan")
    return data


def reuse_for_plan(plan_json_path: Path, registry: Any = None) -> list[Reuse]:
    """`tuneform reuse PLAN_JSON`: what the registries hold for the plan's run keys (the CLI renders
    it with render_reuse_markdown). Raises PlanJsonError when plan.json is unreadable. The Hub
    token is HF_TOKEN from the environment (in comment.yml: the read-only HF_READ_TOKEN)."""
    plan = read_plan_json(plan_json_path)
    if registry is None:
        from tuneform.core.hub import hub_api
        from tuneform.registry.hub import HubRegistry

        registry = HubRegistry(hub_api())
    return lookup_reuse(plan, registry=registry)
