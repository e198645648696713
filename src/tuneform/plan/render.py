"""Rendering of validations and plans: text for people, markdown for PR comments, JSON for tools.

One function per (thing, format family) so the three views always show the same facts.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tuneform.core.markup import md_block, md_code, md_text, rich_text, workflow_command
from tuneform.runfile.diagnostics import Problem
from tuneform.runfile.spec import PREFERENCE_METHODS

if TYPE_CHECKING:  # validate's path must not import plan (and its data checks) at start-up
    from tuneform.plan.planner import Plan, PlannedRun
    from tuneform.plan.validate import Validation

PLAN_MARKER = "<!-- tuneform:plan -->"
ACTION_SYMBOLS = {"create": "+", "update": "~", "noop": "=", "delete": "-", "restore": "<", "evaluate": "?", "blocked": "!", "invalid": "x"}
ACTION_STYLES = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "restore": "cyan",
    "evaluate": "blue",
    "blocked": "magenta",
    "invalid": "bold red",
}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _where(path: str, p: Problem) -> str:
    loc = path
    if p.line:
        loc += f":{p.line}"
        if p.column:
            loc += f":{p.column}"
    return loc


def problem_line(path: str, p: Problem) -> str:
    """`runs/x.yaml:7:3: error: training.lerning_rate: unknown key ...` (compiler style)."""
    field = f"{p.field}: " if p.field else ""
    return f"{_where(path, p)}: {p.severity}: {field}{p.message}"


def github_command(path: str, p: Problem) -> str:
    """A workflow command GitHub turns into an annotation on the PR diff."""
    kind = "error" if p.severity == "error" else "warning"
    return workflow_command(kind, p.message, {"file": path, "line": p.line, "col": p.column, "title": p.field})


def render_validation(result: Validation, fmt: str) -> str:
    if fmt == "json":
        return _json(result.as_json())
    out = io.StringIO()
    loose = result.problems
    if fmt == "github":
        for run in result.files:
            for p in run.problems + run.budget_problems + run.trust_problems:
                out.write(github_command(run.path, p) + "\n")
        for path, p in loose:
            out.write(github_command(path, p) + "\n")
        return out.getvalue()
    for run in result.files:
        for p in run.problems + run.budget_problems + run.trust_problems:  # over budget or untrusted: errors in validate
            out.write(problem_line(run.path, p) + "\n")
    for path, p in loose:
        out.write(problem_line(path, p) + "\n")
    bad = sum(1 for f in result.files if not f.ok or f.budget_problems or f.trust_problems)
    out.write(f"{len(result.files)} file(s) checked, {bad} invalid\n" if result.files or bad else "no run files found under runs/\n")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Plans


def fmt_usd(usd: float | None) -> str:
    if usd is None:
        return "-"
    return "$0" if usd == 0 else (f"${usd:.2f}" if usd >= 0.01 else "<$0.01")


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds}s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f}m"
    return f"{minutes / 60:.1f}h"


def fmt_cost(run: PlannedRun) -> str:
    """A run's cost cell: "unknown" when it costs money but could not be estimated, and for a
    training job the share its evals take (base, previous and new models scored)."""
    if run.usd is None:
        return "unknown"
    est = run.entry().estimate
    if run.action in ("create", "update") and est and est.eval_usd:
        return f"{fmt_usd(run.usd)} (evals {fmt_usd(est.eval_usd)})"
    return fmt_usd(run.usd)


def fmt_delta(run: PlannedRun) -> str:
    if run.action not in ("create", "update") or run.usd is None:
        return ""
    base = run.base_usd
    if base is None:
        return f"+{fmt_usd(run.usd)}"
    diff = run.usd - base
    sign = "+" if diff >= 0 else "-"
    return f"{sign}{fmt_usd(abs(diff))}"


def _row(run: PlannedRun, escape: Callable[[Any], str]) -> dict[str, str]:
    """One plan table row's cells; `escape` (md_text, rich_text) writes every value a run file or
    the registry controls, so the row's own words (a PR reference, "renamed from") stay live."""
    entry = run.entry()
    est = entry.estimate
    vram = "-" if not est else f"{est.peak_vram_gb:.1f} GB" + ("" if entry.fits in (None, True) else " (does not fit)")
    notes = []
    if entry.base_path and entry.base_path != entry.path:
        notes.append(f"renamed from {escape(entry.base_path)}")
    if run.action in ("restore", "noop") and run.reuse is not None:
        pr = f" from #{run.reuse.pr}" if run.reuse.pr else ""
        notes.append(f"{'restores' if run.action == 'restore' else 'is'} run-{escape(run.reuse.key[:12])}{pr}")
    notes.append(
        {
            "blocked": "outside the repository's allowed images or namespaces"
            if run.untrusted
            else "this version failed its gates: change the run to retrain",
            "delete": "removes nothing from the registry",
            "evaluate": "evals changed: score again, no training",
            "invalid": f"{len(entry.errors)} error(s)",
        }.get(run.action, "")
    )
    if entry.method in PREFERENCE_METHODS and run.action in ("create", "update"):
        pairs = f" on {entry.rows:,} pairs ({entry.sequences:,} sequences)" if entry.rows is not None and entry.sequences else ""
        notes.append(f"{entry.method}{pairs}")
    spec = run.head.spec if run.head else None
    if spec is not None and run.action in ("create", "update") and len(spec.output.exports) > 1:
        # what the version will hold beyond its root, and the part of the time that makes it
        seconds = est.breakdown.get("seconds", {}).get("export") if est else None
        made = f" ({fmt_seconds(seconds)} of the time)" if seconds else ""
        notes.append(f"exports {escape(', '.join(spec.output.exports))}{made}")
    applied = est.calibration if est else {}
    factors = [f"{name} x{applied[name]:g}" for name in ("speed", "memory") if applied.get(name, 1.0) != 1.0]
    if factors and run.action in ("create", "update"):
        notes.append(f"calibrated for {escape(applied.get('gpu'))} from this repo's runs: {', '.join(factors)}")
    note = "; ".join(n for n in notes if n)
    if run.action in ("create", "update"):
        time = fmt_seconds(est.seconds if est else None)
    else:
        time = fmt_seconds(est.evaluate_seconds if est else None) if run.action == "evaluate" else "-"
    # the job's time limit (sizing.job_timeout), marked when a budget cap shortened it
    timeout = run.timeout.text + (" capped" if run.timeout.capped_by else "") if run.timeout else "-"
    return {
        "action": run.action,
        "name": escape(entry.name),
        "path": escape(entry.path),
        "key": escape((entry.run_key or "")[:12]),
        "flavor": escape(entry.flavor or "-"),
        "time": time,
        "timeout": timeout,
        "time_limit": f"{time} ({timeout})" if run.timeout else time,  # the text table's narrower cell
        "cost": fmt_cost(run),
        "change": fmt_delta(run),
        "vram": vram if run.action in ("create", "update") else "-",
        "note": note,
    }


