"""The job's time limit: set by the plan from the estimate with a stated margin, and never longer
than what the budget allows (the run's caps, its share of the PR cap, or the approved amount).

HF Jobs bills until the time limit, so a cap on the estimate alone caps nothing: a job that runs
over its estimate would bill on for up to compute.timeout (7 days at most). These tests read the
limit from the plan (JSON `timeout_s`, the table's `timeout` column) and from the library.
"""

from __future__ import annotations

from typing import Any

from conftest import RUN, Repo, sub
from tuneform.estimate.catalog import FLAVORS
from tuneform.estimate.sizing import TIMEOUT_MARGIN, TIMEOUT_STARTUP_S, job_timeout, usd_text
from tuneform.plan.planner import BudgetApproval, make_plan
from tuneform.runfile.resolve import HubResolver

BIGGER = ("r: 8", "r: 16")  # a change that trains


def plan_json(repo: Repo) -> tuple[int, dict[str, Any]]:
    return repo.json("plan", "--backend", "hf-jobs", "--format", "json", "--offline")


def buys(usd: float, flavor: str) -> int:
    """Seconds `usd` buys on `flavor` at the offline prices the plan uses."""
    return int(usd / FLAVORS[flavor].usd_per_hour * 3600)


def margin(seconds: float) -> int:
    """The estimate's limit; JSON rounds the estimate's seconds, so the plan's own may differ by one."""
    return int(seconds * TIMEOUT_MARGIN + TIMEOUT_STARTUP_S)


def near(a: int, b: int) -> bool:
    return abs(a - b) <= 1


def test_job_timeout_margin_and_caps() -> None:
    assert (TIMEOUT_MARGIN, TIMEOUT_STARTUP_S) == (1.5, 600)  # what README and docs state
    assert job_timeout(1000, 0.40, "auto", []).seconds == 2100  # estimate x 1.5 + 10 min
    assert job_timeout(1000, 0.40, "auto", [("budget.max_usd", None)]).capped_by is None
    capped = job_timeout(1000, 0.40, "auto", [("budget.max_usd", 5.0), ("[tool.tuneform] max_usd_per_run", 0.10)])
    assert capped.seconds == 900 and capped.capped_by == "[tool.tuneform] max_usd_per_run ($0.10)"  # $0.10 = 15 min at $0.40/h
    assert not capped.configured_over
    assert job_timeout(None, 1.0, 7200, []).seconds == 7200  # compute.timeout as written when nothing caps it
    over = job_timeout(None, 1.0, 7 * 86400, [("budget.max_usd", 2.0)])
    assert over.seconds == 7200 and over.configured_over and over.text == "2h 00m"
    assert job_timeout(1000, 0.40, "auto", [("x", 0.0001)]).seconds == 60  # never under HF Jobs' minute


def test_plan_shows_the_timeout_from_the_estimate(repo: Repo) -> None:
    repo.write("runs/support.yaml", sub(*BIGGER))
    code, out = plan_json(repo)
    [run] = out["runs"]
    assert code == 0 and near(run["timeout_s"], margin(run["estimate"]["seconds"]))
    # the caps ($20 per run, $30 per PR) buy far more than that: they do not shorten it
    assert buys(20, run["flavor"]) > run["timeout_s"]
    minutes = round(run["timeout_s"] / 60)
    text = repo.cli("plan", "--backend", "hf-jobs", "--offline").output
    assert f"({minutes}m)" in text and "capped" not in text
    markdown = repo.cli("plan", "--backend", "hf-jobs", "--offline", "--format", "markdown").output
    assert "| timeout |" in markdown and f"| {minutes}m |" in markdown


def test_the_runs_cap_shortens_the_timeout(repo: Repo) -> None:
    repo.write("runs/support.yaml", sub(*BIGGER))
    _, free = plan_json(repo)
    usd, flavor, seconds = free["runs"][0]["usd"], free["runs"][0]["flavor"], free["runs"][0]["timeout_s"]
    cap = round(usd * 1.2, 4)  # the estimate fits; its margin does not
    assert buys(cap, flavor) < seconds
    repo.write("runs/support.yaml", sub(*BIGGER) + f"budget: {{max_usd: {cap}}}\n")
    code, out = plan_json(repo)
    assert code == 0 and out["runs"][0]["timeout_s"] == buys(cap, flavor)
    assert "capped" in repo.cli("plan", "--backend", "hf-jobs", "--offline").output

    # the repository's per-run cap the same way
    repo.write("pyproject.toml", f'[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = {cap}\n')
    repo.write("runs/support.yaml", RUN)
    repo.commit("tighter cap")
    repo.write("runs/support.yaml", sub(*BIGGER))
    code, out = plan_json(repo)
    assert code == 0 and out["runs"][0]["timeout_s"] == buys(cap, flavor)


