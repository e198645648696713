"""The typed contracts at the seams: the manifest (versions already published stay readable; a
new version records its complete lineage: data and model content, revisions, commit and whether
the run file was committed unchanged, PR, libraries, GPU, shown by `tuneform history` and the
model card), the bundle's run facts, and the plan entry."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import ROOT, Repo, demo_repo, sub
from fakegithub import FakeGitHub
from tuneform.core.manifest import MANIFEST_FORMAT, Manifest
from tuneform.github.results import FINISHED, RunResult, render_results
from tuneform.job.bundle import build_bundle, git_facts, read_bundle
from tuneform.job.report import model_card, render_run
from tuneform.plan.entry import PlanEntry
from tuneform.plan.runcheck import check_run
from tuneform.registry.local import LocalRegistry
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import load_settings
from tuneform.runfile.trees import WorkTree

PUBLISHED = ROOT / "tests/data/manifest-0.1.0.json"  # written by tuneform 0.1.0's job (the demo, local backend)
OLD = json.loads(PUBLISHED.read_text())
OLD_KEY = OLD["run_key"]


def old_registry(tmp_path: Path) -> LocalRegistry:
    """A local registry holding the 0.1.0 manifest as its only version, on main."""
    registry = LocalRegistry(tmp_path / "registry")
    folder = registry.version_dir("tuneform-demo/demo", OLD_KEY)
    folder.mkdir(parents=True)
    shutil.copy(PUBLISHED, folder / "manifest.json")
    registry.set_main("tuneform-demo/demo", OLD_KEY, "test", parent_commit=registry.main_commit("tuneform-demo/demo"))
    return registry


def test_a_manifest_from_0_1_0_reads_and_its_metrics_are_the_eval_table(tmp_path: Path) -> None:
    [version] = old_registry(tmp_path).versions("tuneform-demo/demo")
    manifest = version.manifest
    assert manifest.manifest_format == 1 and manifest.lineage is None and version.status == "passed"
    assert version.commit == OLD["git"]["commit"] and version.pr is None and version.created == OLD["created"]
    # Version.metrics read a key no job writes: it was always {}
    expected = {row["metric"]: row["new"] for row in OLD["evals"]["table"]["rows"]}
    assert version.metrics == expected and "exact_match" in version.metrics
    assert manifest.training is not None and manifest.training.steps == OLD["training"]["steps"]
    assert manifest.estimate is not None and manifest.estimate.tokens_per_second == OLD["estimate"]["tokens_per_second"]


def test_unknown_keys_are_dropped_when_read_and_refused_when_built() -> None:
    future = json.loads(PUBLISHED.read_text())
    future["signed_by"] = "a later tuneform"
    future["git"]["branch"] = "main"
    future["evals"]["table"]["rows"][0]["ci95"] = [0.9, 1.0]
    read = Manifest.read(future)
    assert read == Manifest.read(OLD)
    with pytest.raises(ValidationError, match="signed_by"):
        Manifest(run_key="a" * 64, name="x", signed_by="me")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="branch"):
        Manifest.model_validate(future)  # without the lenient context, as the job builds one


def test_history_report_card_and_results_render_a_0_1_0_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_repo(tmp_path / "demo", (ROOT / "runs/demo.yaml").read_text())
    old_registry(tmp_path)
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    code, history = demo.json("history", "demo", "--format", "json")
    [row] = history["versions"]
    assert code == 0 and row["run_key"] == OLD_KEY and row["main"] and row["commit"] == OLD["git"]["commit"]
    assert row["metrics"]["exact_match"] == pytest.approx(0.96875) and row["data"] is None
    assert row["clean"] is None  # 0.1.0 wrote dirty: false even for a run file git did not track
    text = demo.cli("history", "demo").output
    assert f"run-{OLD_KEY[:12]}" in text and OLD["git"]["commit"][:12] in text and "exact_match 0.969" in text

    manifest = Manifest.read(OLD)
    markdown = render_run(manifest, "markdown")
    assert "| exact\\_match | 0.000 | **0.969** | ↑ +0.969 |" in markdown
    assert f"· commit {OLD['git']['commit'][:12]}\n" in markdown  # clean or not: unknown in 0.1.0
    assert "demo passed its gates" in render_run(manifest, "text")
    card = model_card(manifest)
    assert f"at commit `{OLD['git']['commit'][:12]}`; run key `{OLD_KEY}`." in card
    results = render_results(
        [RunResult(OLD_KEY[:12], "tuneform-demo", "job1", "https://hf.co/jobs/1", FINISHED, "COMPLETED", report=markdown)]
    )
    assert "| exact\\_match | 0.000 | **0.969** | ↑ +0.969 |" in results


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_sha(folder: Path) -> str:
    """The documented folder hash, computed here on its own: sorted relative names with their files' sha256."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + _file_sha(path).encode() + b"\n")
    return digest.hexdigest()