def month_line(plan: Plan, escape: Callable[[Any], str]) -> str | None:
    """Month to date, this plan and what is left of [tool.tuneform] max_usd_per_month; None
    when no monthly cap is set. `escape` writes the reason a registry could not be read (it names
    repositories a run file chose)."""
    month, cap = plan.month, plan.settings.max_usd_per_month
    if month is None or cap is None:
        return None
    head = f"Month to date (since {month.since:%Y-%m-%d} UTC)"
    if month.usd is None:
        return f"{head}: unknown ({escape(month.unknown)}); this plan {fmt_usd(plan.total_usd)} of {fmt_usd(cap)} allowed per month"
    left = cap - month.usd - plan.total_usd
    return (
        f"{head}: {fmt_usd(month.usd)} ({fmt_usd(month.finished_usd)} finished, {fmt_usd(month.running_usd)} running)"
        f" + this plan {fmt_usd(plan.total_usd)} of {fmt_usd(cap)} allowed per month: "
        + (f"{fmt_usd(left)} left" if left >= 0 else f"{fmt_usd(-left)} over")
    )


def _problems(plan: Plan) -> Iterable[tuple[str, Problem]]:
    for run in plan.runs:
        if run.head:
            for p in run.head.problems:
                yield run.head.path, p
        for p in (
            ([run.unknown_cost] if run.unknown_cost else []) + run.budget_problems + run.approved + run.timeout_problems + run.untrusted
        ):
            yield run.check.path, p
    for p in plan.problems:
        yield "plan", p


