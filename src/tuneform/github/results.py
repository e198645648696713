"""What became of the jobs a merge commit submitted: `tuneform results --commit SHA [--post]`.

`apply.yml` submits trainings detached (a hosted runner lasts at most 6 hours, a training may
last longer) and the job publishes its version to the Hub itself. This module reports back
afterwards, from a scheduled workflow (`report.yml`) that holds only a read-only Hub token:

- the jobs of a commit are the HF Jobs jobs labelled `tuneform-git=<sha12>` (hfjobs.py sets it);
- for each run (label `tuneform-job`), the newest job decides the stage;
- a COMPLETED training job's version is tag `run-<key12>` of its output repo, whose
  `tuneform/report.md` (job/report.py) is the body shown. The output repo comes from the job's
  own environment (`TUNEFORM_REPO`, set at submission), else from the readable form of its
  `tuneform-repo` label.

Exit codes of `tuneform results` (`CommitResults.exit_code`): 0 every run finished (or was canceled, or the commit has no
jobs), 75 (EX_TEMPFAIL) some are still queued or running: ask again later, 1 some failed.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneform.core.errors import TuneformError, UsageError
from tuneform.core.markup import md_code, md_text
from tuneform.job.report import RESULTS_MARKER, render_run_markdown

if TYPE_CHECKING:
    from tuneform.backends.apply import ApplyResult

log = logging.getLogger("tuneform.results")

REPORT = "tuneform/report.md"
COMMENT_KEY = "results"
EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_PENDING = 75  # EX_TEMPFAIL: nothing is wrong yet, some jobs have not ended

QUEUED, RUNNING, FAILED, FINISHED, CANCELED = "queued", "running", "failed", "finished", "canceled"
_STAGES = {
    "SCHEDULING": QUEUED,
    "RUNNING": RUNNING,
    "UPDATING": RUNNING,
    "ERROR": FAILED,
    "COMPLETED": FINISHED,
    "CANCELED": CANCELED,
    "DELETED": CANCELED,
}
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_REPO_LABEL = re.compile(r"^([A-Za-z0-9_-]+)--([A-Za-z0-9_-]+)$")


@dataclass
class RunResult:
    """One run submitted for the commit: its newest job and, once finished, its report."""

    run: str  # key12 (label tuneform-run)
    name: str  # the job's name (tuneform-<run name>) or its id
    job_id: str
    url: str
    stage: str  # queued / running / failed / finished / canceled
    hf_stage: str  # the Jobs API's own stage
    message: str = ""  # the stage message (why it failed) or a note
    repo: str | None = None
    report: str | None = None  # tuneform/report.md at run-<key12>, for finished trainings


def _labels(job: Any) -> dict[str, str]:
    return dict(getattr(job, "labels", None) or {})


def _created(job: Any) -> datetime | str:
    return getattr(job, "created_at", None) or ""


def output_repo(job: Any) -> str | None:
    """The output repo a job publishes to: its TUNEFORM_REPO, else the readable `tuneform-repo`
    label (`acme--demo` -> `acme/demo`; a hashed label cannot be read back)."""
    repo = (getattr(job, "environment", None) or {}).get("TUNEFORM_REPO")
    if repo:
        return str(repo)
    found = _REPO_LABEL.match(_labels(job).get("tuneform-repo", ""))
    return f"{found.group(1)}/{found.group(2)}" if found else None


def _download_report(api: Any, repo: str, key12: str) -> str | None:
    """tuneform/report.md at tag run-<key12>; None when the tag or the file is absent."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from tuneform.registry.hub import TAG_PREFIX

    try:
        path = api.hf_hub_download(repo, REPORT, revision=f"{TAG_PREFIX}{key12}")
    except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError):
        return None
    return Path(path).read_text(encoding="utf-8")


def collect_results(commit_sha: str, *, api: Any, namespace: str) -> list[RunResult]:
    """The runs whose jobs commit `commit_sha` submitted in `namespace`, with their stages and,
    for finished trainings, their published reports. Ordered by run name."""
    from tuneform.backends.hfjobs import job_url
    from tuneform.core.hub import retry

    sha = commit_sha.strip().lower()
    if not _SHA.match(sha):
        raise UsageError(f"commit {commit_sha!r} is not a git SHA", fix="pass the full SHA of the merge commit")
    jobs = retry(lambda: list(api.list_jobs(labels={"tuneform-git": sha[:12]}, namespace=namespace)), what="list jobs")
    newest: dict[str, Any] = {}
    for job in sorted(jobs, key=lambda j: str(_created(j))):  # a later job of a run (a retry) wins
        labels = _labels(job)
        newest[labels.get("tuneform-job") or labels.get("tuneform-run") or job.id] = job
    out: list[RunResult] = []
    for label, job in newest.items():
        labels = _labels(job)
        key12 = labels.get("tuneform-run", "")
        hf_stage = str(job.status.stage) if getattr(job, "status", None) else "UNKNOWN"
        result = RunResult(
            run=key12,
            name=labels.get("name") or job.id,
            job_id=job.id,
            url=job_url(api.endpoint, namespace, job.id),
            stage=_STAGES.get(hf_stage, RUNNING),
            hf_stage=hf_stage,
            message=str(getattr(job.status, "message", None) or ""),
            repo=output_repo(job),
        )
        if result.stage == FINISHED and "-eval-" not in label:
            if result.repo is None or not key12:
                result.stage, result.message = FAILED, "the job completed, but its output repo is unknown, so its report cannot be read"
            else:
                report = retry(functools.partial(_download_report, api, result.repo, key12), what=f"download run-{key12}")
                if report is None:
                    result.stage = FAILED
                    result.message = f"the job completed, but {result.repo} has no {REPORT} at tag run-{key12}"
                else:
                    result.report = report
        out.append(result)
    return sorted(out, key=lambda r: (r.name, r.run, r.job_id))


