"""`tuneform results`: what became of a merge commit's detached jobs, read with a read-only Hub token
(tests/fakehub.py) and posted as the PR's one sticky `results` comment (tests/fakegithub.py).

Jobs are submitted with the hf-jobs backend's own `HfJobs.submit` (the labels and environment that
`tuneform apply --backend hf-jobs --no-wait` sends); the job's publication is played by seeding the
output repo with a commit holding `tuneform/report.md` and tagging it `run-<key12>`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
import yaml

from conftest import ROOT
from fakehub import READ_TOKEN, USER_TOKEN, FakeHub
from tuneform.backends.hfjobs import HfJobs
from tuneform.github.client import GitHub
from tuneform.github.results import (
    EXIT_FAILED,
    EXIT_PENDING,
    all_done,
    collect_results,
    commit_results,
    render_results,
)
from tuneform.job.report import RESULTS_MARKER
from tuneform.runfile.settings import DEFAULT_IMAGE

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
KEY_DONE = hashlib.sha256(b"support").hexdigest()
KEY_RUNNING = hashlib.sha256(b"summarize").hexdigest()
REPORT = f"{RESULTS_MARKER}\n### ✅ support-bot passed its gates\n\n| suite | exact_match |\n|---|---|\n| intents | 0.91 |\n"


def submit(hub: FakeHub, repo: str, key: str, name: str, sha: str = SHA) -> str:
    """One job as apply submits it (write token), its bundle branch left out."""
    jobs = HfJobs(hub.api(USER_TOKEN), "acme", say=lambda _: None)
    done = jobs.submit(
        repo=repo,
        key=key,
        label=key[:12],
        revision="0" * 40,  # the bundle commit: no container plays these jobs
        wheel_sha256="0" * 64,
        image=DEFAULT_IMAGE,
        flavor="cpu-basic",
        timeout=600,
        token=USER_TOKEN,
        git_sha=sha,
        name=f"tuneform-{name}",
    )
    return done.job_id


@pytest.fixture
def submitted(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Two runs of commit SHA: support-bot COMPLETED and published, summarize RUNNING; plus a job of
    another commit that must not show up."""
    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.01")
    fake_hub.add_repo("acme/support-bot", private=True)
    fake_hub.add_repo("acme/summarize", private=True)
    done = submit(fake_hub, "acme/support-bot", KEY_DONE, "support-bot")
    running = submit(fake_hub, "acme/summarize", KEY_RUNNING, "summarize")
    other = submit(fake_hub, "acme/summarize", hashlib.sha256(b"old").hexdigest(), "summarize", sha="f" * 40)
    fake_hub.start_job(done)
    fake_hub.add_commit("acme/support-bot", {"tuneform/report.md": REPORT, "tuneform/manifest.json": "{}"}, message="run")
    fake_hub.tag("acme/support-bot", f"run-{KEY_DONE[:12]}")
    fake_hub.complete_job(done)
    fake_hub.start_job(running)
    fake_hub.start_job(other)
    return done, running


def test_results_of_a_commit_then_a_failure_posted_as_one_comment(fake_hub: FakeHub, fake_github: Any, submitted: tuple[str, str]) -> None:
    done, running = submitted
    api = fake_hub.api(READ_TOKEN)  # the reporting workflow's read-only token
    results = collect_results(SHA, api=api, namespace="acme")
    assert [(r.name, r.stage, r.repo) for r in results] == [
        ("tuneform-summarize", "running", "acme/summarize"),
        ("tuneform-support-bot", "finished", "acme/support-bot"),
    ]
    assert not all_done(results)
    body = render_results(results, SHA)
    assert body.startswith(RESULTS_MARKER + "\n") and body.count(RESULTS_MARKER) == 1
    assert "| intents | 0.91 |" in body and body.count("exact_match") == 1  # one report, marker not repeated
    assert f"running, [job {running}]({fake_hub.url}/jobs/acme/{running})" in body
    assert f"finished, [job {done}]" in body

    fake_github.add_pr(7, title="Add two runs")
    fake_github.merge_pr(7, SHA)
    gh = GitHub(fake_github.url, fake_github.actions_token, fake_github.repository, sleep=lambda _: None)
    try:
        report = commit_results(SHA, post=True, namespace="acme", api=api, github=gh)
        assert report.exit_code == EXIT_PENDING == 75
        [comment] = fake_github.comments(7)
        assert comment["body"].count(RESULTS_MARKER) == 1 and "running, [job" in comment["body"]

        fake_hub.fail_job(running, "Job failed with exit code: 137 (out of memory)")
        report = commit_results(SHA, post=True, namespace="acme", api=api, github=gh)
        body = report.body
        assert report.exit_code == EXIT_FAILED
        assert "failed, [job" in body and "exit code: 137 (out of memory)" in body and "| intents | 0.91 |" in body
        again = commit_results(SHA, post=True, namespace="acme", api=api, github=gh)
        assert again.body == body and again.exit_code == EXIT_FAILED
    finally:
        gh.close()
    [comment] = fake_github.comments(7)  # posted three times: still one comment, now the latest body
    assert comment["body"].count(RESULTS_MARKER) == 1 and "exit code: 137" in comment["body"] and "running, [job" not in comment["body"]