def test_git_facts_say_whether_the_run_file_was_committed_unchanged(repo: Repo) -> None:
    head = repo.git("rev-parse", "HEAD")
    clean = git_facts(repo.path, "runs/support.yaml", 7)
    assert (clean.commit, clean.dirty, clean.run_file, clean.pr) == (head, False, "committed", 7)
    repo.write("runs/new.yaml", "model: {}\n")  # never committed: the commit cannot reproduce it
    untracked = git_facts(repo.path, "runs/new.yaml", None)
    assert (untracked.dirty, untracked.run_file) == (True, "untracked")
    assert git_facts(repo.path, "runs/support.yaml", None).dirty is False  # an untracked file elsewhere changes nothing
    repo.write("runs/support.yaml", repo.path.joinpath("runs/support.yaml").read_text() + "# edited\n")
    assert (git_facts(repo.path, "runs/support.yaml", None).run_file, git_facts(repo.path, "runs/support.yaml", None).dirty) == (
        "modified",
        True,
    )
    repo.commit("edit")
    repo.write("data/chat.jsonl", "")  # a tracked file the run reads changed since the commit
    other = git_facts(repo.path, "runs/support.yaml", None)
    assert (other.run_file, other.dirty) == ("committed", True)
    assert git_facts(repo.path.parent, "runs/support.yaml", None).commit is None  # not a git repository


def test_a_model_folder_linking_outside_the_repository_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    demo = demo_repo(tmp_path / "demo", (ROOT / "runs/demo.yaml").read_text())
    outside = tmp_path / "secret.txt"
    outside.write_text("not the repository's")
    (demo.path / "models/demo-tiny/extra.txt").symlink_to(outside)
    code, out = demo.json("validate", "runs/demo.yaml", "--format", "json")
    [error] = out["files"][0]["errors"]
    assert code == 1 and error["field"] == "model.id"
    assert error["message"] == "'models/demo-tiny/extra.txt' leads outside the repository (through a symlink): use a file inside it"


def test_a_hub_model_run_carries_its_resolved_revision_to_the_job(repo: Repo, tmp_path: Path) -> None:
    tree = WorkTree(repo.path)
    check = check_run(tree, "runs/support.yaml", load_settings(tree), HubResolver(offline=True))
    assert check.key and check.spec
    bundle = build_bundle(check, tree, tmp_path / "bundle", git=git_facts(repo.path, check.path, None), action="create", expected_main=None)
    read = read_bundle(bundle.path)
    assert read.run == bundle.run and read.run.model_revision == check.spec.model.revision  # pinned in the run: 93efa2f...
    assert read.run.git.run_file == "committed" and read.run.estimate is not None


