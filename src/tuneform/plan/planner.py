"""Plan: from two states of the repository and the registry to one action per run.

A plan is a pure function of (base files, working files, registry state): it reads, it never
writes. Runs are matched across the two states by path, then by run key (a renamed file), then
by name. The git comparison says what a change does; the registry, when readable, says what is
already trained, which turns a revert into `restore` and a re-run into `noop`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneform.core.errors import TuneformError
from tuneform.core.manifest import PlannedEstimate
from tuneform.data.check import CHECKED_ACTIONS, DataReport, DataSection, check_data
from tuneform.estimate.catalog import FLAVORS, FlavorTable
from tuneform.estimate.sizing import JobTimeout, job_timeout, usd_text
from tuneform.plan.entry import PlanEntry
from tuneform.plan.month import MonthToDate, month_problems, month_to_date, month_warning
from tuneform.plan.runcheck import RUN_SUFFIXES, RUNS_DIR, RunCheck, check_run, check_shared_outputs
from tuneform.registry.protocol import FAILED_GATES, Registry, RegistryError, Version
from tuneform.runfile.diagnostics import Problem
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import PYPROJECT, Settings, SettingsError, load_settings
from tuneform.runfile.trees import GitTree, Tree, TreeError, WorkTree, argument_path, default_base, resolve_rev, shown

# 2: a run's `usd` is null when its cost is unknown (`usd_status` says which); it was always a number.
PLAN_SCHEMA_VERSION = 2
# `--base 0000...0` (GitHub's `before` of a first push) compares with git's empty tree.
NO_BASE = re.compile(r"^0{40}$")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# What a plan says when the repository has no commit on main yet (a fresh `tuneform init`).
NO_MAIN_YET = (
    "no commit on 'main' yet: compared with the empty tree, so every run is new (pass --base REF to compare with another revision)"
)
ACTIONS = ("create", "update", "noop", "delete", "restore", "evaluate", "blocked", "invalid")
# Actions that train; with evaluate (a GPU job that scores the existing model again), the ones
# that cost money and that every cap binds.
TRAINING_ACTIONS = ("create", "update")
# Actions that submit a job, so get a time limit.
JOB_ACTIONS = (*TRAINING_ACTIONS, "evaluate")
PRICED_ACTIONS = JOB_ACTIONS


@dataclass(frozen=True)
class BudgetApproval:
    """An approval of spending over the budget caps: up to `usd` (None: whatever this plan costs,
    as a PR's own plan shows a label), given as `by` says (who, on which commit)."""

    usd: float | None
    by: str


# Actions that run a job or write to the output repo: what the trust boundary stops.
ACTING = (*JOB_ACTIONS, "restore")


@dataclass
class PlannedRun:
    """One run's entry in a plan."""

    action: str
    head: RunCheck | None
    base: RunCheck | None
    reuse: Version | None = None
    registry_state: str = "unknown"  # "read", "unknown" (not readable), or an error message
    budget_problems: list[Problem] = field(default_factory=list)
    approved: list[Problem] = field(default_factory=list)  # over budget, approved by the PR's label
    timeout: JobTimeout | None = None  # the job's time limit (runs that submit a job)
    timeout_problems: list[Problem] = field(default_factory=list)  # compute.timeout over what the budget allows
    untrusted: list[Problem] = field(default_factory=list)  # outside the allowed images/namespaces: blocked, no label lifts it

    @property
    def check(self) -> RunCheck:
        run = self.head or self.base
        assert run is not None
        return run

    @property
    def usd(self) -> float | None:
        """What this action costs: a training job, or a scoring-only job for evaluate; restore,
        noop and delete are free. None when it costs money but could not be estimated."""
        if self.action not in PRICED_ACTIONS or not self.head:
            return 0.0
        estimate = self.head.sizing.estimate if self.head.sizing else None
        if estimate is None:
            return None if self.head.unpriced else 0.0
        return estimate.evaluate_usd if self.action == "evaluate" else estimate.usd

    @property
    def unknown_cost(self) -> Problem | None:
        """Why this run's cost is unknown, when it is: it fails the budget check, and no approval
        label lifts it (an approval is for an amount)."""
        return self.head.unpriced if self.usd is None and self.head else None

    @property
    def base_usd(self) -> float | None:
        if self.base and self.base.sizing and self.base.sizing.estimate:
            return self.base.sizing.estimate.usd
        return None

    @property
    def budget_ok(self) -> bool:
        return not self.budget_problems and self.unknown_cost is None

    def entry(self, data: DataReport | None = None) -> PlanEntry:
        """This run's entry in the plan's JSON, with its data check when it has one."""
        run = self.check
        sizing = self.head.sizing if self.head else None
        estimate = sizing.estimate if sizing else None
        unknown = [self.unknown_cost] if self.unknown_cost else []
        problems = (
            (self.head.problems if self.head else [])
            + unknown
            + self.budget_problems
            + self.approved
            + self.timeout_problems
            + self.untrusted
        )
        return PlanEntry(
            path=run.path,
            name=run.name,
            action=self.action,
            run_key=run.key,
            base_run_key=self.base.key if self.base else None,
            eval_hash=run.eval_hash,
            base_path=self.base.path if self.base else None,
            backend=run.backend,
            output_repo=run.output_repo,
            image=run.image,
            flavor=estimate.flavor.name if estimate else None,
            estimate=PlannedEstimate.model_validate(estimate.as_json()) if estimate else None,
            fits=sizing.fits if sizing else None,
            budget_ok=self.budget_ok,
            usd=None if self.usd is None else round(self.usd, 4),
            usd_status="unknown" if self.usd is None else "known",
            base_usd=None if self.base_usd is None else round(self.base_usd, 4),
            errors=[p.as_json() for p in problems if p.severity == "error"],
            warnings=[p.as_json() for p in problems if p.severity == "warning"],
            reuse=_reuse_json(self.reuse) if self.action in ("restore", "noop") else None,
            registry=self.registry_state,
            tokens_counted_by=sizing.token_method if sizing else None,
            timeout_s=self.timeout.seconds if self.timeout else None,
            data=data.as_json() if data else None,
            method=self.head.spec.method.type if self.head and self.head.spec else None,
            rows=sizing.rows if sizing else None,
            sequences=sizing.sequences if sizing else None,
        )


def _reuse_json(version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"version": f"run-{version.key[:12]}", "trained_in": {"commit": version.commit, "pr": version.pr}}


class PlanNotApplicable(TuneformError):
    """`apply` refuses a plan with an invalid run or a budget that was not approved."""


@dataclass
class Plan:
    base_rev: str
    runs: list[PlannedRun]
    settings: Settings
    problems: list[Problem] = field(default_factory=list)
    data: DataSection | None = None  # data checks of the runs that train
    #: The runs together cost more than [tool.tuneform] max_usd_per_pr and no approval label lifted it.
    over_pr_cap: bool = False
    #: This month's spending (None: no max_usd_per_month, so it is not counted).
    month: MonthToDate | None = None
    #: Month to date plus this plan crosses max_usd_per_month (or apply cannot count it), unapproved.
    over_month_cap: bool = False

    @property
    def total_usd(self) -> float:
        """The known costs' sum: a run of unknown cost fails the plan on its own."""
        return sum(r.usd or 0.0 for r in self.runs)

    @property
    def base_total_usd(self) -> float:
        return sum(r.base_usd or 0.0 for r in self.runs if r.action in TRAINING_ACTIONS)

    @property
    def over_budget(self) -> bool:
        """Whether the plan fails (also) because of a budget: a run's cap, the PR cap or the monthly cap."""
        return self.over_pr_cap or self.over_month_cap or any(run.budget_problems for run in self.runs)

    def refusal(self, unapproved: str) -> PlanNotApplicable:
        """Why `apply` refuses this plan (it is not ok); `unapproved` says why no approval label
        lifted a budget, shown when the plan is over one."""
        message = "the plan is not applicable: fix the errors above (tuneform plan shows them)"
        if self.over_budget:
            message += f"; over budget: it applies only when someone with write access adds the approval label '{self.settings.budget_label}' after the PR's last plan ({unapproved})"
        return PlanNotApplicable(message)

    @property
    def ok(self) -> bool:
        """False when any run is invalid or over budget, or the plan as a whole is over budget."""
        return (
            not any(p.severity == "error" for p in self.problems)
            and all(r.action != "invalid" and r.budget_ok and not r.untrusted for r in self.runs)
            and not (self.data and self.data.failed)
        )

    def as_json(self) -> dict[str, Any]:
        reports = self.data.reports if self.data else {}
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "base": self.base_rev,
            "runs": [r.entry(reports.get(r.check.path)).to_json() for r in self.runs],
            "total_usd": round(self.total_usd, 4),
            "base_total_usd": round(self.base_total_usd, 4),
            "max_usd_per_pr": self.settings.max_usd_per_pr,
            **self._month_json(),
            "ok": self.ok,
            "errors": [p.as_json() for p in self.problems if p.severity == "error"],
            "warnings": [p.as_json() for p in self.problems if p.severity == "warning"],
        }

    def _month_json(self) -> dict[str, Any]:
        """The monthly cap's fields: month to date (null when not counted or unknown) and what is
        left of the cap after this plan (negative: over it)."""
        cap, spent = self.settings.max_usd_per_month, self.month.usd if self.month else None
        return {
            "max_usd_per_month": cap,
            "month_to_date_usd": None if spent is None else round(spent, 4),
            "month_left_usd": None if spent is None or cap is None else round(cap - spent - self.total_usd, 4),
            "month_to_date": self.month.as_json() if self.month else None,
        }


