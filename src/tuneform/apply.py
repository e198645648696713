"""apply: execute exactly what a plan shows, on the local backend.

create/update build a bundle and run the job; restore moves the registry's main pointer to the
version already trained for this content (no training, $0); noop and delete change nothing;
blocked, invalid and over-budget runs stop apply before anything runs. Re-running apply is safe: a
key that is already trained is a noop, and a key with a job still running is not submitted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .backends import local
from .bundle import build_bundle
from .plan import Plan, PlannedRun
from .registry import LocalRegistry, RegistryError
from .trees import WorkTree, git

Say = Callable[[str], None]


@dataclass
class RunOutcome:
    """What apply did for one planned run."""

    path: str
    action: str
    status: str  # done | skipped | failed
    message: str = ""
    job_id: str | None = None
    manifest: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "status": self.status, "message": self.message,
                "job_id": self.job_id, "manifest": self.manifest}


@dataclass
class ApplyResult:
    plan: Plan
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan.ok and all(o.status != "failed" for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "plan": self.plan.as_json(), "runs": [o.as_json() for o in self.outcomes]}


def git_facts(root: Path) -> dict[str, Any]:
    """The commit a version is trained from (HEAD, marked dirty when the tree has changes)."""
    try:
        commit = git(root, "rev-parse", "HEAD").strip()
        dirty = bool(git(root, "status", "--porcelain", "--untracked-files=no").strip())
    except Exception:  # not a git repository, or no commit yet
        return {"commit": None, "dirty": None, "pr": None}
    return {"commit": commit, "dirty": dirty, "pr": None}


def apply_plan(plan: Plan, root: Path, home: Path, *, wait: bool, say: Say, pr: int | None = None) -> ApplyResult:
    """Carry out a plan on the local backend. Refuses a plan that is not applicable."""
    result = ApplyResult(plan)
    if not plan.ok:
        return result
    registry = LocalRegistry(home)
    tree = WorkTree(root)
    facts = git_facts(root) | {"pr": pr}
    for run in plan.runs:
        result.outcomes.append(_apply_one(run, registry, tree, home, facts, wait=wait, say=say))
    return result


def _apply_one(run: PlannedRun, registry: LocalRegistry, tree: WorkTree, home: Path, facts: dict[str, Any], *, wait: bool, say: Say) -> RunOutcome:
    check = run.check
    if run.action in ("noop", "delete"):
        note = "nothing to do" if run.action == "noop" else "the registry keeps its versions; nothing removed"
        return RunOutcome(check.path, run.action, "skipped", note)
    if run.action == "blocked":
        return RunOutcome(check.path, run.action, "failed", f"run-{(check.key or '')[:12]} failed its gates before: change the run to train a new version")
    if check.backend != "local":
        return RunOutcome(check.path, run.action, "failed", f"backend {check.backend} is not available in this version of tuneform: use --backend local")
    assert check.output_repo and check.key
    if run.action == "restore":
        try:
            registry.set_main(check.output_repo, check.key, f"restore ({check.path})")
        except (OSError, RegistryError) as exc:
            return RunOutcome(check.path, run.action, "failed", f"could not move main: {exc}")
        say(f"restored {check.output_repo} main to run-{check.key[:12]} (no training, $0)")
        return RunOutcome(check.path, run.action, "done", "main restored", manifest=registry.get(check.output_repo, check.key).manifest)  # type: ignore[union-attr]
    running = local.active_job(home, check.key)
    if running is not None:
        return RunOutcome(check.path, run.action, "skipped", f"job {running.id} is already training this run key", running.id)
    job = local.new_job(home, check.key, check.name)
    extra = {"git": facts, "action": run.action, "expected_main": registry.main(check.output_repo), "job_id": job.id}
    build_bundle(check, tree, job.bundle, extra)
    process = local.start(job, home)
    say(f"started job {job.id} ({run.action} {check.path}); log: {job.log}")
    if not wait:
        return RunOutcome(check.path, run.action, "done", "submitted", job.id)
    stage = local.follow(job, process, say)
    version = registry.get(check.output_repo, check.key)
    if version is not None and version.status != "passed":
        return RunOutcome(check.path, run.action, "failed", "gates failed: version kept and marked, main not moved", job.id, version.manifest)
    if stage != local.COMPLETED:
        message = job.state.get("message") or f"job ended {stage}: see {job.log}"
        return RunOutcome(check.path, run.action, "failed", message, job.id, version.manifest if version else None)
    if version is None:
        return RunOutcome(check.path, run.action, "failed", f"the job finished but published nothing: see {job.log}", job.id)
    message = "scored again with the changed evals" if run.action == "evaluate" else "trained and published"
    return RunOutcome(check.path, run.action, "done", message, job.id, version.manifest)
