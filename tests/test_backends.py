"""The Backend and Registry protocols: one table of backend names, and a main that moves only from
the commit its caller saw (compare-and-swap), on the local folder and on the Hub."""

from __future__ import annotations

import fcntl
import json
import re
import threading
import typing
from pathlib import Path
from typing import Any

import click
import pytest

from fakehub import FakeHub
from tuneform.backends import BACKENDS, backend
from tuneform.core.manifest import Manifest
from tuneform.registry.hub import HubRegistry
from tuneform.registry.local import LocalRegistry
from tuneform.registry.protocol import MainMoved

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "tuneform"
REPO = "acme/demo"


def manifest(key: str) -> Manifest:
    return Manifest(run_key=key, status="passed", created=f"2026-12-06T00:00:0{key[0]}Z", name="demo", path="runs/demo.yaml")


# ------------------------------------------------------------------------------- the table of backends


def literal_names(annotation: Any) -> set[str]:
    """The strings of a `Literal[...]` (or `Literal[...] | None`) annotation."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(literal_names(arg) for arg in typing.get_args(annotation)))


def test_the_run_file_and_settings_admit_exactly_the_tables_backends() -> None:
    """runfile sits below backends, so its schema spells the names out; this ties them to BACKENDS
    (a backend added to the table but not the schema, or the reverse, fails here)."""
    from tuneform.runfile.settings import Settings
    from tuneform.runfile.spec import ComputeSpec

    assert literal_names(ComputeSpec.model_fields["backend"].annotation) == set(BACKENDS)
    assert literal_names(Settings.model_fields["default_backend"].annotation) == set(BACKENDS)
    assert Settings.model_fields["default_backend"].default == next(iter(BACKENDS))


def test_every_backend_option_of_the_cli_offers_the_table() -> None:
    from tuneform.cli.commands import main

    options = [
        (name, param)
        for name, command in main.commands.items()
        for param in command.params
        if isinstance(param, click.Option) and param.name == "backend"
    ]
    assert {name for name, _ in options} >= {"validate", "plan", "apply", "history", "calibrate"}
    for name, param in options:
        assert isinstance(param.type, click.Choice) and list(param.type.choices) == list(BACKENDS), name


@pytest.mark.parametrize("workflow", [ROOT / ".github/workflows/apply.yml", SRC / "templates/init/.github/workflows/apply.yml"])
def test_the_workflows_backend_check_accepts_exactly_the_table(workflow: Path) -> None:
    """The workflow runs a released tuneform, so it cannot import the table: its check of
    TUNEFORM_BACKEND lists the names, and this keeps them equal to BACKENDS."""
    text = workflow.read_text()
    found = re.search(r'case "\$TUNEFORM_BACKEND" in\s*\n\s*([^)]+)\) ;;\n\s*\*\) echo "::error::([^"]+)"', text)
    assert found, f"{workflow}: the TUNEFORM_BACKEND check moved; update this test"
    assert {n.strip() for n in found.group(1).split("|")} == set(BACKENDS)
    assert all(name in found.group(2) for name in BACKENDS)


# Modules below `backends` that still name a backend (they may not import the table: layering), and
# why. A new module that spells a backend name out fails the test below: look it up in BACKENDS,
# or give the backend a method in backends/protocol.py.
NAMED_BELOW_BACKENDS = {
    "runfile/spec.py": "compute.backend's Literal (tied to BACKENDS by the test above)",
    "runfile/settings.py": "default_backend's Literal (tied to BACKENDS by the test above)",
    "plan/runcheck.py": "what each backend requires of a run file (output.repo, a local model folder)",
    "estimate/sizing.py": "the local backend is sized for this machine's CPU",
    "job/pipeline.py": "the manifest records the backend, and HF Jobs' billing",
    "job/report.py": "the report shows HF Jobs' billing",
    "github/reuse.py": "only hf-jobs versions can be reused from the Hub",
}


def test_backend_names_come_from_the_table() -> None:
    """Outside backends/ no module may compare with or list a backend name except those above:
    apply, status, logs and cancel look backends up in BACKENDS."""
    names = "|".join(re.escape(n) for n in BACKENDS if n != "local")  # "local" is also a flavor and a data source
    quoted = re.compile(rf"""["']({names})["']""")
    found = {
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] != "backends" and quoted.search(path.read_text(encoding="utf-8"))
    }
    assert found <= set(NAMED_BELOW_BACKENDS), sorted(found - set(NAMED_BELOW_BACKENDS))
    backends_dir = SRC / "backends"
    # in backends/ only the table and each backend's own module name a backend
    spelled = {p.name for p in backends_dir.glob("*.py") if quoted.search(p.read_text(encoding="utf-8"))}
    assert spelled <= {"__init__.py", "hfjobs.py"}, spelled
    assert not re.search(r"backend\s*[!=]=\s*[\"']", (backends_dir / "apply.py").read_text()), "apply branches on a backend name"


def test_the_job_asks_no_registry_what_it_is() -> None:
    """The job publishes, checkpoints and stores evals through the JobRegistry protocol
    (job/registries.py): no isinstance on a registry to choose a path."""
    for path in (SRC / "job").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"isinstance\(\s*registry\b|isinstance\([^)]*\b(Local|Hub|HubJob|LocalJob)?Registry\b", text), path.name


