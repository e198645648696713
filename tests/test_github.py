"""tuneform.github.client against a real HTTP server that speaks GitHub's REST contract (tests/fakegithub.py).

Real httpx, real sockets, real pagination and retries; the only thing replaced is the sleep
function, which records the waits instead of waiting them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakegithub import ACTIONS_LOGIN, FakeGitHub
from tuneform.github.client import (
    COMMENT_LIMIT,
    Comment,
    GitHub,
    GitHubError,
    PullRequestNotFound,
    RateLimitError,
    comment_command,
    fit_body,
)

MERGE_SHA = "a1" * 20
OTHER_SHA = "b2" * 20
RUN_URL = "https://github.com/acme/models/actions/runs/42"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TUNEFORM_BOT_LOGIN", "GITHUB_EVENT_PATH", "GITHUB_RUN_ID", "GITHUB_SERVER_URL", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(fake_github: FakeGitHub, sleeps: list[float]) -> Any:
    """Build a GitHub client for the fake server whose sleeps are recorded, not slept."""
    clients: list[GitHub] = []

    def make(token: str | None = None, **kwargs: Any) -> GitHub:
        kwargs.setdefault("repository", fake_github.repository)
        gh = GitHub(fake_github.url, token or fake_github.token, sleep=sleeps.append, **kwargs)
        clients.append(gh)
        return gh

    yield make
    for gh in clients:
        gh.close()


def writes(fake: FakeGitHub) -> list[str]:
    return [c.method for c in fake.calls if c.method in ("POST", "PATCH", "DELETE")]


# -- sticky comments -------------------------------------------------------------------------------


def test_upsert_finds_its_comment_on_page_two_of_150(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(12)
    ours = None
    for i in range(150):
        if i == 120:  # page 2 at 100 per page; a first-page-only lister (CML) would miss it
            ours = fake_github.add_comment(12, "<!-- tuneform:plan -->\nold plan", login="tuneform-bot")
        else:
            fake_github.add_comment(12, f"review comment {i}", login=f"user{i % 7}")
    assert ours is not None
    gh = connect()

    result = gh.upsert_comment(12, "plan", "new plan")

    updated = fake_github.comment(ours)["updated_at"]  # GitHub's time of the write, which approval stamps keep
    assert result == Comment(ours, f"https://github.com/acme/models/pull/12#issuecomment-{ours}", created=False, updated_at=updated)
    assert writes(fake_github) == ["PATCH"]  # exactly one PATCH, no POST
    assert len(fake_github.comments(12)) == 150
    assert fake_github.comment(ours)["body"] == "<!-- tuneform:plan -->\nnew plan"
    pages = fake_github.requests("GET", r"/issues/12/comments$")
    assert [(c.query.get("per_page"), c.query.get("page")) for c in pages] == [("100", None), ("100", "2")]
    assert pages[1].path.startswith("/repositories/")  # the Link header was followed, not rebuilt

    # Same body again: nothing to write.
    again = gh.upsert_comment(12, "plan", "new plan")
    assert again.id == ours and not again.created
    assert writes(fake_github) == ["PATCH"]


def test_a_human_copy_of_the_marker_is_never_edited(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(3)
    human = fake_github.add_comment(3, "why does it say\n<!-- tuneform:plan -->\nhere?", login="mallory")
    other_bot = fake_github.add_comment(3, "<!-- tuneform:plan -->\nnot tuneform", login="renovate[bot]", type="Bot")
    gh = connect(fake_github.actions_token)

    first = gh.upsert_comment(3, "plan", "the plan")

    assert first.created
    assert writes(fake_github) == ["POST"]
    created = fake_github.comment(first.id)
    assert created["user"] == {"login": ACTIONS_LOGIN, "id": created["user"]["id"], "type": "Bot"}
    for untouched in (human, other_bot):
        assert "_edited_by" not in fake_github.comment(untouched)
    assert fake_github.comment(human)["body"] == "why does it say\n<!-- tuneform:plan -->\nhere?"

    second = gh.upsert_comment(3, "plan", "the plan, revised")
    assert second.id == first.id and not second.created
    assert writes(fake_github) == ["POST", "PATCH"]
    assert len(fake_github.comments(3)) == 3


def test_keys_are_separate_and_validated(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(4)
    gh = connect()
    plan = gh.upsert_comment(4, "plan", "p")
    results = gh.upsert_comment(4, "results", "r")
    assert plan.id != results.id and plan.created and results.created
    with pytest.raises(ValueError, match="invalid comment key"):
        gh.upsert_comment(4, "Plan!", "x")
    with pytest.raises(ValueError, match="details_url"):
        gh.upsert_comment(4, "plan", "x", details_url="javascript:alert(1)")


def test_oversize_body_is_trimmed_instead_of_422(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(5)
    rows = "".join(f"| sample {i} | {'é' * 40} | 0.{i % 100:02d} |\n" for i in range(3000))
    body = "## Eval results\n\n```text\n" + rows + "```\n\nfooter"
    assert len(body) > COMMENT_LIMIT

    result = connect().upsert_comment(5, "results", body, details_url=RUN_URL)

    assert all(c.status != 422 for c in fake_github.calls)
    final = fake_github.comment(result.id)["body"]
    assert len(final) < COMMENT_LIMIT and len(final.encode("utf-8")) < COMMENT_LIMIT
    assert final.startswith("<!-- tuneform:results -->\n")
    assert f"[the full report]({RUN_URL})" in final
    assert "more lines are not shown" in final
    assert final.count("```") % 2 == 0  # the open code fence was closed
    kept = final.split("\n---\n> [!NOTE]")[0]
    whole_lines = set(body.splitlines()) | {"", "```"}
    assert all(line in whole_lines for line in kept.splitlines()[1:])  # cut on line boundaries


def test_fake_rejects_oversize_bodies_like_github(fake_github: FakeGitHub) -> None:
    fake_github.add_pr(5)
    response = httpx.post(
        f"{fake_github.url}/repos/acme/models/issues/5/comments",
        json={"body": "x" * (COMMENT_LIMIT + 1)},
        headers={"Authorization": f"Bearer {fake_github.token}"},
    )
    assert response.status_code == 422
    assert "Body is too long" in response.json()["errors"][0]["message"]


def test_fit_body_cuts_a_single_huge_line_and_drops_foreign_markers() -> None:
    text = fit_body("x" * 200_000, "plan")
    assert len(text) < COMMENT_LIMIT and text.startswith("<!-- tuneform:plan -->\nxxx")
    assert "workflow run's log" in text
    quoted = fit_body("<!-- tuneform:plan -->\nthe plan, quoted in the results", "results")
    assert quoted == "<!-- tuneform:results -->\nthe plan, quoted in the results"


# -- finding the PR of a merge commit --------------------------------------------------------------


def test_association_lag_is_waited_out(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(8)
    fake_github.add_pr(9)
    fake_github.merge_pr(8, MERGE_SHA, lag=2)
    fake_github.associate(MERGE_SHA, 9)  # another PR that contains the commit but was not merged as it

    assert connect().pr_for_commit(MERGE_SHA) == 8

    assert len(fake_github.requests("GET", r"/commits/.*/pulls$")) == 3  # [], [], then the PRs
    assert sleeps == [2.0, 4.0]


def test_squash_title_guess_is_confirmed_with_one_call(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(7)
    fake_github.merge_pr(7, MERGE_SHA, lag=5)  # the association endpoint would still answer []

    assert connect().pr_for_commit(MERGE_SHA, title="Train support bot v2 (#7)\n\nbody") == 7

    assert [c.path for c in fake_github.calls] == ["/repos/acme/models/pulls/7"]
    assert sleeps == []


def test_a_wrong_squash_title_is_not_trusted(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(3)
    fake_github.merge_pr(3, OTHER_SHA)
    fake_github.add_pr(11)
    fake_github.merge_pr(11, MERGE_SHA)

    gh = connect()
    assert gh.pr_for_commit(MERGE_SHA, title="Revert something (#3)") == 11
    assert gh.pr_for_commit(MERGE_SHA, title="Mentions a missing PR (#999)") == 11


def test_no_pr_for_a_direct_push(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_commit(MERGE_SHA)
    gh = connect(association_wait=10)
    assert gh.pr_for_commit(MERGE_SHA) is None
    assert sleeps == [2.0, 4.0]  # the next wait (8 s) would pass association_wait
    with pytest.raises(GitHubError, match="full 40-character SHA"):
        gh.pr_for_commit("abc123")


# -- retries ---------------------------------------------------------------------------------------


def test_rate_limit_403_waits_until_reset(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(6)
    fake_github.rate_limit(reset_in=30, method="GET", path=r"/comments$")

    result = connect().upsert_comment(6, "plan", "body")

    assert result.created and len(fake_github.comments(6)) == 1
    assert len(sleeps) == 1 and 29 <= sleeps[0] <= 32
    assert [c.status for c in fake_github.requests("GET", r"/comments$")] == [403, 200]


def test_secondary_rate_limit_429_honours_retry_after(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(6)
    fake_github.rate_limit(retry_after=7, method="POST")  # refused, so repeating the POST is safe

    assert connect().upsert_comment(6, "plan", "body").created
    assert sleeps == [7.0]
    assert len(fake_github.comments(6)) == 1


def test_a_rate_limit_longer_than_max_wait_fails_fast(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(6)
    fake_github.rate_limit(reset_in=3600)
    with pytest.raises(RateLimitError, match="re-run the job after that") as caught:
        connect().upsert_comment(6, "plan", "body")
    assert caught.value.status == 403
    assert sleeps == []


def test_5xx_once_then_success(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(2)
    fake_github.fail(502, method="GET", path=r"/comments$")

    assert connect().upsert_comment(2, "plan", "body").created
    assert sleeps == [1.0]
    assert len(fake_github.comments(2)) == 1


def test_a_failed_post_is_checked_before_it_is_repeated(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(2)
    fake_github.drop(method="POST", after=True)  # the comment is created, the answer is lost

    result = connect().upsert_comment(2, "plan", "body")

    assert result.created
    assert len(fake_github.comments(2)) == 1  # no duplicate
    assert writes(fake_github) == ["POST"]
    assert sleeps == [1.0]

    fake_github.fail(503, method="POST")  # refused before taking effect: looked up, then posted
    fake_github.add_pr(3)
    assert connect().upsert_comment(3, "plan", "body").created
    assert len(fake_github.comments(3)) == 1


def test_dropped_connection_on_a_read_is_retried(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(2, labels=["budget-approved", "training"])
    fake_github.drop(method="GET", path=r"/labels$")
    assert connect().labels(2) == ["budget-approved", "training"]
    assert sleeps == [1.0]


def test_persistent_5xx_gives_up_with_a_message(fake_github: FakeGitHub, connect: Any, sleeps: list[float]) -> None:
    fake_github.add_pr(2)
    fake_github.fail(500, times=100)
    with pytest.raises(GitHubError, match=r"answered 500.*gave up after 6 attempts"):
        connect().labels(2)
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]


# -- identity, errors, requests --------------------------------------------------------------------


def test_bad_token_names_the_fix(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(1)
    with pytest.raises(GitHubError) as caught:
        connect("ghp_expired").upsert_comment(1, "plan", "x")
    assert caught.value.status == 401
    assert "Bad credentials" in str(caught.value) and "GITHUB_TOKEN" in str(caught.value)
    with pytest.raises(GitHubError, match="GITHUB_TOKEN is not set"):
        GitHub(fake_github.url, "", "acme/models")


def test_read_only_token_names_the_permission(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(1)
    fake_github.add_token("ghs_forkpr", ACTIONS_LOGIN, type="Bot", actions=True, write=False)
    with pytest.raises(GitHubError, match=r"pull-requests: write.*workflow_run") as caught:
        connect("ghs_forkpr").upsert_comment(1, "plan", "x")
    assert caught.value.status == 403


def test_wrong_repository_names_the_setting(fake_github: FakeGitHub, connect: Any) -> None:
    with pytest.raises(GitHubError, match=r"404.*GITHUB_REPOSITORY \(acme/other\)"):
        connect(repository="acme/other").labels(1)
    with pytest.raises(GitHubError, match="owner/name"):
        connect(repository="not-a-repo")


def test_actions_token_identity(fake_github: FakeGitHub, connect: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    actions = connect(fake_github.actions_token)
    assert actions.bot_login() == ACTIONS_LOGIN
    assert actions.bot_login() == ACTIONS_LOGIN  # asked once
    assert [c.status for c in fake_github.requests("GET", "^/user$")] == [403]

    assert connect().bot_login() == "tuneform-bot"

    monkeypatch.setenv("TUNEFORM_BOT_LOGIN", "tuneform-app[bot]")
    before = len(fake_github.calls)
    assert connect(fake_github.actions_token).bot_login() == "tuneform-app[bot]"
    assert len(fake_github.calls) == before  # configured: no call


def test_every_request_carries_the_api_headers(fake_github: FakeGitHub, connect: Any) -> None:
    fake_github.add_pr(1)
    connect().labels(1)
    headers = fake_github.calls[-1].headers
    assert headers["authorization"] == f"Bearer {fake_github.token}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"].startswith("tuneform/")


def test_fake_pages_30_by_default_with_link_headers(fake_github: FakeGitHub) -> None:
    fake_github.add_pr(1)
    for i in range(65):
        fake_github.add_comment(1, f"c{i}")
    auth = {"Authorization": f"token {fake_github.token}"}
    first = httpx.get(f"{fake_github.url}/repos/acme/models/issues/1/comments", headers=auth)
    assert len(first.json()) == 30
    assert first.links["last"]["url"].endswith("page=3")
    third = httpx.get(first.links["last"]["url"], headers=auth)
    assert [c["body"] for c in third.json()] == ["c60", "c61", "c62", "c63", "c64"] and "next" not in third.links
    big = httpx.get(f"{fake_github.url}/repos/acme/models/issues/1/comments?per_page=500", headers=auth)
    assert len(big.json()) == 65  # per_page is capped at 100
    assert httpx.get(f"{fake_github.url}/user").status_code == 401


# -- the CLI's entry point -------------------------------------------------------------------------


def test_comment_command_from_a_merge_commit(
    github_env: FakeGitHub, sleeps: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = github_env
    fake.add_pr(9)
    fake.merge_pr(9, MERGE_SHA, lag=3)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"head_commit": {"id": MERGE_SHA, "message": "Add support run (#9)"}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_TOKEN", fake.actions_token)

    result = comment_command(None, MERGE_SHA, "results", "x\n" * 40_000)

    assert result.created and sleeps == []  # the squash title found the PR at once
    body = fake.comment(result.id)["body"]
    assert RUN_URL in body and fake.comment(result.id)["user"]["login"] == ACTIONS_LOGIN

    assert comment_command(9, None, "results", "short").id == result.id
    with pytest.raises(ValueError, match="exactly one"):
        comment_command(9, MERGE_SHA, "results", "x")


def test_comment_command_without_a_pr(github_env: FakeGitHub, sleeps: list[float]) -> None:
    github_env.add_commit(OTHER_SHA)
    with GitHub(sleep=sleeps.append, association_wait=5) as gh, pytest.raises(PullRequestNotFound, match="no pull request is associated"):
        comment_command(None, OTHER_SHA, "results", "x", github=gh)


def test_comment_command_through_the_cli(fake_github, github_env, tmp_path) -> None:
    """The CLI wiring: exit codes and JSON, against the local GitHub server."""
    import json as _json

    from click.testing import CliRunner

    from tuneform.cli.commands import main

    fake_github.add_pr(7, title="Add a run")
    body = tmp_path / "plan.md"
    body.write_text("### tuneform plan\n")
    first = CliRunner().invoke(main, ["comment", "--pr", "7", "--key", "plan", str(body), "--format", "json"])
    assert first.exit_code == 0, first.output
    created = _json.loads(first.output)
    assert created["created"] is True
    second = CliRunner().invoke(main, ["comment", "--pr", "7", "--key", "plan", str(body), "--format", "json"])
    assert _json.loads(second.output)["id"] == created["id"] and _json.loads(second.output)["created"] is False
    assert len(fake_github.comments(7)) == 1
    usage = CliRunner().invoke(main, ["comment", "--key", "plan", str(body)])
    assert usage.exit_code == 2 and "exactly one of --pr" in usage.output
