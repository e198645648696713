"""The registry as `tuneform job` sees it: one protocol whichever backend launched the job.

The job builds a version in `staging`, reads the version it replaces through `model_dir`, writes
re-scored evals to `evals_dir` and publishes them with `publish_evals`, saves and resumes
checkpoints on a `work_branch` (where `checkpoints` says it keeps them), and publishes through the
Registry protocol's `publish` (registry/protocol.py), which moves main only from the commit apply
saw. `LocalJobRegistry` is the local folder; `HubJobRegistry` (hubjob.py) stages in a temporary
folder and publishes to the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tuneform.core.manifest import Manifest
from tuneform.registry.local import LocalRegistry
from tuneform.registry.protocol import Published, Version

if TYPE_CHECKING:
    from tuneform.job.checkpoints import WorkBranch


class JobRegistry(Protocol):
    """What the job needs from the registry it publishes to."""

    checkpoints: bool  # whether a job saves checkpoints to a work branch and resumes from one

    def get(self, repo: str, key: str) -> Version | None: ...

    def main(self, repo: str) -> str | None: ...

    def versions(self, repo: str) -> list[Version]: ...

    def staging(self, repo: str, key: str) -> Path: ...

    def model_dir(self, repo: str, key: str) -> Path: ...

    def evals_dir(self, repo: str, key: str, eval_hash: str) -> Path: ...

    def publish_evals(self, repo: str, key: str, eval_hash: str) -> None: ...

    def work_branch(self, repo: str, key: str, settings: dict[str, Any]) -> WorkBranch | None: ...

    def publish(
        self, repo: str, key: str, folder: Path, manifest: Manifest, *, parent_commit: str | None, move_main: bool
    ) -> Published: ...


class LocalJobRegistry(LocalRegistry):
    """The local folder as the job's registry: evals are written in place, and there are no
    checkpoints, since nothing retries a local job (job/checkpoints.py)."""

    checkpoints = False

    def publish_evals(self, repo: str, key: str, eval_hash: str) -> None:
        """Nothing to upload: evals_dir is inside the registry already."""

    def work_branch(self, repo: str, key: str, settings: dict[str, Any]) -> WorkBranch | None:
        return None
