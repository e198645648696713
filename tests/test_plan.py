"""plan against real git repositories: actions, matching, budgets, registry reads, renderers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import tuneform
from conftest import CHAT_ROWS, RUN, SETTINGS, SUITE, SUITE_ROWS, Repo, jsonl
from tuneform.backends import local
from tuneform.core.manifest import GitFacts, Manifest
from tuneform.plan.planner import EMPTY_TREE, NO_MAIN_YET
from tuneform.registry.local import FAILED_GATES, PASSED, LocalRegistry


def plan_json(repo: Repo, *args: str) -> tuple[int, dict]:
    return repo.json("plan", "--format", "json", *args)


def actions(plan: dict) -> dict[str, str]:
    return {run["path"]: run["action"] for run in plan["runs"]}


def branch(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "pr")


def publish(repo: Repo, key: str, *, status: str = PASSED, main: bool = True, pr: int | None = 12, eval_hash: str | None = None) -> None:
    """Put a version in the local registry the way apply does (staged folder, then rename)."""
    registry = LocalRegistry(repo.path.parent / "registry")
    staged = registry.staging("acme/support", key)
    (staged / "model").mkdir()
    manifest = Manifest(
        run_key=key,
        name="support",
        output_repo="acme/support",
        eval_hash=eval_hash,
        status=status,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        git=GitFacts(commit="c0ffee", pr=pr),
    )
    registry.publish("acme/support", key, staged, manifest, parent_commit=registry.main_commit("acme/support"), move_main=main)


def trained(repo: Repo) -> str:
    """Train (publish) what main asks for, as apply on main would have: the usual PR start."""
    code, plan = plan_json(repo, "runs/support.yaml")
    key = plan["runs"][0]["run_key"]
    publish(repo, key, eval_hash=plan["runs"][0]["eval_hash"])
    return key


def test_no_changes_is_an_empty_plan(repo: Repo) -> None:
    branch(repo)
    code, plan = plan_json(repo)
    assert code == 0
    assert plan["runs"] == [] and plan["total_usd"] == 0
    assert plan["schema_version"] == 2
    assert "No changes" in repo.cli("plan").output


def test_new_run_is_create_with_an_estimate(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/second.yaml", RUN.replace("r: 8", "r: 16"))
    code, plan = plan_json(repo)
    assert code == 0
    [run] = plan["runs"]
    assert run["path"] == "runs/second.yaml" and run["name"] == "second" and run["action"] == "create"
    assert len(run["run_key"]) == 64
    assert set(run["estimate"]) >= {"tokens", "seconds", "usd", "peak_vram_gb"}
    assert run["estimate"]["tokens"] > 0 and run["fits"] is True and run["budget_ok"] is True
    assert run["reuse"] is None and run["base_usd"] is None
    assert run["flavor"] == "local" and run["usd"] == 0


def test_a_run_without_evals_is_warned_that_it_publishes_ungated(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/ungated.yaml", RUN.split("evals:")[0])
    code, plan = plan_json(repo)
    by_path = {run["path"]: run for run in plan["runs"]}
    [warning] = by_path["runs/ungated.yaml"]["warnings"]
    assert code == 0 and warning["field"] == "evals"  # a warning, not an error: the plan still applies
    assert "publish as passed with no gate" in warning["message"] and "evals: [{suite: evals/example.yaml" in warning["message"]
    assert plan_json(repo, "runs/support.yaml")[1]["runs"][0]["warnings"] == []  # a run with a suite is not warned
    for fmt in ("text", "markdown"):
        assert "publish as passed with no gate" in repo.cli("plan", "--format", fmt).output, fmt


def test_plan_names_the_exports_and_their_time(repo: Repo) -> None:
    """A run that exports more than its root says so in the plan's note, with the export's part
    of the estimated time (estimate/estimator.py prices it); one exporting the adapter alone does not."""
    branch(repo)
    repo.write("runs/exports.yaml", RUN + "output: {save: [gguf:q4_k_m, merged, adapter]}\n")
    markdown = repo.cli("plan", "--format", "markdown").output
    assert "exports adapter, merged, gguf:q4\\_k\\_m (" in markdown and "of the time)" in markdown, markdown
    assert markdown.count("exports ") == 1, markdown  # runs/support.yaml saves the adapter alone
    assert "gguf:q4_k_m" in repo.cli("plan", "--format", "text").output


def test_reformatted_file_is_noop(repo: Repo) -> None:
    trained(repo)
    branch(repo)
    reformatted = "# same run, other style\n" + RUN.replace("method: {type: lora, r: 8}", "method:\n  r: 8\n  type: 'lora'").replace(
        "1.0e-4", "0.0001"
    )
    repo.write("runs/support.yaml", reformatted)
    code, plan = plan_json(repo)
    assert code == 0
    [run] = plan["runs"]
    assert run["action"] == "noop" and run["run_key"] == run["base_run_key"]


def test_changed_hyperparameter_is_update_with_cost_change(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("num_train_epochs: 1", "num_train_epochs: 3"))
    code, plan = plan_json(repo, "--backend", "hf-jobs")
    assert code == 0
    [run] = plan["runs"]
    assert run["action"] == "update" and run["run_key"] != run["base_run_key"]
    assert run["flavor"] != "local" and run["usd"] > 0 and run["base_usd"] > 0
    assert run["estimate"]["tokens"] == 3 * _base_tokens(repo)


def _base_tokens(repo: Repo) -> int:
    code, plan = plan_json(repo, "runs/support.yaml", "--base", "main", "--backend", "hf-jobs")
    repo.git("stash", "-q")
    try:
        code, base_plan = plan_json(repo, "runs/support.yaml", "--backend", "hf-jobs")
    finally:
        repo.git("stash", "pop", "-q")
    return base_plan["runs"][0]["estimate"]["tokens"]


def test_data_change_alone_updates_the_key(repo: Repo) -> None:
    branch(repo)
    repo.write(
        "data/chat.jsonl",
        (repo.path / "data/chat.jsonl").read_text()
        + json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
        + "\n",
    )
    code, plan = plan_json(repo)
    assert actions(plan) == {"runs/support.yaml": "update"}


def test_deleted_run_is_delete_and_free(repo: Repo) -> None:
    branch(repo)
    (repo.path / "runs/support.yaml").unlink()
    code, plan = plan_json(repo)
    assert code == 0
    [run] = plan["runs"]
    assert run["action"] == "delete" and run["usd"] == 0 and run["path"] == "runs/support.yaml"


def test_renamed_file_keeps_its_key(repo: Repo) -> None:
    trained(repo)
    branch(repo)
    repo.git("mv", "runs/support.yaml", "runs/helpdesk.yaml")
    code, plan = plan_json(repo)
    [run] = plan["runs"]
    assert run["action"] == "noop" and run["base_path"] == "runs/support.yaml" and run["path"] == "runs/helpdesk.yaml"
    assert run["run_key"] == run["base_run_key"]
    assert "renamed from runs/support.yaml" in repo.cli("plan").output


def test_eval_only_change_is_evaluate(repo: Repo) -> None:
    trained(repo)
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace('">= 0.5"', '">= 0.9"'))
    code, plan = plan_json(repo)
    [run] = plan["runs"]
    assert run["action"] == "evaluate" and run["run_key"] == run["base_run_key"] and run["usd"] == 0


def test_suite_row_change_is_evaluate(repo: Repo) -> None:
    trained(repo)
    branch(repo)
    rows = [{"id": "r0", "messages": [{"role": "user", "content": "new"}], "expected": "billing"}]
    repo.write("evals/intents.jsonl", jsonl(rows))
    code, plan = plan_json(repo)
    assert actions(plan) == {"runs/support.yaml": "evaluate"}


def test_invalid_run_makes_plan_fail(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("learning_rate", "lerning_rate"))
    code, plan = plan_json(repo)
    assert code == 1 and plan["ok"] is False
    [run] = plan["runs"]
    assert run["action"] == "invalid"
    [error] = run["errors"]
    assert error["field"] == "training.lerning_rate" and error["line"] == 11 and "did you mean 'learning_rate'" in error["message"]


def test_over_run_budget_fails_with_the_cap_named(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("r: 8", "r: 16") + "budget: {max_usd: 0.001}\n")
    code, plan = plan_json(repo, "--backend", "hf-jobs")
    assert code == 1
    [run] = plan["runs"]
    assert run["action"] == "update" and run["budget_ok"] is False
    [error] = run["errors"]
    assert "budget.max_usd" in error["message"] and error["line"] == 15 and error["field"] == "budget.max_usd"
    text = repo.cli("plan", "--backend", "hf-jobs").output
    assert "over budget.max_usd ($0.001)" in text and "not applicable" in text


def test_over_pr_budget_fails_and_base_settings_win(repo: Repo) -> None:
    settings = repo.path / "pyproject.toml"
    settings.write_text(settings.read_text().replace("max_usd_per_pr = 30", "max_usd_per_pr = 0.05"))
    repo.commit("tight PR budget")
    branch(repo)
    for i in range(3):
        repo.write(f"runs/big{i}.yaml", RUN.replace("r: 8", f"r: {8 * (i + 2)}"))
    # the PR raises its own cap: ignored, the base's pyproject.toml decides
    settings.write_text(settings.read_text().replace("max_usd_per_pr = 0.05", "max_usd_per_pr = 100000"))
    code, plan = plan_json(repo, "--backend", "hf-jobs")
    assert plan["max_usd_per_pr"] == 0.05
    assert plan["total_usd"] > 0.05 and all(run["budget_ok"] for run in plan["runs"])
    assert code == 1 and plan["ok"] is False
    [error] = plan["errors"]
    assert "over [tool.tuneform] max_usd_per_pr ($0.05)" in error["message"] and "budget-approved" in error["message"]
    # apply refuses it as over budget: the plan's typed over_pr_cap, not the message, says so
    result = repo.cli("apply", "--backend", "hf-jobs", "--no-wait")
    assert (
        result.exit_code == 1
        and "; over budget: it applies only when someone with write access adds the approval label 'budget-approved'" in result.output
    )


def test_explicit_path_is_planned_even_without_git_change(repo: Repo) -> None:
    code, plan = plan_json(repo, "runs/support.yaml")
    assert actions(plan) == {"runs/support.yaml": "create"}  # never trained
    key = plan["runs"][0]["run_key"]
    publish(repo, key, eval_hash=plan["runs"][0]["eval_hash"])
    code, plan = plan_json(repo, "runs/support.yaml")
    [run] = plan["runs"]
    assert run["action"] == "noop" and run["reuse"]["version"] == f"run-{key[:12]}"


def test_version_never_scored_with_these_evals_is_evaluate(repo: Repo) -> None:
    code, plan = plan_json(repo, "runs/support.yaml")
    publish(repo, plan["runs"][0]["run_key"], eval_hash="0" * 64)  # trained under other evals
    code, plan = plan_json(repo, "runs/support.yaml")
    assert actions(plan) == {"runs/support.yaml": "evaluate"} and plan["runs"][0]["usd"] == 0


def test_revert_is_restore_with_no_cost(repo: Repo) -> None:
    code, plan = plan_json(repo, "runs/support.yaml")
    old_key = plan["runs"][0]["run_key"]
    publish(repo, old_key, pr=12)
    # a later change trained and moved main
    repo.write("runs/support.yaml", RUN.replace("r: 8", "r: 32"))
    repo.commit("bigger adapter")
    code, plan = plan_json(repo, "runs/support.yaml")
    new_key = plan["runs"][0]["run_key"]
    publish(repo, new_key, pr=13)
    # git revert brings the old content back
    repo.git("revert", "--no-edit", "HEAD")
    branch(repo)
    code, plan = plan_json(repo, "--base", "HEAD~1")
    [run] = plan["runs"]
    assert run["action"] == "restore" and run["run_key"] == old_key and run["usd"] == 0
    assert run["reuse"] == {"version": f"run-{old_key[:12]}", "trained_in": {"commit": "c0ffee", "pr": 12}}
    markdown = repo.cli("plan", "--base", "HEAD~1", "--format", "markdown").output
    assert f"restores run-{old_key[:12]} from #12" in markdown and "$0" in markdown


def test_failed_gates_version_is_blocked(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("r: 8", "r: 4"))
    code, plan = plan_json(repo)
    key = plan["runs"][0]["run_key"]
    publish(repo, key, status=FAILED_GATES, main=False)
    code, plan = plan_json(repo)
    [run] = plan["runs"]
    assert run["action"] == "blocked" and run["usd"] == 0


def test_markdown_escapes_untrusted_names(repo: Repo) -> None:
    branch(repo)
    repo.write("runs/x.yaml", "name: a-b\n" + RUN)
    markdown = repo.cli("plan", "--format", "markdown").output
    assert markdown.startswith("<!-- tuneform:plan -->")
    assert "| + | `runs/x.yaml` | **create** |" in markdown


def test_unknown_base_is_a_clear_error(repo: Repo) -> None:
    result = repo.cli("plan", "--base", "no-such-ref")
    assert result.exit_code == 1
    assert "unknown git revision 'no-such-ref'" in result.output
    code, payload = repo.json("plan", "--base", "no-such-ref", "--format", "json")
    assert code == 1 and payload["ok"] is False and "no-such-ref" in payload["error"]


def test_all_zero_base_means_everything_is_new(repo: Repo) -> None:
    """GitHub's `before` on a branch's first push is 40 zeros: every run is a create."""
    code, plan = plan_json(repo, "--base", "0" * 40)
    assert code == 0 and actions(plan) == {"runs/support.yaml": "create"}
    assert plan["max_usd_per_pr"] == 30  # settings come from the working tree when the base has none


def test_before_the_first_commit_every_run_is_new_and_the_plan_says_so(tmp_path, monkeypatch) -> None:
    """A fresh `git init` (no commit, so no main to take a merge base with): plan, validate and
    apply compare with the empty tree instead of failing, and the plan says why every run is new."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    fresh = Repo.init(tmp_path / "fresh")
    fresh.write("pyproject.toml", SETTINGS)
    fresh.write("data/chat.jsonl", jsonl(CHAT_ROWS))
    fresh.write("evals/intents.yaml", SUITE)
    fresh.write("evals/intents.jsonl", jsonl(SUITE_ROWS))
    fresh.write("runs/support.yaml", RUN)
    code, plan = plan_json(fresh)
    assert code == 0 and actions(plan) == {"runs/support.yaml": "create"}, plan
    assert plan["base"] == EMPTY_TREE and [w["message"] for w in plan["warnings"]] == [NO_MAIN_YET]
    assert NO_MAIN_YET in " ".join(fresh.cli("plan").output.split())  # the text view wraps lines
    assert NO_MAIN_YET in fresh.cli("plan", "--format", "markdown").output
    assert fresh.json("validate", "--format", "json")[0] == 0
    applied = fresh.cli("apply", "--no-wait", "--format", "json")
    for job in local.list_jobs(tmp_path / "registry"):  # started in the background: not needed here
        local.cancel(job)
    assert applied.exit_code == 0 and "no 'main' branch" not in applied.output
    assert [r["action"] for r in json.loads(applied.stdout)["runs"]] == ["create"]
    # work on another branch before anything reached main: the same, nothing to compare with
    fresh.git("checkout", "-q", "-b", "first-run")
    fresh.commit("first run")
    code, plan = plan_json(fresh)
    assert code == 0 and actions(plan) == {"runs/support.yaml": "create"} and plan["base"] == EMPTY_TREE
    # once main has a commit, the merge base with it decides again: nothing changed since
    fresh.git("branch", "main")
    code, plan = plan_json(fresh)
    assert code == 0 and plan["runs"] == [] and plan["warnings"] == []


