"""Shared fixtures: real git repositories in temp folders, driven through the real CLI.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET at import time, so the
environment is set here, before any test imports it. Tests that talk to the local Hub server
point HF_ENDPOINT at it themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.pop("TUNEFORM_HOME", None)
os.environ.pop("HF_TOKEN", None)

import pytest
from click.testing import CliRunner, Result

from tuneform.cli.commands import main

ROOT = Path(__file__).resolve().parent.parent

# Llama-3.2-1B's shape, as its config.json says it (catalog.shape_from_config reads these).
LLAMA_1B_CONFIG = {
    "model_type": "llama",
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}

SETTINGS = """\
[tool.tuneform]
namespace = "acme"
default_backend = "local"
max_usd_per_run = 20
max_usd_per_pr = 30
"""

CHAT_ROWS = [
    {"messages": [{"role": "user", "content": f"question number {i} about billing"}, {"role": "assistant", "content": "billing"}]}
    for i in range(40)
]

SUITE = "name: intents\ndata: evals/intents.jsonl\ngeneration: {max_new_tokens: 8}\nmetrics: [exact_match]\n"
SUITE_ROWS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"eval {i}"}], "expected": "billing"} for i in range(3)]

RUN = """\
model:
  id: HuggingFaceTB/SmolLM2-135M-Instruct
  revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2
  max_seq_length: 512
data:
  train:
    - path: data/chat.jsonl
method: {type: lora, r: 8}
training:
  num_train_epochs: 1
  learning_rate: 1.0e-4
evals:
  - suite: evals/intents.yaml
    gate: {exact_match: ">= 0.5"}
"""


def sub(*pairs: str, text: str = RUN) -> str:
    """RUN with each (old, new) pair replaced once; fails loudly when `old` is not there."""
    assert len(pairs) % 2 == 0
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} is not exactly once in the run"
        text = text.replace(old, new)
    return text


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Repo:
    """A real git repository in a temp folder, on branch main, with tuneform's CLI at hand."""

    path: Path

    def write(self, rel: str, text: str | bytes) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        return target

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True).stdout.strip()

    @classmethod
    def init(cls, path: Path) -> Repo:
        """An empty git repository on branch main at `path` (created when missing), with a committer."""
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", "main")
        repo.git("config", "user.email", "test@example.com")
        repo.git("config", "user.name", "Test")
        return repo

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def cli(self, *args: str) -> Result:
        cwd = os.getcwd()
        os.chdir(self.path)
        try:
            return CliRunner().invoke(main, list(args), catch_exceptions=False)
        finally:
            os.chdir(cwd)

    def json(self, *args: str) -> Any:
        result = self.cli(*args)
        try:
            return result.exit_code, json.loads(result.output)
        except ValueError:
            raise AssertionError(f"not JSON (exit {result.exit_code}):\n{result.output}") from None


def demo_repo(path: Path, run: str) -> Repo:
    """A fresh training repo holding this repository's demo (model, data, suite) and `run` as
    runs/demo.yaml, committed on main."""
    import shutil

    r = Repo.init(path)
    for folder in ("models", "data", "evals", "schema"):
        shutil.copytree(ROOT / folder, r.path / folder)
    r.write("pyproject.toml", '[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = 5\n')
    r.write("runs/demo.yaml", run)
    r.commit("demo")
    return r


def hub_demo_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: Any, run: str) -> Repo:
    """`demo_repo` with `run`, its commands pointed at the fake Hub `hub` with alice's write
    token: the local registry in tmp_path, short retries, and no prebuilt wheel or image override
    from the environment (apply builds the wheel and picks the image as a user's apply does)."""
    from fakehub import USER_TOKEN

    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    monkeypatch.delenv("TUNEFORM_WHEEL", raising=False)
    monkeypatch.delenv("TUNEFORM_HF_IMAGE", raising=False)
    return demo_repo(tmp_path / "demo", run)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A training repo with settings, chat data, an eval suite and one valid run, committed on main."""
    monkeypatch.setenv("TUNEFORM_HOME", str(tmp_path / "registry"))
    r = Repo.init(tmp_path / "repo")
    r.write("pyproject.toml", SETTINGS)
    r.write("data/chat.jsonl", jsonl(CHAT_ROWS))
    r.write("evals/intents.yaml", SUITE)
    r.write("evals/intents.jsonl", jsonl(SUITE_ROWS))
    r.write("runs/support.yaml", RUN)
    r.commit("base")
    return r


# --- fake GitHub REST server (tests/fakegithub.py): appended block, self-contained --------------


@pytest.fixture
def fake_github() -> Any:
    """An in-memory GitHub REST server on 127.0.0.1 (free port) for repository acme/models.

    Seed it with `add_pr`, `merge_pr`, `add_comment`; queue faults with `fail`, `rate_limit`,
    `drop`; read `comments(pr)` and `calls`. Stopped (shutdown + join) in teardown.
    """
    from fakegithub import FakeGitHub

    server = FakeGitHub("acme/models").start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, "fakegithub raised internally:\n" + "\n".join(server.errors)


@pytest.fixture
def github_env(fake_github: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`fake_github` plus the environment GitHub Actions would set (a personal-style token);
    for CLI tests of `tuneform comment`. Set GITHUB_TOKEN to `fake_github.actions_token` for the
    Actions identity."""
    monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake_github.repository)
    for name in ("TUNEFORM_BOT_LOGIN", "GITHUB_EVENT_PATH", "GITHUB_RUN_ID", "GITHUB_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    return fake_github


# --- fake_hub: the local Hub + Jobs server (tests/fakehub.py): appended block, self-contained ----------------


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A running FakeHub on 127.0.0.1 (free port); users alice (org "acme"; tokens USER_TOKEN, READ_TOKEN read-only)
    and bob (OTHER_TOKEN); pages of 3 items. Talk to it with `fake_hub.api(token)` = `HfApi(endpoint=fake_hub.url,
    token=token)`, or give a subprocess `fake_hub.client_env()`.

    Offline mode: this conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported, so the client's
    `constants.HF_HUB_OFFLINE` is True and the request hook of its shared httpx client
    (`utils/_http.py: hf_request_event_hook` -> `constants.is_offline_mode()`) raises OfflineModeIsEnabled for
    every URL, 127.0.0.1 included. That function reads the module attribute at call time, and nothing else in the
    client copies it (grep `HF_HUB_OFFLINE` / `is_offline_mode`), so for the duration of the test we set
    `huggingface_hub.constants.HF_HUB_OFFLINE = False` (monkeypatch restores it). The client's HTTP code is left
    untouched. We also pin `constants.HF_HUB_DISABLE_XET = True` (Xet cannot be served locally; read at call time
    by `is_xet_available()`) and point `constants.HF_HUB_CACHE` at a temp folder so downloads never touch
    ~/.cache. HF_HUB_DISABLE_TELEMETRY=1 (set above) keeps the client from fetching its agent-harness registry
    from huggingface.co once offline mode is off. HF_ENDPOINT is not changed (it is read at import): pass
    `endpoint=fake_hub.url`.
    Teardown stops the server object and joins its threads; it never kills anything by name.
    """
    from huggingface_hub import constants as hf_constants

    from fakehub import OTHER_TOKEN, READ_TOKEN, USER_TOKEN, FakeHub

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub = FakeHub(
        tokens={USER_TOKEN: "alice", READ_TOKEN: "alice", OTHER_TOKEN: "bob"},
        read_only_tokens={READ_TOKEN},
        orgs={"alice": ["acme"]},
        page_size=3,
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
    assert not hub.errors, "fakehub raised internally:\n" + "\n".join(hub.errors)
