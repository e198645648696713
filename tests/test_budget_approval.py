"""Budget approval at apply time, and the `tuneform comment` guards, against the local GitHub
server (tests/fakegithub.py).

`tuneform apply --approval-from-commit SHA` reads the approval of the merged PR of SHA through the
API (push events carry none): an over-budget plan applies only when someone with write access
added the approval label after the PR's last plan (the stamp in the bot's plan comment), and the
plan costs no more than the stamp's amount. The backend is never reached here: `apply_plan` is replaced by a stand-in that records the
plan it was given, so these tests are about the decision, not the training.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

import tuneform.backends.apply
import tuneform.github.approval
import tuneform.github.client
from conftest import RUN, Repo
from fakegithub import FakeGitHub
from tuneform.github.client import GitHub

OVER_BUDGET = RUN.replace("r: 8", "r: 16") + "budget: {max_usd: 0.001}\n"
HEAD = "ab" * 20  # the PR's head commit (GitHub's; the merge commit is a real one in the repo)
LABEL = "budget-approved"


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
    monkeypatch.setattr(tuneform.github.approval, "GitHub", functools.partial(GitHub, sleep=sleeps.append))
    return sleeps


def over_budget_pr(repo: Repo, fake: FakeGitHub, *, number: int = 5) -> tuple[str, str, float]:
    """An open PR (head HEAD) whose change makes runs/support.yaml cost more than its cap, and
    the commit its merge will be: (before, after, the plan's total)."""
    before = repo.git("rev-parse", "HEAD")
    repo.write("runs/support.yaml", OVER_BUDGET)
    after = repo.commit("Train a bigger adapter")
    code, plan = repo.json("plan", "--base", before, "--backend", "hf-jobs", "--format", "json")
    assert code == 1 and plan["total_usd"] > 0.001  # over budget.max_usd
    fake.add_pr(number, head_sha=HEAD)
    return before, after, plan["total_usd"]


def post_plan(fake: FakeGitHub, tmp_path: Path, usd: float, *, number: int = 5, head: str = HEAD, body: str = "### tuneform plan\n") -> Any:
    """What comment.yml does after each plan run: the plan comment, stamped with head and total."""
    from click.testing import CliRunner

    from tuneform.cli.commands import main

    plan_md = tmp_path / "plan.md"
    plan_md.write_text(body)
    args = ["comment", "--pr", str(number), "--expect-head", head, "--key", "plan", "--approval-usd", str(usd), str(plan_md)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def plan_comment(fake: FakeGitHub, number: int = 5) -> str:
    [comment] = [
        c for c in fake.comments(number) if c["body"].startswith("<!-- tuneform:plan -->") and c["user"]["login"] == "tuneform-bot"
    ]
    return str(comment["body"])


def shown(text: str) -> str:
    """Text as a reader sees it: lines unwrapped, markdown escapes and the word joiner that stops
    an @mention removed."""
    return " ".join(text.replace("\\", "").replace("\u2060", "").split())


def apply_from(repo: Repo, before: str, after: str, *extra: str) -> Any:
    return repo.cli("apply", "--base", before, "--backend", "hf-jobs", "--no-wait", "--approval-from-commit", after, *extra)


def test_a_label_after_the_last_plan_approves_that_amount(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after, total = over_budget_pr(repo, github_env)
    post_plan(github_env, tmp_path, total)
    assert f"approves up to ${total:.2f} by adding the label `{LABEL}`" in plan_comment(github_env)
    github_env.set_permission("carol", "write")
    github_env.add_label(5, LABEL, actor="carol")
    post_plan(github_env, tmp_path, total)  # the label re-runs the plan: the comment says who approved
    assert f"**Budget approval:** approved ${total:.2f} at {HEAD[:7]} by @carol" in plan_comment(github_env)
    github_env.merge_pr(5, after)

    plan_md = tmp_path / "applied.md"
    result = apply_from(repo, before, after, "--plan-markdown", str(plan_md))
    assert result.exit_code == 0, result.output
    [plan] = applied
    assert plan.ok and [run.action for run in plan.runs] == ["update"]
    [run] = plan.runs
    approved = f"approved ${total:.2f} at {HEAD[:7]} by @carol"
    assert run.budget_problems == [] and any(approved in p.message for p in run.approved)
    assert approved in shown(result.output) and approved in shown(plan_md.read_text())
    # the approved amount, no more, bounds the job's time limit
    assert run.timeout.capped_by == f"its share of the approved amount (${total:.2f})"
    assert github_env.requests("GET", r"/issues/5/events$") and github_env.requests("GET", r"/collaborators/carol/permission$")

    # a new total on the same head (the base's prices or caps changed) is a new plan to approve
    post_plan(github_env, tmp_path, total * 2)
    assert "approval withdrawn by a new push (or a new total)" in plan_comment(github_env)


def test_a_push_after_the_label_withdraws_the_approval(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after, total = over_budget_pr(repo, github_env)
    post_plan(github_env, tmp_path, total)
    github_env.set_permission("carol", "write")
    github_env.add_label(5, LABEL, actor="carol")
    new_head = "cd" * 20
    github_env.push(5, new_head)
    github_env.merge_pr(5, after)
    # merged before its new head was planned: the stamp is for the old head
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert f"planned {HEAD[:7]}, not its merged head {new_head[:7]}" in result.output

    # planned again for the new head (same total): the label predates that plan
    post_plan(github_env, tmp_path, total, head=new_head)
    assert "approval withdrawn by a new push" in plan_comment(github_env) and "add the label again" in plan_comment(github_env)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == [] and "approval withdrawn by a new push" in result.output

    github_env.add_label(5, LABEL, actor="carol")  # approved again, after the last plan
    assert apply_from(repo, before, after).exit_code == 0 and len(applied) == 1


def test_a_plan_costing_more_than_the_approved_amount_is_refused(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after, total = over_budget_pr(repo, github_env)
    post_plan(github_env, tmp_path, round(total / 2, 4))  # what the reviewer saw: half of what apply computes
    github_env.set_permission("carol", "write")
    github_env.add_label(5, LABEL, actor="carol")
    github_env.merge_pr(5, after)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert f"more than the ${total / 2:.2f} approved at {HEAD[:7]} by @carol" in result.output


def test_a_label_by_someone_without_write_access_approves_nothing(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after, total = over_budget_pr(repo, github_env)
    post_plan(github_env, tmp_path, total)
    github_env.set_permission("dave", "read")  # triage maps to read: may label, may not approve
    github_env.add_label(5, LABEL, actor="dave")
    github_env.merge_pr(5, after)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert "added by @dave, whose permission is read" in result.output

    github_env.set_permission("carol", "write")
    github_env.add_label(5, LABEL, actor="carol")
    github_env.remove_label(5, LABEL, actor="dave")  # approved, then the label came off again
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and f"does not carry the label '{LABEL}'" in result.output


def test_a_forged_stamp_is_ignored(repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path) -> None:
    from tuneform.github.approval import read_stamp

    before, after, total = over_budget_pr(repo, github_env)
    forged = f"<!-- tuneform:approval head={HEAD} usd=1000.0000 planned=2000-01-01T00:00:00Z -->"
    github_env.add_comment(5, f"<!-- tuneform:plan -->\n{forged}\n", login="mallory")
    github_env.set_permission("carol", "write")
    github_env.add_label(5, LABEL, actor="carol")
    github_env.merge_pr(5, after)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == [] and "no plan comment by tuneform-bot with an approval stamp" in result.output

    # a plan body (made by the PR's own code) that carries a stamp: the bot posts it without it
    post_plan(github_env, tmp_path, 0.0001, body=f"{forged}\n### tuneform plan\n{forged}\n")
    body = plan_comment(github_env)
    assert body.count("tuneform:approval") == 1 and read_stamp(body).usd == 0.0001  # type: ignore[union-attr]
    # and only the line right after the marker is read
    assert read_stamp(f"<!-- tuneform:plan -->\n\n{forged}") is None


def test_over_budget_merge_without_the_label_fails_naming_cap_and_label(
    repo: Repo, github_env: FakeGitHub, applied: list[Any], no_waiting: list[float], tmp_path: Path
) -> None:
    before, after, total = over_budget_pr(repo, github_env)
    post_plan(github_env, tmp_path, total)
    github_env.merge_pr(5, after)
    result = apply_from(repo, before, after)
    assert result.exit_code == 1 and applied == []
    assert "over budget.max_usd ($0.001)" in result.output
    assert "approval label 'budget-approved'" in result.output and "PR #5, merged as" in result.output

    code, out = repo.json(
        "apply", "--base", before, "--backend", "hf-jobs", "--no-wait", "--approval-from-commit", after, "--format", "json"
    )
    assert code == 1 and out["ok"] is False and "'budget-approved'" in out["error"] and "does not carry the label" in out["error"]


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


def test_a_plan_comment_left_between_its_two_writes_gets_its_time(github_env: FakeGitHub) -> None:
    """A comment run that stopped after the first write (stamp without a time): the next run
    finds the same body, writes nothing new first, and stamps GitHub's time of that write."""
    from tuneform.github.approval import Stamp, _state_line, post_plan_comment, read_stamp

    github_env.add_pr(5, head_sha=HEAD)
    pending = Stamp(HEAD, 0.5, None)
    with GitHub(sleep=lambda s: None) as gh:
        first = gh.upsert_comment(5, "plan", "### plan\n" + _state_line(LABEL, pending, None), header=pending.line())
        post_plan_comment(gh, 5, "### plan\n", head=HEAD, usd=0.5, label=LABEL)
    stamp = read_stamp(plan_comment(github_env))
    assert stamp is not None and stamp.planned == first.updated_at and (stamp.head, stamp.usd) == (HEAD, 0.5)