RegistryFor = Any  # callable: backend name -> Registry | None (None: not readable here)


def make_plan(
    root: Path,
    *,
    base: str | None = None,
    paths: list[str] | None = None,
    registry_for: RegistryFor = lambda backend: None,
    backend: str | None = None,
    hub: HubResolver | None = None,
    labels: tuple[str, ...] | list[str] = (),
    approval: BudgetApproval | Callable[[str], BudgetApproval | None] | None = None,
    flavors: FlavorTable = FLAVORS,
    applying: bool = False,
) -> Plan:
    """Compare runs at `base` (default: merge base with main) with the working tree.

    `paths` limits the plan to those run files; each named file is planned even when git shows
    no change, so `tuneform plan runs/x.yaml` always answers "what would apply do to x".
    Settings (budgets, allowed flavors) come from the base's pyproject.toml when it has one, so a
    pull request cannot raise its own limits. `flavors` prices the runs: the offline table, or
    the Hub's current prices (catalog.hub_flavor_table), passed in by the caller. `applying`: the
    plan is apply's, so a month to date it cannot count refuses (plan/month.py).
    Over-budget runs are approved by `approval` (apply: checked against GitHub, with an amount;
    a function is asked with the label the base's settings name), else by the approval label
    among `labels` (a PR's plan: what the label would approve).
    """
    hub = hub or HubResolver()
    problems: list[Problem] = []
    if base is not None and NO_BASE.match(base):
        base_rev = EMPTY_TREE  # a first push (GitHub's all-zero "before"): every run is new
    elif base is not None:
        base_rev = _base_commit(root, base, problems)
    else:
        base_rev = default_base(root) or EMPTY_TREE
        if base_rev == EMPTY_TREE:  # before the first commit on main: nothing was ever applied
            problems.append(Problem(NO_MAIN_YET, severity="warning"))
    # a base rewritten away (_base_commit's warning) is shown as the commit used instead
    base_tree = GitTree(root, base_rev, label=base if base and not problems else base_rev[:12])
    head_tree = WorkTree(root)
    try:
        settings = load_settings(base_tree) if base_tree.exists(PYPROJECT) else load_settings(head_tree)
    except SettingsError as exc:
        problems.append(exc.problem)
        settings = Settings()

    problems += _budget_label_drift(base_tree if base_tree.exists(COMMENT_WORKFLOW) else head_tree, settings)
    explicit = _explicit_paths(root, paths, problems) if paths else None
    head_paths = explicit if explicit is not None else head_tree.list(RUNS_DIR, RUN_SUFFIXES)
    base_paths = base_tree.list(RUNS_DIR, RUN_SUFFIXES)
    base_tree.prefetch(base_paths)

    # Every file listed under runs/ is checked, even one that cannot be read (a symlink loop is an
    # invalid run, not no run); a path named on the command line must exist to be one.
    heads = {
        p: check_run(head_tree, p, settings, hub, backend=backend, flavors=flavors)
        for p in head_paths
        if explicit is None or head_tree.exists(p)
    }
    check_shared_outputs(heads.values())
    bases = {p: check_run(base_tree, p, settings, hub, backend=backend, flavors=flavors) for p in base_paths}
    pairs = _match(heads, bases, explicit)
    decided = (_guard(_decide(head, base_run, registry_for, explicit is not None)) for head, base_run in pairs)
    runs = [r for r in decided if r is not None]
    for missing in explicit or []:
        if missing not in heads and missing not in bases:
            problems.append(Problem(f"{shown(missing)}: no such run file: pass a run file in the repository (default: runs/)"))
    plan = Plan(base_rev, runs, settings, problems)
    if settings.max_usd_per_month is not None:
        submits = {r.check.key for r in runs if r.action in PRICED_ACTIONS and r.check.key}
        checks = [*heads.values(), *bases.values()]
        plan.month = month_to_date(checks, registry_for, planned_keys=submits, required=applying)
        plan.problems += [w for w in [month_warning(plan.month)] if w]
    if callable(approval):
        approval = approval(settings.budget_label)
    if approval is None and settings.budget_label in labels:
        approval = BudgetApproval(None, f"by the '{settings.budget_label}' label")
    _apply_budgets(plan, settings, approval)
    plan.data = plan_data_section(plan.runs, root, base_rev, settings)
    return plan


