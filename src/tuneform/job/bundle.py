"""The job bundle: everything `tuneform job` needs, in one folder, independent of the repository.

A bundle holds `run.json` (`RunFacts`: the validated run, its key, estimate, git facts and what
apply expects of the registry) and `files/` with copies of the repository files the run reads
(data, eval suites, a local model). Every backend runs the same job on the same bundle: a
subprocess here, a container on HF Jobs, a test.

The bundle is written and read by the same tuneform (HF Jobs installs the wheel apply built), so
`run.json` is read strictly: an unknown or missing field means another tuneform built it, and
`bundle_format` says so first.

    bundle_format 1  tuneform 0.1.0
    bundle_format 2  git.run_file, model_revision and dataset_revisions (for the manifest's lineage)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneform.core.errors import TuneformError
from tuneform.core.manifest import GitFacts, PlannedEstimate
from tuneform.evals.suite import read_suite_once
from tuneform.plan.runcheck import RunCheck
from tuneform.runfile.resolve import local_model_dir
from tuneform.runfile.settings import DEFAULT_CHECKPOINT_MINUTES
from tuneform.runfile.spec import HubSource, LocalSource, RunSpec
from tuneform.runfile.trees import TreeError, WorkTree, git

BUNDLE_FORMAT = 2
RUN_JSON = "run.json"
FILES = "files"


class RunFacts(BaseModel):
    """run.json: what apply tells the job about one run."""

    model_config = ConfigDict(extra="forbid")

    bundle_format: int = BUNDLE_FORMAT
    run_key: str
    name: str
    path: str
    output_repo: str
    backend: str = "local"
    eval_hash: str | None = None
    spec: RunSpec
    estimate: PlannedEstimate | None = None
    git: GitFacts = Field(default_factory=GitFacts)
    model_revision: str | None = None  # the commit the plan resolved the model's revision to
    dataset_revisions: dict[str, str] = Field(default_factory=dict)  # Hub dataset id -> resolved revision
    action: str = "create"
    expected_main: str | None = None  # the key main pointed at when apply planned (a late job must not roll it back)
    expected_main_commit: str | None = None  # the Hub commit of that main (hf-jobs)
    job_id: str | None = None
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk, read back."""

    path: Path
    run: RunFacts

    @property
    def spec(self) -> RunSpec:
        return self.run.spec

    @property
    def files(self) -> Path:
        return self.path / FILES

    @property
    def key(self) -> str:
        return self.run.run_key

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


def build_bundle(
    check: RunCheck,
    tree: WorkTree,
    dest: Path,
    *,
    git: GitFacts,
    action: str,
    expected_main: str | None,
    expected_main_commit: str | None = None,
    job_id: str | None = None,
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES,
) -> Bundle:
    """Write a bundle for a valid run into `dest` (created): its files, and run.json from the
    check (key, spec, estimate, resolved revisions) and what apply passes (git facts, action,
    the main it saw)."""
    spec = check.spec
    assert spec is not None and check.key is not None and check.output_repo is not None, "only valid runs are bundled"
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
    estimate = check.sizing.estimate if check.sizing else None
    run = RunFacts(
        run_key=check.key,
        name=check.name,
        path=check.path,
        output_repo=check.output_repo,
        backend=check.backend,
        eval_hash=check.eval_hash,
        spec=spec,
        estimate=PlannedEstimate.model_validate(estimate.as_json()) if estimate else None,
        git=git,
        model_revision=None if spec.model.is_local or check.resolved is None else check.resolved.model_revision,
        dataset_revisions=_dataset_revisions(check),
        action=action,
        expected_main=expected_main,
        expected_main_commit=expected_main_commit,
        job_id=job_id,
        checkpoint_minutes=checkpoint_minutes,
    )
    (dest / RUN_JSON).write_text(run.model_dump_json(indent=2) + "\n")
    return Bundle(dest, run)


def git_facts(root: Path, run_file: str, pr: int | None) -> GitFacts:
    """The commit a version is trained from (HEAD) and whether that commit alone reproduces it:
    dirty when the run file is not committed or differs from HEAD, or a tracked file changed."""
    try:
        commit = git(root, "rev-parse", "HEAD").strip()
        tracked = bool(git(root, "status", "--porcelain", "--untracked-files=no").strip())
        in_head = bool(git(root, "ls-tree", "--name-only", "HEAD", "--", run_file).strip())
        differs = bool(git(root, "diff", "--name-only", "HEAD", "--", run_file).strip())
    except (TreeError, OSError):  # not a git repository, no commit yet, or no git
        return GitFacts(pr=pr)
    state = "untracked" if not in_head else "modified" if differs else "committed"
    return GitFacts(commit=commit, dirty=tracked or state != "committed", pr=pr, run_file=state)


def _dataset_revisions(check: RunCheck) -> dict[str, str]:
    """Hub dataset id -> the revision the plan resolved (resolved sources run train, then eval)."""
    assert check.spec is not None
    if check.resolved is None:
        return {}
    sources = [*check.spec.data.train, *check.spec.data.eval]
    return {
        src.dataset: str(facts["revision"])
        for src, facts in zip(sources, check.resolved.sources)
        if isinstance(src, HubSource) and "revision" in facts
    }


class BundleError(TuneformError, ValueError):
    """A job bundle that cannot be run here: missing, not JSON, from another tuneform, or paired
    with a registry that is not its own."""


def read_bundle(path: Path) -> Bundle:
    """A bundle from disk; BundleError naming the problem when it is not one."""
    try:
        text = (path / RUN_JSON).read_text()
    except FileNotFoundError:
        raise BundleError(f"{path} is not a job bundle: it has no {RUN_JSON}") from None
    try:
        version = _Format.model_validate_json(text).bundle_format
    except ValidationError as exc:
        raise BundleError(f"{path / RUN_JSON} is not valid JSON: {exc}") from None
    if version != BUNDLE_FORMAT:
        raise BundleError(
            f"{path / RUN_JSON} has bundle_format {version!r}; this tuneform reads {BUNDLE_FORMAT}: install the tuneform that built it"
        )
    try:
        return Bundle(path, RunFacts.model_validate_json(text))
    except ValidationError as exc:
        raise BundleError(f"{path / RUN_JSON} is not a bundle this tuneform wrote: {exc}") from None


class _Format(BaseModel):
    """Only the format field of run.json, read before the rest so an old bundle gets the right error."""

    bundle_format: int | None = None
