"""What `tuneform job` needs from the Hub registry: a staging folder, the checkpoint work branch, publish.

The local registry is a folder the job writes into directly; on HF Jobs the job stages files in a
temporary folder and publishes them as a Hub commit and tag, then drops its checkpoint branch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tuneform.core.manifest import Manifest
from tuneform.job.checkpoints import WorkBranch, delete_work_branch
from tuneform.registry.hub import HubRegistry, claim_branch, jobs_branch
from tuneform.registry.protocol import Published, Version
from tuneform.train.tracking import LOGS


class HubJobRegistry:
    """The JobRegistry protocol (job/registries.py) over the Hub (the local one is a folder)."""

    checkpoints = True

    def __init__(self, hub: HubRegistry, private: bool = True):
        self.hub = hub
        self.private = private
        self._tmp = Path(tempfile.mkdtemp(prefix="tuneform-hub-"))

    def get(self, repo: str, key: str) -> Version | None:
        return self.hub.get(repo, key)

    def main(self, repo: str) -> str | None:
        return self.hub.main(repo)

    def versions(self, repo: str) -> list[Version]:
        return self.hub.versions(repo)

    def staging(self, repo: str, key: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"stage-{key[:12]}-", dir=self._tmp))

    def model_dir(self, repo: str, key: str) -> Path:
        dest = self._tmp / "versions" / key
        if not dest.is_dir():
            self.hub.download(repo, key, dest)
        return dest

    def evals_dir(self, repo: str, key: str, eval_hash: str) -> Path:
        return self._tmp / "evals" / eval_hash

    def publish_evals(self, repo: str, key: str, eval_hash: str) -> None:
        self.hub.add_evals(repo, key, eval_hash, self.evals_dir(repo, key, eval_hash))
        self.hub.delete_branches(repo, [claim_branch(key), jobs_branch(key)])

    def work_branch(self, repo: str, key: str, settings: dict[str, Any]) -> WorkBranch:
        """Where this job uploads its training checkpoints and finds one to resume from (job/checkpoints.py)."""
        return WorkBranch(self.hub, repo, key, settings, self._tmp / f"checkpoint-{key[:12]}", private=self.private)

    def publish(self, repo: str, key: str, staged: Path, manifest: Manifest, *, parent_commit: str | None, move_main: bool) -> Published:
        """Lay the staged folder out as the Hub version (model files at the root, reports under tuneform/),
        publish it, and drop the run's checkpoint, claim and bundle branches (the bundle holds the
        training data, eval answers and the wheel): a published key never trains again."""
        folder = self._tmp / f"publish-{key[:12]}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(staged / "model", folder)
        (folder / "tuneform").mkdir(exist_ok=True)
        for item in staged.iterdir():
            if item.is_file() and item.name != "manifest.json":
                shutil.copy2(item, folder / "tuneform" / item.name)
            elif item.is_dir() and item.name == LOGS:  # a tracker's files (train/tracking.py)
                shutil.copytree(item, folder / "tuneform" / LOGS)
        published = self.hub.publish(repo, key, folder, manifest, parent_commit=parent_commit, move_main=move_main, private=self.private)
        delete_work_branch(self.hub, repo, key)
        self.hub.delete_branches(repo, [claim_branch(key), jobs_branch(key)])  # training data, eval answers, the wheel
        return published

    def cleanup(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
