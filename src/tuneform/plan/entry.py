"""One run's entry in `tuneform plan --format json` (DESIGN: plan -> runs[...]), as a model.

The plan's JSON is read by agents, by the plan comment and by the reuse lookup of a workflow
that trusts nothing in it (github/reuse.py), so its shape is a contract: the fields below, in
this order, are what `plan --format json` prints under `runs` (schema_version 2). A reader
validates it with `PlanEntry.read`, which drops keys it does not know.
"""

from __future__ import annotations

from typing import Any

from tuneform.core.manifest import PlannedEstimate, Record


class PlanEntry(Record):
    """What apply would do for one run file, what it costs, and what it reuses."""

    path: str
    name: str
    action: str  # create update noop delete restore evaluate blocked invalid
    run_key: str | None
    base_run_key: str | None
    eval_hash: str | None
    base_path: str | None
    backend: str
    output_repo: str | None
    image: str | None = None  # the container an hf-jobs job runs in; None for the local backend
    flavor: str | None
    estimate: PlannedEstimate | None
    fits: bool | None
    budget_ok: bool
    usd: float | None  # None when the cost is unknown (schema_version 2)
    usd_status: str  # "known" or "unknown"
    base_usd: float | None
    errors: list[dict[str, Any]]  # Problem.as_json(): line, column, field, message
    warnings: list[dict[str, Any]]
    reuse: dict[str, Any] | None  # {"version": "run-<key12>", "trained_in": {"commit", "pr"}}
    registry: str  # "read", "unknown", or why the registry could not be read
    tokens_counted_by: str | None
    data: dict[str, Any] | None = None  # the data check of a run that trains (data/check.py)
    timeout_s: int | None = None  # the job's time limit (runs that submit a job): estimate.sizing.job_timeout
    method: str | None = None  # method.type of the run as it stands (None when it does not load)
    rows: int | None = None  # training rows counted (a preference pair is one row); None when not counted
    sequences: int | None = None  # what those rows train as: a pair is two sequences, any other row one

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()
