"""The CLI's surface: help, version, schema, init, generated docs, and what it must not import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from conftest import ROOT, Repo, demo_repo
from tuneform.cli.commands import main
from tuneform.runfile.reference import END, START, reference
from tuneform.runfile.spec import json_schema


def test_help_lists_the_contract_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("validate", "plan", "schema", "init"):
        assert command in result.output


def test_unknown_option_is_usage_error_exit_2() -> None:
    result = CliRunner().invoke(main, ["validate", "--no-such-flag"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_readme_reference_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block == "\n" + reference(), "README.md is stale: run python -m tuneform.runfile.reference"
    assert "| `learning_rate` |" in block and "| `max_seq_length` | int | 2048 |" in block


def test_committed_schema_file_matches_the_code() -> None:
    committed = json.loads((ROOT / "schema/run.schema.json").read_text())
    assert committed == json_schema(), "schema/run.schema.json is stale: run tuneform schema --write"
    assert (ROOT / "runs/demo.yaml").read_text().startswith("# yaml-language-server: $schema=../schema/run.schema.json")


def test_schema_command_prints_json_schema() -> None:
    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model", "data"}


def test_init_scaffolds_a_repo_that_validates_and_plans(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    result = CliRunner().invoke(main, ["init", str(target), "--namespace", "acme"])
    assert result.exit_code == 0, result.output
    for rel in (
        "runs/example.yaml",
        "evals/example.yaml",
        "evals/example.jsonl",
        "data/example.jsonl",
        "pyproject.toml",
        "schema/run.schema.json",
    ):
        assert (target / rel).is_file(), rel
    assert 'namespace = "acme"' in (target / "pyproject.toml").read_text()
    repo = Repo.init(target)
    code, validation = repo.json("validate", "--format", "json")
    assert code == 0 and validation["ok"], validation
    repo.commit("init")
    repo.git("checkout", "-q", "-b", "first-run")
    repo.write("runs/second.yaml", (target / "runs/example.yaml").read_text().replace("r: 16", "r: 8"))
    code, plan = repo.json("plan", "--format", "json", "--backend", "hf-jobs")
    [run] = plan["runs"]
    assert code == 0 and run["action"] == "create" and run["output_repo"] == "acme/second"
    assert run["flavor"] == "t4-small" and 0 < run["usd"] < 1


class Terminal:
    """`tuneform init` in a real pseudo-terminal (stdin is a tty, as when a person types it)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuneform.cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> str:
        """Read until `text` has been printed (the timeout only ends a hung test)."""
        import select

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never printed {text!r}; got:\n{self.seen}"
            if select.select([self.master], [], [], 1)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child ended and closed the terminal
                    chunk = b""
                assert chunk or text in self.seen, f"ended before printing {text!r}:\n{self.seen}"
                self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> int:
        code = self.proc.wait(timeout=120)
        os.close(self.master)
        return code


def test_init_in_a_terminal_asks_for_the_namespace_suggesting_the_token_user(tmp_path: Path, fake_hub: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | fake_hub.client_env()
    term = Terminal(["init", str(tmp_path / "asked")], env)
    try:
        term.expect("Hub user or organization for output repos [alice]")
        term.type("not a/name")
        term.expect("is not a Hub user or organization name")
        term.type("")  # Enter: the suggestion
        said = term.expect("next: tuneform validate")
    finally:
        code = term.close()
    assert code == 0 and "namespace alice (as answered)" in said
    assert 'namespace = "alice"' in (tmp_path / "asked/pyproject.toml").read_text()
    # no token: nothing to suggest, and Enter leaves it unset with the line to add
    env = {k: v for k, v in env.items() if k != "HF_TOKEN"} | {"HF_HOME": str(tmp_path / "hf-home")}
    term = Terminal(["init", str(tmp_path / "later")], env)
    try:
        term.expect("Hub user or organization for output repos (Enter: set it later)")
        term.type("")
        said = term.expect("next: tuneform validate")
    finally:
        code = term.close()
    assert code == 0 and "no Hub namespace set: add namespace =" in " ".join(said.split())
    assert "\nnamespace" not in (tmp_path / "later/pyproject.toml").read_text()


def test_init_namespace_options_are_checked_and_existing_settings_kept(tmp_path: Path) -> None:
    bad = CliRunner().invoke(main, ["init", str(tmp_path / "bad"), "--namespace", 'acme"\n[x]'])
    assert bad.exit_code == 2 and "is not a Hub user or organization name" in bad.output
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/pyproject.toml").write_text('[tool.tuneform]\nnamespace = "acme"\n')
    said = CliRunner().invoke(main, ["init", str(tmp_path / "mine"), "--format", "json"])
    out = json.loads(said.output)
    assert out["namespace"] == "acme" and out["namespace_from"] == "pyproject.toml"
    given = CliRunner().invoke(main, ["init", str(tmp_path / "given"), "--namespace", "acme-ml", "--format", "json"])
    assert json.loads(given.output)["namespace_from"] == "--namespace"
    assert 'namespace = "acme-ml"' in (tmp_path / "given/pyproject.toml").read_text()


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/example.yaml").write_text("mine\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "runs/example.yaml").read_text() == "mine\n"
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.startswith('[project]\nname = "x"\n') and "[tool.tuneform]" in text
    again = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert (tmp_path / "pyproject.toml").read_text() == text and "created" not in again.output


