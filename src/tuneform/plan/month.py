"""The monthly cap, `[tool.tuneform] max_usd_per_month`: what the repository's runs spent this
calendar month (UTC), counted from their registries, against what a plan adds.

Which spending counts: the output repos of every run file at the plan's head and at its base (so
a run the PR deletes or renames still counts), each read from its backend's registry
(`Registry.spent`): versions published this month at their billed cost, and jobs in flight
submitted this month at their estimate. A job in flight for a run this plan trains is left out:
the plan's own total counts it already (a re-run of apply must not count it twice).

A registry that cannot be read (offline, or a private Hub repo in a tokenless pull-request job)
leaves the month to date unknown, never $0. The plan then warns and goes on (a PR's plan never has
the token); apply, which has it, refuses a plan that costs money while the month cannot be counted,
unless the approval label lifts it like any other budget error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tuneform.estimate.sizing import usd_text
from tuneform.plan.runcheck import RunCheck
from tuneform.registry.protocol import Registry, RegistryError, Spend
from tuneform.runfile.diagnostics import Problem
from tuneform.runfile.settings import Settings


def month_start(now: datetime | None = None) -> datetime:
    """The first instant of the calendar month (UTC) that `now` (default: now) falls in."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(since: datetime) -> datetime:
    """The first instant of the month after the one starting at `since`."""
    return since.replace(year=since.year + since.month // 12, month=since.month % 12 + 1)


@dataclass
class MonthToDate:
    """This month's spending of the repository's output repos, or why it is unknown."""

    since: datetime
    spends: list[Spend] = field(default_factory=list)
    unknown: str | None = None  # why it could not be counted; None: counted
    required: bool = False  # apply: a month that cannot be counted refuses a plan that costs money

    @property
    def finished_usd(self) -> float:
        return sum(s.usd for s in self.spends if not s.running)

    @property
    def running_usd(self) -> float:
        return sum(s.usd for s in self.spends if s.running)

    @property
    def usd(self) -> float | None:
        """Month to date; None when unknown."""
        return None if self.unknown is not None else self.finished_usd + self.running_usd

    def as_json(self) -> dict[str, Any]:
        known = self.unknown is None
        return {
            "since": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": "known" if known else "unknown",
            "reason": self.unknown,
            "finished_usd": round(self.finished_usd, 4) if known else None,
            "running_usd": round(self.running_usd, 4) if known else None,
        }


def month_to_date(
    checks: Iterable[RunCheck],
    registry_for: Callable[[str], Registry | None],
    *,
    planned_keys: set[str],
    required: bool,
    now: datetime | None = None,
) -> MonthToDate:
    """This month's spending of the output repos of `checks` (head and base runs), from each
    backend's registry; jobs in flight for `planned_keys` are left out (the plan counts them)."""
    month = MonthToDate(month_start(now), required=required)
    repos: dict[str, list[str]] = {}
    for check in checks:
        if check.output_repo:
            repos.setdefault(check.backend, []).append(check.output_repo)
    for backend, names in repos.items():
        registry = registry_for(backend)
        if registry is None:
            month.unknown = f"the {backend} registry cannot be read from here (offline)"
            continue
        try:
            found = registry.spent(names, month.since)
        except RegistryError as exc:
            month.unknown = str(exc)
            continue
        month.spends += [s for s in found if not (s.running and s.key in planned_keys)]
    return month


def month_problems(month: MonthToDate | None, plan_usd: float, settings: Settings) -> list[Problem]:
    """The monthly cap's errors for a plan that costs `plan_usd` (budget errors: the approval
    label lifts them like the per-PR cap's). A plan that costs nothing never crosses the cap."""
    cap = settings.max_usd_per_month
    if month is None or cap is None or plan_usd <= 0:
        return []
    fix = f"wait for {next_month(month.since):%Y-%m-%d} (UTC), shrink the runs, or get it approved (label '{settings.budget_label}')"
    if month.unknown is not None:
        if not month.required:
            return []
        return [
            Problem(
                f"this month's spending cannot be counted ({month.unknown}), so [tool.tuneform] max_usd_per_month ({usd_text(cap)}) cannot be checked: "
                f"give apply an HF_TOKEN that reads the output repos, or get it approved (label '{settings.budget_label}')"
            )
        ]
    spent = month.finished_usd + month.running_usd
    if spent + plan_usd <= cap:
        return []
    return [
        Problem(
            f"this month's spending ({usd_text(spent)}: {usd_text(month.finished_usd)} finished, {usd_text(month.running_usd)} running) "
            f"plus this plan ({usd_text(plan_usd)}) is {usd_text(spent + plan_usd)}, over [tool.tuneform] max_usd_per_month ({usd_text(cap)}): {fix}"
        )
    ]


def month_warning(month: MonthToDate | None) -> Problem | None:
    """The plan's warning when the month cannot be counted here (a PR's plan has no token)."""
    if month is None or month.unknown is None or month.required:
        return None
    return Problem(
        f"month to date unknown ({month.unknown}): apply counts it with its HF_TOKEN and refuses a plan that would cross [tool.tuneform] max_usd_per_month",
        severity="warning",
    )
