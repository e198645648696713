"""Backend hf-jobs end to end: `tuneform apply --backend hf-jobs` through the CLI, the REAL huggingface_hub
client, and tests/fakehub.py as the Hub + Jobs.

The container is played by `server.on_job_submitted`: it runs the job's exact command (the bash script
`run_job` sent) as a subprocess on this CPU. The script downloads the bundle branch with huggingface_hub and
pip-installs the uploaded wheel; pip is pointed offline by its own environment variables (PIP_NO_INDEX,
PIP_NO_DEPS, PIP_TARGET), so the wheel lands in a fresh folder that PYTHONPATH puts first, and the
dependencies (torch, transformers, trl) come from this test's interpreter. The job's log says which
tuneform it imported: the test checks it is the wheel's, not the checkout's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Repo, hub_demo_repo
from fakehub import USER_TOKEN, FakeHub
from tfevents import scalars
from tuneform.core.manifest import Manifest
from tuneform.estimate.catalog import FLAVORS
from tuneform.job.report import RESULTS_MARKER

REPO = "acme/demo"
# The demo, shortened for a CPU test: fewer steps (~5 s) and a gate any trained model passes.
DEMO = (
    (ROOT / "runs/demo.yaml")
    .read_text()
    .replace("num_train_epochs: 3", "max_steps: 24")
    .replace("repo: tuneform-demo/demo, private: false", f"repo: {REPO}, private: true")
    .replace('gate: {exact_match: ">= 0.85"}', 'gate: {exact_match: ">= 0.0"}')
)


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> Repo:
    """The demo repo (like test_apply's), pointed at the fake Hub with alice's write token."""
    return hub_demo_repo(tmp_path, monkeypatch, fake_hub, DEMO)


def container(hub: FakeHub, tmp_path: Path) -> Any:
    """An on_job_submitted hook that runs the submitted command like HF Jobs would, on this CPU."""

    def run(job: Any) -> None:
        hub.start_job(job.id)
        payload = job.payload
        work = tmp_path / f"container-{job.id}"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TUNEFORM_", "PIP_", "PYTHON"))}
        env.update(payload.get("environment") or {})
        env.update(payload.get("secrets") or {})  # HF Jobs exposes secrets as environment variables
        env.update(hub.client_env(None))
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
                "HOME": str(work),
                "TMPDIR": str(work),
                "HF_HOME": str(work / "hf"),
                "JOB_ID": job.id,
                "PIP_NO_INDEX": "1",
                "PIP_NO_DEPS": "1",
                "PIP_TARGET": str(work / "site"),
                "PYTHONPATH": str(work / "site"),
            }
        )
        process = subprocess.Popen(payload["command"], env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            hub.append_log(job.id, line.rstrip("\n"))
        code = process.wait()
        if code == 0:
            hub.complete_job(job.id)
        else:
            hub.fail_job(job.id, f"Job failed with exit code: {code}")

    return run


def job_posts(hub: FakeHub) -> list[Any]:
    return hub.requests_to("POST", r"^/api/jobs/acme$")


def main_manifest(hub: FakeHub) -> dict[str, Any] | None:
    try:
        return json.loads(hub.read_file(REPO, "tuneform/manifest.json"))
    except KeyError:
        return None


def test_apply_trains_on_jobs_publishes_once_and_restores_for_free(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.on_job_submitted = container(fake_hub, tmp_path)
    fake_hub.faults.drop_logs(after_events=4)  # the log stream is cut once: apply reconnects, no line twice
    _, planned = demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")
    result = demo.cli("apply", "--backend", "hf-jobs", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("loading data") == 1 and out.count("step 1/") == 1 and out.count("published run-") == 1, out
    assert len(fake_hub.requests_to("GET", r"/logs$")) >= 2
    assert "submitted job" in out and "step 1/" in out and "[job " in out and "COMPLETED" in out, out
    assert str(tmp_path) in out and "/site/tuneform" in out  # the job imported tuneform from the uploaded wheel

    # one POST, with what the design asks for; the token only in secrets
    [post] = job_posts(fake_hub)
    [job] = fake_hub.jobs.values()
    payload = job.payload
    assert payload["secrets"] == {"HF_TOKEN": USER_TOKEN}
    assert USER_TOKEN not in json.dumps({k: v for k, v in payload.items() if k != "secrets"}) and USER_TOKEN not in out
    assert payload["flavor"] and payload["timeoutSeconds"] == planned["runs"][0]["timeout_s"] >= 600  # the plan's limit
    code, plan = demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")
    key = plan["runs"][0]["run_key"]
    assert plan["runs"][0]["action"] == "noop" and plan["runs"][0]["registry"] == "read"
    labels = payload["labels"]
    assert labels["tuneform-run"] == key[:12] and labels["tuneform-git"] == demo.git("rev-parse", "HEAD")[:12] and labels["name"]
    assert payload["dockerImage"].startswith("unsloth/unsloth:")

    # the version: a tag run-<key12>, main moved to it, manifest with measured cost beside the estimate
    repo = fake_hub.repo(REPO)
    assert repo.private and f"run-{key[:12]}" in repo.tags
    tagged = repo.files_at(f"run-{key[:12]}")
    assert {p: b.oid for p, b in repo.files_at("main").items()} == {p: b.oid for p, b in tagged.items()}
    manifest = main_manifest(fake_hub)
    assert manifest and manifest["run_key"] == key and manifest["status"] == "passed" and manifest["backend"] == "hf-jobs"
    cost = manifest["cost"]
    assert cost["job_seconds"] > 0 and cost["billed_minutes"] >= 1 and cost["actual_usd"] > 0 and cost["estimated_usd"] > 0
    assert cost["job_id"] == job.id
    files = set(repo.files_at("main"))
    assert {"model.safetensors", "config.json", "tuneform/report.md", "tuneform/loss.png"} <= files
    # the demo reports to tensorboard: its event files are published under tuneform/, listed in the manifest
    assert payload["environment"]["TUNEFORM_TRACKER"] == "tensorboard"
    events = [name for name in manifest["tracking"]["files"] if "/events.out.tfevents." in name]
    assert events and {f"tuneform/{name}" for name in events} <= files
    curves: dict[str, list[tuple[int, float]]] = {}
    for name in events:
        (tmp_path / "events").write_bytes(fake_hub.read_file(REPO, f"tuneform/{name}"))
        curves.update(scalars(tmp_path / "events"))
    assert [step for step, _ in curves["train/loss"]] == [step for step, _ in manifest["training"]["loss_history"]]
    assert not any(b.startswith("tuneform/claim-") or b.startswith("tuneform/jobs/") for b in repo.branches)

    # re-running apply (a re-run workflow) submits nothing
    result = demo.cli("apply", "--backend", "hf-jobs", "runs/demo.yaml")
    assert result.exit_code == 0 and "= noop" in result.output, result.output
    assert len(job_posts(fake_hub)) == 1
    code, history = demo.json("history", "demo", "--format", "json")  # compute.backend is local: the local registry
    assert history["versions"] == []

    # a change trains a second version (the job scores the one it replaces, downloaded from its tag)
    # (as apply.yml applies: followed within its wait, the published report in the results file)
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    demo.commit("seed 7")
    runs_md = tmp_path / "runs.md"
    result = demo.cli("apply", "--backend", "hf-jobs", "runs/demo.yaml", "--wait-within", "40", "--results-markdown", str(runs_md))
    assert result.exit_code == 0, result.output
    assert f"scoring the version it replaces, run-{key[:12]}" in result.output
    second = main_manifest(fake_hub)
    assert second and second["run_key"] != key and len(job_posts(fake_hub)) == 2
    published = [
        line for line in fake_hub.read_file(REPO, "tuneform/report.md").decode().splitlines() if line.strip() not in ("", RESULTS_MARKER)
    ]
    assert "#### Evals" in published and set(published) <= set(runs_md.read_text().splitlines())

    # revert: plan says restore at $0; apply copies the tagged files onto main without a job
    demo.write("runs/demo.yaml", DEMO)
    code, plan = demo.json("plan", "--format", "json", "--backend", "hf-jobs")
    [run] = plan["runs"]
    assert run["action"] == "restore" and run["run_key"] == key and run["usd"] == 0 and run["reuse"]["version"] == f"run-{key[:12]}"
    batches = len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$"))
    result = demo.cli("apply", "--backend", "hf-jobs")
    assert result.exit_code == 0 and "restored" in result.output and "$0" in result.output, result.output
    assert len(job_posts(fake_hub)) == 2
    assert len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$")) == batches  # no weights uploaded
    assert main_manifest(fake_hub)["run_key"] == key  # type: ignore[index]
    tagged = repo.files_at(f"run-{key[:12]}")
    on_main = repo.files_at("main")
    assert {p: b.oid for p, b in on_main.items()} == {p: b.oid for p, b in tagged.items()}
    assert [r["action"] for r in demo.json("plan", "--format", "json", "--backend", "hf-jobs")[1]["runs"]] == ["noop"]

    # an eval-only change scores the restored version again in a job, without training, once
    demo.write("runs/demo.yaml", DEMO.replace('">= 0.0"', '">= 0.01"'))
    code, plan = demo.json("plan", "--format", "json", "--backend", "hf-jobs")
    assert plan["runs"][0]["action"] == "evaluate"
    result = demo.cli("apply", "--backend", "hf-jobs")
    assert result.exit_code == 0 and "scored again" in result.output and "step 1/" not in result.output, result.output
    assert len(job_posts(fake_hub)) == 3 and main_manifest(fake_hub)["run_key"] == key  # type: ignore[index]
    assert any(p.startswith("tuneform/evals/") and p.endswith("/report.json") for p in repo.files_at("main"))
    assert demo.json("plan", "--format", "json", "--backend", "hf-jobs")[1]["runs"][0]["action"] == "noop"

    code, history = demo.json("history", "demo", "--backend", "hf-jobs", "--format", "json")
    assert code == 0 and history["main"] == key and [v["run_key"] for v in history["versions"]] == [key, second["run_key"]]
    assert history["versions"][0]["main"] and history["versions"][0]["commit"]
    # calibrate reads the same manifests from the Hub; this job's "GPU" was the test machine's
    # CPU, so neither version can correct the flavor's GPU, and it says so
    code, calibration = demo.json("calibrate", "--backend", "hf-jobs", "--format", "json")
    gpu = FLAVORS[str(manifest["estimate"]["flavor"])].gpu_model
    assert code == 0 and calibration["records"] == [] and calibration["toml"] is None
    assert [s["reason"] for s in calibration["skipped"]] == [f"planned for {gpu} ({manifest['estimate']['flavor']}) but trained on cpu"] * 2

    # status and logs of an HF job by its id
    code, status = demo.json("status", f"acme/{job.id}", "--format", "json")
    assert code == 0 and status["stage"] == "COMPLETED" and status["backend"] == "hf-jobs"
    logs = demo.cli("logs", job.id, "--tail", "3")
    assert logs.exit_code == 0 and logs.output.strip()


def test_a_tracker_gets_the_secrets_the_settings_name_from_applys_environment(
    demo: Repo, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.write("runs/demo.yaml", DEMO.replace("report_to: tensorboard", "report_to: wandb"))
    demo.commit("report to wandb")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value")
    # no [tool.tuneform.tracker_secrets] wandb: the plan says which setting to add, and nothing is submitted
    code, plan = demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")
    [error] = [e for e in plan["runs"][0]["errors"] if e["field"] == "training.report_to"]
    assert code == 1 and '[tool.tuneform.tracker_secrets] wandb = ["WANDB_API_KEY"]' in error["message"] and error["line"], error
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and not job_posts(fake_hub), result.output

    # named, but one of them unset here: apply stops before claiming or submitting anything
    settings = '[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = 5\n[tool.tuneform.tracker_secrets]\nwandb = ["WANDB_API_KEY", "WANDB_PROJECT"]\n'
    demo.write("pyproject.toml", settings)
    demo.commit("wandb secrets")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and "WANDB_PROJECT is not set" in result.output and "nothing was submitted" in result.output, result.output
    assert not job_posts(fake_hub) and ("model", REPO) not in fake_hub.repos  # no claim, not even the repo

    # all set: they go in the job's secrets, with the tracker's package to install, and nowhere else
    monkeypatch.setenv("WANDB_PROJECT", "support-bot")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    [job] = fake_hub.jobs.values()
    payload = job.payload
    assert payload["secrets"] == {"HF_TOKEN": USER_TOKEN, "WANDB_API_KEY": "wandb-secret-value", "WANDB_PROJECT": "support-bot"}
    assert payload["environment"]["TUNEFORM_TRACKER"] == "wandb"
    assert "wandb-secret-value" not in json.dumps({k: v for k, v in payload.items() if k != "secrets"}) + result.output
    demo.cli("cancel", f"acme/{job.id}")


def test_submission_faults_are_retried_or_explained(demo: Repo, fake_hub: FakeHub) -> None:
    # 500 once on run_job: retried after listing the jobs again; one job
    fake_hub.faults.fail("POST", r"^/api/jobs/acme$", 500)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    assert [r.status for r in job_posts(fake_hub)] == [500, 200] and len(fake_hub.jobs) == 1
    [first] = fake_hub.jobs
    assert f"{fake_hub.url}/jobs/acme/{first}" in result.output
    # while it is scheduled, applying again submits nothing
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "already submitted" in result.output and first in result.output, result.output
    assert len(job_posts(fake_hub)) == 2
    assert demo.cli("cancel", f"acme/{first}").output.startswith("canceled")

    # 429 with Retry-After: waited, then one job
    fake_hub.faults.rate_limit("POST", r"^/api/jobs/acme$", retry_after=1)
    started = time.monotonic()
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 1 and [r.status for r in job_posts(fake_hub)][-2:] == [429, 200]
    assert len(fake_hub.jobs) == 2
    second = next(j for j in fake_hub.jobs if j != first)
    demo.cli("cancel", second)

    # 402: a message that says what to do; the claim is released so a later apply can submit
    fake_hub.out_of_credits.add("acme")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and "402" in result.output and "add credits" in result.output, result.output
    assert len(fake_hub.jobs) == 2
    assert not any(b.startswith("tuneform/claim-") for b in fake_hub.repo(REPO).branches)
    fake_hub.out_of_credits.clear()

    # a job that ends in ERROR: its last log lines, no tag, main unmoved
    fake_hub.faults.fail_next_job(
        "Job failed with exit code: 1",
        logs=["loading data", "Traceback (most recent call last):", "torch.OutOfMemoryError: CUDA out of memory"],
    )
    result = demo.cli("apply", "--backend", "hf-jobs", "runs/demo.yaml")
    assert result.exit_code == 1, result.output
    assert "ended ERROR" in result.output and "CUDA out of memory" in result.output and "exit code: 1" in result.output
    repo = fake_hub.repo(REPO)
    assert not any(t.startswith("run-") for t in repo.tags) and main_manifest(fake_hub) is None
    assert len(fake_hub.jobs) == 3

    # a job that runs past its time limit: ERROR "Job timeout", and what to change
    def too_slow(job: Any) -> None:
        fake_hub.start_job(job.id)
        fake_hub.append_log(job.id, "  step 1/24 | loss 6.9")
        fake_hub.time_out_job(job.id)

    fake_hub.on_job_submitted = too_slow
    result = demo.cli("apply", "--backend", "hf-jobs", "runs/demo.yaml")
    assert result.exit_code == 1 and "Job timeout" in result.output and "compute.timeout" in result.output, result.output
    assert "step 1/24" in result.output and len(fake_hub.jobs) == 4
    fake_hub.on_job_submitted = None

    # a flavor the service does not offer: plan prices with the Hub's current list, so auto moves
    # to an offered flavor; when that list cannot be read, the server's refusal names the fix
    flavor = demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")[1]["runs"][0]["flavor"]
    fake_hub.hardware = [h for h in fake_hub.hardware if h["name"] != flavor]
    assert demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")[1]["runs"][0]["flavor"] != flavor
    fake_hub.faults.fail("GET", r"/api/jobs/hardware", 500, times=10)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and f"Invalid flavor '{flavor}'" in result.output and "compute.flavor" in result.output, result.output
    assert len(fake_hub.jobs) == 4

    # another apply holds the claim of a key that has no job yet: this one submits nothing
    from fakehub import HARDWARE

    fake_hub.hardware = [dict(h) for h in HARDWARE]
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 9"))
    key9 = demo.json("plan", "--format", "json", "--backend", "hf-jobs")[1]["runs"][0]["run_key"]
    from tuneform.backends.hfjobs import HfJobs

    assert HfJobs(fake_hub.api(), "acme", lambda line: None).claim(REPO, key9, key9[:12], "git " + "f" * 40) is None
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and "another apply (git ffff" in result.output and "nothing was submitted" in result.output, result.output
    assert "taken over after 2 hours" in result.output and len(fake_hub.jobs) == 4
    # a claim just short of abandoned still stops it; one older, with still no job, is an apply
    # that died before submitting: taken over
    from tuneform.backends.hfjobs import CLAIM_ABANDONED_AFTER_S, claim_branch

    claim = fake_hub.repo(REPO).commits[fake_hub.repo(REPO).branches[claim_branch(key9)]]
    claim.date = datetime.now(UTC) - timedelta(seconds=CLAIM_ABANDONED_AFTER_S - 60)
    assert HfJobs(fake_hub.api(), "acme", lambda line: None).claim(REPO, key9, key9[:12], "git " + "e" * 40) == "git " + "f" * 40
    claim.date = datetime.now(UTC) - timedelta(seconds=CLAIM_ABANDONED_AFTER_S + 60)
    assert HfJobs(fake_hub.api(), "acme", lambda line: None).claim(REPO, key9, key9[:12], "git " + "e" * 40) is None
    assert HfJobs(fake_hub.api(), "acme", lambda line: None).claim_holder(REPO, key9)[1] == "git " + "e" * 40
    assert len(fake_hub.jobs) == 4
    # ... and a fresh claim whose job failed is taken over too
    labels = {"tuneform-run": key9[:12], "tuneform-job": key9[:12], "tuneform-repo": "acme--demo"}
    failed = fake_hub.api().run_job(image="python:3.12", command=["true"], flavor="cpu-basic", labels=labels, namespace="acme").id
    fake_hub.fail_job(failed)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "submitted job" in result.output and len(fake_hub.jobs) == 6, result.output
    demo.cli("cancel", f"acme/{next(j for j in fake_hub.jobs if fake_hub.job(j).stage == 'SCHEDULING')}")

    # a bad token is named: by plan (registry unreadable, git decides) and by apply
    os.environ["HF_TOKEN"] = "hf_not_a_token"  # monkeypatch restores it
    code, plan = demo.json("plan", "--format", "json", "--backend", "hf-jobs")
    assert plan["runs"][0]["action"] == "update" and "HF_TOKEN" in plan["runs"][0]["registry"], plan
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and "HF_TOKEN" in result.output and "hf_not_a_token" not in result.output, result.output
    assert len(fake_hub.jobs) == 6


def test_hub_registry_publish_guards_main_and_restores(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HubRegistry on its own: tag + main with parent_commit, 412 -> tag only, retried commits, restore, offline."""
    from huggingface_hub import constants

    from tuneform.backends import backend
    from tuneform.registry.hub import HubRegistry

    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    registry = HubRegistry(fake_hub.api())
    key_a, key_b, key_c = "a" * 64, "b" * 64, "c" * 64

    def folder(name: str, weights: bytes) -> Path:
        out = tmp_path / name
        out.mkdir()
        (out / "model.safetensors").write_bytes(weights)
        (out / f"only-{name}.txt").write_text(name)
        return out

    def manifest(key: str) -> Manifest:
        return Manifest(run_key=key, status="passed", created=time.strftime("%Y-%m-%dT%H:%M:%S") + key[0], name="x")

    assert registry.main(REPO) is None and registry.get(REPO, key_a) is None and registry.versions(REPO) == []
    fake_hub.faults.fail("POST", r"/commit/main$", 500)  # the client does not retry commits: we do
    first = registry.publish(REPO, key_a, folder("a", b"\0A" * 100), manifest(key_a), parent_commit=None, move_main=True)
    assert first.moved_main and registry.main(REPO) == key_a and fake_hub.repo(REPO).private
    assert [r.status for r in fake_hub.requests_to("POST", r"/commit/main$")] == [500, 200]
    seen = registry.main_commit(REPO)

    second = registry.publish(REPO, key_b, folder("b", b"\0B" * 100), manifest(key_b), parent_commit=seen, move_main=True)
    assert second.moved_main and registry.main(REPO) == key_b
    assert "only-a.txt" not in fake_hub.repo(REPO).files_at("main")  # main holds exactly the version
    # a late job whose apply saw main at `seen`: main moved since (412), so it is tagged only
    late = registry.publish(REPO, key_c, folder("c", b"\0C" * 100), manifest(key_c), parent_commit=seen, move_main=True)
    assert not late.moved_main and "moved since" in late.note and registry.main(REPO) == key_b
    assert registry.get(REPO, key_c) is not None and [v.key for v in registry.versions(REPO)] == [key_a, key_b, key_c]
    again = registry.publish(REPO, key_c, folder("c2", b"x"), manifest(key_c), parent_commit=None, move_main=True)
    assert "already published" in again.note and registry.main(REPO) == key_b
    assert registry.get(REPO, "c" * 12 + "d" * 52) is None  # same tag, another key

    batches = len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$"))
    registry.set_main(REPO, key_a, "revert", parent_commit=registry.main_commit(REPO))
    repo = fake_hub.repo(REPO)
    assert registry.main(REPO) == key_a and set(repo.files_at("main")) == set(repo.files_at("run-aaaaaaaaaaaa"))
    assert len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$")) == batches
    assert not registry.has_evals(REPO, key_a, "e" * 16)

    from tuneform.backends.hfjobs import HfJobs, HfJobsError

    fake_hub.add_repo("meta/gated-model", {"config.json": "{}"}, gated="manual")
    jobs = HfJobs(fake_hub.api(), "acme", lambda line: None)
    jobs.check_readable([("model", REPO)])
    with pytest.raises(HfJobsError, match="gated.*request access"):
        jobs.check_readable([("model", "meta/gated-model")])
    with pytest.raises(HfJobsError, match="does not exist or HF_TOKEN cannot read it"):
        jobs.check_readable([("dataset", "acme/nothing-here")])

    anonymous = HubRegistry(fake_hub.api(None))  # a private repo in a tokenless PR job: not readable, say why
    with pytest.raises(Exception, match="HF_TOKEN"):
        anonymous.main(REPO)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert backend("hf-jobs").registry(tmp_path) is None  # offline: plan falls back to git


def test_plan_for_hf_jobs_prices_with_the_hubs_current_hardware(demo: Repo, fake_hub: FakeHub) -> None:
    """Prices change: a plan for hf-jobs reads GET /api/jobs/hardware through the client."""
    code, before = demo.json("plan", "runs/demo.yaml", "--backend", "hf-jobs", "--format", "json")
    flavor = before["runs"][0]["flavor"]
    for item in fake_hub.hardware:
        if item["name"] == flavor:
            item["unitCostUSD"] = item["unitCostUSD"] * 10
            item["unitCostMicroUSD"] = item["unitCostMicroUSD"] * 10
    code, after = demo.json("plan", "runs/demo.yaml", "--backend", "hf-jobs", "--format", "json")
    assert after["runs"][0]["flavor"] != flavor or after["runs"][0]["usd"] > before["runs"][0]["usd"]
    assert fake_hub.requests_to("GET", r"/api/jobs/hardware")
    fake_hub.faults.fail("GET", r"/api/jobs/hardware", 500, times=5)
    code, offline_table = demo.json("plan", "runs/demo.yaml", "--backend", "hf-jobs", "--format", "json")
    assert any("could not read current prices" in w["message"] for w in offline_table["warnings"])


def test_a_newer_apply_cancels_the_superseded_job_of_the_same_run(demo: Repo, fake_hub: FakeHub) -> None:
    """ISSUE 4.3: the job of the run's previous key, still queued or running, is canceled; nothing else is."""
    from datetime import datetime

    from tuneform.backends.hfjobs import HfJobs, Submitted

    # seed 42: job 1 queued (no container plays it), then running
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "superseded" not in result.output, result.output
    [first] = fake_hub.jobs
    key_a = fake_hub.job(first).labels["tuneform-run"]
    assert fake_hub.job(first).labels["tuneform-repo"] == "acme--demo"
    fake_hub.start_job(first)

    # beside it in namespace acme: a running job of another run (another output repo), and a job of
    # this run for another key that already COMPLETED
    api = fake_hub.api()

    def other_job(run: str, repo_label: str) -> str:
        labels = {"tuneform-run": run, "tuneform-job": run, "tuneform-repo": repo_label}
        return api.run_job(image="python:3.12", command=["true"], flavor="cpu-basic", labels=labels, namespace="acme").id

    other_run = other_job("0" * 12, "acme--other")
    fake_hub.start_job(other_run)
    finished = other_job("d" * 12, "acme--demo")
    fake_hub.complete_job(finished)

    # re-applying the same key submits nothing and cancels nothing; nor does superseding for that key
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "already submitted" in result.output and "canceled" not in result.output, result.output
    jobs = HfJobs(fake_hub.api(), "acme", lambda line: None)
    assert jobs.supersede(REPO, key_a, Submitted("x" * 24, "", "acme", True)) == []
    # a job submitted after ours belongs to a newer apply: not ours to cancel
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    assert jobs.supersede(REPO, "b" * 64, Submitted("x" * 24, "", "acme", True, long_ago)) == []
    assert fake_hub.job(first).stage == "RUNNING" and len(fake_hub.jobs) == 3

    # seed 7: job 2 is submitted, job 1 is canceled (and its branches released), the others untouched
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    demo.commit("seed 7")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    [second] = [j for j in fake_hub.jobs if j not in (first, other_run, finished)]
    key_b = fake_hub.job(second).labels["tuneform-run"]
    assert key_b != key_a and fake_hub.job(second).stage == "SCHEDULING"
    assert f"canceled superseded job {first} (run-{key_a})" in result.output, result.output
    assert fake_hub.job(first).stage == "CANCELED"
    assert fake_hub.job(other_run).stage == "RUNNING" and fake_hub.job(finished).stage == "COMPLETED"
    [cancel] = fake_hub.requests_to("POST", r"/cancel$")
    assert first in cancel.path
    branches = fake_hub.repo(REPO).branches
    assert f"tuneform/claim-{key_a}" not in branches and f"tuneform/jobs/{key_a}" not in branches
    assert f"tuneform/claim-{key_b}" in branches

    # seed 9, a cancel that fails (404: job 2 just ended): a warning, the new job stands; the outcome records it
    fake_hub.faults.fail("POST", r"/cancel$", 404)
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 9"))
    demo.commit("seed 9")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "--format", "json", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)["runs"][0]
    assert outcome["status"] == "done" and len(fake_hub.jobs) == 5
    [record] = outcome["superseded"]
    assert record["job_id"] == second and record["run"] == f"run-{key_b}" and not record["canceled"] and "404" in record["message"]
    assert f"warning: could not cancel superseded job {second}" in result.stderr
    assert fake_hub.job(other_run).stage == "RUNNING"


