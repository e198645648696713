"""Backend `hf-jobs`: the job runs in a container on Hugging Face Jobs and publishes to the Hub.

Submitting one run:

1. Already submitted? A job labelled `tuneform-job=<job key>` that has not failed (SCHEDULING,
   RUNNING, COMPLETED), or an existing tag `run-<key12>`, means yes: nothing is submitted again.
2. Claim the key: a commit on branch `tuneform/claim-<key12>` naming the claimant (the git commit
   applied), made from the head read just before; a claim another apply holds stops this one
   (exit 1, nothing submitted). A claim whose answer was lost names us: it is ours (`claim`). A
   claim is taken over when every job for it failed, or when no job was ever submitted for it
   and it is older than CLAIM_ABANDONED_AFTER_S (its apply died between claiming and submitting).
3. Check that the job's token can read the base model and Hub datasets (auth_check).
4. Upload the bundle and a wheel of this tuneform to branch `tuneform/jobs/<key12>` of the output repo.
5. `run_job`: the container downloads `tuneform-job/` at the commit that upload made (not the
   branch, which anyone who can write the output repo could move), refuses a wheel whose sha256 is
   not the one apply built, installs it and runs `tuneform job BUNDLE --registry hub:<repo>`.
   HF_TOKEN goes in `secrets` only.
6. Supersede: jobs labelled with the same output repo (`tuneform-repo`) but another run key that are
   still SCHEDULING or RUNNING train a version this apply replaced; they are canceled. Git ancestry
   of their `tuneform-git` label decides which apply is newer (arrival order only when git cannot
   tell): an apply older than a job or the version on main submits nothing and cancels nothing.

The client does not retry run_job; a 429/5xx is retried here after listing the jobs again, so a
POST whose answer was lost is not made twice. `HfJobsBackend` is this module's Backend
(backends/protocol.py); its registry is the Hub's (registry/hub.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.backends.protocol import ApplyContext, BackendError, Ended, JobRef, Submission
from tuneform.backends.wheel import build_wheel
from tuneform.core.hub import http_status, hub_failures, retry
from tuneform.core.manifest import GitFacts
from tuneform.estimate.catalog import FlavorTable
from tuneform.job.bundle import git_facts
from tuneform.plan.planner import PlannedRun
from tuneform.registry.hub import JOB_FOLDER, HubRegistry, claim_branch, jobs_branch, tag_of
from tuneform.registry.protocol import Registry, RegistryError, Version
from tuneform.runfile.spec import HubSource

Say = Callable[[str], None]

# The image a job runs in is the plan's (plan/runcheck.py image_of): runfile/settings.py pins the
# default and says how to pin a digest; compute.image or TUNEFORM_HF_IMAGE choose another, within
# [tool.tuneform] allowed_images.
ACTIVE = ("SCHEDULING", "RUNNING", "UPDATING", "COMPLETED")
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
CANCELABLE = ("SCHEDULING", "RUNNING", "UPDATING")  # a superseded job in one of these is canceled
CLAIM_FILE = "tuneform/claim.json"  # on the claim branch: who holds the claim (claim_holder)
# An apply submits its job within minutes of claiming (upload, then run_job); a claim with no job
# after this long is an apply that died in between, and would otherwise stop the key for good.
# Long enough that an apply still uploading a large bundle keeps its claim.
CLAIM_ABANDONED_AFTER_S = 2 * 3600

# What the container runs (bash), in two parts so tests can run the first alone. Parameters come
# from the environment, the token from secrets. INSTALL_SCRIPT downloads the job folder at commit
# TUNEFORM_REVISION and pip-installs its one wheel only when its sha256 is TUNEFORM_WHEEL_SHA256;
# it leaves the bundle's folder in $dir. pip reads PIP_* from the environment too, so the same
# script installs offline in tests.
INSTALL_SCRIPT = r"""set -eu
dir=$(mktemp -d)
python -c 'import huggingface_hub' 2>/dev/null || python -m pip install -q 'huggingface_hub>=1.19,<2'
wheel=$(python - "$TUNEFORM_REPO" "$TUNEFORM_REVISION" "$TUNEFORM_WHEEL_SHA256" "$dir" <<'PY'
import hashlib, pathlib, sys
from huggingface_hub import snapshot_download
repo, revision, expected, local = sys.argv[1:]
snapshot_download(repo, revision=revision, allow_patterns=["tuneform-job/*"], local_dir=local)
wheels = sorted(pathlib.Path(local, "tuneform-job").glob("*.whl"))
if len(wheels) != 1:
    sys.exit(f"tuneform: expected one wheel in tuneform-job/ at {revision}, found {len(wheels)}: refusing to install")
found = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
if found != expected:
    sys.exit(f"tuneform: {wheels[0].name} at {revision} has sha256 {found}, not the {expected} apply uploaded: refusing to install it")
print(wheels[0])
PY
)
python -m pip install -q --disable-pip-version-check "$wheel${TUNEFORM_TRACKER:+[$TUNEFORM_TRACKER]}"
"""
CONTAINER_SCRIPT = (
    INSTALL_SCRIPT
    + r"""exec python -m tuneform.cli job "$dir/tuneform-job/bundle" --registry "hub:$TUNEFORM_REPO"