COMMENT_WORKFLOW = ".github/workflows/comment.yml"
_BUDGET_LABEL_LINE = re.compile(r"^\s*BUDGET_LABEL:\s*(?P<q>[\"']?)(?P<label>[^\"'#\s]+)(?P=q)", re.MULTILINE)


def _budget_label_drift(tree: Tree, settings: Settings) -> list[Problem]:
    """A warning when the plan comment's workflow stamps approvals with another label than
    [tool.tuneform] budget_label. That workflow checks out nothing (it runs with write access on
    a pull request's artifact), so `tuneform init` writes the label into it; changing the setting
    alone would leave the comment saying a plan is unapproved that apply approves, or the reverse."""
    try:
        found = _BUDGET_LABEL_LINE.search(tree.read(COMMENT_WORKFLOW).decode("utf-8", "replace"))
    except TreeError:
        return []  # no such workflow: nothing stamps approvals
    if found is None or found["label"] == settings.budget_label:
        return []
    return [
        Problem(
            f"{COMMENT_WORKFLOW} stamps approvals with the label '{found['label']}' but [tool.tuneform] budget_label is "
            f"'{settings.budget_label}': set BUDGET_LABEL there to '{settings.budget_label}' so the plan comment says what apply decides",
            severity="warning",
        )
    ]


