"""The job bundle: everything `tuneform job` needs, in one folder, independent of the repository.

A bundle holds `run.json` (the validated run, its key, estimate and git facts) and `files/` with
copies of the repository files the run reads (data, eval suites, a local model). Every backend
runs the same job on the same bundle: a subprocess here, a container on HF Jobs, a test.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.core.errors import TuneformError
from tuneform.evals.suite import read_suite_once
from tuneform.plan.runcheck import RunCheck
from tuneform.runfile.resolve import local_model_dir
from tuneform.runfile.spec import LocalSource, RunSpec
from tuneform.runfile.trees import WorkTree

BUNDLE_FORMAT = 1
RUN_JSON = "run.json"
FILES = "files"


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk, read back."""

    path: Path
    run: dict[str, Any]

    @property
    def spec(self) -> RunSpec:
        return RunSpec.model_validate(self.run["spec"])

    @property
    def files(self) -> Path:
        return self.path / FILES

    @property
    def key(self) -> str:
        return str(self.run["run_key"])

    def model_path(self) -> str:
        """The model to load: an absolute folder for a local model, else the Hub id."""
        spec = self.spec
        if not spec.model.is_local:
            return spec.model.id
        if spec.model.id.startswith("/"):
            return spec.model.id
        return str((self.files / local_model_dir(spec.model.id)).resolve())


def repo_files(spec: RunSpec, suites: list[str]) -> list[str]:
    """Repository-relative files and folders the run reads (suites include their data)."""
    paths: list[str] = [src.path for src in [*spec.data.train, *spec.data.eval] if isinstance(src, LocalSource)]
    if spec.model.is_local and not spec.model.id.startswith("/"):
        paths.append(local_model_dir(spec.model.id))
    paths.extend(suites)
    return list(dict.fromkeys(paths))


def build_bundle(check: RunCheck, tree: WorkTree, dest: Path, extra: dict[str, Any]) -> Bundle:
    """Write a bundle for a valid run into `dest` (created); `extra` joins run.json (git, plan)."""
    spec = check.spec
    assert spec is not None and check.key is not None, "only valid runs are bundled"
    dest.mkdir(parents=True, exist_ok=True)
    suite_files: list[str] = []
    for ref in spec.evals:
        suite_files += [ref.suite, read_suite_once(tree, ref.suite).data_path.as_posix()]
    for rel in repo_files(spec, suite_files):
        source = tree.resolve(rel)
        target = dest / FILES / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    run = {
        "bundle_format": BUNDLE_FORMAT,
        "run_key": check.key,
        "name": check.name,
        "path": check.path,
        "output_repo": check.output_repo,
        "backend": check.backend,
        "eval_hash": check.eval_hash,
        "spec": spec.model_dump(mode="json"),
        "estimate": check.sizing.estimate.as_json() if check.sizing and check.sizing.estimate else None,
        **extra,
    }
    (dest / RUN_JSON).write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
    return Bundle(dest, run)


class BundleError(TuneformError, ValueError):
    """A job bundle that cannot be run here: missing, not JSON, from another tuneform, or paired
    with a registry that is not its own."""


def read_bundle(path: Path) -> Bundle:
    """A bundle from disk; BundleError naming the problem when it is not one."""
    try:
        run = json.loads((path / RUN_JSON).read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is not a job bundle: it has no {RUN_JSON}") from None
    except ValueError as exc:
        raise BundleError(f"{path / RUN_JSON} is not valid JSON: {exc}") from None
    if run.get("bundle_format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{path / RUN_JSON} has bundle_format {run.get('bundle_format')!r}; this tuneform reads {BUNDLE_FORMAT}: install the tuneform that built it"
        )
    return Bundle(path, run)
