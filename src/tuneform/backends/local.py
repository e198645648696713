"""Backend `local`: the job runs as a subprocess of this machine, on its CPU or GPU.

Each job gets a folder `<home>/jobs/<job id>/` with the bundle, `job.json` (state, pid, run key)
and `log.txt` (everything the job printed). status, logs and cancel read those files, so they work
from another terminal and after apply has exited. Versions live in the local registry
(registry/local.py). `LocalBackend` is this module's Backend (backends/protocol.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.backends.protocol import ApplyContext, BackendError, Ended, JobRef, Submission
from tuneform.estimate.catalog import FLAVORS, FlavorTable
from tuneform.plan.planner import PlannedRun
from tuneform.registry.local import LocalRegistry, default_home
from tuneform.registry.protocol import Version

RUNNING, COMPLETED, FAILED, CANCELED = "RUNNING", "COMPLETED", "ERROR", "CANCELED"
TERMINAL = (COMPLETED, FAILED, CANCELED)


@dataclass
class LocalJob:
    """One job's folder and state."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / "job.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def state(self) -> dict[str, Any]:
        found = self._read()
        return found if found is not None else {"id": self.id, "stage": FAILED, "message": "job.json is missing or unreadable"}

    def update(self, **fields: Any) -> None:
        state = (self._read() or {}) | fields
        tmp = self.folder / ".job.json.tmp"
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.folder / "job.json")

    @property
    def stage(self) -> str:
        """The recorded stage, corrected when a RUNNING job's process is gone (a crash)."""
        state = self.state
        if state.get("stage") == RUNNING and not _alive(state.get("pid")):
            self.update(stage=FAILED, message="the job process ended without reporting (killed or crashed): see its log")
            return FAILED
        return str(state.get("stage"))

    @property
    def log(self) -> Path:
        return self.folder / "log.txt"

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle"


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process still answers kill 0: reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def jobs_dir(home: Path) -> Path:
    return home / "jobs"