def _base_commit(root: Path, base: str, problems: list[Problem]) -> str:
    """The commit `base` names. A full SHA this clone does not have is a push's `before` that a
    force-push rewrote away (a checkout with full history has every other one): the plan then
    compares with the first parent of HEAD, the commit the pushed one was made on, and says so. A
    force-push that replaced several commits leaves the runs changed in the others to a manual
    apply of their files."""
    try:
        return resolve_rev(root, base)
    except TreeError as missing:
        if not FULL_SHA.match(base):
            raise
        try:
            parent = resolve_rev(root, "HEAD^1")
        except TreeError:  # a shallow clone, or a first commit: nothing to fall back on
            raise missing from None
    problems.append(
        Problem(
            f"base {base[:12]} is not in this clone (a force-push rewrote it): compared with {parent[:12]}, the first parent of HEAD, "
            "instead; apply a run changed in other rewritten commits by naming its file (tuneform apply runs/NAME.yaml)",
            severity="warning",
        )
    )
    return parent


def _explicit_paths(root: Path, paths: list[str], problems: list[Problem]) -> list[str]:
    """Run files named on the command line, repository-relative (a path outside the repository
    as typed, so it is reported missing); one that cannot be resolved is a problem, not a run."""
    found: list[str] = []
    for path in paths:
        try:
            found.append(argument_path(root, path) or path)
        except TreeError as exc:  # a symlink loop, a name too long
            problems.append(Problem(str(exc)))
    return found


def _match(
    heads: dict[str, RunCheck], bases: dict[str, RunCheck], explicit: list[str] | None
) -> list[tuple[RunCheck | None, RunCheck | None]]:
    """Pair head runs with base runs: same path, else same key (renamed), else same name."""
    pairs: list[tuple[RunCheck | None, RunCheck | None]] = []
    free_bases = dict(bases)
    unmatched: list[RunCheck] = []
    for path, head in heads.items():
        if path in free_bases:
            pairs.append((head, free_bases.pop(path)))
        else:
            unmatched.append(head)
    for head in list(unmatched):
        for key_of in (lambda r: r.key, lambda r: r.name):
            found = next((b for b in free_bases.values() if key_of(b) is not None and key_of(b) == key_of(head)), None)
            if found:
                pairs.append((head, free_bases.pop(found.path)))
                unmatched.remove(head)
                break
    pairs.extend((head, None) for head in unmatched)
    if explicit is None:
        pairs.extend((None, b) for b in free_bases.values())
    else:
        pairs.extend((None, b) for p, b in free_bases.items() if p in explicit)
    return sorted(pairs, key=lambda pair: (pair[0] or pair[1]).path)  # type: ignore[union-attr]