def test_a_trained_version_records_its_lineage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, github_env: FakeGitHub) -> None:
    """One short training of the demo, merged through PR 5 with its run file committed."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    demo = demo_repo(tmp_path / "demo", (ROOT / "runs/demo.yaml").read_text())
    before = demo.git("rev-parse", "HEAD")
    demo.write(
        "runs/demo.yaml",
        sub(
            "  num_train_epochs: 3\n",
            "  max_steps: 8\n",
            'gate: {exact_match: ">= 0.85"}',
            "gate: {}",
            text=(ROOT / "runs/demo.yaml").read_text(),
        ),
    )
    after = demo.commit("shorter demo")
    github_env.add_pr(5)
    github_env.merge_pr(5, after)
    result = demo.cli("apply", "--base", before, "--approval-from-commit", after)
    assert result.exit_code == 0, result.output

    [version] = LocalRegistry(tmp_path / "registry").versions("tuneform-demo/demo")
    manifest, lineage = version.manifest, version.manifest.lineage
    assert manifest.manifest_format == MANIFEST_FORMAT and lineage is not None and lineage.parent is None
    [export] = manifest.exports  # a full fine-tune saving merged weights: one export, at the root
    assert (export.name, export.path) == ("merged", "") and export.bytes > (
        demo.path / "models/demo-tiny/model.safetensors"
    ).stat().st_size / 2
    assert (manifest.git.commit, manifest.git.pr, manifest.git.dirty, manifest.git.run_file) == (after, 5, False, "committed")
    assert [(f.path, f.sha256) for f in lineage.data] == [("data/support.jsonl", _file_sha(demo.path / "data/support.jsonl"))]
    assert lineage.model_id == "./models/demo-tiny" and lineage.model_revision is None
    assert lineage.model_sha256 == _folder_sha(demo.path / "models/demo-tiny")
    assert (lineage.gpu, lineage.gpu_count) == (None, 0)  # trained on this machine's CPU
    assert {"torch", "transformers", "trl"} <= set(manifest.versions)

    code, history = demo.json("history", "demo", "--format", "json")
    [row] = history["versions"]
    assert history["schema_version"] == 2 and row["clean"] is True and row["pr"] == 5
    assert row["model_sha256"] == lineage.model_sha256 and row["data"] == [{"path": "data/support.jsonl", "sha256": lineage.data[0].sha256}]
    text = demo.cli("history", "demo").output
    assert f"clean · model sha256 {lineage.model_sha256[:12]} · data data/support.jsonl {lineage.data[0].sha256[:12]}" in text
    card = (tmp_path / "registry/tuneform-demo/demo/versions" / version.key / "model/README.md").read_text()
    assert f"at commit `{after[:12]}` (clean) (PR #5)" in card
    assert (
        f"content sha256 `{lineage.model_sha256[:12]}`" in card and f"`data/support.jsonl` sha256 `{lineage.data[0].sha256[:12]}`" in card
    )
    assert "- trained on CPU" in card


def test_plan_json_entries_keep_their_documented_shape(repo: Repo) -> None:
    """`plan --format json` prints each run through PlanEntry: the keys, and their order, of
    schema_version 2 (an agent may read them positionally from a pretty-printed file)."""
    code, plan = repo.json("plan", "runs/support.yaml", "--format", "json")
    [entry] = plan["runs"]
    assert plan["schema_version"] == 2 and list(entry) == [
        "path",
        "name",
        "action",
        "run_key",
        "base_run_key",
        "eval_hash",
        "base_path",
        "backend",
        "output_repo",
        "image",
        "flavor",
        "estimate",
        "fits",
        "budget_ok",
        "usd",
        "usd_status",
        "base_usd",
        "errors",
        "warnings",
        "reuse",
        "registry",
        "tokens_counted_by",
        "data",
        "timeout_s",
        "method",
        "rows",
        "sequences",
    ]
    tree = WorkTree(repo.path)
    check = check_run(tree, "runs/support.yaml", load_settings(tree), HubResolver(offline=True))
    assert check.sizing is not None and check.sizing.estimate is not None
    assert entry["estimate"] == check.sizing.estimate.as_json() and list(entry["estimate"]) == list(check.sizing.estimate.as_json())
    assert PlanEntry.read(entry | {"added_later": 1}).to_json() == entry  # a later tuneform's plan.json reads
