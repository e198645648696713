"""Errors: one base class with a fix, one CLI handler for the exit codes, Hub errors by type."""

from __future__ import annotations

import ast
import builtins
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from conftest import ROOT, RUN, Repo
from tuneform.cli.handler import TuneformGroup
from tuneform.core.errors import TuneformError, UsageError
from tuneform.github.client import PullRequestNotFound
from tuneform.registry.local import RegistryError


def _exception_classes() -> dict[str, list[str]]:
    """Every class of src/tuneform that is an exception other than a warning, by name -> its base
    names (read from the source: importing every module would pull in torch)."""
    bases: dict[str, list[str]] = {}
    for path in (ROOT / "src/tuneform").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [b.id if isinstance(b, ast.Name) else ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]

    def reaches(name: str, kind: type[BaseException], seen: frozenset[str] = frozenset()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, kind):
            return True
        return name in bases and name not in seen and any(reaches(b, kind, seen | {name}) for b in bases[name])

    # warnings are exceptions to Python but not errors: they are shown, never raised to the CLI
    return {
        name: parents
        for name, parents in bases.items()
        if name != "TuneformError" and reaches(name, BaseException) and not reaches(name, Warning)
    }


def test_every_tuneform_exception_derives_from_the_base() -> None:
    found = _exception_classes()

    def derives(name: str) -> bool:
        return name == "TuneformError" or any(derives(b) for b in found.get(name, []))

    assert len(found) >= 25  # the scan sees the classes (a broken scan would pass on nothing)
    assert {"RegistryError", "DataError", "GitHubError", "PullRequestNotFound", "RunFileError", "CommandError"} <= set(found)
    assert [name for name in found if not derives(name)] == []


def test_the_error_carries_message_fix_and_exit_code() -> None:
    error = RegistryError("acme/faq is gated", fix="accept its conditions")
    assert (str(error), error.message, error.fix, error.exit_code) == (
        "acme/faq is gated: accept its conditions",
        "acme/faq is gated",
        "accept its conditions",
        1,
    )
    assert error.as_json() == {"ok": False, "error": "acme/faq is gated", "fix": "accept its conditions"}
    assert UsageError("bad").exit_code == 2 and isinstance(UsageError("bad"), ValueError)
    assert TuneformError("x", usage=True).exit_code == 2 and RegistryError("x", usage=False).exit_code == 1
    assert PullRequestNotFound("no PR").exit_code == 3  # `tuneform comment --commit` documents 3


# -- the handler, on a group built as `tuneform` is --------------------------------------------------


@click.group(cls=TuneformGroup)
def toy() -> None:
    """A group with one command per way out of a command."""


@toy.command()
@click.argument("kind")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text")
def fail(kind: str, fmt: str) -> None:
    if kind == "failure":
        raise RegistryError("acme/faq is not readable", fix="set HF_TOKEN")
    if kind == "usage":
        raise UsageError("--pr and --commit together", fix="pass one of them")
    if kind == "no-pr":
        raise PullRequestNotFound("no pull request is associated with commit abc")
    raise KeyError("a bug")


@toy.group()
def sub() -> None:
    """A nested group: its commands are handled too."""


@sub.command()
def deep() -> None:
    raise RegistryError("deep down")


@pytest.mark.parametrize(
    ("args", "code", "output"),
    [
        (["fail", "failure"], 1, "error: acme/faq is not readable: set HF_TOKEN\n"),
        (["fail", "failure", "--format", "github"], 1, "::error::acme/faq is not readable: set HF_TOKEN\n"),
        (["fail", "no-pr"], 3, "error: no pull request is associated with commit abc\n"),
        (["sub", "deep"], 1, "error: deep down\n"),
    ],
)
def test_handler_prints_the_error_and_exits_with_its_code(args: list[str], code: int, output: str) -> None:
    result = CliRunner().invoke(toy, args)
    assert (result.exit_code, result.output) == (code, output)


def test_handler_json_and_usage_errors() -> None:
    result = CliRunner().invoke(toy, ["fail", "failure", "--format", "json"])
    assert result.exit_code == 1 and json.loads(result.output) == {"ok": False, "error": "acme/faq is not readable", "fix": "set HF_TOKEN"}
    result = CliRunner().invoke(toy, ["fail", "usage", "--format", "json"])
    assert result.exit_code == 2 and json.loads(result.output) == {
        "ok": False,
        "error": "--pr and --commit together",
        "fix": "pass one of them",
    }
    result = CliRunner().invoke(toy, ["fail", "usage"])  # for people: as click shows its own usage errors
    assert (
        result.exit_code == 2
        and "Usage: toy fail" in result.output
        and "Error: --pr and --commit together: pass one of them" in result.output
    )


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(KeyError, match="a bug"):
        CliRunner().invoke(toy, ["fail", "bug"], catch_exceptions=False)