def test_a_resubmitted_run_and_a_commit_without_jobs(fake_hub: FakeHub, fake_github: Any, submitted: tuple[str, str]) -> None:
    done, running = submitted
    fake_hub.fail_job(running, "Job timeout")
    retried = submit(fake_hub, "acme/summarize", KEY_RUNNING, "summarize")  # apply run again: the newest job wins
    api = fake_hub.api(READ_TOKEN)
    results = collect_results(SHA, api=api, namespace="acme")
    assert [(r.job_id, r.stage) for r in results] == [(retried, "queued"), (done, "finished")]
    assert "queued, [job" in render_results(results) and "Job timeout" not in render_results(results)

    fake_hub.start_job(retried)
    fake_hub.complete_job(retried)  # completed, but nothing was published at run-<key12>
    [summarize, _] = collect_results(SHA, api=api, namespace="acme")
    assert summarize.stage == "failed" and f"no tuneform/report.md at tag run-{KEY_RUNNING[:12]}" in summarize.message

    fake_github.add_pr(8)
    fake_github.merge_pr(8, "e" * 40)
    gh = GitHub(fake_github.url, fake_github.actions_token, fake_github.repository, sleep=lambda _: None)
    try:
        report = commit_results("e" * 40, post=True, namespace="acme", api=api, github=gh)
    finally:
        gh.close()
    assert report.exit_code == 0 and "no jobs" in report.body and fake_github.comments(8) == []  # nothing to say: apply's comment stays


def test_report_workflow_is_read_only_and_never_waits_for_approval() -> None:
    # the template init writes is this workflow: tests/test_workflows.py checks it
    text = (ROOT / ".github/workflows/report.yml").read_text()
    wf = yaml.safe_load(text)
    on = wf.get("on", wf.get(True))
    assert set(on) == {"schedule", "workflow_dispatch"} and on["schedule"] == [{"cron": "*/30 * * * *"}]
    assert "commit" in on["workflow_dispatch"]["inputs"]
    assert wf["permissions"] == {}
    [job] = wf["jobs"].values()
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "environment" not in job, "the report job must not wait for the training environment's reviewers"
    assert re.findall(r"secrets\.([A-Za-z_]+)", text) == ["HF_READ_TOKEN"]
    steps = job["steps"]
    assert all("${{" not in s["run"] for s in steps if "run" in s)
    assert "tuneform results --commit" in text and "--post" in text


def test_report_workflow_updates_the_merged_prs_comment(
    tmp_path: Any, repo: Any, fake_hub: FakeHub, fake_github: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.yml run by tests/test_workflows.py's runner: scheduled, it finds the merge in git log,
    reads its jobs with HF_READ_TOKEN and keeps one results comment on the PR; a manual run checks its input."""
    from test_workflows import Actions, load

    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.01")
    repo.write("runs/faq.yaml", (ROOT / "runs/demo.yaml").read_text())
    sha = repo.commit("Add the faq run (#7)")
    repo.write("README.md", "# models\n")
    repo.commit("README")  # touches none of apply's paths: not reported on
    fake_github.add_pr(7, title="Add the faq run", head_sha="f" * 40)
    fake_github.merge_pr(7, sha)
    fake_hub.add_repo("acme/faq", private=True)
    fake_hub.add_repo("acme/support", private=True)
    done = submit(fake_hub, "acme/faq", KEY_DONE, "faq", sha=sha)
    running = submit(fake_hub, "acme/support", KEY_RUNNING, "support", sha=sha)
    fake_hub.add_commit("acme/faq", {"tuneform/report.md": REPORT}, message="run")
    fake_hub.tag("acme/faq", f"run-{KEY_DONE[:12]}")
    fake_hub.start_job(done)
    fake_hub.complete_job(done)
    fake_hub.start_job(running)

    wf = load("report.yml")
    [job] = wf["jobs"].values()
    job["env"] = {"HF_ENDPOINT": fake_hub.url, "HF_HUB_OFFLINE": "0", "TUNEFORM_RETRY_DELAY": "0.01"}  # the local Hub
    actions = Actions(tmp_path / "actions", repo.path, fake_github)
    main_sha = repo.git("rev-parse", "main")

    def scheduled() -> Any:
        return actions.run(
            wf,
            event_name="schedule",
            event={"schedule": "*/30 * * * *"},
            ref="refs/heads/main",
            sha=main_sha,
            secrets={"HF_READ_TOKEN": READ_TOKEN},
            environments={"training": {"HF_TOKEN": USER_TOKEN}},
        )

    run = scheduled()
    assert run.job.status == "success", run.job.log()
    [comment] = fake_github.comments(7)
    assert "| intents | 0.91 |" in comment["body"] and "running, [job" in comment["body"]
    assert "| intents | 0.91 |" in run.job.summary

    fake_hub.fail_job(running, "Job failed with exit code: 1")
    run = scheduled()
    assert run.job.status == "success", run.job.log()  # a failed training is reported, not an error of the workflow
    [comment] = fake_github.comments(7)
    assert "failed, [job" in comment["body"] and "exit code: 1" in comment["body"]
    assert len(fake_hub.requests_to("POST", r"^/api/jobs/")) == 2  # the two submissions: the workflow only reads

    bad = actions.run(
        wf,
        event_name="workflow_dispatch",
        event={"inputs": {"commit": "$(touch x)"}},
        ref="refs/heads/main",
        sha=main_sha,
        inputs={"commit": "$(touch x)"},
        secrets={"HF_READ_TOKEN": READ_TOKEN},
    )
    assert bad.job.status == "failure" and "full 40-character SHA" in bad.job.log()