"""
)


class HfJobsError(BackendError):
    """Submitting or following a job failed; the message says what to do."""


def job_key(key: str, action: str, eval_hash: str | None) -> str:
    """The idempotency label: one training per run key; one re-scoring per (key, evals)."""
    return f"{key[:12]}-eval-{(eval_hash or '')[:12]}" if action == "evaluate" else key[:12]


def repo_label(repo: str) -> str:
    """The `tuneform-repo` label: which output repo (so which run) a job trains for. Label values
    allow letters, digits, - and _ (<= 100): `acme/demo` -> `acme--demo`; a repo id that does not
    fit (dots, too long) gets `h` + a hash, which never holds `--` (repo ids never do), so the two
    forms cannot collide."""
    readable = repo.replace("/", "--", 1)
    if len(readable) <= 100 and re.fullmatch(r"[A-Za-z0-9_-]+--[A-Za-z0-9_-]+", readable):
        return readable
    return "h" + hashlib.sha256(repo.encode()).hexdigest()[:24]


def job_url(endpoint: str, namespace: str, job_id: str) -> str:
    return f"{endpoint.rstrip('/')}/jobs/{namespace}/{job_id}"


def explain(exc: BaseException, what: str) -> str:
    """An HTTP error as a sentence that says what to do."""
    status = http_status(exc)
    server = getattr(exc, "server_message", None) or str(exc).splitlines()[0]
    if status == 402:
        return f"{what}: Hugging Face refused to bill the job (402: {server}): add credits or a payment method to the namespace, then apply again"
    if status == 401:
        return f"{what}: HF_TOKEN was refused (401): set HF_TOKEN to a valid token with write access"
    if status == 403:
        return f"{what}: HF_TOKEN may not do this (403: {server}): use a write token of a member of the namespace"
    if status == 400 and "flavor" in server.lower():
        return f"{what}: {server}: set compute.flavor to one of those (or auto)"
    if status == 412:
        return f"{what}: main of the output repo moved meanwhile (412): run tuneform plan again and apply what it shows"
    if status == 429:
        return f"{what}: rate limited by the Hub (429) after retries: apply again in a few minutes"
    if status is not None and status >= 500:
        return f"{what}: the Hub answered {status} after retries ({server}): apply again later; nothing was submitted twice"
    if status is None:
        return f"{what}: the Hub is not reachable ({type(exc).__name__}: {exc}): check the network and HF_ENDPOINT"
    return f"{what}: HTTP {status}: {server}"


@dataclass
class Submitted:
    job_id: str
    url: str
    namespace: str
    new: bool  # False: an earlier submission (or a published tag) was found
    created_at: Any = None  # the server's createdAt (datetime), when it said
    git: str | None = None  # the commit it was submitted from


@dataclass
class Superseded:
    """A job of the same output repo for another run key, found still queued or running."""

    job_id: str
    run: str  # the key12 it trains
    stage: str  # the stage it was seen in
    canceled: bool
    message: str = ""  # why the cancel failed

    def as_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "run": f"run-{self.run}", "stage": self.stage, "canceled": self.canceled, "message": self.message}


class HfJobs:
    """Submit, follow, and inspect jobs of one namespace."""

    def __init__(self, api: Any, namespace: str, say: Say, root: Path | None = None):
        self.api = api
        self.namespace = namespace
        self.say = say
        self.registry = HubRegistry(api, say=say)
        self.root = root  # the git repository applied: which of two commits is newer (commit_order)

    # ------------------------------------------------------------------------------------------ lookup
    def jobs_for(self, label: str) -> list[Any]:
        return list(
            retry(
                lambda: list(self.api.list_jobs(labels={"tuneform-job": label}, namespace=self.namespace)), what="list jobs", say=self.say
            )
        )

    def active_job(self, label: str) -> Any | None:
        """A job for this label that has not failed (SCHEDULING, RUNNING, COMPLETED), newest first."""
        return next((j for j in self.jobs_for(label) if j.status.stage in ACTIVE), None)

    def run_jobs(self, repo: str) -> list[Any]:
        """Every job of the run that publishes to `repo` (its `tuneform-repo` label), any key."""
        return list(
            retry(
                lambda: list(self.api.list_jobs(labels={"tuneform-repo": repo_label(repo)}, namespace=self.namespace)),
                what="list the run's jobs",
                say=self.say,
            )
        )

    def newer_work(self, repo: str, ours: str | None) -> str | None:
        """What a newer commit than `ours` already did for this run (a job not failed, or the version
        on main), as words; None when nothing did. A merge applied late must neither train its
        stale content nor cancel the newer commit's job: git ancestry decides, not arrival order."""
        for job in self.run_jobs(repo):
            commit = (getattr(job, "labels", None) or {}).get("tuneform-git")
            if job.status.stage in ACTIVE and commit_order(self.root, ours, commit) == "newer":
                return f"job {job.id} ({job.status.stage}) of commit {commit}"
        on_main = self.registry.main(repo)
        version = self.registry.get(repo, on_main) if on_main else None
        if version is not None and commit_order(self.root, ours, version.commit) == "newer":
            return f"{tag_of(version.key)} on main of {repo}, trained from commit {(version.commit or '')[:12]}"
        return None

    def url(self, job_id: str) -> str:
        return job_url(self.api.endpoint, self.namespace, job_id)

    # ---------------------------------------------------------------------------------------- submit
    def check_readable(self, repos: list[tuple[str, str]]) -> None:
        """The job's token must read the base model and Hub datasets (gated ones included)."""
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        for repo_type, repo_id in repos:
            try:
                self.api.auth_check(repo_id, repo_type=repo_type)
            except GatedRepoError:
                raise HfJobsError(
                    f"{repo_type} {repo_id} is gated and HF_TOKEN's user has no access: request access on its page, then apply again"
                ) from None
            except RepositoryNotFoundError:
                raise HfJobsError(
                    f"{repo_type} {repo_id} does not exist or HF_TOKEN cannot read it: check the id, or use a token that can read it"
                ) from None
            except hub_failures() as exc:
                if http_status(exc) is None or http_status(exc) in (401, 402, 403, 429) or (http_status(exc) or 0) >= 500:
                    raise HfJobsError(explain(exc, f"checking access to {repo_id}")) from None
                raise

    def claim_holder(self, repo: str, key: str) -> tuple[str | None, str | None]:
        """(the claim branch's head commit, who holds the claim): (None, None) without a branch;
        a head without a record (a branch just created, or left by an older tuneform) is free."""
        from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

        branch = claim_branch(key)
        refs = retry(lambda: self.api.list_repo_refs(repo), what="read the claim", say=self.say)
        head = next((b.target_commit for b in refs.branches if b.name == branch), None)
        if head is None:
            return None, None
        try:
            path = self.api.hf_hub_download(repo, CLAIM_FILE, revision=head)
        except (EntryNotFoundError, RevisionNotFoundError):
            return head, None
        try:
            return head, str(json.loads(Path(path).read_text())["holder"])
        except (ValueError, KeyError, TypeError):
            return head, None

    def claim(self, repo: str, key: str, label: str, holder: str) -> str | None:
        """Claim the key for `holder`; who holds it when that is another apply (None: `holder` does).

        The claim is a commit on branch tuneform/claim-<key12> whose file names its holder, made
        with `parent_commit` = the branch head read just before: of two applies only one commit
        lands, and an apply whose answer was lost reads its own name there and goes on. A claim of
        another holder whose jobs for this label all failed is taken over the same way."""
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError

        branch = claim_branch(key)
        record = json.dumps({"holder": holder, "run": tag_of(key)}).encode()
        retry(lambda: self.api.create_branch(repo, branch=branch, exist_ok=True), what="create the claim branch", say=self.say)
        for _ in range(3):  # a free claim, or one taken over; a lost race re-reads who won
            head, current = self.claim_holder(repo, key)
            if current == holder:
                return None
            if current is not None:
                jobs = self.jobs_for(label)
                if any(j.status.stage in ACTIVE for j in jobs) or (not jobs and not self._abandoned(repo, head)):
                    return current
            try:
                retry(
                    lambda head=head: self.api.create_commit(  # type: ignore[misc]
                        repo,
                        [CommitOperationAdd(CLAIM_FILE, record)],
                        commit_message=f"claim {tag_of(key)} for {holder}",
                        revision=branch,
                        parent_commit=head,
                    ),
                    what="claim",
                    say=self.say,
                )
                return None
            except HfHubHTTPError as exc:
                if exc.response.status_code not in (
                    409,
                    412,
                ):  # moved since read: whose claim landed (ours, its answer lost?) is read again
                    raise
        return self.claim_holder(repo, key)[1] or "another apply"

    def _abandoned(self, repo: str, head: str | None) -> bool:
        """Whether the claim at commit `head` is older than CLAIM_ABANDONED_AFTER_S: the date of
        the commit that last wrote its claim file (one request, not the branch's history)."""
        if head is None:
            return False
        info = retry(
            lambda: self.api.get_paths_info(repo, [CLAIM_FILE], revision=head, expand=True), what="read the claim's age", say=self.say
        )
        last = getattr(info[0], "last_commit", None) if info else None
        made = last.date if last is not None else None
        return made is not None and time.time() - made.timestamp() > CLAIM_ABANDONED_AFTER_S

    def release(self, repo: str, key: str) -> None:
        """Drop the key's claim and bundle branches: a later apply of that key submits again."""
        self.registry.delete_branches(repo, [claim_branch(key), jobs_branch(key)])

    def upload(self, repo: str, key: str, bundle: Path, wheel: Path) -> str:
        """Bundle + wheel on a fresh branch tuneform/jobs/<key12> (one commit); that commit's id,
        which the job downloads by, so a later push to the branch cannot change what it runs."""
        from huggingface_hub import CommitOperationAdd

        branch = jobs_branch(key)
        try:
            self.api.delete_branch(repo, branch=branch)
        except hub_failures():
            pass  # usually absent; create_branch below fails loudly if the Hub is really down
        retry(lambda: self.api.create_branch(repo, branch=branch, exist_ok=True), what=f"create branch {branch}", say=self.say)
        ops = [
            CommitOperationAdd(f"{JOB_FOLDER}/bundle/{p.relative_to(bundle).as_posix()}", str(p))
            for p in sorted(bundle.rglob("*"))
            if p.is_file()
        ]
        ops.append(CommitOperationAdd(f"{JOB_FOLDER}/{wheel.name}", str(wheel)))
        commit = retry(
            lambda: self.api.create_commit(repo, ops, commit_message=f"tuneform job bundle for {tag_of(key)}", revision=branch),
            what="upload the job bundle",
            say=self.say,
        )
        return str(commit.oid)

    def submit(
        self,
        *,
        repo: str,
        key: str,
        label: str,
        revision: str,
        wheel_sha256: str,
        image: str,
        flavor: str,
        timeout: int,
        token: str,
        git_sha: str | None,
        name: str,
        tracker: str = "none",
        tracker_secrets: dict[str, str] | None = None,
    ) -> Submitted:
        """Start the job. `tracker` (training.report_to) has its package installed with the wheel;
        `tracker_secrets` (its credentials, by environment variable name) go in `secrets` beside HF_TOKEN."""
        labels = {
            "tuneform-run": key[:12],
            "tuneform-job": label,
            "tuneform-git": (git_sha or "none")[:12],
            "tuneform-repo": repo_label(repo),
        }
        env = {
            "TUNEFORM_REPO": repo,
            "TUNEFORM_REVISION": revision,  # the bundle's commit, not its branch
            "TUNEFORM_WHEEL_SHA256": wheel_sha256,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        if tracker != "none":
            env["TUNEFORM_TRACKER"] = tracker  # the wheel's extra of that name: the tracker's package

        def call() -> Any:
            return self.api.run_job(
                image=image,
                command=["bash", "-c", CONTAINER_SCRIPT],
                env=env,
                secrets={**(tracker_secrets or {}), "HF_TOKEN": token},
                flavor=flavor,
                timeout=timeout,
                labels=labels,
                name=name,
                namespace=self.namespace,
            )

        job = retry(call, what="submit the job", landed=lambda: self.active_job(label), say=self.say)
        return Submitted(job.id, self.url(job.id), self.namespace, True, getattr(job, "created_at", None), git_sha)

    # -------------------------------------------------------------------------------------- supersede
    def supersede(self, repo: str, key: str, submitted: Submitted) -> list[Superseded]:
        """Cancel the jobs of this output repo that train another run key and are still queued or
        running: the job just submitted replaces them. Never a job of this key (that is the same
        submission), one that has ended, or one of a newer apply: a job whose commit descends from
        ours; when git cannot tell (the same commit, diverged or unknown here), one submitted after
        ours. A cancel that fails (the job ended meanwhile, 404...) comes back with canceled=False and
        why; listing the jobs failing raises."""
        from huggingface_hub.errors import JobNotFoundError

        found = self.run_jobs(repo)
        out: list[Superseded] = []
        for job in found:
            labels = getattr(job, "labels", None) or {}
            run = labels.get("tuneform-run") or ""
            stage = job.status.stage if job.status else ""
            if job.id == submitted.job_id or not run or run == key[:12] or stage not in CANCELABLE:
                continue
            order = commit_order(self.root, submitted.git, labels.get("tuneform-git"))
            created = getattr(job, "created_at", None)
            later = created is not None and submitted.created_at is not None and created > submitted.created_at
            if order == "newer" or (order is None and later):
                continue  # a newer apply submitted it: it supersedes ours, not the other way round
            try:
                retry(
                    functools.partial(self.api.cancel_job, job_id=job.id, namespace=self.namespace),
                    what=f"cancel job {job.id}",
                    say=self.say,
                )
                out.append(Superseded(job.id, run, stage, True))
                self.release(repo, run)  # its claim and bundle branches: a later apply of that key submits again
            except JobNotFoundError:
                out.append(Superseded(job.id, run, stage, False, "it ended or was deleted meanwhile (404)"))
            except hub_failures() as exc:
                why = explain(exc, "cancel")
                out.append(Superseded(job.id, run, stage, False, why))
        return out

    # ---------------------------------------------------------------------------------------- follow
    def follow(self, job_id: str, on_line: Say, poll: float = 1.0) -> Any:
        """Stage changes and log lines (each once, across reconnects) until the job ends; its JobInfo."""
        seen = 0
        stage = None
        lines: list[str] = []
        while True:
            info = retry(lambda: self.api.inspect_job(job_id=job_id, namespace=self.namespace), what="inspect the job", say=self.say)
            if info.status.stage != stage:
                stage = info.status.stage
                on_line(f"[job {job_id}] {stage}" + (f": {info.status.message}" if info.status.message else ""))
            if stage in ("SCHEDULING",):
                time.sleep(poll)
                continue
            count = 0
            try:
                for line in self.api.fetch_job_logs(job_id=job_id, namespace=self.namespace, follow=stage not in TERMINAL):
                    count += 1
                    if count > seen:
                        seen = count
                        lines.append(line)
                        on_line(line)
            except hub_failures() as exc:  # a cut stream: reconnect, the server replays, we skip what we showed
                if http_status(exc) not in (None, 429, 500, 502, 503, 504):
                    raise
                time.sleep(poll)
            if stage in TERMINAL:
                info.log_tail = lines[-15:]
                return info
            time.sleep(min(poll, 0.2))


def commit_order(root: Path | None, ours: str | None, theirs: str | None) -> str | None:
    """How commit `theirs` (a job's `tuneform-git` label, 12 hex, or a manifest's SHA) relates to
    `ours` in the repository at `root`: "older" (an ancestor of ours), "newer" (a descendant), or
    None: the same commit, diverged histories, or a commit this clone does not have."""
    if root is None or not ours or not theirs or not re.fullmatch(r"[0-9a-f]{7,40}", theirs) or ours.startswith(theirs):
        return None

    def ancestor(first: str, second: str) -> bool:
        return subprocess.run(["git", "merge-base", "--is-ancestor", first, second], cwd=root, capture_output=True).returncode == 0

    if ancestor(theirs, ours):
        return "older"
    return "newer" if ancestor(ours, theirs) else None


def claimant(facts: GitFacts) -> str:
    """Who claims a key: the git commit being applied, so a re-run of that commit's apply (the
    workflow's concurrency group runs one at a time) recognises the claim an earlier attempt made
    but never heard back about; with uncommitted changes or no git, only this process."""
    if facts.commit and not facts.dirty:
        return f"git {facts.commit}"
    return f"apply {uuid.uuid4().hex}"


def tracker_secrets(tracker: str, names: list[str]) -> dict[str, str]:
    """The job secrets of the run's tracker: each of `names` (what [tool.tuneform.tracker_secrets]
    lists for it) with its value from apply's environment. One that is unset or empty stops apply
    before anything is claimed or submitted: a job that cannot log where the run file asks would
    be paid for and its curves lost."""
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise BackendError(
            f"report_to {tracker}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in this environment, "
            f"and [tool.tuneform.tracker_secrets] {tracker} names {'it' if len(missing) == 1 else 'them'} as the job's secrets: "
            "export them (on GitHub: secrets of the training environment, passed on by apply.yml), or set report_to: none; nothing was submitted"
        )
    return {name: os.environ[name] for name in names}


def namespace_of(repo: str) -> str:
    """Jobs run (and bill) in the output repo's namespace: the token writes there anyway."""
    return repo.split("/", 1)[0]


def job_ref(root: Path, ref: str) -> tuple[str, str] | None:
    """(namespace, job id) of an HF Jobs job: `NAMESPACE/ID`, or an ID (24 hex) in [tool.tuneform]
    namespace (else the token's user); None when `ref` names no HF job."""
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[0-9a-f]{24}", ref):
        namespace, job_id = ref.split("/", 1)
        return namespace, job_id
    if not re.fullmatch(r"[0-9a-f]{24}", ref):
        return None
    from tuneform.registry.hub import default_namespace

    return default_namespace(root), ref


def _asked(what: str, call: Callable[[], Any]) -> Any:
    """A Jobs API call for status, logs or cancel; a Hub failure as a sentence that says what to do."""
    from huggingface_hub.errors import JobNotFoundError

    try:
        return call()
    except JobNotFoundError:
        raise BackendError(f"{what}: no such job", fix="check the id and namespace: NAMESPACE/JOB_ID") from None
    except hub_failures() as exc:
        raise BackendError(explain(exc, what)) from None


class HfJobsBackend:
    """Backend `hf-jobs`: a container on Hugging Face Jobs, versions in the output repo on the Hub."""

    name = "hf-jobs"

    def registry(self, root: Path) -> Registry | None:
        """The Hub registry (HF_TOKEN when set: public repos are readable without), or None offline
        (the client's HF_HUB_OFFLINE): plan then decides from git alone."""
        from tuneform.core.hub import hub_api, hub_offline

        if hub_offline():
            return None
        return HubRegistry(hub_api())

    def prices(self) -> tuple[FlavorTable, str | None]:
        """Current HF Jobs prices when the Hub is reachable (the offline table otherwise); a
        message when the Hub could not be asked."""
        from tuneform.core.hub import hub_api, hub_offline
        from tuneform.estimate.catalog import FLAVORS, hub_flavor_table

        return (FLAVORS, None) if hub_offline() else hub_flavor_table(hub_api())

    def _connect(self, ctx: ApplyContext) -> tuple[Any, str, HubRegistry]:
        """The API with HF_TOKEN (which apply needs: jobs bill the namespace), its token, the registry."""
        token = os.environ.get("HF_TOKEN")
        if not token:
            raise BackendError("backend hf-jobs needs HF_TOKEN: a write token of the output repo's namespace (never put it in a run file)")
        from huggingface_hub.utils import disable_progress_bars

        from tuneform.core.hub import hub_api

        disable_progress_bars()  # apply prints its own lines; upload bars would interleave with them
        api = hub_api(token)
        return api, token, HubRegistry(api, say=ctx.say)

    def restore(self, run: PlannedRun, ctx: ApplyContext) -> Version | None:
        """Main becomes the tagged version by server-side copy ($0, no job), from the main commit read here."""
        repo, key = run.check.output_repo, run.check.key
        assert repo and key
        _, _, registry = self._connect(ctx)
        try:
            commit = registry.set_main(repo, key, run.check.path, parent_commit=registry.main_commit(repo))
        except RegistryError:
            raise
        except Exception as exc:
            raise BackendError(explain(exc, f"restoring {tag_of(key)}")) from None
        ctx.say(f"restored {repo} main to {tag_of(key)} (commit {commit[:12]}; server-side copy, no job, $0)")
        return registry.get(repo, key)

    def submit(self, run: PlannedRun, ctx: ApplyContext) -> Submission:
        """Submit the job once: not when a job for its label is in flight, its tag is published, a
        newer commit (by git ancestry) already has a job or the version on main for this run, or
        another apply holds its claim."""
        check = run.check
        assert check.output_repo and check.key and check.spec is not None and check.image
        repo, key, spec = check.output_repo, check.key, check.spec
        estimate = check.sizing.estimate if check.sizing else None
        if estimate is None:
            raise BackendError("no estimate for this run, so no flavor or timeout: tuneform plan says why")
        api, token, registry = self._connect(ctx)
        secrets = tracker_secrets(spec.training.report_to, ctx.plan.settings.secrets_of(spec.training.report_to))
        jobs = HfJobs(api, namespace_of(repo), ctx.say, ctx.root)
        label = job_key(key, run.action, check.eval_hash)
        facts = git_facts(ctx.root, check.path, None)
        try:
            active = jobs.active_job(label)
            if active is not None:
                return Submission(False, f"already submitted: job {active.id} ({active.status.stage}) {jobs.url(active.id)}", active.id)
            if run.action != "evaluate" and registry.get(repo, key) is not None:
                return Submission(False, f"already submitted: {tag_of(key)} is published in {repo}")
            newer = jobs.newer_work(repo, facts.commit)
            if newer is not None:
                return Submission(
                    False,
                    f"not submitted: commit {(facts.commit or '')[:12]} is older than {newer}, which supersedes it (nothing stale trains)",
                )
            readable = [] if spec.model.is_local else [("model", spec.model.id)]
            readable += [("dataset", src.dataset) for src in spec.data.train if isinstance(src, HubSource)]
            jobs.check_readable(readable)
            registry.ensure_repo(repo, spec.output.private)
            holder = jobs.claim(repo, key, label, claimant(facts))
            if holder is not None:
                raise BackendError(
                    f"another apply ({holder}) is submitting {tag_of(key)} and holds branch {claim_branch(key)} in {repo}: "
                    "nothing was submitted; apply again once its job shows (tuneform status); a claim with no job is taken over "
                    f"after {CLAIM_ABANDONED_AFTER_S // 3600} hours, or delete that branch now if no apply is running"
                )
        except (BackendError, RegistryError):
            raise
        except Exception as exc:
            raise BackendError(explain(exc, "preparing the job")) from None

        try:
            with tempfile.TemporaryDirectory(prefix="tuneform-submit-") as tmp:
                bundle = ctx.bundle(run, registry, Path(tmp) / "bundle")
                wheel = build_wheel(Path(tmp) / "wheel")
                revision = jobs.upload(repo, key, bundle.path, wheel)
                wheel_sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
            assert run.timeout is not None  # the plan sets one for every run that submits a job
            submitted = jobs.submit(
                repo=repo,
                key=key,
                label=label,
                revision=revision,
                wheel_sha256=wheel_sha256,
                image=check.image,  # as planned: inside [tool.tuneform] allowed_images, or the plan blocked the run
                flavor=estimate.flavor.name,
                timeout=run.timeout.seconds,
                token=token,
                git_sha=bundle.run.git.commit,
                name=f"tuneform-{check.name}"[:100],
                tracker=spec.training.report_to,
                tracker_secrets=secrets,
            )
        except (BackendError, RegistryError):
            jobs.release(repo, key)
            raise
        except Exception as exc:
            jobs.release(repo, key)
            raise BackendError(explain(exc, "submitting the job")) from None
        ctx.say(
            f"submitted job {submitted.job_id} ({run.action} {check.path}) on {estimate.flavor.name}, time limit {run.timeout.text}: {submitted.url}"
        )
        superseded, note = _supersede(jobs, repo, key, submitted, ctx.say)
        return Submission(True, f"submitted: {submitted.url}{note}", submitted.job_id, superseded, (jobs, registry, submitted), note)

    def follow(self, run: PlannedRun, submission: Submission, ctx: ApplyContext) -> Ended:
        """Follow the job to its end; its claim is released either way (a failed attempt holds none)."""
        jobs, registry, submitted = submission.handle
        repo, key = run.check.output_repo, run.check.key
        try:
            info = jobs.follow(submitted.job_id, ctx.say)
        except Exception as exc:
            raise BackendError(
                explain(exc, f"following job {submitted.job_id} (it may still run: tuneform status {submitted.job_id})")
            ) from None
        jobs.release(repo, key)
        stage = info.status.stage
        version = registry.get(repo, key)
        if stage == "COMPLETED":
            return Ended(True, "", version)
        tail = "\n".join(f"    {line}" for line in getattr(info, "log_tail", [])[-10:])
        why = info.status.message or stage
        hint = " (raise compute.timeout or shorten the run)" if "timeout" in why.lower() else ""
        return Ended(False, f"job {submitted.job_id} ended {stage}: {why}{hint}; last log lines:\n{tail}", version)

    def find_job(self, root: Path, ref: str) -> JobRef | None:
        """`NAMESPACE/ID`, or an ID in the repository's namespace (else the token's user)."""
        found = job_ref(root, ref)
        return JobRef(found[1], found[0]) if found else None

    def _api(self) -> Any:
        from tuneform.core.hub import hub_api

        return hub_api()

    def status(self, root: Path, job: JobRef) -> dict[str, Any]:
        info = _asked(f"inspecting job {job.id}", lambda: self._api().inspect_job(job_id=job.id, namespace=job.where))
        return {
            "id": info.id,
            "stage": info.status.stage,
            "message": info.status.message,
            "flavor": info.flavor,
            "labels": info.labels,
            "url": info.url,
            "backend": self.name,
        }

    def logs(self, root: Path, job: JobRef, lines: int | None) -> list[str]:
        api = self._api()
        return list(
            _asked(f"fetching logs of job {job.id}", lambda: list(api.fetch_job_logs(job_id=job.id, namespace=job.where, tail=lines)))
        )

    def cancel(self, root: Path, job: JobRef) -> tuple[bool, str]:
        api = self._api()
        before = _asked(f"inspecting job {job.id}", lambda: api.inspect_job(job_id=job.id, namespace=job.where))
        if before.status.stage in TERMINAL:
            return False, before.status.stage
        _asked(f"canceling job {job.id}", lambda: api.cancel_job(job_id=job.id, namespace=job.where))
        return True, "CANCELED"


def _supersede(jobs: HfJobs, repo: str, key: str, submitted: Submitted, say: Say) -> tuple[list[dict[str, Any]], str]:
    """Cancel the run's older jobs still queued or running (another key: this apply replaced them).
    Failing to cancel, or to list them, is a warning: the new job is submitted either way."""
    try:
        found = jobs.supersede(repo, key, submitted)
    except Exception as exc:
        say(f"warning: could not look for superseded jobs of {repo}: {explain(exc, 'listing jobs')}")
        return [], ""
    notes = []
    for old in found:
        if old.canceled:
            say(f"canceled superseded job {old.job_id} (run-{old.run})")
            notes.append(f"canceled superseded job {old.job_id} (run-{old.run})")
        else:
            say(f"warning: could not cancel superseded job {old.job_id} (run-{old.run}, {old.stage}): {old.message}")
            notes.append(f"could not cancel superseded job {old.job_id} (run-{old.run})")
    return [old.as_json() for old in found], "".join(f"; {n}" for n in notes)