# -- real commands ------------------------------------------------------------------------------------


def test_commands_map_errors_to_exit_codes(repo: Repo, tmp_path: Path) -> None:
    result = repo.cli("history", "nope")
    message = "no run named 'nope' in runs/ (expected one of: support)"
    assert (result.exit_code, result.output) == (1, f"error: {message}: pass a run file or the name of one in runs/\n")
    code, error = repo.json("history", "nope", "--format", "json")
    assert (code, error) == (1, {"ok": False, "error": message, "fix": "pass a run file or the name of one in runs/"})
    repo.write("runs/broken.yaml", "model: {id: a/b}\nlerning_rate: 1\n")
    code, error = repo.json("preview", "runs/broken.yaml", "--format", "json")
    assert (code, error["error"], error["fix"]) == (1, "runs/broken.yaml: invalid run file", "tuneform validate runs/broken.yaml says why")
    code, error = repo.json("calibrate", "runs/gone.yaml", "--format", "json")
    assert (code, error["error"]) == (1, "no run file runs/gone.yaml")

    body = tmp_path / "body.md"
    body.write_text("hi\n")
    code, error = repo.json("comment", "--pr", "7", "--key", "Bad Key!", str(body), "--format", "json")  # before any network call
    assert code == 2 and error["ok"] is False and error["error"].startswith("invalid comment key 'Bad Key!'")
    result = repo.cli("comment", "--pr", "7", "--key", "Bad Key!", str(body))
    assert result.exit_code == 2 and "Usage: main comment" in result.output and "invalid comment key" in result.output
    result = repo.cli("results", "--commit", "not-a-sha")
    assert result.exit_code == 2 and "commit 'not-a-sha' is not a git SHA: pass the full SHA of the merge commit" in result.output


# -- Hub errors by type, through the real client against the local Hub ----------------------------------


def _hub_repo(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", token)
    repo.write("pyproject.toml", '[tool.tuneform]\nnamespace = "bob"\ndefault_backend = "hf-jobs"\n')
    repo.write("runs/faq.yaml", RUN)


def test_a_gated_output_repo_says_so(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakehub import USER_TOKEN

    fake_hub.add_repo("bob/faq", {"tuneform/manifest.json": json.dumps({"run_key": "k" * 64, "status": "passed"})}, gated="manual")
    _hub_repo(repo, fake_hub, monkeypatch, USER_TOKEN)
    code, error = repo.json("history", "faq", "--format", "json")  # GatedRepoError: not "no versions"
    assert (code, error) == (
        1,
        {"ok": False, "error": "bob/faq is gated", "fix": "accept its access conditions on the Hub with the account of HF_TOKEN"},
    )


def test_a_missing_output_repo_has_no_versions(repo: Repo, fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakehub import USER_TOKEN

    _hub_repo(repo, fake_hub, monkeypatch, USER_TOKEN)
    code, history = repo.json("history", "faq", "--format", "json")  # RepositoryNotFoundError with a token: nothing yet
    assert (code, history) == (0, {"schema_version": 2, "repo": "bob/faq", "main": None, "versions": []})


def test_an_unreadable_report_is_none_by_type(fake_hub: Any) -> None:
    from fakehub import USER_TOKEN
    from tuneform.github.results import _download_report

    api = fake_hub.api(USER_TOKEN)
    assert _download_report(api, "acme/absent", "0" * 12) is None  # RepositoryNotFoundError
    fake_hub.add_repo("acme/faq")
    assert _download_report(api, "acme/faq", "0" * 12) is None  # RevisionNotFoundError: no such tag


def test_deleting_a_work_branch_that_was_never_pushed_is_quiet(fake_hub: Any) -> None:
    from fakehub import USER_TOKEN
    from tuneform.job.checkpoints import delete_work_branch
    from tuneform.registry.hub import HubRegistry

    said: list[str] = []
    fake_hub.add_repo("acme/faq")
    delete_work_branch(HubRegistry(fake_hub.api(USER_TOKEN), say=said.append), "acme/faq", "k" * 64)
    assert said == []  # RevisionNotFoundError: nothing to delete, no warning
