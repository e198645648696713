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

And `spent(repos, since)`: what the jobs of those output repos cost since a moment (the monthly
cap, `[tool.tuneform] max_usd_per_month`): each version published since then at its recorded
cost (`billed_usd`), and each job still in flight that was submitted since then at its estimate.

`local` (registry/local.py) and `hf-jobs` (registry/hub.py) implement it; backends/ maps each
backend name to its registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tuneform.core.errors import TuneformError
from tuneform.core.manifest import FAILED_GATES, PASSED, Manifest

__all__ = [
    "FAILED_GATES",
    "PASSED",
    "MainMoved",
    "Published",
    "Registry",
    "RegistryError",
    "Spend",
    "Version",
    "billed_usd",
    "main_moved",
    "since_then",
]


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


@dataclass(frozen=True)
class Spend:
    """One job's share of what a repository spent: a published version at its recorded cost, or a
    job still in flight (`running`) at its plan's estimate, since it bills while it runs."""

    repo: str
    key: str
    usd: float
    running: bool
    when: str | None  # when it was published or submitted (ISO 8601, UTC); None: not recorded


def billed_usd(manifest: Manifest) -> float:
    """What a published version cost: the billed cost the job recorded (flavor price x billed
    minutes), else that product from its parts, else the plan's estimate. A manifest without any
    (written before costs were recorded) counts $0: there is nothing to count it by."""
    cost = manifest.cost
    if cost is None:
        return 0.0
    if cost.actual_usd is not None:
        return cost.actual_usd
    if cost.billed_minutes is not None and cost.usd_per_hour is not None:
        return cost.usd_per_hour / 60 * cost.billed_minutes
    return cost.estimated_usd or 0.0


def since_then(when: str | datetime | None, since: datetime) -> bool:
    """Whether `when` (ISO 8601, or a datetime; naive means UTC) is at or after `since`. A time
    that is missing or unreadable counts as recent: a spending cap errs towards counting."""
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return True
    if when is None:
        return True
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


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

    def spent(self, repos: Sequence[str], since: datetime) -> list[Spend]: ...