def claim_posts(hub: FakeHub) -> list[Any]:
    return hub.requests_to("POST", r"/branch/tuneform(%2F|/)claim-")


def test_lost_replies_to_the_claim_and_to_run_job_submit_one_job(demo: Repo, fake_hub: FakeHub) -> None:
    """ISSUE 13.5: the Hub acted, its answer was lost. The claim that landed is recognised as this
    apply's own (it names the git commit applied), and run_job's retry finds the job it created."""
    from tuneform.backends.hfjobs import HfJobs

    fake_hub.faults.drop("POST", r"/branch/tuneform(%2F|/)claim-")
    fake_hub.faults.drop("POST", r"/commit/tuneform(%2F|/)claim-")
    fake_hub.faults.drop("POST", r"^/api/jobs/acme$")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "submitted job" in result.output, result.output
    assert len(fake_hub.jobs) == 1 and len(job_posts(fake_hub)) == 1  # no second paid job
    assert claim_posts(fake_hub)[0].status == 200 and fake_hub.requests_to("POST", r"/commit/tuneform(%2F|/)claim-")[0].status == 200
    # a re-run of the workflow finds the job: nothing submitted again
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "already submitted" in result.output and len(fake_hub.jobs) == 1, result.output
    demo.cli("cancel", f"acme/{next(iter(fake_hub.jobs))}")

    # an earlier attempt of this commit's apply claimed seed 7 and never heard back (then died):
    # the next apply of the same commit recognises the claim as its own and submits
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    demo.commit("seed 7")
    key7 = demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")[1]["runs"][0]["run_key"]
    jobs = HfJobs(fake_hub.api(), "acme", lambda line: None)
    assert jobs.claim(REPO, key7, key7[:12], f"git {demo.git('rev-parse', 'HEAD')}") is None
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0 and "submitted job" in result.output and len(fake_hub.jobs) == 2, result.output


