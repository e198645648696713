"""`tuneform.github.reuse`: comment.yml's lookup of a tokenless plan's run keys in private Hub registries.

The output repos live on the local Hub server (tests/fakehub.py), read with the real client.
plan.json is untrusted (it comes from the pull request's own job): hostile values are refused or
escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from markdown_check import assert_inert
from tuneform.github.reuse import PlanJsonError, lookup_reuse, render_reuse_markdown, reuse_for_plan
from tuneform.registry.hub import HubRegistry

KEY = "3f2a9c41d07e" + "a" * 52
FAILED_KEY = "b" * 64
UNKNOWN_KEY = "c" * 64
COMMIT = "d" * 40


def version(hub: Any, repo: str, key: str, status: str, pr: int | None, *, private: bool = True) -> None:
    """A tagged version run-<key12> of `repo`, as apply publishes it (tuneform/manifest.json)."""
    manifest = json.dumps({"run_key": key, "status": status, "name": "faq", "output_repo": repo, "git": {"commit": COMMIT, "pr": pr}})
    if (("model", repo)) not in hub.repos:
        hub.add_repo(repo, private=private)
    hub.add_commit(repo, {"tuneform/manifest.json": manifest, "adapter_model.safetensors": b"weights"}, message=f"run-{key[:12]}")
    hub.tag(repo, f"run-{key[:12]}")


def run(path: str = "runs/faq.yaml", key: str = KEY, repo: str = "acme/faq", **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "name": "faq",
        "action": "create",
        "run_key": key,
        "output_repo": repo,
        "backend": "hf-jobs",
        "registry": "unknown",
        "reuse": None,
        "usd": 0.06,
    } | extra


def plan(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 2, "runs": list(runs)}


@pytest.fixture
def registry(fake_hub: Any) -> HubRegistry:
    from fakehub import READ_TOKEN

    return HubRegistry(fake_hub.api(READ_TOKEN))


def test_a_private_version_is_found_and_restored(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    [found] = lookup_reuse(plan(run()), registry=registry)
    assert (found.kind, found.path, found.repo, found.key, found.pr, found.commit) == (
        "restore",
        "runs/faq.yaml",
        "acme/faq",
        KEY,
        12,
        COMMIT,
    )
    text = render_reuse_markdown([found])
    assert text.startswith("### Registry lookup\n")
    assert "- `runs/faq.yaml`: run-3f2a9c41d07e was trained in #12: apply will restore it, $0 (not $0.06)" in text


def test_a_version_without_pr_names_its_commit(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", None)
    text = render_reuse_markdown(lookup_reuse(plan(run(action="update")), registry=registry))
    assert f"was trained in commit {COMMIT[:12]}: apply will restore it" in text


def test_a_failed_gates_version_is_blocked(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", FAILED_KEY, "failed_gates", 13)
    [found] = lookup_reuse(plan(run(key=FAILED_KEY)), registry=registry)
    assert found.kind == "blocked"
    text = render_reuse_markdown([found])
    assert f"run-{FAILED_KEY[:12]} was trained in #13 and failed its gates: apply will refuse" in text
    assert "restore" not in text


def test_an_unknown_key_finds_nothing(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    fake_hub.add_repo("acme/empty", private=True)
    assert lookup_reuse(plan(run(key=UNKNOWN_KEY), run(path="runs/other.yaml", key=KEY, repo="acme/empty")), registry=registry) == []
    assert lookup_reuse(plan(run(repo="acme/absent")), registry=registry) == []  # no such repo: nothing trained yet
    assert render_reuse_markdown([]) == ""


def test_only_runs_the_plan_could_not_read_are_looked_up(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    skipped = [run(registry="read"), run(backend="local"), run(action="noop"), run(action="restore"), run(output_repo=None)]
    assert lookup_reuse(plan(*skipped), registry=registry) == []
    assert fake_hub.requests_to("GET", "acme/faq") == []
    assert [f.kind for f in lookup_reuse(plan(run(registry="some error reading the Hub")), registry=registry)] == ["restore"]


@pytest.mark.parametrize(
    "hostile",
    [
        {"run_key": "$(touch x)" + "0" * 54},
        {"run_key": KEY.upper()},
        {"run_key": KEY + "\n"},
        {"run_key": 7},
        {"output_repo": "acme/../faq"},
        {"output_repo": "../acme/faq"},
        {"output_repo": "acme/faq/../x"},
        {"output_repo": "acme/.faq"},
        {"output_repo": "acme/faq\nx"},
        {"output_repo": ["acme/faq"]},
        {"path": "runs/\x1b[31mfaq.yaml"},
        {"path": ""},
        {"path": None},
        {"path": "r" * 400},
    ],
)
def test_hostile_plan_values_are_refused(fake_hub: Any, registry: HubRegistry, hostile: dict[str, Any]) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    assert lookup_reuse(plan(run(**hostile)), registry=registry) == []


@pytest.mark.parametrize("not_a_plan", [None, [], "runs", {"runs": "x"}, {"runs": [None, 3, "x", []]}])
def test_a_plan_that_is_not_a_plan_finds_nothing(registry: HubRegistry, not_a_plan: Any) -> None:
    assert lookup_reuse(not_a_plan, registry=registry) == []


def test_a_hostile_path_is_escaped(fake_hub: Any, registry: HubRegistry) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    path = "runs/x`|<script>alert(1)</script>[a](http://evil) @admin.yaml"
    text = render_reuse_markdown(lookup_reuse(plan(run(path=path, usd="$$$")), registry=registry))
    assert_inert(text, [path], trusted=("#12",))
    assert "apply will restore it, $0\n" in text  # a usd that is not a number is not shown


def test_without_a_token_the_private_repo_is_not_readable(fake_hub: Any) -> None:
    version(fake_hub, "acme/faq", KEY, "passed", 12)
    [found] = lookup_reuse(plan(run(), run(path="runs/b.yaml", key=FAILED_KEY)), registry=HubRegistry(fake_hub.api(None)))
    assert found.kind == "unreadable" and found.repo == "acme/faq"
    text = render_reuse_markdown([found])
    assert "`acme/faq` could not be read" in text and "not readable without a token" in text
    assert "restore" not in text


def test_reuse_command_reads_the_token_from_the_environment(fake_hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakehub import READ_TOKEN

    version(fake_hub, "acme/faq", KEY, "passed", 12)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    (tmp_path / "plan.json").write_text(json.dumps(plan(run())))
    found = reuse_for_plan(tmp_path / "plan.json")
    assert "was trained in #12: apply will restore it" in render_reuse_markdown(found)
    (tmp_path / "empty.json").write_text(json.dumps(plan(run(key=UNKNOWN_KEY))))
    assert reuse_for_plan(tmp_path / "empty.json") == [] and render_reuse_markdown([]) == ""
    for bad in ("{not json", "[1, 2]", '{"runs": 3}'):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(PlanJsonError, match="bad.json"):
            reuse_for_plan(tmp_path / "bad.json")
    with pytest.raises(PlanJsonError, match="missing.json"):
        reuse_for_plan(tmp_path / "missing.json")


def test_reuse_cli_prints_the_section_or_fails_with_exit_1(fake_hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fakehub import READ_TOKEN
    from tuneform.cli.commands import main

    version(fake_hub, "acme/faq", KEY, "passed", 12)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    (tmp_path / "plan.json").write_text(json.dumps(plan(run())))
    result = CliRunner().invoke(main, ["reuse", str(tmp_path / "plan.json")])
    assert result.exit_code == 0 and "was trained in #12: apply will restore it" in result.output
    result = CliRunner().invoke(main, ["reuse", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and result.output == f"error: {tmp_path / 'missing.json'}: cannot read the plan (FileNotFoundError)\n"


# --- comment.yml, executed by the harness of tests/test_workflows.py ------------------------------


def test_comment_yml_appends_the_lookup_with_the_read_token(tmp_path: Path, repo: Any, fake_github: Any, fake_hub: Any) -> None:
    import test_workflows as wf
    from fakehub import READ_TOKEN

    actions = wf.Actions(tmp_path / "actions", repo.path, fake_github)
    pr = wf.open_pr(repo, fake_github, {"runs/faq.yaml": wf.FAQ_RUN})
    plan_run = wf.run_plan(actions, pr)  # a fork's PR: no token, hf-jobs, the private registry unread
    planned = json.loads((wf.artifact(actions, plan_run) / "plan.json").read_text())
    [entry] = planned["runs"]
    assert (entry["backend"], entry["registry"], entry["action"]) == ("hf-jobs", "unknown", "create")
    version(fake_hub, entry["output_repo"], entry["run_key"], "passed", 5)

    comment = wf.load("comment.yml")
    [lookup] = [s for s in comment["jobs"]["comment"]["steps"] if "tuneform reuse" in s.get("run", "")]
    # the harness keeps huggingface_hub offline; this step talks to the local Hub server instead
    lookup["env"] = dict(lookup["env"], HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0")
    event = wf.workflow_run_event(plan_run, pr, fork=True)
    main_sha = repo.git("rev-parse", "main")

    def post(secrets: dict[str, str]) -> str:
        job = actions.run(comment, event_name="workflow_run", event=event, ref="refs/heads/main", sha=main_sha, secrets=secrets).job
        assert job.status == "success", job.log()
        [posted] = fake_github.comments(7)
        return str(posted["body"])

    body = post({})  # without the secret the plan is posted as planned
    assert body.startswith(wf.PLAN_MARKER) and "Registry lookup" not in body
    body = post({"HF_READ_TOKEN": READ_TOKEN})
    assert f"- `runs/faq.yaml`: run-{entry['run_key'][:12]} was trained in #5: apply will restore it, $0" in body
    body = post({"HF_READ_TOKEN": "hf_not_a_token"})  # a bad token: a note, still a comment
    assert "could not be read" in body and "restore" not in body.split("Registry lookup")[1]


def test_the_read_token_reaches_only_the_lookup_step() -> None:
    import test_workflows as wf

    comment = wf.load("comment.yml")
    steps = comment["jobs"]["comment"]["steps"]
    with_token = [s for s in steps if "secrets." in json.dumps(s)]
    assert [s["env"] for s in with_token] == [{"HF_TOKEN": "${{ secrets.HF_READ_TOKEN }}"}]
    [lookup] = with_token
    assert "GITHUB_TOKEN" not in lookup["env"] and "tuneform reuse" in lookup["run"]
    names = [s.get("id") or s.get("name") for s in steps]
    assert names.index("artifact") < steps.index(lookup) < len(steps) - 1  # after the check, before the comment
    assert "HF_TOKEN" not in json.dumps(comment.get("env", {})) + json.dumps(comment["jobs"]["comment"].get("env", {}))