def new_job(home: Path, run_key: str, run_name: str) -> LocalJob:
    """A job folder named `<run name>-<key12>-<time>`, so ids sort by time per run."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = jobs_dir(home) / f"{run_name}-{run_key[:12]}-{stamp}-{os.getpid()}"
    folder.mkdir(parents=True)
    job = LocalJob(folder)
    job.update(id=job.id, run_key=run_key, name=run_name, stage="SCHEDULING", created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return job


def list_jobs(home: Path) -> list[LocalJob]:
    folder = jobs_dir(home)
    if not folder.is_dir():
        return []
    return sorted((LocalJob(p) for p in folder.iterdir() if (p / "job.json").is_file()), key=lambda j: j.state.get("created", ""))


def find_jobs(home: Path, ref: str) -> list[LocalJob]:
    """Jobs matching a job id, a run name or a run key prefix, newest last."""
    return [
        j
        for j in list_jobs(home)
        if ref in (j.id, j.state.get("name")) or (len(ref) >= 6 and str(j.state.get("run_key", "")).startswith(ref))
    ]


def active_job(home: Path, run_key: str) -> LocalJob | None:
    """A job for this key that is queued or running: submitting again would train twice."""
    for job in reversed(list_jobs(home)):
        if job.state.get("run_key") == run_key and job.stage not in TERMINAL:
            return job
    return None


def start(job: LocalJob, home: Path) -> subprocess.Popen[bytes]:
    """Run `tuneform job` on the job's bundle in a subprocess; output goes to log.txt."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNEFORM_HOME": str(home)}
    with open(job.log, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "tuneform.cli", "job", str(job.bundle), "--registry", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    job.update(stage=RUNNING, pid=process.pid, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return process


def follow(job: LocalJob, process: subprocess.Popen[bytes] | None, on_line: Callable[[str], None], poll: float = 0.2) -> str:
    """Stream the job's log lines to `on_line` until it ends; returns the final stage."""
    position = 0
    while True:
        finished = process.poll() is not None if process is not None else job.stage in TERMINAL
        position = _emit_new(job.log, position, on_line)
        if finished:
            _emit_new(job.log, position, on_line)
            break
        time.sleep(poll)
    if process is not None:
        code = process.returncode
        if job.state.get("stage") == RUNNING:
            job.update(
                stage=COMPLETED if code == 0 else FAILED, exit_code=code, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
    return job.stage


def _emit_new(path: Path, position: int, on_line: Callable[[str], None]) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(position)
            chunk = handle.read()
    except FileNotFoundError:
        return position
    complete = chunk.rfind(b"\n") + 1
    for line in chunk[:complete].decode("utf-8", errors="replace").splitlines():
        on_line(line)
    return position + complete


def tail(job: LocalJob, lines: int | None = None) -> Iterator[str]:
    try:
        text = job.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return iter(())
    return iter(text[-lines:] if lines else text)


def cancel(job: LocalJob) -> bool:
    """Stop a running job (its whole process group); True when it was running."""
    state = job.state
    if job.stage in TERMINAL:
        return False
    pid = state.get("pid")
    if isinstance(pid, int):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    job.update(stage=CANCELED, message="canceled by the user", finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return True


def home_of(root: Path) -> Path:
    """The local registry folder of a repository: $TUNEFORM_HOME, [tool.tuneform] registry, or .tuneform."""
    from tuneform.runfile.settings import settings_or_defaults
    from tuneform.runfile.trees import WorkTree

    return default_home(root, settings_or_defaults(WorkTree(root)).registry)


class LocalBackend:
    """Backend `local`: a subprocess of this machine, versions in a folder."""

    name = "local"

    def registry(self, root: Path) -> LocalRegistry:
        return LocalRegistry(home_of(root))

    def prices(self) -> tuple[FlavorTable, str | None]:
        """The offline table: this machine's flavor costs nothing, and there is nothing to ask."""
        return FLAVORS, None

    def restore(self, run: PlannedRun, ctx: ApplyContext) -> Version | None:
        repo, key = run.check.output_repo, run.check.key
        assert repo and key
        registry = LocalRegistry(ctx.home)
        try:
            registry.set_main(repo, key, f"restore ({run.check.path})", parent_commit=registry.main_commit(repo))
        except OSError as exc:
            raise BackendError(f"could not move main: {exc}") from None
        ctx.say(f"restored {repo} main to run-{key[:12]} (no training, $0)")
        return registry.get(repo, key)

    def submit(self, run: PlannedRun, ctx: ApplyContext) -> Submission:
        check = run.check
        assert check.key
        running = active_job(ctx.home, check.key)
        if running is not None:
            return Submission(False, f"job {running.id} is already training this run key", running.id)
        job = new_job(ctx.home, check.key, check.name)
        ctx.bundle(run, LocalRegistry(ctx.home), job.bundle, job_id=job.id)
        process = start(job, ctx.home)
        ctx.say(f"started job {job.id} ({run.action} {check.path}); log: {job.log}")
        return Submission(True, "submitted", job.id, handle=(job, process))

    def follow(self, run: PlannedRun, submission: Submission, ctx: ApplyContext) -> Ended:
        job, process = submission.handle
        stage = follow(job, process, ctx.say)
        repo, key = run.check.output_repo, run.check.key
        assert repo and key
        message = "" if stage == COMPLETED else job.state.get("message") or f"job ended {stage}: see {job.log}"
        return Ended(stage == COMPLETED, message, LocalRegistry(ctx.home).get(repo, key))

    def find_job(self, root: Path, ref: str) -> JobRef | None:
        """The newest job whose id, run name or run key prefix is `ref`."""
        found = find_jobs(home_of(root), ref)
        return JobRef(found[-1].id) if found else None

    def _job(self, root: Path, job: JobRef) -> LocalJob:
        found = LocalJob(jobs_dir(home_of(root)) / job.id)
        if not (found.folder / "job.json").is_file():
            raise BackendError(f"no local job {job.id}: tuneform apply prints job ids")
        return found

    def status(self, root: Path, job: JobRef) -> dict[str, Any]:
        found = self._job(root, job)
        return found.state | {"stage": found.stage}

    def logs(self, root: Path, job: JobRef, lines: int | None) -> list[str]:
        return list(tail(self._job(root, job), lines))

    def cancel(self, root: Path, job: JobRef) -> tuple[bool, str]:
        found = self._job(root, job)
        canceled = cancel(found)
        return canceled, found.stage