def test_a_runs_share_of_the_pr_cap_shortens_the_timeout(repo: Repo) -> None:
    repo.write("runs/support.yaml", sub(*BIGGER))
    _, one = plan_json(repo)
    usd, flavor = one["runs"][0]["usd"], one["runs"][0]["flavor"]
    pr_cap = round(usd * 2 * 1.2, 4)  # two such runs fit the PR cap; their margins do not
    repo.write("pyproject.toml", f'[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_pr = {pr_cap}\n')
    repo.write("runs/support.yaml", RUN)
    repo.commit("a PR cap")
    repo.write("runs/support.yaml", sub(*BIGGER))
    repo.write("runs/other.yaml", sub(*BIGGER))
    code, out = plan_json(repo)
    assert code == 0 and [r["usd"] for r in out["runs"]] == [usd, usd]
    share = pr_cap * usd / out["total_usd"]
    assert [r["timeout_s"] for r in out["runs"]] == [buys(share, flavor)] * 2
    assert buys(share, flavor) < margin(one["runs"][0]["estimate"]["seconds"])


def test_compute_timeout_over_the_budget_is_capped_with_a_warning(repo: Repo) -> None:
    repo.write("runs/support.yaml", sub(*BIGGER, "method:", "compute: {timeout: 7d}\nmethod:") + "budget: {max_usd: 1}\n")
    code, out = plan_json(repo)
    [run] = out["runs"]
    assert code == 0 and run["timeout_s"] == buys(1, run["flavor"]) < 7 * 86400
    [warning] = [w for w in run["warnings"] if w["field"] == "compute.timeout"]
    assert warning["line"] == 8 and "budget.max_usd ($1.00) allows" in warning["message"]
    # without a cap, the written timeout holds and nothing warns
    repo.write("pyproject.toml", '[tool.tuneform]\nnamespace = "acme"\n')
    repo.write("runs/support.yaml", RUN)
    repo.commit("no caps")
    repo.write("runs/support.yaml", sub(*BIGGER, "method:", "compute: {timeout: 7d}\nmethod:"))
    code, out = plan_json(repo)
    assert out["runs"][0]["timeout_s"] == 7 * 86400 and not out["runs"][0]["warnings"]


def test_an_approved_run_gets_the_approved_amount_no_more(repo: Repo) -> None:
    repo.write("runs/support.yaml", sub(*BIGGER) + "budget: {max_usd: 0.001}\n")
    hub = HubResolver(offline=True)
    refused = make_plan(repo.path, backend="hf-jobs", hub=hub)
    assert not refused.ok
    [run] = refused.runs
    usd, estimate = run.usd, run.head.sizing.estimate  # type: ignore[union-attr]
    flavor = estimate.flavor.name
    # unapproved, the run's cap binds (the plan is refused anyway)
    assert run.timeout is not None and run.timeout.seconds == max(60, buys(0.001, flavor))

    amount = round(usd * 1.1, 4)
    approved = make_plan(repo.path, backend="hf-jobs", hub=hub, approval=BudgetApproval(amount, "at abc1234 by @carol"))
    assert approved.ok
    [run] = approved.runs
    assert run.timeout is not None and run.timeout.seconds == buys(amount, flavor) < margin(estimate.seconds)
    assert run.timeout.capped_by == f"its share of the approved amount (${amount:.2f})"
    assert f"approved {usd_text(amount)} at abc1234 by @carol" in run.approved[0].message

    # the label on a PR's own plan approves what that plan costs
    labelled = make_plan(repo.path, backend="hf-jobs", hub=hub, labels=["budget-approved"])
    assert labelled.ok and labelled.runs[0].timeout.seconds == buys(usd, flavor)  # type: ignore[union-attr]

    # an approval for less than the plan costs approves nothing
    short = make_plan(repo.path, backend="hf-jobs", hub=hub, approval=BudgetApproval(usd / 2, "at abc1234 by @carol"))
    assert not short.ok and short.over_budget
    assert any("more than the" in p.message and "approved at abc1234 by @carol" in p.message for p in short.problems)