def _decide(head: RunCheck | None, base: RunCheck | None, registry_for: RegistryFor, explicit: bool) -> PlannedRun | None:
    """One run's action; None when the run is out of scope (unchanged and not named)."""
    if head is None:
        assert base is not None
        return PlannedRun("delete", None, base)
    if not head.ok:
        return PlannedRun("invalid", head, base)
    evals_changed = base is not None and base.eval_hash != head.eval_hash
    changed = base is None or base.file_sha256 != head.file_sha256 or base.path != head.path or base.key != head.key or evals_changed
    in_scope = changed or explicit
    same_key = base is not None and base.key == head.key
    version, main, state = _lookup(head, base, registry_for)
    if version is not None:
        # the registry knows which evals scored this version: that, not git, says whether to score again
        evals_changed = not _scored_with(registry_for(head.backend), version, head.eval_hash)
    if state != "read":
        # registry not readable (a private Hub repo in a tokenless PR job): git alone decides
        if not in_scope:
            return None
        if same_key:
            return PlannedRun("evaluate" if evals_changed else "noop", head, base, registry_state=state)
        return PlannedRun("update" if base else "create", head, base, registry_state=state)
    if version is not None and version.status == FAILED_GATES:
        return PlannedRun("blocked", head, base, version, state) if in_scope else None
    if version is not None and main != head.key:
        # trained before, but main holds another version: a revert. Shown even when git shows
        # no change, since apply would otherwise leave the registry disagreeing with the file.
        return PlannedRun("restore", head, base, version, state)
    if not in_scope:
        return None
    if version is not None:
        return PlannedRun("evaluate" if evals_changed else "noop", head, base, version, state)
    return PlannedRun("update" if base is not None and not same_key else "create", head, base, registry_state=state)


def _guard(run: PlannedRun | None) -> PlannedRun | None:
    """A run that would start a job or write its output repo while outside the base branch's
    allowed images or namespaces is blocked, with the setting to change; one that does nothing
    (noop, delete) is left as it is."""
    if run is None or run.head is None or not run.head.trust_problems or run.action not in ACTING:
        return run
    return replace(run, action="blocked", untrusted=list(run.head.trust_problems))


def _scored_with(registry: Registry | None, version: Version, eval_hash: str | None) -> bool:
    """Whether this version has scores under these evals: at training time or by an evaluate."""
    if version.manifest.eval_hash == eval_hash:
        return True
    repo = version.manifest.output_repo
    return bool(registry is not None and repo and eval_hash and registry.has_evals(repo, version.key, eval_hash))


def _lookup(head: RunCheck, base: RunCheck | None, registry_for: RegistryFor) -> tuple[Version | None, str | None, str]:
    """(version of head's key, key at main, "read" | "unknown" | an error message).

    A renamed file changes the default output repo; its versions are then found under the
    base's repo, so a rename stays a noop (DESIGN: same key, same model).
    """
    registry: Registry | None = registry_for(head.backend)
    if registry is None or not head.output_repo or not head.key:
        return None, None, "unknown"
    repos = [head.output_repo] + ([base.output_repo] if base and base.output_repo and base.output_repo != head.output_repo else [])
    try:
        for repo in repos:
            version = registry.get(repo, head.key)
            if version is not None or repo == repos[-1]:
                return version, registry.main(repo), "read"
    except RegistryError as exc:
        return None, None, str(exc)
    return None, None, "read"