def test_budget_label_in_the_event_approves_an_over_budget_plan(repo: Repo, tmp_path, monkeypatch) -> None:
    """The approval comes from the PR's labels in the event payload, not from the PR's files."""
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("r: 8", "r: 16") + "budget: {max_usd: 0.001}\n")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3, "labels": [{"name": "documentation"}]}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    code, plan = plan_json(repo, "--backend", "hf-jobs")
    assert code == 1 and plan["runs"][0]["budget_ok"] is False  # another label approves nothing
    event.write_text(json.dumps({"pull_request": {"number": 3, "labels": [{"name": "budget-approved"}]}}))
    code, plan = plan_json(repo, "--backend", "hf-jobs")
    [run] = plan["runs"]
    assert code == 0 and plan["ok"] and run["budget_ok"] and run["errors"] == []
    assert any("approved by the 'budget-approved' label" in w["message"] for w in run["warnings"])


def test_plan_shows_duplicates_leakage_and_overlong_rows_with_row_numbers(repo: Repo) -> None:
    """Issue 7's new-user trial: three data problems, all in the plan, each with its rows."""
    branch(repo)
    rows = [json.loads(line) for line in (repo.path / "data/chat.jsonl").read_text().splitlines()]
    rows.append(dict(rows[0]))  # an exact duplicate of line 1, at line 41
    rows.append({"messages": [{"role": "user", "content": "eval 1"}, {"role": "assistant", "content": "billing"}]})  # suite row r1, line 42
    rows.append({"messages": [{"role": "user", "content": "word " * 900}, {"role": "assistant", "content": "billing"}]})  # line 43
    repo.write("data/chat.jsonl", jsonl(rows))
    code, plan = plan_json(repo)
    [run] = plan["runs"]
    findings = {f["rule"]: f for f in run["data"]["findings"]}
    assert {"duplicates", "leakage", "truncated"} <= set(findings)
    assert 41 in [r["row"] for r in findings["duplicates"]["rows"]]
    assert 42 in [r["row"] for r in findings["leakage"]["rows"]] and "r1" in findings["leakage"]["eval_ids"]
    assert [r["row"] for r in findings["truncated"]["rows"]] == [43]
    markdown = repo.cli("plan", "--format", "markdown").output
    assert "### Data checks" in markdown and "<details>" in markdown


