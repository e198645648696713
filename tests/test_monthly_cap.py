"""The monthly cap, `[tool.tuneform] max_usd_per_month` (issue 13, point 4).

Month to date is counted by the registries (`Registry.spent`): the local one in a temp folder,
the Hub's against tests/fakehub.py with the real huggingface_hub client. plan and apply are driven
through the CLI on the hf-jobs demo (the local flavor costs $0, so only hf-jobs plans cost money),
and the approval comes from a merged PR on tests/fakegithub.py. Nothing is patched: a job apply
submits stays queued on the fake Hub (`--no-wait`), its bundle on its jobs branch.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import SETTINGS, Repo, hub_demo_repo
from fakehub import FakeHub
from test_hfjobs import DEMO, REPO, job_posts
from tuneform.cli.commands import main
from tuneform.core.manifest import Cost, Manifest
from tuneform.plan.month import month_start, next_month
from tuneform.registry.hub import HubRegistry
from tuneform.registry.local import LocalRegistry
from tuneform.registry.protocol import RegistryError

SINCE = datetime(2026, 3, 1, tzinfo=UTC)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest(repo: str, key: str, created: str, cost: Cost, status: str = "passed") -> Manifest:
    return Manifest(run_key=key, name="x", output_repo=repo, status=status, created=created, cost=cost)


def test_month_is_the_utc_calendar_month() -> None:
    assert month_start(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)
    # half past midnight on 1 March in UTC+2 is still February in UTC
    east = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert month_start(east) == datetime(2026, 2, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 4, 1, tzinfo=UTC)


def test_local_registry_counts_the_versions_published_this_month(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    this_month, last_month = stamp(SINCE), stamp(SINCE - timedelta(seconds=1))
    published = [
        ("acme/one", "a" * 64, this_month, Cost(actual_usd=2.5, estimated_usd=9.0)),  # billed cost wins over the estimate
        ("acme/one", "b" * 64, last_month, Cost(actual_usd=7.0)),  # February: not this month
        ("acme/two", "c" * 64, stamp(SINCE + timedelta(days=3)), Cost(billed_minutes=30, usd_per_hour=4.0)),  # 30 min at $4/h
        ("acme/two", "d" * 64, this_month, Cost(estimated_usd=0.75)),  # no billed cost recorded: its estimate
        ("acme/other", "e" * 64, this_month, Cost(actual_usd=100.0)),  # not a repo asked about
    ]
    for repo, key, created, cost in published:
        status = "failed_gates" if key[0] == "d" else "passed"  # a version that failed its gates cost as much
        staged = registry.staging(repo, key)
        (staged / "model").mkdir()
        registry.publish(repo, key, staged, manifest(repo, key, created, cost, status), parent_commit=None, move_main=False)

    spent = registry.spent(["acme/one", "acme/two", "acme/one", "acme/none"], SINCE)
    assert sorted((s.repo, s.key[0], s.usd, s.running) for s in spent) == [
        ("acme/one", "a", 2.5, False),
        ("acme/two", "c", 2.0, False),
        ("acme/two", "d", 0.75, False),
    ]
    assert registry.spent(["acme/one"], SINCE + timedelta(days=40)) == []


@pytest.fixture
def hub_env(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    return fake_hub


def upload_job(hub: FakeHub, tmp_path: Path, key: str, facts: dict[str, Any] | str) -> None:
    """A job's bundle on its jobs branch, uploaded by the backend's own upload (as apply does)."""
    from tuneform.backends.hfjobs import HfJobs

    bundle = tmp_path / f"bundle-{key[:4]}"
    bundle.mkdir()
    (bundle / "run.json").write_text(facts if isinstance(facts, str) else json.dumps(facts))
    wheel = tmp_path / f"tuneform-0-{key[:4]}.whl"
    wheel.write_bytes(b"wheel")
    HfJobs(hub.api(), "acme", lambda line: None).upload(REPO, key, bundle, wheel)


def test_hub_registry_counts_tags_and_jobs_in_flight(hub_env: FakeHub, tmp_path: Path) -> None:
    registry = HubRegistry(hub_env.api())
    since = month_start()
    key_new, key_old, key_running, key_eval = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    for key, created, usd in ((key_new, stamp(since + timedelta(seconds=1)), 3.0), (key_old, stamp(since - timedelta(seconds=1)), 5.0)):
        folder = tmp_path / key[:4]
        folder.mkdir()
        (folder / "adapter.safetensors").write_bytes(key.encode())
        registry.publish(REPO, key, folder, manifest(REPO, key, created, Cost(actual_usd=usd)), parent_commit=None, move_main=False)
    # in flight: a training job (no tag yet) and an evaluate job of a published version (no scores yet);
    # the jobs branch of a version already tagged is done, whatever its bundle says
    upload_job(hub_env, tmp_path, key_running, {"run_key": key_running, "action": "create", "estimate": {"usd": 1.25}})
    upload_job(hub_env, tmp_path, key_eval, {"run_key": key_new, "action": "evaluate", "eval_hash": "e" * 64, "estimate": {"usd": 0.5}})
    upload_job(hub_env, tmp_path, key_new, {"run_key": key_new, "action": "create", "estimate": {"usd": 9.0}})

    spent = registry.spent([REPO, "acme/nothing-here"], since)
    assert sorted((s.key[0], s.usd, s.running) for s in spent) == [("a", 0.5, True), ("a", 3.0, False), ("c", 1.25, True)]
    assert all(s.when for s in spent)
    # jobs are dated by their branch's commit (now): none was submitted after next month starts
    assert [s.key[0] for s in registry.spent([REPO], next_month(since))] == []

    # the evaluate job's scores land: no longer in flight, it counts at the cost its report records
    # (an evaluate job tags nothing); one scored last month does not count
    for eval_hash, created, usd in (
        ("e" * 64, stamp(since + timedelta(seconds=2)), 0.75),
        ("9" * 64, stamp(since - timedelta(seconds=1)), 4.0),
    ):
        scores = tmp_path / f"scores-{eval_hash[:4]}"
        scores.mkdir()
        (scores / "report.json").write_text(manifest(REPO, key_new, created, Cost(actual_usd=usd)).text())
        registry.add_evals(REPO, key_new, eval_hash, scores)
    assert sorted((s.key[0], s.usd, s.running) for s in registry.spent([REPO], since)) == [
        ("a", 0.75, False),
        ("a", 3.0, False),
        ("c", 1.25, True),
    ]
    scores = tmp_path / "scores-bad"
    scores.mkdir()
    (scores / "report.json").write_text("not json")
    registry.add_evals(REPO, key_new, "8" * 64, scores)
    with pytest.raises(RegistryError, match="tuneform/evals/8{64}/report.json on main is not an evaluate job's report"):
        registry.spent([REPO], since)
    hub_env.api().delete_file("tuneform/evals/" + "8" * 64 + "/report.json", REPO)

    # a bundle that is not one says which branch to delete
    upload_job(hub_env, tmp_path, "f" * 64, "not json")
    with pytest.raises(RegistryError, match="tuneform/jobs/ffffffffffff.*delete branch"):
        registry.spent([REPO], since)
    # a private repo without a token cannot be counted: an error, never $0
    with pytest.raises(RegistryError, match="HF_TOKEN"):
        HubRegistry(hub_env.api(None)).spent([REPO], since)


# --- plan and apply ---------------------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> Repo:
    """The hf-jobs demo on the fake Hub (alice's write token), without a monthly cap yet."""
    return hub_demo_repo(tmp_path, monkeypatch, fake_hub, DEMO)


def spent_earlier(hub: FakeHub, tmp_path: Path, usd: float) -> None:
    """A version of another key of the demo run, published today at a billed `usd`."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "adapter.safetensors").write_bytes(b"earlier")
    key = "9" * 64
    now = stamp(datetime.now(UTC))
    HubRegistry(hub.api()).publish(REPO, key, folder, manifest(REPO, key, now, Cost(actual_usd=usd)), parent_commit=None, move_main=False)


def set_cap(demo: Repo, cap: float) -> str:
    demo.write("pyproject.toml", f'[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = 5\nmax_usd_per_month = {cap}\n')
    return demo.commit("monthly cap")


def plan_json(demo: Repo) -> tuple[int, Any]:
    code, out = demo.json("plan", "runs/demo.yaml", "--backend", "hf-jobs", "--format", "json")
    return int(code), out


def test_plan_shows_the_month_and_fails_over_the_cap(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    code, plain = plan_json(demo)
    cost = plain["total_usd"]
    assert code == 0 and cost > 0 and plain["max_usd_per_month"] is None and plain["month_to_date_usd"] is None
    assert plain["month_to_date"] is None  # no cap: the month is not counted
    spent_earlier(fake_hub, tmp_path, 2.0)

    set_cap(demo, round(2.0 + cost + 1.0, 4))  # room for this plan
    code, under = plan_json(demo)
    assert code == 0 and under["ok"], under
    assert under["month_to_date_usd"] == 2.0 and under["max_usd_per_month"] == round(2.0 + cost + 1.0, 4)
    assert under["month_left_usd"] == pytest.approx(1.0, abs=1e-3)
    assert under["month_to_date"]["status"] == "known" and under["month_to_date"]["running_usd"] == 0
    markdown = demo.cli("plan", "runs/demo.yaml", "--backend", "hf-jobs", "--format", "markdown").output
    assert "Month to date (since" in markdown and "$2.00 (" in markdown and "left" in markdown

    set_cap(demo, round(2.0 + cost / 2, 4))  # month to date alone fits, with this plan it does not
    code, over = plan_json(demo)
    assert code == 1 and not over["ok"]
    [error] = over["errors"]
    assert "max_usd_per_month" in error["message"] and "budget-approved" in error["message"], error
    assert over["month_left_usd"] == pytest.approx(-cost / 2, abs=1e-3)
    text = " ".join(demo.cli("plan", "runs/demo.yaml", "--backend", "hf-jobs").output.split())  # rich wraps at 120 columns
    assert "over [tool.tuneform] max_usd_per_month" in text and re.search(r"allowed per month: \$0\.0\d over", text), text

    # a plan that costs nothing never crosses the cap, however much the month spent
    set_cap(demo, 1.0)
    code, free = demo.json("plan", "--format", "json", "--backend", "hf-jobs")
    assert code == 0 and free["runs"] == [] and free["month_to_date_usd"] == 2.0 and free["month_left_usd"] == -1.0


def test_a_month_that_cannot_be_read_is_unknown_and_apply_refuses(demo: Repo, fake_hub: FakeHub, tmp_path: Path, monkeypatch: Any) -> None:
    spent_earlier(fake_hub, tmp_path, 2.0)  # acme/demo exists, private
    before = set_cap(demo, 1000.0)
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    demo.commit("seed 7")
    monkeypatch.delenv("HF_TOKEN")  # a pull request's plan job: no token
    code, plan = demo.json("plan", "--base", before, "--backend", "hf-jobs", "--format", "json")
    assert code == 0 and plan["total_usd"] > 0 and plan["month_to_date_usd"] is None and plan["month_left_usd"] is None
    assert plan["month_to_date"]["status"] == "unknown" and "HF_TOKEN" in plan["month_to_date"]["reason"]
    assert any("month to date unknown" in w["message"] for w in plan["warnings"])
    markdown = demo.cli("plan", "--base", before, "--backend", "hf-jobs", "--format", "markdown").output
    assert "unknown (acme/demo is not readable without a token" in markdown

    # apply, which has the token in a real workflow, must count it: without one it refuses
    result = demo.cli("apply", "--base", before, "--backend", "hf-jobs", "--no-wait")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "cannot be counted" in text and "approval label" in text, text
    assert job_posts(fake_hub) == []


def test_a_run_the_pr_deletes_still_counts(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    """The month reads the output repos of the base's runs too: deleting a run file does not hide
    what it spent."""
    spent_earlier(fake_hub, tmp_path, 2.0)
    before = set_cap(demo, 100.0)
    demo.git("rm", "-q", "runs/demo.yaml")
    demo.commit("retire the demo")
    code, plan = demo.json("plan", "--base", before, "--backend", "hf-jobs", "--format", "json")
    assert code == 0 and [r["action"] for r in plan["runs"]] == ["delete"] and plan["month_to_date_usd"] == 2.0


def test_offline_the_month_is_unknown_not_zero(repo: Repo) -> None:
    """HF_HUB_OFFLINE (this suite's default): the hf-jobs registry cannot be read at all."""
    repo.write("pyproject.toml", SETTINGS + "max_usd_per_month = 50\n")
    repo.commit("monthly cap")
    code, plan = repo.json("plan", "runs/support.yaml", "--backend", "hf-jobs", "--format", "json")
    assert code == 0 and plan["month_to_date_usd"] is None
    assert plan["month_to_date"]["status"] == "unknown" and "offline" in plan["month_to_date"]["reason"]


def merge(demo: Repo, github: Any, *, labels: tuple[str, ...]) -> tuple[str, str]:
    """A merged PR (number 5, with `labels`) that changes the demo's seed: (before, after)."""
    before = demo.git("rev-parse", "HEAD")
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    after = demo.commit("seed 7")
    github.add_pr(5, labels=labels)
    github.merge_pr(5, after)
    return before, after


def test_apply_refuses_to_cross_the_cap_unless_approved(demo: Repo, fake_hub: FakeHub, github_env: Any, tmp_path: Path) -> None:
    code, plain = plan_json(demo)
    cost = plain["total_usd"]
    spent_earlier(fake_hub, tmp_path, 2.0)
    set_cap(demo, round(2.0 + cost / 2, 4))

    before, after = merge(demo, github_env, labels=("documentation",))
    args = ("apply", "--base", before, "--backend", "hf-jobs", "--no-wait", "--approval-from-commit", after)
    result = demo.cli(*args)
    assert result.exit_code == 1 and "max_usd_per_month" in result.output, result.output
    assert "approval label 'budget-approved'" in result.output
    assert job_posts(fake_hub) == []

    # approved as comment.yml and a maintainer do it (tests/test_budget_approval.py): the plan
    # comment stamped with the PR's head and this total, then the label added by a writer
    plan_md = tmp_path / "plan.md"
    plan_md.write_text("### tuneform plan\n")
    head = github_env.prs[5]["head"]["sha"]
    stamp = ["comment", "--pr", "5", "--expect-head", head, "--key", "plan", "--approval-usd", str(cost), str(plan_md)]
    assert CliRunner().invoke(main, stamp).exit_code == 0
    github_env.set_permission("carol", "write")
    github_env.add_label(5, "budget-approved", actor="carol")
    result = demo.cli(*args)
    assert result.exit_code == 0, result.output
    assert "by @carol" in result.output.replace("\u2060", "") and len(job_posts(fake_hub)) == 1

    # the job is in flight: the month counts it at its estimate, and a plan of that same run does not
    # count it twice (its own total has it)
    running = [s for s in HubRegistry(fake_hub.api()).spent([REPO], month_start()) if s.running]
    assert [s.usd for s in running] == [pytest.approx(cost, abs=1e-4)]
    code, again = demo.json("plan", "--base", before, "--backend", "hf-jobs", "--format", "json")
    assert again["month_to_date_usd"] == 2.0 and again["month_to_date"]["running_usd"] == 0
    code, others = demo.json("plan", "--base", after, "--backend", "hf-jobs", "--format", "json")
    assert others["runs"] == [] and others["month_to_date_usd"] == pytest.approx(2.0 + cost, abs=1e-4)