def all_done(results: list[RunResult]) -> bool:
    """No run is still queued or running."""
    return all(r.stage not in (QUEUED, RUNNING) for r in results)


def exit_code(results: list[RunResult]) -> int:
    if any(r.stage == FAILED for r in results):
        return EXIT_FAILED
    return EXIT_DONE if all_done(results) else EXIT_PENDING


def _report_body(report: str) -> str:
    """The published report without its marker (the comment has one already)."""
    return "\n".join(line for line in report.splitlines() if line.strip() != RESULTS_MARKER).strip("\n")


def render_results(results: list[RunResult], commit: str | None = None) -> str:
    """One markdown body for the commit's results comment (the marker first)."""
    out = [RESULTS_MARKER]
    counts = {s: sum(1 for r in results if r.stage == s) for s in (FINISHED, RUNNING, QUEUED, FAILED, CANCELED)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no jobs"
    where = f" of commit {md_code(commit[:12])}" if commit else ""
    out += [f"## tuneform results{where}: {summary}", ""]
    if not results:
        out.append("No HF Jobs job was submitted for this commit.")
    for r in results:
        title = md_code(r.name) + (f" (run-{md_text(r.run)})" if r.run else "")
        link = f"[job {md_text(r.job_id)}]({r.url})"
        if r.stage == QUEUED:
            out.append(f"- ⏳ {title}: queued, {link}")
        elif r.stage == RUNNING:
            out.append(f"- 🏃 {title}: running, {link}")
        elif r.stage == FAILED:
            why = md_text(r.message) if r.message else f"the job ended in {md_text(r.hf_stage)}"
            out.append(f"- ❌ {title}: failed, {link}: {why}")
        elif r.stage == CANCELED:
            out.append(f"- ⏹️ {title}: canceled ({md_text(r.hf_stage)}; a newer apply supersedes a run's queued jobs), {link}")
        else:
            out.append(f"- ✅ {title}: finished, {link}")
    for r in results:
        if r.report:
            out += ["", "---", "", _report_body(r.report)]
    if not all_done(results):
        out += ["", "_Some jobs have not ended: this comment is updated when they do._"]
    return "\n".join(out) + "\n"


def render_apply_results(applied: ApplyResult) -> str:
    """What became of each run of an apply, for the results comment that apply.yml posts: a line
    per run and, for each job followed to its end (apply --wait-within), the report its version
    published, as `tuneform results` shows it later. A detached hf-jobs job is left to the
    scheduled results workflow (report.yml), which replaces this comment when the job ends."""
    if not applied.outcomes:
        return ""
    marks = {"done": "✅", "skipped": "➖", "failed": "❌"}
    out = ["#### Results", ""]
    for outcome in applied.outcomes:
        first = outcome.message.splitlines()[0] if outcome.message else outcome.status
        line = (
            f"- {'⏳' if outcome.detached else marks[outcome.status]} {md_code(outcome.path)} ({md_text(outcome.action)}): {md_text(first)}"
        )
        if outcome.detached:
            line += (
                f". Still running: {md_code('tuneform status ' + (outcome.job_id or outcome.path))} follows it; "
                "for an HF Jobs job, the scheduled results workflow posts its report here when it ends"
            )
        out.append(line)
    for outcome in applied.outcomes:
        if outcome.manifest is not None and not outcome.detached:
            out += ["", "---", "", _report_body(render_run_markdown(outcome.manifest))]
    return "\n".join(out) + "\n"


class ResultsError(TuneformError):
    """The jobs of a commit could not be read from the Hub (after retries)."""


@dataclass(frozen=True)
class CommitResults:
    """What `tuneform results --commit SHA` reports: the commit's runs; the CLI prints `body`
    and exits with `exit_code` (0 all finished, 75 some still queued or running, 1 some failed)."""

    commit: str
    results: list[RunResult]

    @property
    def body(self) -> str:
        return render_results(self.results, self.commit)

    @property
    def exit_code(self) -> int:
        return exit_code(self.results)


def commit_results(commit: str, *, post: bool, namespace: str | None = None, api: Any = None, github: Any = None) -> CommitResults:
    """What `tuneform results --commit SHA [--post]` does.

    With `post`, the body becomes the PR's sticky `results` comment (the one apply.yml started),
    found from the merge commit. A commit without jobs is never posted (that would replace what
    apply said, e.g. why it submitted nothing), nor is one without a PR (a notice is logged).
    `namespace` defaults to [tool.tuneform] namespace, else the token's user; `api` and
    `github` are for tests. Raises UsageError for a commit that is no SHA and ResultsError when
    the Hub cannot be read.
    """
    from tuneform.core.hub import hub_api, hub_failures
    from tuneform.github.client import PullRequestNotFound, comment_command

    api = api if api is not None else hub_api()
    try:
        if not namespace:
            from tuneform.registry.hub import default_namespace
            from tuneform.runfile.trees import repo_root

            namespace = default_namespace(repo_root(Path.cwd()))
        found = CommitResults(commit.strip(), collect_results(commit, api=api, namespace=namespace))
    except hub_failures() as exc:
        raise ResultsError(f"reading the jobs of {commit[:12]} failed: {type(exc).__name__}: {exc}") from exc
    if post and found.results:
        try:
            comment_command(None, found.commit, COMMENT_KEY, found.body, github=github)
        except PullRequestNotFound as exc:
            log.warning("%s", exc)
    return found