def _apply_budgets(plan: Plan, settings: Settings, approval: BudgetApproval | None) -> None:
    """Per-run caps bind the actions that cost money (training, and evaluate's scoring job); the PR
    cap binds the plan's total; the monthly cap binds month to date plus the plan's total
    (plan/month.py).

    An approval (read from GitHub, never from files the PR controls) turns the over-budget errors
    into warnings that say who approved them, unless the plan costs more than the amount it
    approved. Then each job's time limit is set from what the budget (or the approval) allows.
    """
    problems: list[Problem] = []
    for run in plan.runs:
        if run.action in TRAINING_ACTIONS and run.head is not None:
            run.budget_problems = list(run.head.budget_problems)
        elif run.action == "evaluate" and run.head is not None:
            run.budget_problems = list(run.head.evaluate_budget_problems)
    cap = settings.max_usd_per_pr
    if cap is not None and plan.total_usd > cap:
        problems.append(
            Problem(
                f"this plan's runs total {usd_text(plan.total_usd)}, over [tool.tuneform] max_usd_per_pr ({usd_text(cap)}): split the change or get it approved (label '{settings.budget_label}')"
            )
        )
    month = month_problems(plan.month, plan.total_usd, settings)
    if not problems and not month and not any(run.budget_problems for run in plan.runs):
        approval = None  # within every cap: nothing to approve, the caps bind the timeouts
    # compared as the plan JSON states the total (4 decimals), which is what the comment was stamped with
    if approval is not None and approval.usd is not None and round(plan.total_usd, 4) > approval.usd:
        problems.append(
            Problem(
                f"this plan costs {usd_text(plan.total_usd)}, more than the {usd_text(approval.usd)} approved {approval.by}: "
                f"shrink the runs, or get the new amount approved (remove and add the label '{settings.budget_label}' again)"
            )
        )
        approval = None
    if approval is None:
        plan.problems.extend(problems + month)
        plan.over_pr_cap, plan.over_month_cap = bool(problems), bool(month)
    else:
        amount = f"{usd_text(approval.usd)} " if approval.usd is not None else ""
        note = f" (approved {amount}{approval.by})"
        for run in plan.runs:
            run.approved = [replace(p, message=p.message + note, severity="warning") for p in run.budget_problems]
            run.budget_problems = []
        plan.problems.extend(replace(p, message=p.message + note, severity="warning") for p in problems + month)
    for run in plan.runs:
        _set_timeout(run, plan, settings, approval)


def _set_timeout(run: PlannedRun, plan: Plan, settings: Settings, approval: BudgetApproval | None) -> None:
    """The job's time limit: from the estimate with its margin (sizing.job_timeout), capped by
    the run's caps, by its share of the PR cap (its part of the plan's cost), and for an approved
    plan by its share of the approved amount instead of the caps that amount lifted."""
    check = run.head
    estimate = check.sizing.estimate if check and check.sizing else None
    if run.action not in JOB_ACTIONS or check is None or check.spec is None or estimate is None:
        return
    total, usd = plan.total_usd, run.usd or 0.0  # an unknown cost already fails the plan
    share = usd / total if total > 0 and usd > 0 else None
    caps: list[tuple[str, float | None]] = [
        ("budget.max_usd", check.spec.budget.max_usd),
        ("[tool.tuneform] max_usd_per_run", settings.max_usd_per_run),
    ]
    if share is not None and settings.max_usd_per_pr is not None:
        caps.append(("its share of [tool.tuneform] max_usd_per_pr", settings.max_usd_per_pr * share))
    if approval is not None:
        # the caps this run is over were lifted by the approval: its share of the amount replaces them
        caps = [(label, cap) for label, cap in caps if cap is None or cap >= usd]
        approved = approval.usd if approval.usd is not None else total
        if share is not None:
            caps.append(("its share of the approved amount", approved * share))
    seconds = estimate.evaluate_seconds if run.action == "evaluate" else estimate.seconds  # evaluate only scores
    run.timeout = job_timeout(seconds, estimate.flavor.usd_per_hour, check.spec.compute.timeout, caps)
    if run.timeout.configured_over and check.loaded is not None:
        line, column = check.loaded.locate("compute", "timeout")
        run.timeout_problems = [
            Problem(
                f"compute.timeout asks for more than {run.timeout.capped_by} allows on {estimate.flavor.name}: "
                f"the job stops after {run.timeout.text}; lower compute.timeout or raise the cap",
                line,
                column,
                "compute.timeout",
                "warning",
            )
        ]


def plan_data_section(planned_runs: Sequence[PlannedRun], root: Path, base_rev: str, settings: Settings) -> DataSection:
    """Check the data of every run a plan creates or updates; an update is compared with the base.

    `settings` are the plan's (read from the base branch), so the policy is the repository's.
    """
    section = DataSection()
    head_tree = WorkTree(root)
    base_tree: GitTree | None = None
    for planned in planned_runs:
        head = planned.head
        if planned.action not in CHECKED_ACTIONS or head is None or head.spec is None:
            continue
        base_spec = planned.base.spec if planned.action == "update" and planned.base is not None else None
        if base_spec is not None and base_tree is None:
            base_tree = GitTree(root, base_rev)
        section.reports[head.path] = check_data(
            head.spec, head_tree, settings, base_tree=base_tree if base_spec else None, base_spec=base_spec, run=head.path
        )
    return section
