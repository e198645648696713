"""Checkpoints on the work branch (ISSUE 4, job side): a Hub job uploads trainer checkpoints to
`tuneform/work-<key12>` while it trains, and a job that trains the run again resumes from there.

The bundle is what `tuneform apply --backend hf-jobs --no-wait` uploaded to the fake Hub (so the
repository's `checkpoint_minutes` travels in run.json); the test then plays the container itself:
it runs `tuneform job BUNDLE --registry hub:<repo>` as a subprocess with the real client, which it
can SIGKILL mid-training. `checkpoint_minutes = 0.0001` checkpoints after every step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Repo, demo_repo
from fakehub import USER_TOKEN, FakeHub
from test_hfjobs import DEMO, REPO
from tfevents import scalars
from tuneform.job.checkpoints import work_branch

STEPS = 12  # DEMO's 24 steps, halved: each test trains once or twice


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> Repo:
    """The demo repo with checkpoints every 6 ms of training, pointed at the fake Hub. The wheel is
    a stand-in: these tests run the job from this checkout, not from the uploaded wheel."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    wheel = tmp_path / "tuneform-0.0.0-py3-none-any.whl"
    wheel.write_bytes(b"not used")
    monkeypatch.setenv("TUNEFORM_WHEEL", str(wheel))
    repo = demo_repo(tmp_path / "demo", DEMO.replace("max_steps: 24", f"max_steps: {STEPS}"))
    repo.write("pyproject.toml", '[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = 5\ncheckpoint_minutes = 0.0001\n')
    repo.commit("checkpoint every step")
    return repo


def submitted_bundle(demo: Repo, hub: FakeHub, tmp_path: Path) -> tuple[Path, str]:
    """Apply without waiting (no container plays the job) and fetch the bundle it uploaded; (bundle, run key)."""
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    [job] = hub.jobs.values()
    key = str(demo.json("plan", "--format", "json", "--backend", "hf-jobs", "runs/demo.yaml")[1]["runs"][0]["run_key"])
    assert job.labels["tuneform-run"] == key[:12]
    hub.api().snapshot_download(
        REPO, revision=f"tuneform/jobs/{key[:12]}", allow_patterns=["tuneform-job/*"], local_dir=str(tmp_path / "submitted")
    )
    bundle = tmp_path / "submitted" / "tuneform-job" / "bundle"
    assert json.loads((bundle / "run.json").read_text())["checkpoint_minutes"] == 0.0001
    return bundle, key


# transformers loads a DDP run's optimizer state with map_location=args.device, which for CPU
# processes is "cpu:0", a location torch.load cannot restore (on GPUs it is "cuda:N", which it
# can). The CPU-only test of a DDP resume teaches torch that location in the job's processes.
CPU_DDP_LOAD = """
import torch.serialization
torch.serialization.register_package(
    5, lambda obj: None, lambda obj, location: obj if location.startswith("cpu:") else None)
"""


def start_job(hub: FakeHub, bundle: Path, tmp_path: Path, name: str, processes: int = 1) -> subprocess.Popen[str]:
    """`tuneform job BUNDLE --registry hub:<repo>` as the container runs it, from this checkout, in
    a session of its own, so that killing its process group takes its training processes too."""
    work = tmp_path / name
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TUNEFORM_", "PYTHON"))}
    env.update(hub.client_env(USER_TOKEN))
    env.update(
        {
            "HOME": str(work),
            "TMPDIR": str(work),
            "HF_HOME": str(work / "hf"),
            "PYTHONPATH": str(ROOT / "src"),
            "PYTHONUNBUFFERED": "1",
            "TUNEFORM_RETRY_DELAY": "0.05",
        }
    )
    if processes > 1:
        (work / "site").mkdir()
        (work / "site" / "sitecustomize.py").write_text(CPU_DDP_LOAD)
        env["PYTHONPATH"] += os.pathsep + str(work / "site")
    command = [sys.executable, "-m", "tuneform.cli", "job", str(bundle), "--registry", f"hub:{REPO}", "--processes", str(processes)]
    return subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def checkpoint_commits(hub: FakeHub) -> list[Any]:
    """Every commit the jobs made on a work branch (they outlive the branch in the fake's store), oldest first."""
    commits = [c for c in hub.repo(REPO).commits.values() if c.title.startswith("checkpoint at step ")]
    return sorted(commits, key=lambda c: c.date)