def test_a_failing_data_policy_makes_plan_exit_1_naming_the_rule(repo: Repo) -> None:
    settings = repo.path / "pyproject.toml"
    settings.write_text(settings.read_text() + '\n[tool.tuneform.data_policy]\nduplicates = {max = 0.05, level = "fail"}\n')
    repo.commit("duplicates fail the plan")
    branch(repo)
    rows = [json.loads(line) for line in (repo.path / "data/chat.jsonl").read_text().splitlines()]
    repo.write("data/chat.jsonl", jsonl(rows + rows[:5]))  # 5 of 45 rows repeat: 11%
    code, plan = plan_json(repo)
    assert code == 1 and plan["ok"] is False
    [run] = plan["runs"]
    failing = [f for f in run["data"]["findings"] if f["level"] == "fail"]
    assert [f["rule"] for f in failing] == ["duplicates"]
    text = repo.cli("plan").output
    assert "FAIL duplicates" in text and "not applicable" in text


def test_markdown_shows_the_resolved_diff_of_each_run(repo: Repo) -> None:
    """Reviewers see every setting that changed, defaults filled in, in a collapsed block."""
    branch(repo)
    repo.write("runs/support.yaml", RUN.replace("r: 8", "r: 16") + "name: support\n")
    markdown = repo.cli("plan", "--format", "markdown").output
    block = markdown.split("<details><summary>Resolved changes", 1)[1].split("</details>", 1)[0]
    assert "-method.r: 8\n+method.r: 16" in block and "+method.alpha: 16" in block
    assert '+name: "support"' in block  # a key not in the file before, now resolved
    assert "training.learning_rate" not in block  # unchanged settings stay out of the diff


