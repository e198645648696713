"""The Backend protocol: what apply, status, logs and cancel ask of a backend, whichever it is.

A backend runs `tuneform job` somewhere and keeps versions in a registry (registry/protocol.py):

- `registry(root)`: the registry plan reads (None: not readable from here, e.g. offline).
- `prices()`: the flavor table to plan with (the backend's current prices where it has them);
  a warning when it could not ask (the offline table is used then).
- `restore(run, ctx)`: move main to the version already trained for the run ($0, no job), only
  from the main commit it read (the registry's compare-and-swap).
- `submit(run, ctx)`: build the bundle and start the job, once: a key already trained or in
  flight comes back as `Submission(new=False)` with the reason, and nothing starts.
- `follow(submission, ctx)`: stream the job's lines until it ends; whether it completed, why not,
  and the version the registry holds for the key afterwards.
- `find_job(root, ref)`, `status`, `logs`, `cancel`: a job named by the user (a job id, run name
  or key prefix, as the backend understands them), read or stopped after apply has exited.

Errors a user can act on are raised as `BackendError` (or the registry's `RegistryError`) with a
message that says what to do. The table of backends is `BACKENDS` in backends/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuneform.core.errors import TuneformError
from tuneform.estimate.catalog import FlavorTable
from tuneform.job.bundle import Bundle, build_bundle, git_facts
from tuneform.plan.planner import Plan, PlannedRun
from tuneform.registry.protocol import Registry, Version
from tuneform.runfile.trees import WorkTree

Say = Callable[[str], None]


class BackendError(TuneformError):
    """Submitting, following or reaching a job failed; the message says what to do."""


@dataclass
class ApplyContext:
    """What every backend needs to carry out one plan."""

    plan: Plan
    root: Path
    home: Path  # the local registry folder (jobs of backend local live under it)
    pr: int | None  # the pull request the plan came from (recorded in the manifest)
    say: Say

    def bundle(self, run: PlannedRun, registry: Registry, dest: Path, *, job_id: str | None = None) -> Bundle:
        """The run's bundle in `dest`, with what the job needs to publish safely: the main it
        replaces and main's commit as apply read it (the job moves main only from there), and
        the git facts of the run file (commit, committed unchanged or not, PR) for its lineage."""
        repo = run.check.output_repo
        assert repo is not None
        return build_bundle(
            run.check,
            WorkTree(self.root),
            dest,
            git=git_facts(self.root, run.check.path, self.pr),
            action=run.action,
            expected_main=registry.main(repo),
            expected_main_commit=registry.main_commit(repo),
            job_id=job_id,
            checkpoint_minutes=self.plan.settings.checkpoint_minutes,
        )


@dataclass
class Submission:
    """A job apply started (new) or found already doing the work (not new: nothing started)."""

    new: bool
    message: str  # what the outcome says: where to watch it, or why nothing was submitted
    job_id: str | None = None
    superseded: list[dict[str, Any]] = field(default_factory=list)  # older jobs of the run it canceled (or tried to)
    handle: Any = None  # what the backend's follow needs (a process, the server's answer)
    note: str = ""  # joins the outcome's message when the job succeeds (e.g. superseded jobs canceled)


@dataclass
class Ended:
    """A followed job at its end."""

    completed: bool
    message: str  # why it did not complete (its stage, its last lines): empty when it did
    version: Version | None  # what the registry holds for the run key now


@dataclass(frozen=True)
class JobRef:
    """A job a user named: its id as the backend prints it, and where it lives (an HF namespace;
    empty for a local job, whose folder is found from the repository)."""

    id: str
    where: str = ""


class Backend(Protocol):
    """One place jobs run and versions are kept. Adding a backend: a module implementing this, and
    an entry in BACKENDS (backends/__init__.py)."""

    name: str

    def registry(self, root: Path) -> Registry | None: ...

    def prices(self) -> tuple[FlavorTable, str | None]: ...

    def restore(self, run: PlannedRun, ctx: ApplyContext) -> Version | None: ...

    def submit(self, run: PlannedRun, ctx: ApplyContext) -> Submission: ...

    def follow(self, run: PlannedRun, submission: Submission, ctx: ApplyContext) -> Ended: ...

    def find_job(self, root: Path, ref: str) -> JobRef | None: ...

    def status(self, root: Path, job: JobRef) -> dict[str, Any]: ...

    def logs(self, root: Path, job: JobRef, lines: int | None) -> list[str]: ...

    def cancel(self, root: Path, job: JobRef) -> tuple[bool, str]: ...