def manifest_of(hub: FakeHub, key: str) -> dict[str, Any]:
    return dict(json.loads(hub.read_file(REPO, "tuneform/manifest.json", f"run-{key[:12]}")))


def test_a_job_uploads_a_checkpoint_per_interval_and_drops_them_once_published(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    bundle, key = submitted_bundle(demo, fake_hub, tmp_path)
    output = finish(start_job(fake_hub, bundle, tmp_path, "job"))
    branch = work_branch(key)
    assert f"checkpoint at step 1 -> branch {branch}" in output and "resuming" not in output, output
    assert f"deleted the checkpoint branch {branch}" in output, output

    commits = checkpoint_commits(fake_hub)
    assert [c.title for c in commits] == [f"checkpoint at step {n}" for n in range(1, STEPS)]  # none after the last step
    repo = fake_hub.repo(REPO)
    for step, commit in enumerate(commits, start=1):
        files = {p for p in commit.files if p.startswith("checkpoint/")}
        assert {
            "checkpoint/model.safetensors",
            "checkpoint/optimizer.pt",
            "checkpoint/scheduler.pt",
            "checkpoint/rng_state.pth",
            "checkpoint/trainer_state.json",
            "checkpoint/tuneform.json",
        } <= files
        state = json.loads(repo.read("checkpoint/tuneform.json", commit.oid))
        assert state == {
            "run_key": key,
            "step": step,
            "settings": {"batch_size": 16, "gradient_accumulation_steps": 1, "processes": 1, "engine": "trl"},
        }
        assert json.loads(repo.read("checkpoint/trainer_state.json", commit.oid))["global_step"] == step

    assert branch not in repo.branches  # published: the checkpoints are gone
    manifest = manifest_of(fake_hub, key)
    assert manifest["training"]["steps"] == STEPS and manifest["training"]["resumed_from_step"] is None
    assert not any(p.startswith("checkpoint") for p in repo.files_at(f"run-{key[:12]}"))  # the version holds the model alone


def test_a_killed_job_is_resumed_by_the_next_one(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    bundle, key = submitted_bundle(demo, fake_hub, tmp_path)
    branch = work_branch(key)
    # the third checkpoint lands, then its answer is held: the job waits there, and is killed
    hold = fake_hub.faults.hold_commit(r"^tuneform/work-", nth=3)
    first = start_job(fake_hub, bundle, tmp_path, "first")
    try:
        assert hold.reached.wait(timeout=300), "the job never uploaded its third checkpoint"
    finally:
        os.kill(first.pid, signal.SIGKILL)
        output, _ = first.communicate(timeout=60)
        hold.release.set()
    assert first.returncode == -signal.SIGKILL, output
    repo = fake_hub.repo(REPO)
    step = json.loads(fake_hub.read_file(REPO, "checkpoint/tuneform.json", branch))["step"]
    assert step == 3 and repo.branches[branch] == hold.commit
    assert not any(t.startswith("run-") for t in repo.tags)

    output = finish(start_job(fake_hub, bundle, tmp_path, "second"))
    assert f"resuming from step {step} (checkpoint on branch {branch})" in output, output
    assert f"step {step + 1}/{STEPS}" in output and "step 1/" not in output, output  # no step is trained twice
    manifest = manifest_of(fake_hub, key)
    training = manifest["training"]
    assert training["resumed_from_step"] == step and training["steps"] == STEPS
    assert [point[0] for point in training["loss_history"]] == list(range(1, STEPS + 1))  # the checkpoint's log, then the resume's
    losses = [point[1] for point in training["loss_history"]]
    assert training["train_loss"] == pytest.approx(sum(losses) / STEPS)  # the whole run's mean (one log a step)
    assert [t for t in repo.tags if t.startswith("run-")] == [f"run-{key[:12]}"]
    assert branch not in repo.branches
    # the tensorboard files up to the checkpoint travelled with it: the published curve is whole,
    # each step once (the first job's files up to step 3, the second job's from step 4)
    events = [name for name in manifest["tracking"]["files"] if "/events.out.tfevents." in name]
    steps: list[int] = []
    for name in events:
        (tmp_path / "events").write_bytes(fake_hub.read_file(REPO, f"tuneform/{name}", f"run-{key[:12]}"))
        steps += [s for s, _ in scalars(tmp_path / "events").get("train/loss", [])]
    assert sorted(steps) == list(range(1, STEPS + 1)), (events, steps)


def test_a_checkpoint_saved_with_other_settings_is_ignored(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    """A checkpoint of the same key but another batch size (say a GPU job sized it so) is not continued."""
    from huggingface_hub import CommitOperationAdd

    bundle, key = submitted_bundle(demo, fake_hub, tmp_path)
    branch = work_branch(key)
    api = fake_hub.api()
    api.create_branch(REPO, branch=branch)
    state = {"run_key": key, "step": 5, "settings": {"batch_size": 4, "gradient_accumulation_steps": 1, "processes": 1, "engine": "trl"}}
    api.create_commit(
        REPO,
        [CommitOperationAdd("checkpoint/tuneform.json", json.dumps(state).encode()), CommitOperationAdd("checkpoint/stale.bin", b"\0old")],
        commit_message="an old checkpoint",
        revision=branch,
    )

    output = finish(start_job(fake_hub, bundle, tmp_path, "job"))
    assert (
        f"ignoring the checkpoint on branch {branch}: it was saved with batch_size 4, this job trains with 16; training from the start"
        in output
    ), output
    assert "resuming" not in output and "step 1/" in output, output
    assert manifest_of(fake_hub, key)["training"]["resumed_from_step"] is None
    # the job's first checkpoint replaced the old one whole, in one commit
    first = checkpoint_commits(fake_hub)[0]
    assert first.title == "checkpoint at step 1" and "checkpoint/stale.bin" not in first.files
    assert branch not in fake_hub.repo(REPO).branches


def test_a_job_on_two_processes_checkpoints_and_resumes(demo: Repo, fake_hub: FakeHub, tmp_path: Path) -> None:
    """DDP (two CPU processes over gloo): both take part in each checkpoint (each RNG state is in
    it), the first uploads it, and a job killed mid-run is resumed by the next on two processes."""
    bundle, key = submitted_bundle(demo, fake_hub, tmp_path)
    branch = work_branch(key)
    hold = fake_hub.faults.hold_commit(r"^tuneform/work-", nth=2)
    first = start_job(fake_hub, bundle, tmp_path, "first", processes=2)
    try:
        assert hold.reached.wait(timeout=300), "the job never uploaded its second checkpoint"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the job and the training processes it launched
        output, _ = first.communicate(timeout=60)
        hold.release.set()
    assert "2 processes with DDP" in output and "checkpoint at step 1 -> branch" in output, output
    repo = fake_hub.repo(REPO)
    [one, two] = checkpoint_commits(fake_hub)
    for step, commit in ((1, one), (2, two)):
        assert {"checkpoint/rng_state_0.pth", "checkpoint/rng_state_1.pth", "checkpoint/optimizer.pt"} <= set(commit.files)
        state = json.loads(repo.read("checkpoint/tuneform.json", commit.oid))
        assert state["step"] == step and state["settings"]["processes"] == 2

    output = finish(start_job(fake_hub, bundle, tmp_path, "second", processes=2))
    assert f"resuming from step 2 (checkpoint on branch {branch})" in output, output
    assert "step 3/" in output and "step 1/" not in output, output
    training = manifest_of(fake_hub, key)["training"]
    assert training["resumed_from_step"] == 2 and training["steps"] == STEPS and training["settings"]["processes"] == 2
    assert branch not in repo.branches