def test_resolved_diff_fence_survives_backticks_in_values(repo: Repo) -> None:
    branch(repo)
    rows = [json.loads(line) for line in (repo.path / "data/chat.jsonl").read_text().splitlines()]
    repo.write("data/chat.jsonl", jsonl([{"a```b": row["messages"]} for row in rows]))  # the column the run names
    repo.write(
        "runs/support.yaml", RUN.replace("    - path: data/chat.jsonl", "    - path: data/chat.jsonl\n      columns: {messages: 'a```b'}")
    )
    markdown = repo.cli("plan", "--format", "markdown").output
    assert "````diff" in markdown and "a```b" in markdown  # the fence is longer than any run inside


def test_plan_warns_when_the_comment_workflow_stamps_another_budget_label(repo: Repo) -> None:
    """comment.yml checks out nothing, so the label it stamps approvals with is written in it; a
    [tool.tuneform] budget_label changed alone is a warning naming both and the line to change."""
    template = (Path(tuneform.__file__).parent / "templates/init/.github/workflows/comment.yml").read_text()
    repo.write(".github/workflows/comment.yml", template)
    repo.write("pyproject.toml", SETTINGS + 'budget_label = "spend-ok"\n')
    repo.commit("a custom budget label")
    code, plan = plan_json(repo)
    [warning] = [w for w in plan["warnings"] if "BUDGET_LABEL" in w["message"]]
    assert "the label 'budget-approved' but [tool.tuneform] budget_label is 'spend-ok'" in warning["message"]
    assert "set BUDGET_LABEL there to 'spend-ok'" in warning["message"] and code == 0
    repo.write(".github/workflows/comment.yml", template.replace("BUDGET_LABEL: budget-approved", 'BUDGET_LABEL: "spend-ok"'))
    repo.commit("the workflow follows")
    assert not [w for w in plan_json(repo)[1]["warnings"] if "BUDGET_LABEL" in w["message"]]
