"""Several training processes (DDP under `accelerate launch`), for real, on CPU processes over gloo.

The same launcher, worker and trainer run on a multi-GPU flavor with NCCL; here two CPU processes
train the demo model, so the launch, the data split, the summed token counts, the first-process
save and the failure reporting are all exercised on every CI run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, demo_repo
from tuneform.backends import local
from tuneform.train.engine import TrainError
from tuneform.train.launch import TrainRequest, train_distributed

ONE_EPOCH = (ROOT / "runs/demo.yaml").read_text().replace("num_train_epochs: 3", "num_train_epochs: 1")


def manifest(registry: Path) -> dict:
    [found] = registry.glob("tuneform-demo/demo/versions/*/manifest.json")
    return json.loads(found.read_text())


def job_on_two_processes(bundle: Path, registry: Path) -> subprocess.CompletedProcess[str]:
    """`tuneform job BUNDLE --processes 2`, as a Hub job's command runs it, publishing to `registry`."""
    return subprocess.run(
        [sys.executable, "-m", "tuneform.cli", "job", str(bundle), "--registry", str(registry), "--processes", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )


def test_two_processes_split_each_step_and_sum_their_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "single"))
    demo = demo_repo(tmp_path / "demo", ONE_EPOCH)
    demo.cli("apply", "runs/demo.yaml")  # one process; one epoch is too short for the gate: exit 1 is expected
    single = manifest(tmp_path / "single")["training"]
    [job] = local.list_jobs(tmp_path / "single")

    done = job_on_two_processes(job.bundle, tmp_path / "ddp")
    out = done.stdout
    assert "training (full, auto engine, 2 processes with DDP)" in out, out + done.stderr
    ddp = manifest(tmp_path / "ddp")["training"]

    assert single["settings"]["processes"] == 1 and ddp["settings"]["processes"] == 2
    # each optimizer step takes a batch of 16 from each process: half the steps for the same epoch
    assert single["steps"] == 43 and ddp["steps"] == math.ceil(single["steps"] / 2) == 22
    assert f"step {ddp['steps']}/{ddp['steps']}" in out
    # tokens are summed over both processes; accelerate repeats a few rows to even out the last
    # step (at most one batch per process of rows up to max_seq_length 128)
    assert single["tokens"] <= ddp["tokens"] <= single["tokens"] + 2 * 16 * 128
    losses = [loss for _, loss in ddp["loss_history"]]
    assert len(losses) == 22 and losses[-1] < losses[0] / 2  # one model learned from both halves
    # only the first process saved, and the scratch folder of the launch was not published
    [version] = (tmp_path / "ddp").glob("tuneform-demo/demo/versions/*")
    [single_version] = (tmp_path / "single").glob("tuneform-demo/demo/versions/*")

    # (tensorboard names its event files by the time and host they were written at)
    def names(folder: Path) -> list[str]:
        return sorted("events.out.tfevents" if p.name.startswith("events.out.tfevents.") else p.name for p in folder.rglob("*"))

    assert names(version) == names(single_version)


def test_two_processes_train_from_a_tuneform_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process starts from the version the run names (the first process made it ready), not
    from the model id written in the run file, which is the output repo and no model folder."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "single"))
    demo = demo_repo(tmp_path / "demo", ONE_EPOCH)
    demo.cli("apply", "runs/demo.yaml")  # the version to start from (one epoch: its gate fails, exit 1)
    parent = manifest(tmp_path / "single")
    shutil.copytree(tmp_path / "single", tmp_path / "ddp")  # the registry the DDP job publishes to has it too

    demo.write(
        "runs/demo.yaml",
        ONE_EPOCH.replace("id: ./models/demo-tiny", f"id: tuneform-demo/demo\n  revision: run-{parent['run_key'][:12]}").replace(
            "num_train_epochs: 1", "max_steps: 4"
        ),
    )
    demo.commit("continue from the first version")
    demo.cli("apply", "runs/demo.yaml")  # one process, for its bundle
    job = local.list_jobs(tmp_path / "single")[-1]  # newest last

    done = job_on_two_processes(job.bundle, tmp_path / "ddp")
    out = done.stdout + done.stderr
    assert f"starting from tuneform-demo/demo run-{parent['run_key'][:12]}" in out, out
    assert "2 processes with DDP" in out, out
    key = job.state["run_key"]
    child = json.loads((tmp_path / "ddp/tuneform-demo/demo/versions" / key / "manifest.json").read_text())
    assert child["lineage"]["parent"]["run_key"] == parent["run_key"] and child["training"]["steps"] == 4
    # the processes trained the version's weights: the first loss is near where the version ended, far below a fresh start's
    first = child["training"]["loss_history"][0][1]
    assert first < parent["training"]["loss_history"][0][1] / 2


def test_a_failing_training_process_is_reported_and_its_scratch_removed(tmp_path: Path) -> None:
    work = tmp_path / "staging" / "ddp"
    request = TrainRequest(
        bundle=str(tmp_path / "no-bundle"),
        model=str(tmp_path / "no-model"),
        out_dir=str(tmp_path / "staging" / "model"),
        result=str(work / "result.json"),
    )
    lines: list[str] = []
    with pytest.raises(TrainError) as raised:
        train_distributed(request, 2, lines.append)
    message = str(raised.value)
    # the cause, from the failing process's output, ahead of torchrun's own traceback and summary
    assert message.startswith("the 2 training processes failed (exit 1): ")
    assert "is not a job bundle: it has no run.json" in message.splitlines()[0]
    assert "rank-1:" in message  # the second process's log, which the job's output does not show
    assert not work.exists() and not (tmp_path / "staging" / "model").exists()
