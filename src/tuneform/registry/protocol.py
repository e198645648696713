"""The Registry protocol: what every backend's registry offers, so plan, apply and the job never ask
which registry they hold.

Reads: `get` (a version by run key), `versions`, `main` (the key main holds) and `main_commit`
(an opaque token of main's state: a Hub commit id, a local move counter). Writes:

- `publish` lays a finished version out atomically (a rename locally, one commit + tag on the Hub)
  and, with `move_main`, moves main to it in the same step, only when main is still at
  `parent_commit` (the `main_commit` the caller read). When main moved since, the version is
  still published (keys are immutable and it cost a training) but main stays where it is, and
  `Published.moved_main` is False with a note that says how to restore it.
- `set_main` moves main to an existing version (restore), again only from `parent_commit`;
  when main moved since it raises `MainMoved` and changes nothing.

`local` (registry/local.py) and `hf-jobs` (registry/hub.py) implement it; backends/ maps each
backend name to its registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tuneform.core.errors import TuneformError
from tuneform.core.manifest import FAILED_GATES, PASSED, Manifest

__all__ = ["FAILED_GATES", "PASSED", "MainMoved", "Published", "Registry", "RegistryError", "Version", "main_moved"]


@dataclass(frozen=True)
class Version:
    """One trained version of a run, as its manifest describes it."""

    key: str
    status: str  # PASSED or FAILED_GATES
    manifest: Manifest

    @property
    def commit(self) -> str | None:
        return self.manifest.git.commit

    @property
    def pr(self) -> int | None:
        return self.manifest.git.pr

    @property
    def created(self) -> str | None:
        return self.manifest.created

    @property
    def metrics(self) -> dict[str, float]:
        """The new version's score per metric, from the eval table the job wrote."""
        return self.manifest.evals.headline()


class RegistryError(TuneformError):
    """The registry cannot be read or written; the message says what to do."""


class MainMoved(RegistryError):
    """main is no longer at the commit the caller read: another apply moved it meanwhile."""


def main_moved(repo: str, key: str) -> MainMoved:
    """The one sentence for a refused move of main, whichever registry refused it."""
    return MainMoved(
        f"main of {repo} moved since it was read, so it was not moved to run-{key[:12]}: run tuneform plan again and apply what it shows"
    )


@dataclass
class Published:
    """What publish did: the version, whether main now holds it, and a sentence for the log."""

    version: Version
    commit: str
    moved_main: bool
    note: str


class Registry(Protocol):
    """Versions of runs by run key, and a `main` that moves only from the state its caller saw."""

    def get(self, repo: str, key: str) -> Version | None: ...

    def main(self, repo: str) -> str | None: ...

    def main_commit(self, repo: str) -> str | None: ...

    def versions(self, repo: str) -> list[Version]: ...

    def has_evals(self, repo: str, key: str, eval_hash: str) -> bool: ...

    def publish(
        self, repo: str, key: str, folder: Path, manifest: Manifest, *, parent_commit: str | None, move_main: bool
    ) -> Published: ...

    def set_main(self, repo: str, key: str, reason: str, *, parent_commit: str | None) -> str: ...