def test_publish_tags_before_moving_main_and_survives_lost_replies(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ISSUE 13.5: a failed tag after the commit to main left a version no restore could find. Now the
    version is committed and tagged first, main moves after (from the commit apply read); a lost reply
    to any of the three writes is found landed, not written twice."""
    from tuneform.registry.hub import HubRegistry

    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    registry = HubRegistry(fake_hub.api())
    key_a, key_b = "a" * 64, "b" * 64

    def folder(name: str) -> Path:
        out = tmp_path / name
        out.mkdir()
        (out / "model.safetensors").write_bytes(name.encode() * 100)
        return out

    def manifest(key: str) -> Manifest:
        return Manifest(run_key=key, status="passed", created="2026-01-01T00:00:0" + key[0], name="x")

    for path in (r"/commit/tuneform(%2F|/)versions", r"/tag/", r"/commit/main$"):
        fake_hub.faults.drop("POST", path)
    first = registry.publish(REPO, key_a, folder("a"), manifest(key_a), parent_commit=None, move_main=True)
    assert first.moved_main and registry.main(REPO) == key_a and registry.get(REPO, key_a) is not None
    assert [len(fake_hub.requests_to("POST", p)) for p in (r"/commit/tuneform(%2F|/)versions", r"/tag/", r"/commit/main$")] == [1, 1, 1]
    repo = fake_hub.repo(REPO)
    assert {p: b.oid for p, b in repo.files_at("main").items()} == {p: b.oid for p, b in repo.files_at("run-aaaaaaaaaaaa").items()}
    assert not any(b.startswith("tuneform/") for b in repo.branches)

    # a late job: main moved since its apply read it, and the Hub's refusal (412) is lost too
    late_key = "c" * 64
    moved_from = registry.main_commit(REPO)
    registry.set_main(REPO, key_a, "", parent_commit=moved_from, message="someone else's commit")  # no change: same key
    api = fake_hub.api()
    api.upload_file(path_or_fileobj=b"moved", path_in_repo="moved.txt", repo_id=REPO)  # another apply moved main
    fake_hub.faults.drop("POST", r"/commit/main$")
    late = registry.publish(REPO, late_key, folder("c"), manifest(late_key), parent_commit=moved_from, move_main=True)
    assert not late.moved_main and "moved since" in late.note and registry.main(REPO) == key_a
    assert registry.get(REPO, late_key) is not None and fake_hub.read_file(REPO, "moved.txt") == b"moved"

    # the tag cannot be made: publish fails, and main stays on the tagged version it held
    seen = registry.main_commit(REPO)
    fake_hub.faults.fail("POST", r"/tag/", 500, times=None)
    with pytest.raises(Exception, match="500"):
        registry.publish(REPO, key_b, folder("b"), manifest(key_b), parent_commit=seen, move_main=True)
    assert registry.main(REPO) == key_a and registry.main_commit(REPO) == seen
    fake_hub.faults.clear()
    # the job run again finds its version committed, tags it and moves main
    again = registry.publish(REPO, key_b, folder("b2"), manifest(key_b), parent_commit=seen, move_main=True)
    assert again.moved_main and registry.main(REPO) == key_b and registry.get(REPO, key_b) is not None


def test_a_published_run_leaves_no_claim_or_bundle_branch(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    """ISSUE 13.5: the bundle branch holds the training data, the eval answers and the wheel (public when
    output.private is false); the job drops it and the claim once the version is published, also
    when apply did not wait for the job (the workflow's --no-wait)."""
    fake_hub.on_job_submitted = container(fake_hub, tmp_path)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    [job] = fake_hub.jobs
    fake_hub.wait_until(lambda: fake_hub.job(job).terminal, timeout=300)
    repo = fake_hub.repo(REPO)
    assert fake_hub.job(job).stage == "COMPLETED" and any(t.startswith("run-") for t in repo.tags)
    assert [b for b in repo.branches if b.startswith("tuneform/")] == []


def test_merges_applied_out_of_order_let_git_ancestry_decide(demo: Repo, fake_hub: FakeHub) -> None:
    """ISSUE 13.5: two merges, A then B (B descends from A), applied in the wrong order. The job's
    creation time would say A's apply is the newer one; git says B is, so A's apply neither trains
    its stale content nor cancels B's job. Applied in order, B cancels A even when the clock says
    otherwise."""
    from datetime import datetime, timedelta

    from tuneform.core.manifest import GitFacts
    from tuneform.registry.hub import HubRegistry

    def commit_seed(seed: int) -> str:
        demo.git("checkout", "-q", "main")
        demo.write("runs/demo.yaml", DEMO.replace("seed: 42", f"seed: {seed}"))
        return demo.commit(f"seed {seed}")

    def apply_at(commit: str) -> Any:
        demo.git("checkout", "-q", commit)
        return demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "--base", f"{commit}^", "runs/demo.yaml")

    a = commit_seed(7)
    b = commit_seed(9)
    result = apply_at(b)
    assert result.exit_code == 0 and "submitted job" in result.output, result.output
    [job_b] = fake_hub.jobs
    fake_hub.start_job(job_b)
    fake_hub.job(job_b).created_at = datetime(2000, 1, 1, tzinfo=UTC)  # arrival order would call B the older job
    result = apply_at(a)
    assert result.exit_code == 0 and f"not submitted: commit {a[:12]} is older than job {job_b}" in result.output, result.output
    assert len(fake_hub.jobs) == 1 and fake_hub.job(job_b).stage == "RUNNING"

    # in order: A's job, then B's apply cancels it, although A's job looks newer by the clock
    demo.cli("cancel", f"acme/{job_b}")
    c = commit_seed(11)  # on top of B: a fresh key for the older apply
    d = commit_seed(13)
    result = apply_at(c)
    assert result.exit_code == 0 and "submitted job" in result.output, result.output
    [job_c] = [j for j in fake_hub.jobs if j != job_b]
    fake_hub.job(job_c).created_at = datetime.now(UTC) + timedelta(days=1)
    result = apply_at(d)
    assert result.exit_code == 0 and f"canceled superseded job {job_c}" in result.output, result.output
    assert fake_hub.job(job_c).stage == "CANCELED"

    # a version on main trained from a newer commit: an older apply does not train over it
    demo.cli("cancel", f"acme/{next(j for j in fake_hub.jobs if j not in (job_b, job_c))}")
    folder = demo.path.parent / "publish"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    registry = HubRegistry(fake_hub.api())
    newest = Manifest(run_key="e" * 64, status="passed", name="demo", git=GitFacts(commit=d))
    registry.publish(REPO, "e" * 64, folder, newest, parent_commit=registry.main_commit(REPO), move_main=True)
    jobs_before = len(fake_hub.jobs)
    result = apply_at(c)
    assert result.exit_code == 0 and f"not submitted: commit {c[:12]} is older than run-eeeeeeeeeeee on main" in result.output, (
        result.output
    )
    assert len(fake_hub.jobs) == jobs_before


def test_a_force_pushed_before_falls_back_to_the_first_parent(demo: Repo, fake_hub: FakeHub) -> None:
    """ISSUE 13.5: after a force-push the push's `before` is in no clone; apply compared with it and
    failed. It now compares with HEAD's first parent (the commit the pushed one was made on), says
    so, and submits the change that commit brings. A base that is not a full SHA is still an error."""
    parent = demo.git("rev-parse", "HEAD")
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    demo.commit("seed 7")
    rewritten = "5eed" * 10  # the tip main had before the force-push: gone with it
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "--base", rewritten)
    assert result.exit_code == 0 and "submitted job" in result.output and len(fake_hub.jobs) == 1, result.output
    assert f"base {rewritten[:12]} is not in this clone" in result.output and f"compared with {parent[:12]}" in result.output
    code, plan = demo.json("plan", "--format", "json", "--base", rewritten)
    assert code == 0 and plan["base"] == parent and [r["action"] for r in plan["runs"]] == ["update"], plan
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "--base", "no-such-branch")
    assert result.exit_code != 0 and "unknown git revision 'no-such-branch'" in result.output, result.output
