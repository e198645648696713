"""Versions of trained models, found by run key: the state that plan reads and apply writes.

Backend `local` keeps the Hub's layout in a folder (default `.tuneform/`, or $TUNEFORM_HOME):

    <home>/<namespace>/<name>/versions/<key>/manifest.json   one trained version, immutable
    <home>/<namespace>/<name>/versions/<key>/model/           its adapter or weights + tokenizer
    <home>/<namespace>/<name>/main                           the key git main asks for
    <home>/<namespace>/<name>/log.jsonl                      every move of main, appended

A version appears by renaming a finished temporary folder into place, so a crash never leaves a
half-published version; `main` moves by atomic replace. The Hub registry (backend hf-jobs) offers
the same reads over tags `run-<key12>` and branch `main`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tuneform.core.errors import TuneformError

PASSED = "passed"
FAILED_GATES = "failed_gates"


@dataclass(frozen=True)
class Version:
    """One trained version of a run, as its manifest describes it."""

    key: str
    status: str  # PASSED or FAILED_GATES
    manifest: dict[str, Any]

    @property
    def commit(self) -> str | None:
        return self.manifest.get("git", {}).get("commit")

    @property
    def pr(self) -> int | None:
        return self.manifest.get("git", {}).get("pr")

    @property
    def created(self) -> str | None:
        return self.manifest.get("created")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})


class RegistryError(TuneformError):
    """The registry cannot be read or written; the message says what to do."""


class Registry(Protocol):
    """What plan reads (get, main) and apply writes (publish, set_main)."""

    def get(self, repo: str, key: str) -> Version | None: ...

    def main(self, repo: str) -> str | None: ...

    def versions(self, repo: str) -> list[Version]: ...

    def has_evals(self, repo: str, key: str, eval_hash: str) -> bool: ...


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
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{manifest_path} is unreadable ({exc}): delete that version folder to retrain it") from None
        return Version(key, manifest.get("status", PASSED), manifest)

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

    def publish(self, repo: str, key: str, staged: Path, manifest: dict[str, Any]) -> Version:
        """Move a finished folder (holding model/) into place with its manifest, atomically.

        A version that already exists is kept as is: keys are immutable, like Hub tags.
        """
        existing = self.get(repo, key)
        if existing is not None:
            return existing
        versions = self._repo(repo) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        target = versions / key
        try:
            os.rename(staged, target)
        except OSError:  # another apply published the same key first, or staged is on another filesystem
            if self.get(repo, key) is None:
                tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=versions))
                shutil.rmtree(tmp)
                shutil.copytree(staged, tmp)
                os.rename(tmp, target)
        version = self.get(repo, key)
        assert version is not None
        return version

    def staging(self, repo: str, key: str) -> Path:
        """A fresh temporary folder beside the versions, to build a version in before publishing."""
        versions = self._repo(repo) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=versions))

    def set_main(self, repo: str, key: str, reason: str) -> None:
        """Point main at `key` (atomic replace) and log the move."""
        folder = self._repo(repo)
        folder.mkdir(parents=True, exist_ok=True)
        previous = self.main(repo)
        tmp = folder / f".main-{os.getpid()}"
        tmp.write_text(key + "\n")
        os.replace(tmp, folder / "main")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from": previous, "to": key, "reason": reason}
        with open(folder / "log.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