def test_init_writes_a_gitignore_that_keeps_weights_and_venvs_out_of_git(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "fresh")
    result = CliRunner().invoke(main, ["init", str(repo.path)])
    assert result.exit_code == 0 and "created .gitignore\n" in result.output
    repo.write(".tuneform/versions/acme/x/model.safetensors", "weights")
    repo.write(".venv/bin/python", "")
    repo.write("venv/pyvenv.cfg", "")
    repo.write(".env", "HF_TOKEN=hf_x\n")
    status = repo.git("status", "--porcelain", "--untracked-files=all")
    assert "runs/example.yaml" in status  # git status sees the new files, just not these
    assert [line for line in status.splitlines() if any(p in line for p in (".tuneform", "venv", ".env"))] == []


def test_init_appends_only_the_missing_ignore_patterns(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n/.venv/")  # no final newline
    code_json = CliRunner().invoke(main, ["init", str(tmp_path), "--format", "json"])
    [entry] = [e for e in json.loads(code_json.output)["created"] if e.startswith(".gitignore")]
    assert ".tuneform/" in entry and ".venv/" not in entry  # says what it appended
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "/.venv/"] and ".tuneform/" in lines and ".venv/" not in lines
    text = (tmp_path / ".gitignore").read_text()
    again = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert (tmp_path / ".gitignore").read_text() == text and ".gitignore" not in again.output


def test_validate_and_plan_never_import_training_libraries(repo: Repo) -> None:
    """plan runs in tokenless PR jobs installed without the train extra: it must stay light."""
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from tuneform.cli import main\n"
        "r = CliRunner().invoke(main, ['validate'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(main, ['plan', 'runs/support.yaml', '--format', 'json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_validate_of_one_file_imports_only_what_it_needs() -> None:
    """`tuneform validate FILE` starts in at most 0.3 s (bench/startup.py measures it); what keeps it
    there, and can be tested on a busy machine, is that it imports no network, terminal-rendering
    or numeric library: each costs tens of milliseconds before any checking starts."""
    script = (
        "import sys\n"
        "from tuneform.cli import main\n"
        "sys.argv = ['tuneform', 'validate', 'runs/demo.yaml']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('torch', 'numpy', 'huggingface_hub', 'httpx', 'rich', 'jinja2', 'pyarrow', 'requests')\n"
        "print('heavy:', ','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    # The demo: a local model, so resolving it needs no Hub client (a Hub model id would).
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "heavy: "


def test_preview_marks_exactly_the_trained_span() -> None:
    """The demo trains only the assistant label and its end-of-turn token."""
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        text = CliRunner().invoke(main, ["preview", "runs/demo.yaml", "-n", "1"])
        data = CliRunner().invoke(main, ["preview", "runs/demo.yaml", "-n", "2", "--format", "json"])
    finally:
        os.chdir(cwd)
    assert text.exit_code == 0, text.output
    assert "⟦billing<|im_end|>⟧" in text.output and "data/support.jsonl row 1" in text.output
    samples = json.loads(data.output)
    assert [s["row"] for s in samples] == [1, 2]
    first = samples[0]
    [(start, end)] = first["trained_spans"]
    assert first["text"][start:end] == "billing<|im_end|>" and first["trained_tokens"] == 2


def test_every_command_that_takes_a_run_takes_its_name(tmp_path: Path) -> None:
    repo = demo_repo(tmp_path / "repo", (ROOT / "runs/demo.yaml").read_text())
    commands = (["history"], ["preview", "-n", "1"], ["data", "check"], ["validate"], ["plan", "--offline"], ["calibrate"])
    for command in commands:
        by_path = repo.json(*command, "runs/demo.yaml", "--format", "json")
        assert by_path[0] == 0, by_path
        assert repo.json(*command, "demo", "--format", "json") == by_path, command
    for command in commands[:3]:  # one run each: an unknown name is an error; validate & co. list it among their files
        code, error = repo.json(*command, "dmeo", "--format", "json")
        assert (code, error["error"], error["fix"]) == (
            1,
            "no run named 'dmeo' in runs/: did you mean 'demo'?",
            "pass a run file or the name of one in runs/",
        ), command
    code, error = repo.json("preview", "runs/demo.yml", "--format", "json")  # a path is a path: never read as a name
    assert (code, error["error"]) == (1, "no run file runs/demo.yml: did you mean 'runs/demo.yaml'?")
