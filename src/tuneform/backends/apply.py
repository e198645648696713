"""apply: execute exactly what a plan shows, each run on its backend (backends/protocol.py).

create/update build a bundle and run the job; restore moves the registry's main pointer to the
version already trained for this content (no training, $0); noop and delete change nothing;
blocked, invalid and over-budget runs stop apply before anything runs. Re-running apply is safe: a
key that is already trained is a noop, and a key with a job still running is not submitted again.

Following: apply follows each job it starts to its end (wait), none (--no-wait), or, within a time
window (--wait-within, the GitHub apply workflow's way to post results in minutes), the jobs whose
estimate fits in what is left of the window; the others are detached and reported later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneform.backends import backend
from tuneform.backends.protocol import ApplyContext, BackendError, Ended, Say
from tuneform.core.manifest import Manifest
from tuneform.plan.planner import Plan, PlannedRun
from tuneform.plan.render import fmt_seconds
from tuneform.registry.protocol import PASSED, RegistryError


@dataclass
class RunOutcome:
    """What apply did for one planned run."""

    path: str
    action: str
    status: str  # done | skipped | failed
    message: str = ""
    job_id: str | None = None
    manifest: Manifest | None = None
    superseded: list[dict[str, Any]] = field(default_factory=list)  # older jobs of the run this apply canceled (or tried to)
    detached: bool = False  # submitted and left running: apply did not follow it to its end

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "job_id": self.job_id,
            "manifest": self.manifest.to_json() if self.manifest else None,
            "superseded": self.superseded,
        }


@dataclass
class ApplyResult:
    plan: Plan
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan.ok and all(o.status != "failed" for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "plan": self.plan.as_json(), "runs": [o.as_json() for o in self.outcomes]}


# A job is followed only when its estimate times this fits in what is left of the window: the
# margin the hf-jobs job timeout gives an estimate too, so a job slower than estimated by half
# still ends before the workflow that follows it.
FOLLOW_MARGIN = 1.5


@dataclass
class WaitWindow:
    """How long apply may follow jobs (--wait-within). A job whose estimate (with FOLLOW_MARGIN)
    fits in what is left is followed and its share taken; the others are detached. What is left
    shrinks by the shares taken, or by the time gone when more has gone (jobs run one by one)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    taken: float = 0.0

    def left(self) -> float:
        return max(0.0, self.seconds - max(self.taken, time.monotonic() - self.started))

    def take(self, run: PlannedRun) -> str | None:
        """None when `run`'s job is to be followed (its share is taken); else why it is detached."""
        estimate = run.check.sizing.estimate if run.check.sizing else None
        left = self.left()
        if estimate is None:
            return f"detached: it has no estimate, so it may not end within the {fmt_seconds(left)} left to wait"
        needed = estimate.seconds * FOLLOW_MARGIN
        if needed > left:
            return (
                f"detached: estimated {fmt_seconds(estimate.seconds)} (x{FOLLOW_MARGIN} margin: {fmt_seconds(needed)}), "
                f"more than the {fmt_seconds(left)} left to wait"
            )
        self.taken += needed
        return None


def apply_plan(
    plan: Plan, root: Path, home: Path, *, wait: bool, say: Say, pr: int | None = None, wait_within: float | None = None
) -> ApplyResult:
    """Carry out a plan, each run on its backend. Refuses a plan that is not applicable.

    `wait`: follow each job to its end; with `wait_within` (seconds) only the jobs that fit in
    that window (WaitWindow), detaching the others."""
    result = ApplyResult(plan)
    if not plan.ok:
        return result
    ctx = ApplyContext(plan, root, home, pr, say)
    window = WaitWindow(wait_within) if wait and wait_within is not None else None
    for run in plan.runs:
        result.outcomes.append(_apply_one(run, ctx, wait=wait, window=window))
    return result


def _apply_one(run: PlannedRun, ctx: ApplyContext, *, wait: bool, window: WaitWindow | None = None) -> RunOutcome:
    """One run, the same steps on every backend: restore, or submit once and follow to the end."""
    check = run.check
    if run.action in ("noop", "delete"):
        note = "nothing to do" if run.action == "noop" else "the registry keeps its versions; nothing removed"
        return RunOutcome(check.path, run.action, "skipped", note)
    if run.action == "blocked":
        return RunOutcome(
            check.path, run.action, "failed", f"run-{(check.key or '')[:12]} failed its gates before: change the run to train a new version"
        )
    chosen = backend(check.backend)
    submission = None
    try:
        if run.action == "restore":
            version = chosen.restore(run, ctx)
            return RunOutcome(check.path, run.action, "done", "main restored", manifest=version.manifest if version else None)
        submission = chosen.submit(run, ctx)
        if not submission.new:
            return RunOutcome(check.path, run.action, "skipped", submission.message, submission.job_id)
        # Why the job is left running: "" under --no-wait (every job is), None when it is followed.
        detach = "" if not wait else (window.take(run) if window is not None else None)
        if detach is not None:
            if detach:
                ctx.say(f"{check.path}: {detach}")
            message = submission.message + (f"; {detach}" if detach else "")
            return RunOutcome(check.path, run.action, "done", message, submission.job_id, superseded=submission.superseded, detached=True)
        ended = chosen.follow(run, submission, ctx)
    except (BackendError, RegistryError) as exc:
        job_id, superseded = (submission.job_id, submission.superseded) if submission else (None, [])
        return RunOutcome(check.path, run.action, "failed", str(exc), job_id, superseded=superseded)
    outcome = _ended(run, ended, submission.job_id)
    outcome.superseded = submission.superseded
    if outcome.status == "done":
        outcome.message += submission.note
    return outcome


def _ended(run: PlannedRun, ended: Ended, job_id: str | None) -> RunOutcome:
    """The outcome of a job followed to its end, from what the registry holds for its key."""
    check = run.check
    version = ended.version
    manifest = version.manifest if version else None
    if version is not None and version.status != PASSED and run.action != "evaluate":
        return RunOutcome(check.path, run.action, "failed", "gates failed: version kept and marked, main not moved", job_id, manifest)
    if not ended.completed:
        return RunOutcome(check.path, run.action, "failed", ended.message, job_id, manifest)
    if run.action == "evaluate":
        return RunOutcome(check.path, run.action, "done", "scored again with the changed evals", job_id)
    if version is None:
        return RunOutcome(check.path, run.action, "failed", f"job {job_id} finished but published nothing: tuneform logs {job_id}", job_id)
    return RunOutcome(check.path, run.action, "done", "trained and published", job_id, manifest)