def render_plan(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return _json(plan.as_json())
    if fmt == "markdown":
        return render_plan_markdown(plan)
    return render_plan_text(plan)


def render_plan_text(plan: Plan) -> str:
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=None, highlight=False)
    if not plan.runs:
        console.print(f"No changes to runs since {rich_text(plan.base_rev[:12])}.")
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("", "run", "key", "flavor", "time (limit)", "est. cost", "change", "VRAM", "note"):
            table.add_column(column)
        for run in plan.runs:
            r = _row(run, rich_text)
            style = ACTION_STYLES.get(run.action, "")
            table.add_row(
                f"[{style}]{ACTION_SYMBOLS[run.action]} {run.action}[/]" if style else f"{ACTION_SYMBOLS[run.action]} {run.action}",
                *(r[k] for k in ("path", "key", "flavor", "time_limit", "cost", "change", "vram", "note")),
            )
        console.print(table)
        # Where each run publishes and the image its job runs (with the namespace's token): the
        # comment's columns, a line per run here (too wide for the terminal's table).
        for run in plan.runs:
            entry = run.entry()
            if entry.output_repo:
                image = f", image {entry.image}" if entry.image else ""
                console.print(f"  {entry.path} publishes to {entry.output_repo}{image}", markup=False, highlight=False)
    for path, p in _problems(plan):
        console.print(problem_line(path, p), markup=False, style="red" if p.severity == "error" else "yellow")
    cap = plan.settings.max_usd_per_pr
    total = f"Total: {fmt_usd(plan.total_usd)}" + (f" of {fmt_usd(cap)} allowed per PR" if cap else "")
    counts = ", ".join(
        f"{sum(1 for r in plan.runs if r.action == a)} to {a}"
        for a in ("create", "update", "restore", "evaluate", "delete")
        if any(r.action == a for r in plan.runs)
    )
    console.print(total + (f" ({counts})" if counts else ""))
    month = month_line(plan, rich_text)
    if month:
        console.print(month)
    if plan.data and plan.data.reports:
        console.print(plan.data.render("text"), markup=False, highlight=False)
    if not plan.ok:
        console.print("Plan is not applicable: fix the errors above.", style="bold red")
    return buffer.getvalue()


def _flatten(value: Any, prefix: str = "") -> list[str]:
    """`training.learning_rate: 0.0002` lines: a resolved run, one setting per line, for a diff."""
    if isinstance(value, dict):
        return [line for key in sorted(value) for line in _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return [line for i, item in enumerate(value) for line in _flatten(item, f"{prefix}[{i}]")]
    return [f"{prefix}: {json.dumps(value, ensure_ascii=False)}"]


def _resolved_diff(run: PlannedRun) -> str:
    """What the reviewer approves: the run as tuneform reads it at the base and in the PR."""

    def lines(check: Any) -> list[str]:
        return _flatten(check.spec.model_dump(mode="json")) if check is not None and check.spec is not None else []

    before, after = lines(run.base), lines(run.head)
    if before == after:
        return ""
    diff = difflib.unified_diff(before, after, fromfile=run.base.path if run.base else "(new)", tofile=run.check.path, lineterm="", n=1)
    return "\n".join(diff)


def render_plan_markdown(plan: Plan) -> str:
    out = [PLAN_MARKER, "### tuneform plan", ""]
    if not plan.runs:
        out.append(f"No changes to runs since `{plan.base_rev[:12]}`.")
    else:
        out.append("| | run | action | flavor | est. time | timeout | est. cost | change vs base | VRAM | publishes to | image | note |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for run in plan.runs:
            entry = run.entry()
            r = _row(run, md_text) | {
                "path": md_code(run.check.path, cell=True),
                "output": md_code(entry.output_repo, cell=True) if entry.output_repo else "-",
                "image": md_code(entry.image, cell=True) if entry.image else "-",
            }
            out.append(
                "| {sym} | {path} | **{action}** | {flavor} | {time} | {timeout} | {cost} | {change} | {vram} | {output} | {image} | {note} |".format(
                    sym=ACTION_SYMBOLS[run.action], **r
                )
            )
    out.append("")
    cap = plan.settings.max_usd_per_pr
    delta = plan.total_usd - plan.base_total_usd
    out.append(
        f"**Total: {fmt_usd(plan.total_usd)}**"
        + (f" of {fmt_usd(cap)} allowed per PR" if cap else "")
        + (f" ({'+' if delta >= 0 else '-'}{fmt_usd(abs(delta))} vs base)" if plan.base_total_usd else "")
    )
    month = month_line(plan, md_text)
    if month:
        out += ["", month]
    diffs = [(run, _resolved_diff(run)) for run in plan.runs if run.action in ("create", "update", "restore", "evaluate", "blocked")]
    diffs = [(run, diff) for run, diff in diffs if diff]
    if diffs:
        out += ["", "<details><summary>Resolved changes (every setting, defaults filled in)</summary>", ""]
        for run, diff in diffs:
            out += [md_code(run.check.path), "", md_block(diff, "diff"), ""]
        out += ["</details>"]
    problems = list(_problems(plan))
    errors = [(path, p) for path, p in problems if p.severity == "error"]
    warnings = [(path, p) for path, p in problems if p.severity == "warning"]
    if errors:
        out += ["", "**Errors**", ""] + [
            f"- {md_code(_where(path, p))} {md_text(p.field) + ': ' if p.field else ''}{md_text(p.message)}" for path, p in errors
        ]
    if warnings:
        out += (
            ["", "<details><summary>Warnings</summary>", ""]
            + [f"- {md_code(_where(path, p))} {md_text(p.message)}" for path, p in warnings]
            + ["", "</details>"]
        )
    if plan.data and plan.data.reports:
        out += ["", plan.data.render("markdown")]
    out.append("")
    return "\n".join(out)