def test_every_backend_in_the_table_implements_the_protocol() -> None:
    from tuneform.backends.protocol import Backend

    wanted = [name for name in dir(Backend) if not name.startswith("_")]
    assert {"submit", "follow", "status", "logs", "cancel", "restore", "registry", "find_job", "prices"} <= set(wanted)
    for name in BACKENDS:
        chosen = backend(name)
        assert chosen.name == name
        assert all(callable(getattr(chosen, m)) for m in wanted if m != "name"), name


# ------------------------------------------------------------------------- main moves only from what was seen


def staged(registry: LocalRegistry, key: str) -> Path:
    folder = registry.staging(REPO, key)
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(key.encode())
    return folder


def test_local_main_moves_only_from_the_commit_seen(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    key_a, key_b, key_c = "a" * 64, "b" * 64, "c" * 64
    assert registry.main_commit(REPO) is None

    first = registry.publish(REPO, key_a, staged(registry, key_a), manifest(key_a), parent_commit=None, move_main=True)
    assert first.moved_main and registry.main(REPO) == key_a
    seen = registry.main_commit(REPO)
    second = registry.publish(REPO, key_b, staged(registry, key_b), manifest(key_b), parent_commit=seen, move_main=True)
    assert second.moved_main and registry.main(REPO) == key_b

    # a late job whose apply saw main at `seen`: the version is kept, main stays
    log = (tmp_path / "registry" / REPO / "log.jsonl").read_text()
    late = registry.publish(REPO, key_c, staged(registry, key_c), manifest(key_c), parent_commit=seen, move_main=True)
    assert not late.moved_main and "moved since" in late.note and registry.main(REPO) == key_b
    assert registry.get(REPO, key_c) is not None and (tmp_path / "registry" / REPO / "log.jsonl").read_text() == log

    # restoring from a stale read fails and changes nothing
    with pytest.raises(MainMoved, match="moved since it was read"):
        registry.set_main(REPO, key_a, "restore", parent_commit=seen)
    assert registry.main(REPO) == key_b and (tmp_path / "registry" / REPO / "log.jsonl").read_text() == log

    # main back at a key it held before is still a move: a read from before it is stale
    at_b = registry.main_commit(REPO)
    registry.set_main(REPO, key_a, "restore", parent_commit=at_b)
    registry.set_main(REPO, key_b, "restore", parent_commit=registry.main_commit(REPO))
    assert registry.main(REPO) == key_b and registry.main_commit(REPO) != at_b
    with pytest.raises(MainMoved):
        registry.set_main(REPO, key_c, "restore", parent_commit=at_b)
    assert registry.main(REPO) == key_b
    moves = [json.loads(line)["to"] for line in (tmp_path / "registry" / REPO / "log.jsonl").read_text().splitlines()]
    assert moves == [key_a, key_b, key_a, key_b]


def test_local_check_and_move_of_main_wait_for_the_lock(tmp_path: Path) -> None:
    """The check that main is where it was read and the move are one step: a move that starts
    while another holds the lock waits, then sees the other's move and refuses."""
    registry = LocalRegistry(tmp_path / "registry")
    key_a, key_b, key_c = "a" * 64, "b" * 64, "c" * 64
    for key in (key_a, key_b):
        registry.publish(REPO, key, staged(registry, key), manifest(key), parent_commit=registry.main_commit(REPO), move_main=False)
    registry.set_main(REPO, key_a, "first", parent_commit=None)
    seen = registry.main_commit(REPO)
    errors: list[BaseException] = []

    def restore_c() -> None:
        try:
            registry.set_main(REPO, key_b, "late", parent_commit=seen)
        except BaseException as exc:
            errors.append(exc)

    with open(tmp_path / "registry" / REPO / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another apply is moving main
        worker = threading.Thread(target=restore_c)
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive(), "set_main did not wait for the lock"
        registry._move_main(REPO, key_c, "the other apply")
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], MainMoved)
    assert registry.main(REPO) == key_c


def test_hub_main_moves_only_from_the_commit_seen(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub: set_main commits with parent_commit = the main commit read; a stale one is refused (412 by the Hub)."""
    monkeypatch.setenv("TUNEFORM_RETRY_DELAY", "0.05")
    registry = HubRegistry(fake_hub.api())
    key_a, key_b, key_c = "a" * 64, "b" * 64, "c" * 64

    def folder(key: str) -> Path:
        out = tmp_path / key[:4]
        out.mkdir()
        (out / "model.safetensors").write_bytes(key.encode())
        return out

    for key in (key_a, key_b):
        published = registry.publish(REPO, key, folder(key), manifest(key), parent_commit=registry.main_commit(REPO), move_main=True)
        assert published.moved_main
    registry.publish(REPO, key_c, folder(key_c), manifest(key_c), parent_commit=registry.main_commit(REPO), move_main=False)
    assert registry.main(REPO) == key_b
    stale = registry.main_commit(REPO)
    registry.set_main(REPO, key_a, "restore", parent_commit=stale)
    assert registry.main(REPO) == key_a
    head = registry.main_commit(REPO)

    commits = len(fake_hub.requests_to("POST", r"/commit/main$"))
    with pytest.raises(MainMoved, match="moved since it was read"):
        registry.set_main(REPO, key_c, "restore", parent_commit=stale)
    assert registry.main(REPO) == key_a and registry.main_commit(REPO) == head
    refused = fake_hub.requests_to("POST", r"/commit/main$")[commits:]
    assert [r.status for r in refused] == [412]  # the Hub checked the parent: one attempt, refused
    with pytest.raises(MainMoved):
        registry.set_main(REPO, key_c, "restore", parent_commit=None)  # a read that saw no main is stale too
    assert registry.main(REPO) == key_a and registry.main_commit(REPO) == head
