"""apply: execute exactly what a plan shows, on the local backend or on Hugging Face Jobs.

create/update build a bundle and run the job; restore moves the registry's main pointer to the
version already trained for this content (no training, $0); noop and delete change nothing;
blocked, invalid and over-budget runs stop apply before anything runs. Re-running apply is safe: a
key that is already trained is a noop, and a key with a job still running is not submitted again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneform.backends import local
from tuneform.job.bundle import build_bundle
from tuneform.plan.planner import Plan, PlannedRun
from tuneform.registry.local import LocalRegistry, RegistryError
from tuneform.runfile.trees import WorkTree, git

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
    superseded: list[dict[str, Any]] = field(default_factory=list)  # older jobs of the run this apply canceled (or tried to)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "job_id": self.job_id,
            "manifest": self.manifest,
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
        if run.check.backend == "hf-jobs" and run.action not in ("noop", "delete", "blocked"):
            result.outcomes.append(_apply_hf(run, plan, tree, facts, wait=wait, say=say))
        else:
            result.outcomes.append(_apply_one(run, registry, tree, home, facts, wait=wait, say=say))
    return result


def _apply_one(
    run: PlannedRun, registry: LocalRegistry, tree: WorkTree, home: Path, facts: dict[str, Any], *, wait: bool, say: Say
) -> RunOutcome:
    check = run.check
    if run.action in ("noop", "delete"):
        note = "nothing to do" if run.action == "noop" else "the registry keeps its versions; nothing removed"
        return RunOutcome(check.path, run.action, "skipped", note)
    if run.action == "blocked":
        return RunOutcome(
            check.path, run.action, "failed", f"run-{(check.key or '')[:12]} failed its gates before: change the run to train a new version"
        )
    if check.backend != "local":
        return RunOutcome(
            check.path, run.action, "failed", f"backend {check.backend} is not available in this version of tuneform: use --backend local"
        )
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
        return RunOutcome(
            check.path, run.action, "failed", "gates failed: version kept and marked, main not moved", job.id, version.manifest
        )
    if stage != local.COMPLETED:
        message = job.state.get("message") or f"job ended {stage}: see {job.log}"
        return RunOutcome(check.path, run.action, "failed", message, job.id, version.manifest if version else None)
    if version is None:
        return RunOutcome(check.path, run.action, "failed", f"the job finished but published nothing: see {job.log}", job.id)
    message = "scored again with the changed evals" if run.action == "evaluate" else "trained and published"
    return RunOutcome(check.path, run.action, "done", message, job.id, version.manifest)


# ----------------------------------------------------------------------------------------- hf-jobs


def _apply_hf(run: PlannedRun, plan: Plan, tree: WorkTree, facts: dict[str, Any], *, wait: bool, say: Say) -> RunOutcome:
    """One run on Hugging Face Jobs: restore by server-side copy ($0, no job), or submit the job once."""
    import os
    import tempfile

    from tuneform.backends import hfjobs
    from tuneform.core.hub import hub_api
    from tuneform.registry.hub import HubRegistry, tag_of

    check = run.check
    assert check.output_repo and check.key and check.spec is not None
    repo, key, spec = check.output_repo, check.key, check.spec
    token = os.environ.get("HF_TOKEN")
    if not token:
        return RunOutcome(
            check.path,
            run.action,
            "failed",
            "backend hf-jobs needs HF_TOKEN: a write token of the output repo's namespace (never put it in a run file)",
        )
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # apply prints its own lines; upload bars would interleave with them
    api = hub_api(token)
    registry = HubRegistry(api, say=say)
    if run.action == "restore":
        try:
            commit = registry.restore(repo, key, check.path)
        except RegistryError as exc:
            return RunOutcome(check.path, run.action, "failed", str(exc))
        except Exception as exc:
            return RunOutcome(check.path, run.action, "failed", hfjobs.explain(exc, f"restoring {tag_of(key)}"))
        say(f"restored {repo} main to {tag_of(key)} (commit {commit[:12]}; server-side copy, no job, $0)")
        version = registry.get(repo, key)
        return RunOutcome(check.path, run.action, "done", "main restored", manifest=version.manifest if version else None)

    estimate = check.sizing.estimate if check.sizing else None
    if estimate is None:
        return RunOutcome(check.path, run.action, "failed", "no estimate for this run, so no flavor or timeout: tuneform plan says why")
    jobs = hfjobs.HfJobs(api, hfjobs.namespace_of(repo), say)
    label = hfjobs.job_key(key, run.action, check.eval_hash)
    try:
        active = jobs.active_job(label)
        if active is not None:
            return RunOutcome(
                check.path,
                run.action,
                "skipped",
                f"already submitted: job {active.id} ({active.status.stage}) {jobs.url(active.id)}",
                active.id,
            )
        if run.action != "evaluate" and registry.get(repo, key) is not None:
            return RunOutcome(check.path, run.action, "skipped", f"already submitted: {tag_of(key)} is published in {repo}")
        readable = [] if spec.model.is_local else [("model", spec.model.id)]
        readable += [("dataset", src.dataset) for src in spec.data.train if getattr(src, "dataset", None)]
        jobs.check_readable(readable)
        registry.ensure_repo(repo, spec.output.private)
        if not jobs.claim(repo, key, label):
            return RunOutcome(
                check.path,
                run.action,
                "skipped",
                f"another apply is submitting {tag_of(key)} (branch {hfjobs.claim_branch(key)} in {repo}); if none is, delete that branch and apply again",
            )
    except hfjobs.HfJobsError as exc:
        return RunOutcome(check.path, run.action, "failed", str(exc))
    except RegistryError as exc:
        return RunOutcome(check.path, run.action, "failed", str(exc))
    except Exception as exc:
        return RunOutcome(check.path, run.action, "failed", hfjobs.explain(exc, "preparing the job"))

    try:
        with tempfile.TemporaryDirectory(prefix="tuneform-submit-") as tmp:
            extra = {
                "git": facts,
                "action": run.action,
                "expected_main": registry.main(repo),
                "expected_main_commit": registry.main_commit(repo),
                "backend": "hf-jobs",
                "checkpoint_minutes": plan.settings.checkpoint_minutes,
            }
            bundle = build_bundle(check, tree, Path(tmp) / "bundle", extra)
            wheel = hfjobs.build_wheel(Path(tmp) / "wheel")
            branch = jobs.upload(repo, key, bundle.path, wheel)
        caps = [spec.budget.max_usd, plan.settings.max_usd_per_run]
        timeout = hfjobs.timeout_seconds(estimate.seconds, estimate.flavor.usd_per_hour, caps, spec.compute.timeout)
        image = spec.compute.image or os.environ.get("TUNEFORM_HF_IMAGE") or hfjobs.DEFAULT_IMAGE
        submitted = jobs.submit(
            repo=repo,
            key=key,
            label=label,
            branch=branch,
            image=image,
            flavor=estimate.flavor.name,
            timeout=timeout,
            token=token,
            git_sha=facts.get("commit"),
            name=f"tuneform-{check.name}"[:100],
        )
    except (hfjobs.HfJobsError, RegistryError) as exc:
        jobs.release(repo, key)
        return RunOutcome(check.path, run.action, "failed", str(exc))
    except Exception as exc:
        jobs.release(repo, key)
        return RunOutcome(check.path, run.action, "failed", hfjobs.explain(exc, "submitting the job"))
    say(
        f"submitted job {submitted.job_id} ({run.action} {check.path}) on {estimate.flavor.name}, timeout {timeout // 60} min: {submitted.url}"
    )
    superseded, note = _supersede(jobs, repo, key, submitted, say)
    if not wait:
        return RunOutcome(check.path, run.action, "done", f"submitted: {submitted.url}{note}", submitted.job_id, superseded=superseded)

    try:
        info = jobs.follow(submitted.job_id, say)
    except Exception as exc:
        return RunOutcome(
            check.path,
            run.action,
            "failed",
            hfjobs.explain(exc, f"following job {submitted.job_id} (it may still run: tuneform status {submitted.job_id})"),
            submitted.job_id,
            superseded=superseded,
        )
    outcome = _followed(run, info, jobs, registry, repo, key, submitted)
    outcome.superseded = superseded
    if note and outcome.status == "done":
        outcome.message += note
    return outcome


def _supersede(jobs: Any, repo: str, key: str, submitted: Any, say: Say) -> tuple[list[dict[str, Any]], str]:
    """Cancel the run's older jobs still queued or running (another key: this apply replaced them).
    Failing to cancel, or to list them, is a warning: the new job is submitted either way."""
    from tuneform.backends import hfjobs

    try:
        found = jobs.supersede(repo, key, submitted)
    except Exception as exc:
        say(f"warning: could not look for superseded jobs of {repo}: {hfjobs.explain(exc, 'listing jobs')}")
        return [], ""
    notes = []
    for old in found:
        if old.canceled:
            say(f"canceled superseded job {old.job_id} (run-{old.run})")
            notes.append(f"canceled superseded job {old.job_id} (run-{old.run})")
        else:
            say(f"warning: could not cancel superseded job {old.job_id} (run-{old.run}, {old.stage}): {old.message}")
            notes.append(f"could not cancel superseded job {old.job_id} (run-{old.run})")
    return [old.as_json() for old in found], "".join(f"; {n}" for n in notes)


def _followed(run: PlannedRun, info: Any, jobs: Any, registry: Any, repo: str, key: str, submitted: Any) -> RunOutcome:
    """The outcome of a job followed to its end."""
    check = run.check
    stage = info.status.stage
    version = registry.get(repo, key)
    if stage != "COMPLETED":
        jobs.release(repo, key)  # a failed attempt holds no claim: applying again submits again
        tail = "\n".join(f"    {line}" for line in getattr(info, "log_tail", [])[-10:])
        why = info.status.message or stage
        hint = " (raise compute.timeout or shorten the run)" if "timeout" in why.lower() else ""
        return RunOutcome(
            check.path,
            run.action,
            "failed",
            f"job {submitted.job_id} ended {stage}: {why}{hint}; last log lines:\n{tail}",
            submitted.job_id,
            version.manifest if version else None,
        )
    jobs.release(repo, key)
    if run.action == "evaluate":
        return RunOutcome(check.path, run.action, "done", "scored again with the changed evals", submitted.job_id)
    if version is None:
        return RunOutcome(
            check.path,
            run.action,
            "failed",
            f"job {submitted.job_id} finished but published nothing: tuneform logs {submitted.job_id}",
            submitted.job_id,
        )
    if version.status != "passed":
        return RunOutcome(
            check.path, run.action, "failed", "gates failed: version kept and marked, main not moved", submitted.job_id, version.manifest
        )
    return RunOutcome(check.path, run.action, "done", "trained and published", submitted.job_id, version.manifest)
