"""Budget approval at apply time, and the `tuneform comment` guards, against the local GitHub
server (tests/fakegithub.py).

`tuneform apply --approval-from-commit SHA` reads the labels of the merged PR of SHA through the
API (push events carry none): an over-budget plan applies only when that PR carried the approval
label. The backend is never reached here: `apply_plan` is replaced by a stand-in that records the
plan it was given, so these tests are about the decision, not the training.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

import tuneform.backends.apply
import tuneform.github.client
from conftest import RUN, Repo
from fakegithub import FakeGitHub
from tuneform.github.client import GitHub, approval_from_commit

OVER_BUDGET = RUN.replace("r: 8", "r: 16") + "budget: {max_usd: 0.001}\n"


class _Applied:
    ok = True
    outcomes: list[Any] = []

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "outcomes": []}


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Plans handed to apply_plan (which is not run)."""
    plans: list[Any] = []

    def stand_in(plan: Any, *args: Any, **kwargs: Any) -> _Applied:
        plans.append(plan)
        return _Applied()

    monkeypatch.setattr(tuneform.backends.apply, "apply_plan", stand_in)
    return plans


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """GitHub clients built by the CLI record their backoff sleeps instead of sleeping."""
    sleeps: list[float] = []
    monkeypatch.setattr(tuneform.github.client, "GitHub", functools.partial(GitHub, sleep=sleeps.append))
    return sleeps


def merge_over_budget(repo: Repo, fake: FakeGitHub, *, labels: tuple[str, ...], number: int = 5) -> tuple[str, str]:
    """A merge commit on main that makes runs/support.yaml cost more than its cap: (before, after)."""
    before = repo.git("rev-parse", "HEAD")
    repo.write("runs/support.yaml", OVER_BUDGET)
    after = repo.commit("Train a bigger adapter")
    fake.add_pr(number, labels=labels)
    fake.merge_pr(number, after)
    return before, after


def apply_from(repo: Repo, before: str, after: str, *extra: str) -> Any:
    return repo.cli("apply", "--base", before, "--backend", "hf-jobs", "--no-wait", "--approval-from-commit", after, *extra)


def test_over_budget_merge_with_the_label_is_applied(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after = merge_over_budget(repo, github_env, labels=("documentation", "budget-approved"))
    plan_md = tmp_path / "plan.md"
    result = apply_from(repo, before, after, "--plan-markdown", str(plan_md))
    assert result.exit_code == 0, result.output
    [plan] = applied
    assert plan.ok and [run.action for run in plan.runs] == ["update"]
    [run] = plan.runs
    assert run.budget_problems == [] and any("approved by the 'budget-approved' label" in p.message for p in run.approved)
    assert "approved by the 'budget-approved' label" in result.output
    assert "approved by the 'budget-approved' label" in plan_md.read_text()
    # the labels were read through the API, from the merged PR
    assert github_env.requests("GET", r"/issues/5/labels$") and no_waiting == []


def test_over_budget_merge_without_the_label_fails_naming_cap_and_label(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float]
) -> None:
    before, after = merge_over_budget(repo, github_env, labels=("documentation",))
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert "over budget.max_usd ($0.001)" in result.output
    assert "approval label 'budget-approved'" in result.output and "PR #5, merged as" in result.output

    code, out = repo.json(
        "apply", "--base", before, "--backend", "hf-jobs", "--no-wait", "--approval-from-commit", after, "--format", "json"
    )
    assert code == 1 and out["ok"] is False and "'budget-approved'" in out["error"] and "does not carry it" in out["error"]


def test_no_pr_or_no_github_means_no_approval(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = repo.git("rev-parse", "HEAD")
    repo.write("runs/support.yaml", OVER_BUDGET)
    after = repo.commit("pushed straight to main")
    github_env.add_commit(after)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert f"no pull request is associated with commit {after[:12]}" in result.output
    assert no_waiting  # it waited (here: recorded) for GitHub to link the commit first

    # an open PR that merely contains the commit approves nothing
    github_env.add_pr(6, labels=("budget-approved",))
    github_env.associate(after, 6)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and "PR #6 of commit" in result.output and "is not merged" in result.output

    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # nothing listens there
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == [] and "GitHub could not be asked" in result.output

    monkeypatch.delenv("GITHUB_TOKEN")
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and "GITHUB_TOKEN is not set" in result.output


def test_approval_from_commit_reads_the_merged_prs_labels(github_env: FakeGitHub) -> None:
    sha = "c3" * 20
    github_env.add_pr(4, labels=("budget-approved",))
    github_env.merge_pr(4, sha, lag=2)
    with GitHub(sleep=lambda s: None) as gh:
        approval = approval_from_commit(sha, github=gh)
    assert approval.labels == ("budget-approved",) and approval.pr == 4 and approval.source == f"PR #4, merged as {sha[:12]}"


# -- tuneform comment: --expect-head and the exit code of a commit without a PR ---------------------


def test_comment_expect_head(github_env: FakeGitHub, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tuneform.cli.commands import main

    head = "d4" * 20
    github_env.add_pr(7, head_sha=head)
    body = tmp_path / "plan.md"
    body.write_text("### tuneform plan\n")
    args = ["comment", "--pr", "7", "--key", "plan", str(body), "--expect-head"]
    refused = CliRunner().invoke(main, [*args, "e5" * 20])
    assert refused.exit_code == 1 and "PR #7's head is d4d4d4d4d4d4, not e5e5e5e5e5e5" in refused.output
    assert github_env.comments(7) == []
    bad = CliRunner().invoke(main, [*args, "HEAD"])
    assert bad.exit_code == 2 and "40-character" in bad.output
    ok = CliRunner().invoke(main, [*args, head.upper(), "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["created"] is True and len(github_env.comments(7)) == 1


def test_comment_on_a_commit_without_a_pr_exits_3(github_env: FakeGitHub, no_waiting: list[float], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tuneform.cli.commands import main

    sha = "f6" * 20
    github_env.add_commit(sha)
    body = tmp_path / "results.md"
    body.write_text("results\n")
    result = CliRunner().invoke(main, ["comment", "--commit", sha, "--key", "results", str(body)])
    assert result.exit_code == 3 and "no pull request is associated with commit f6f6f6f6f6f6" in result.output
    result = CliRunner().invoke(main, ["comment", "--commit", sha, "--key", "results", str(body), "--format", "json"])
    assert result.exit_code == 3 and json.loads(result.output)["ok"] is False
    github_env.fail(502, times=20)
    result = CliRunner().invoke(main, ["comment", "--commit", sha, "--key", "results", str(body)])
    assert result.exit_code == 1  # GitHub failing is not "no PR"
