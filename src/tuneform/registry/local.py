"""Versions of trained models, found by run key: the state that plan reads and apply writes.

Backend `local` keeps the Hub's layout in a folder (default `.tuneform/`, or $TUNEFORM_HOME):

    <home>/<namespace>/<name>/versions/<key>/manifest.json   one trained version, immutable
    <home>/<namespace>/<name>/versions/<key>/model/           its adapter or weights + tokenizer
    <home>/<namespace>/<name>/versions/<key>/logs/            a tracker's files (train/tracking.py)
    <home>/<namespace>/<name>/main                           the key git main asks for
    <home>/<namespace>/<name>/log.jsonl                      every move of main, appended

    <home>/<namespace>/<name>/.lock                          held while publishing or moving main

A local job runs on this machine, which the estimator prices at $0 (flavor `local`), so `spent`
counts the costs the versions recorded and no job in flight: one adds nothing.

A version appears by renaming a finished temporary folder into place, so a crash never leaves a
half-published version; `main` moves by atomic replace, under the lock, and only when it is still
where the caller read it (registry/protocol.py). The Hub registry (registry/hub.py) offers the
same over tags `run-<key12>` and branch `main`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuneform.core.manifest import Manifest

# The registry's vocabulary lives in protocol.py; re-exported here, where callers have long found it.
from tuneform.registry.protocol import FAILED_GATES as FAILED_GATES
from tuneform.registry.protocol import PASSED as PASSED
from tuneform.registry.protocol import Published, Spend, billed_usd, main_moved, since_then
from tuneform.registry.protocol import RegistryError as RegistryError
from tuneform.registry.protocol import Version as Version


def default_home(repo_root: Path, configured: str | None = None) -> Path:
    """$TUNEFORM_HOME, else [tool.tuneform] registry, else <repo>/.tuneform."""
    env = os.environ.get("TUNEFORM_HOME")
    if env:
        return Path(env).expanduser()
    if configured:
        return (repo_root / configured).resolve()
    return repo_root / ".tuneform"


@dataclass
class LocalRegistry:
    """The registry of backend `local`: a folder laid out like a Hub model repo's refs."""

    home: Path

    def _repo(self, repo: str) -> Path:
        owner, name = repo.split("/", 1)
        return self.home / owner / name

    def get(self, repo: str, key: str) -> Version | None:
        manifest_path = self._repo(repo) / "versions" / key / "manifest.json"
        try:
            manifest = Manifest.read_text(manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{manifest_path} is unreadable ({exc}): delete that version folder to retrain it") from None
        return Version(key, manifest.status or PASSED, manifest)

    def main(self, repo: str) -> str | None:
        try:
            return (self._repo(repo) / "main").read_text().strip() or None
        except FileNotFoundError:
            return None

    def versions(self, repo: str) -> list[Version]:
        folder = self._repo(repo) / "versions"
        if not folder.is_dir():
            return []
        found = [self.get(repo, p.name) for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted((v for v in found if v), key=lambda v: v.created or "")

    def spent(self, repos: Sequence[str], since: datetime) -> list[Spend]:
        """The versions of `repos` published since `since`, at their recorded cost (the monthly cap).
        Local jobs in flight are left out: the local flavor costs $0."""
        return [
            Spend(repo, v.key, billed_usd(v.manifest), False, v.created)
            for repo in dict.fromkeys(repos)
            for v in self.versions(repo)
            if since_then(v.created, since)
        ]

    def version_dir(self, repo: str, key: str) -> Path:
        return self._repo(repo) / "versions" / key

    def model_dir(self, repo: str, key: str) -> Path:
        return self.version_dir(repo, key) / "model"

    def evals_dir(self, repo: str, key: str, eval_hash: str) -> Path:
        """Scores of an existing version under changed evals (action evaluate) live beside the
        immutable manifest, keyed by the evals' hash (DESIGN: evals are keyed model key + suites)."""
        return self.version_dir(repo, key) / "evals" / eval_hash

    def has_evals(self, repo: str, key: str, eval_hash: str) -> bool:
        return (self.evals_dir(repo, key, eval_hash) / "report.json").is_file()

    def main_commit(self, repo: str) -> str | None:
        """main's state as a token: how many times it moved (log.jsonl) and the key it holds, so
        that main moved away and back again does not look unchanged. None: main never set."""
        folder = self._repo(repo)
        try:
            with open(folder / "log.jsonl", "rb") as log:
                moves = sum(1 for _ in log)
        except FileNotFoundError:
            moves = 0
        key = self.main(repo)
        return None if key is None and moves == 0 else f"{moves}:{key or ''}"

    @contextmanager
    def _locked(self, repo: str) -> Iterator[Path]:
        """The repo's folder, held under its lock file: one publish or move of main at a time, so
        the check that main is where the caller read it and the move are one step."""
        folder = self._repo(repo)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def publish(self, repo: str, key: str, folder: Path, manifest: Manifest, *, parent_commit: str | None, move_main: bool) -> Published:
        """Move a finished folder (holding model/) into place with its manifest, atomically; with
        `move_main`, point main at it when main is still at `parent_commit`.

        A version that already exists is kept as is: keys are immutable, like Hub tags.
        """
        with self._locked(repo):
            existing = self.get(repo, key)
            if existing is not None:
                return Published(existing, "", self.main(repo) == key, f"run-{key[:12]} is already published")
            self._place(repo, key, folder, manifest)
            version = self.get(repo, key)
            assert version is not None
            if not move_main:
                return Published(version, "", False, f"kept run-{key[:12]} ({version.status}); main not moved")
            if self.main_commit(repo) != parent_commit:
                now = self.main(repo)
                return Published(
                    version,
                    "",
                    False,
                    f"main of {repo} moved since apply planned this (now run-{(now or '')[:12]}): leaving it; restore this version by planning its run file",
                )
            self._move_main(repo, key, f"trained {manifest.path}".strip())
            return Published(version, self.main_commit(repo) or "", True, f"main of {repo} -> run-{key[:12]}")

    def _place(self, repo: str, key: str, staged: Path, manifest: Manifest) -> None:
        versions = self._repo(repo) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        (staged / "manifest.json").write_text(manifest.text())
        target = versions / key
        try:
            os.rename(staged, target)
        except OSError:  # staged is on another filesystem
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=versions))
            shutil.rmtree(tmp)
            shutil.copytree(staged, tmp)
            os.rename(tmp, target)

    def staging(self, repo: str, key: str) -> Path:
        """A fresh temporary folder beside the versions, to build a version in before publishing."""
        versions = self._repo(repo) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=versions))

    def set_main(self, repo: str, key: str, reason: str, *, parent_commit: str | None) -> str:
        """Point main at the existing version `key` when main is still at `parent_commit` (what the
        caller read with main_commit); else raise MainMoved and change nothing. Returns main's new token."""
        with self._locked(repo):
            if self.get(repo, key) is None:
                raise RegistryError(f"{repo} has no version run-{key[:12]}: nothing to point main at")
            if self.main(repo) != key:
                if self.main_commit(repo) != parent_commit:
                    raise main_moved(repo, key)
                self._move_main(repo, key, reason)
            return self.main_commit(repo) or ""

    def _move_main(self, repo: str, key: str, reason: str) -> None:
        """Replace main atomically and log the move (the caller holds the lock)."""
        folder = self._repo(repo)
        previous = self.main(repo)
        tmp = folder / f".main-{os.getpid()}"
        tmp.write_text(key + "\n")
        os.replace(tmp, folder / "main")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from": previous, "to": key, "reason": reason}
        with open(folder / "log.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
