"""apply on the local backend, end to end: real training of the demo model, the registry, restore.

These run the real job in a subprocess (transformers + TRL on CPU), so they are the slowest tests;
each training is the demo's ~10 s run or shorter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import ROOT, RUN, Repo, demo_repo, jsonl
from tfevents import scalars
from tuneform.backends import local

DEMO = (ROOT / "runs/demo.yaml").read_text()


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A copy of this repository's demo (model, data, suite, run) as a fresh training repo."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    return demo_repo(tmp_path / "demo", DEMO)


def registry_dirs(repo: Repo) -> list[str]:
    versions = repo.path.parent / "registry" / "tuneform-demo" / "demo" / "versions"
    return sorted(p.name for p in versions.iterdir()) if versions.is_dir() else []


def jobs(repo: Repo) -> list[local.LocalJob]:
    return local.list_jobs(repo.path.parent / "registry")


def test_demo_trains_publishes_then_noop_update_and_restore(demo: Repo) -> None:
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "+ create" in out and "step 1/" in out and "passed its gates" in out
    code, history = demo.json("history", "demo", "--format", "json")
    [first] = history["versions"]
    assert first["main"] and first["status"] == "passed" and history["main"] == first["run_key"]
    assert first["metrics"]["exact_match"] > 0.5 and first["commit"] == demo.git("rev-parse", "HEAD")
    manifest = json.loads((demo.path.parent / "registry/tuneform-demo/demo/versions" / first["run_key"] / "manifest.json").read_text())
    table = {row["metric"]: row for row in manifest["evals"]["table"]["rows"]}
    assert table["exact_match"]["base"] < 0.2 < 0.5 < table["exact_match"]["new"]  # it measurably learned
    assert manifest["training"]["steps"] > 0 and manifest["data"]["train_rows"] == 684
    version_dir = demo.path.parent / "registry/tuneform-demo/demo/versions" / first["run_key"]
    for name in ("report.md", "report.json", "loss.png", "model/config.json", "model/model.safetensors"):
        assert (version_dir / name).is_file(), name
    # report_to: tensorboard (the demo's): the event files are in the version, listed in its manifest
    tracking = manifest["tracking"]
    assert tracking["report_to"] == "tensorboard" and tracking["url"] is None
    events = [name for name in tracking["files"] if "/events.out.tfevents." in name]
    assert events and all(name.startswith("logs/tensorboard/") for name in tracking["files"]), tracking
    assert not list((version_dir / "model").rglob("events.out.tfevents.*"))  # never among the model's files
    curves = {}
    for name in events:
        curves.update(scalars(version_dir / name))
    losses = curves["train/loss"]
    assert [step for step, _ in losses] == [step for step, _ in manifest["training"]["loss_history"]]
    assert [value for _, value in losses] == pytest.approx([loss for _, loss in manifest["training"]["loss_history"]], rel=1e-6)
    card = (version_dir / "model/README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\ntags:\n- tuneform\n---")
    assert "#### Evals" in card and f"run key `{first['run_key']}`" in card and "#### Lineage" in card

    # a second apply is a no-op: same key, nothing starts
    before = len(jobs(demo))
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 0 and "= noop" in result.output and len(jobs(demo)) == before

    # a change trains a new version and moves main
    demo.write("runs/demo.yaml", DEMO.replace("seed: 42", "seed: 7"))
    result = demo.cli("apply")
    assert result.exit_code == 0, result.output
    code, history = demo.json("history", "demo", "--format", "json")
    assert len(history["versions"]) == 2 and history["main"] != first["run_key"]

    # reverting the file restores the first version: no job, no training, $0
    demo.write("runs/demo.yaml", DEMO)
    code, plan = demo.json("plan", "--format", "json")
    [run] = plan["runs"]
    assert run["action"] == "restore" and run["run_key"] == first["run_key"] and run["usd"] == 0
    jobs_before = len(jobs(demo))
    result = demo.cli("apply")
    assert result.exit_code == 0 and "restored" in result.output
    assert len(jobs(demo)) == jobs_before
    code, history = demo.json("history", "demo", "--format", "json")
    assert history["main"] == first["run_key"] and len(history["versions"]) == 2
    log = (demo.path.parent / "registry/tuneform-demo/demo/log.jsonl").read_text().splitlines()
    assert [json.loads(line)["to"] for line in log] == [first["run_key"], history["versions"][1]["run_key"], first["run_key"]]

    # an eval-only change scores the version again without training, once
    demo.write("runs/demo.yaml", DEMO.replace('">= 0.85"', '">= 0.5"'))
    result = demo.cli("apply")
    assert result.exit_code == 0 and "? evaluate" in result.output and "scored again" in result.output
    assert "step 1/" not in result.output and registry_dirs(demo) == sorted(v["run_key"] for v in history["versions"])
    assert list((version_dir / "evals").glob("*/report.md")) and (version_dir / "report.md").read_text().count("0.85") >= 1
    assert demo.json("plan", "--format", "json")[1]["runs"][0]["action"] == "noop"


def test_failed_gate_keeps_version_blocks_and_leaves_main(demo: Repo) -> None:
    short = DEMO.replace("num_train_epochs: 3", "max_steps: 2")
    demo.write("runs/demo.yaml", short)
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 1
    assert "gates failed" in result.output and "exact_match >= 0.85" in result.output
    [key] = registry_dirs(demo)
    code, history = demo.json("history", "demo", "--format", "json")
    assert history["main"] is None and history["versions"][0]["status"] == "failed_gates"
    code, plan = demo.json("plan", "--format", "json", "runs/demo.yaml")
    assert plan["runs"][0]["action"] == "blocked" and plan["runs"][0]["run_key"] == key
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 1 and "failed its gates before" in result.output
    assert registry_dirs(demo) == [key]  # nothing retrained


def test_bad_data_stops_apply_at_the_plan_naming_rows(demo: Repo) -> None:
    """Rows with no assistant turn over data.max_bad_rows: the plan rejects the run with the job's
    own message naming them, apply starts no job (the job would stop on them too:
    tests/test_data.py), and the data check names the rule."""
    rows = [json.loads(line) for line in (ROOT / "data/support.jsonl").read_text().splitlines()]
    for row in rows[:40]:
        row["messages"] = [m for m in row["messages"] if m["role"] != "assistant"]
    demo.write("data/support.jsonl", jsonl(rows))
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 1
    assert "40 of 720 rows are malformed (5.6%), more than data.max_bad_rows (1.0%)" in result.output
    assert "data/support.jsonl line 1: messages: has no assistant message" in result.output
    assert "not applicable" in result.output
    assert registry_dirs(demo) == [] and jobs(demo) == []
    checked = demo.cli("data", "check", "runs/demo.yaml")
    assert checked.exit_code == 1 and "FAIL max_bad_rows" in checked.output
    assert "data/support.jsonl:1: messages: has no assistant message" in checked.output


def test_unknown_chat_template_is_named(demo: Repo) -> None:
    demo.write("runs/demo.yaml", DEMO.replace("  max_seq_length: 128", "  max_seq_length: 128\n  chat_template: chatmll"))
    result = demo.cli("apply", "runs/demo.yaml")
    assert result.exit_code == 1
    assert "chatmll" in result.output and "chatml" in result.output.replace("chatmll", "")
    assert registry_dirs(demo) == []


def test_cancel_mid_training_leaves_the_registry_consistent(demo: Repo) -> None:
    demo.write("runs/demo.yaml", DEMO.replace("num_train_epochs: 3", "num_train_epochs: 40"))
    result = demo.cli("apply", "runs/demo.yaml", "--no-wait")
    assert result.exit_code == 0, result.output
    [job] = jobs(demo)
    deadline = time.monotonic() + 120
    while "step " not in job.log.read_text() and time.monotonic() < deadline:
        assert job.stage == local.RUNNING, job.log.read_text()
        time.sleep(0.2)
    code, status = demo.json("status", "demo", "--format", "json")
    assert status["stage"] == local.RUNNING and status["id"] == job.id
    assert demo.cli("cancel", job.id).output.startswith("canceled")
    deadline = time.monotonic() + 30
    while local._alive(job.state.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.stage == local.CANCELED
    assert registry_dirs(demo) == []  # the staging folder went with the job
    assert "step " in demo.cli("logs", job.id).output
    code, plan = demo.json("plan", "--format", "json", "runs/demo.yaml")
    assert plan["runs"][0]["action"] == "update" and plan["runs"][0]["reuse"] is None  # nothing half-published


def test_the_wait_window_follows_what_fits_and_counts_each_followed_share(repo: Repo) -> None:
    """--wait-within: each run's estimate x FOLLOW_MARGIN is weighed against what is left of the
    window; a followed run takes its share. Two runs that each fit alone do not fit together."""
    from tuneform.backends.apply import FOLLOW_MARGIN, WaitWindow
    from tuneform.plan.planner import make_plan

    repo.write("runs/faq.yaml", RUN.replace("learning_rate: 1.0e-4", "learning_rate: 5.0e-5"))
    repo.commit("faq")
    first, second = make_plan(repo.path, base="0" * 40).runs
    needed = [run.check.sizing.estimate.seconds * FOLLOW_MARGIN for run in (first, second)]
    assert all(n > 10 for n in needed)  # the test's margins below are far above the time it takes
    window = WaitWindow(needed[0] + needed[1] - 5)
    assert window.take(first) is None  # fits: followed
    why = window.take(second)
    assert why is not None and why.startswith("detached: estimated") and "left to wait" in why
    assert WaitWindow(needed[0] + needed[1] + 5).take(second) is None  # alone it would have fitted
    assert WaitWindow(needed[0] - 5).take(first) is not None
