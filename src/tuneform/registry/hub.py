"""The registry of backend `hf-jobs`: versions of a run live in the Hub model repo of `output.repo`.

    tag  run-<key12>                   one trained version (immutable): the model files at the root,
                                       plus tuneform/manifest.json, tuneform/report.{md,json}, loss.png,
                                       and tuneform/logs/ (a tracker's files, train/tracking.py)
    branch main                        the version git main asks for (its tuneform/manifest.json names the key)
    tuneform/evals/<hash>/report.json  scores of a version under changed evals (on main)
    branch tuneform/work-<key12>       the newest training checkpoint of a job (job/checkpoints.py);
                                       deleted once the version is published
    branch tuneform/jobs/<key12>       the bundle and wheel of a submitted job (backends/hfjobs.py);
                                       its tuneform-job/bundle/run.json carries the plan's estimate;
                                       deleted once the version is published (it holds training data)
    branch tuneform/claim-<key12>      apply's claim of a key (backends/hfjobs.py); deleted with it

`spent` (the monthly cap) counts each tag's recorded cost, each evaluate job's recorded cost (the
report.json it wrote under tuneform/evals/ on main: it tags nothing), and each jobs branch whose
work is not published yet (no tag; for an evaluate job, no scores under its evals) at its
estimate, dated by the branch's commit: the Hub keeps no other record of a job in flight that a
plan may read.

Writes go through `core.hub.retry`: the client does not retry create_commit, create_repo, create_tag or
run_job, so every write here is retried on 429 / 5xx / connection errors, and before each retry
the state is read again (a commit that landed although its answer was lost is not made twice).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneform.core.hub import http_status, hub_api, hub_failures, retry
from tuneform.core.manifest import HUB_MANIFEST, PASSED, Manifest
from tuneform.registry.protocol import MainMoved, Published, RegistryError, Spend, Version, billed_usd, main_moved, since_then
from tuneform.runfile.spec import GGUF_FOLDER, MERGED_FOLDER

TAG_PREFIX = "run-"
JOBS_PREFIX = "tuneform/jobs/"
EVALS_FOLDER = "tuneform/evals"
JOB_FOLDER = "tuneform-job"
JOB_RUN_JSON = f"{JOB_FOLDER}/bundle/run.json"


def tag_of(key: str) -> str:
    return f"{TAG_PREFIX}{key[:12]}"


def jobs_branch(key: str) -> str:
    """The branch a submitted job's bundle and wheel live on (backends/hfjobs.py uploads it)."""
    return f"{JOBS_PREFIX}{key[:12]}"


def claim_branch(key: str) -> str:
    """Where apply claims a key before submitting its job (backends/hfjobs.py)."""
    return f"tuneform/claim-{key[:12]}"


def default_namespace(root: Path) -> str:
    """Where a bare job id lives: [tool.tuneform] namespace of the repository, else the token's user."""
    from tuneform.runfile.settings import settings_or_defaults
    from tuneform.runfile.trees import WorkTree

    namespace = settings_or_defaults(WorkTree(root)).namespace
    return str(namespace or hub_api().whoami()["name"])


class HubRegistry:
    """The Registry protocol (registry/protocol.py) over Hub model repos: main moves by a commit whose
    `parent_commit` is the main commit the caller read, so the Hub refuses it (412) when main moved."""

    def __init__(self, api: Any, say: Callable[[str], None] | None = None):
        self.api = api
        self.say = say

    # ------------------------------------------------------------------------------------------ reads
    def _errors(self, exc: Exception, repo: str) -> RegistryError:
        """A Hub failure reading `repo` as a RegistryError that says what to do, chosen by the
        client's typed error; the HTTP status only where the client has no type for it (401 of a
        refused token, other statuses)."""
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        status = exc.response.status_code if isinstance(exc, HfHubHTTPError) else None
        if isinstance(exc, GatedRepoError):
            return RegistryError(f"{repo} is gated", fix="accept its access conditions on the Hub with the account of HF_TOKEN")
        if isinstance(exc, RepositoryNotFoundError) and self.api.token is None:
            return RegistryError(f"{repo} is not readable without a token: set HF_TOKEN to a token that can read it")
        if status == 401:
            return RegistryError(f"the Hub refused HF_TOKEN reading {repo} (401): set HF_TOKEN to a valid token")
        if isinstance(exc, RepositoryNotFoundError):
            return RegistryError(f"{repo} is not readable with this HF_TOKEN: use a token that can read it")
        if status is None:
            return RegistryError(f"the Hub is not reachable ({type(exc).__name__}: {exc}): check HF_ENDPOINT and the network")
        return RegistryError(f"reading {repo} on the Hub failed (HTTP {status}): {exc}")

    def _missing_repo(self, exc: Exception) -> bool:
        """A repo that does not exist: RepositoryNotFoundError with a token (without one, private
        and absent look alike; a refused token is a plain 401, a gated repo exists)."""
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        return isinstance(exc, RepositoryNotFoundError) and not isinstance(exc, GatedRepoError) and self.api.token is not None

    def _resolve(self, repo: str, revision: str) -> str | None:
        """A branch or tag -> its commit (None: no such repo or ref). Asked every time: the download
        cache would answer a ref from an earlier read when the Hub errors, and plan must not act on
        a stale main."""
        if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
            return revision
        refs = self._refs(repo)
        if refs is None:
            return None
        found = {b.name: b.target_commit for b in refs.branches} | {t.name: t.target_commit for t in refs.tags}
        return found.get(revision)

    def _refs(self, repo: str) -> Any:
        """The repo's branches and tags, read now (None: no such repo)."""
        try:
            return self.api.list_repo_refs(repo)
        except hub_failures() as exc:
            if self._missing_repo(exc):
                return None
            raise self._errors(exc, repo) from None

    def _manifest(self, repo: str, revision: str) -> Manifest | None:
        """tuneform/manifest.json at a revision; None when the repo, revision or file is absent."""
        from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

        commit = self._resolve(repo, revision)
        if commit is None:
            return None
        try:
            path = self.api.hf_hub_download(repo, HUB_MANIFEST, revision=commit)
        except (EntryNotFoundError, RevisionNotFoundError):
            return None
        except hub_failures() as exc:
            if self._missing_repo(exc):
                return None
            raise self._errors(exc, repo) from None
        try:
            return Manifest.read_text(Path(path).read_text())
        except ValueError as exc:
            raise RegistryError(f"{repo}@{revision}: {HUB_MANIFEST} is not a tuneform manifest ({exc})") from None

    def get(self, repo: str, key: str) -> Version | None:
        manifest = self._manifest(repo, tag_of(key))
        if manifest is None or manifest.run_key != key:
            return None  # absent, or another key sharing the 12-hex prefix
        return Version(key, manifest.status or PASSED, manifest)

    def main(self, repo: str) -> str | None:
        manifest = self._manifest(repo, "main")
        return manifest.run_key if manifest else None

    def main_commit(self, repo: str) -> str | None:
        """The commit main points at (None: no such repo)."""
        refs = self._refs(repo)
        return None if refs is None else next((b.target_commit for b in refs.branches if b.name == "main"), None)

    def tags(self, repo: str) -> dict[str, str]:
        refs = self._refs(repo)
        return {} if refs is None else {t.name: t.target_commit for t in refs.tags}

    def versions(self, repo: str) -> list[Version]:
        found = []
        for name, commit in self.tags(repo).items():
            if name.startswith(TAG_PREFIX):
                manifest = self._manifest(repo, commit)
                if manifest and manifest.run_key:
                    found.append(Version(manifest.run_key, manifest.status or PASSED, manifest))
        return sorted(found, key=lambda v: v.created or "")

    def has_evals(self, repo: str, key: str, eval_hash: str) -> bool:
        path = f"{EVALS_FOLDER}/{eval_hash}/report.json"
        for revision in ("main", tag_of(key)):
            try:
                if self.api.file_exists(repo, path, revision=revision):
                    return True
            except hub_failures():  # no such repo or tag, or the Hub failed: not known to be scored
                continue
        return False

    def spent(self, repos: Sequence[str], since: datetime) -> list[Spend]:
        """What the jobs of `repos` cost since `since` (the monthly cap): every version tagged since
        then and every evaluate job finished since then at its recorded cost, and every job in
        flight submitted since then at its estimate."""
        out: list[Spend] = []
        for repo in dict.fromkeys(repos):
            out += [
                Spend(repo, v.key, billed_usd(v.manifest), False, v.created) for v in self.versions(repo) if since_then(v.created, since)
            ]
            refs = self._refs(repo)
            main = next((b.target_commit for b in refs.branches if b.name == "main"), None) if refs is not None else None
            if main is not None:
                out += [s for s in self._evaluations(repo, main) if since_then(s.when, since)]
            tags = {t.name for t in refs.tags} if refs is not None else set()
            for branch in refs.branches if refs is not None else []:
                if branch.name.startswith(JOBS_PREFIX):
                    running = self._in_flight(repo, branch.name, branch.target_commit, tags)
                    if running is not None and since_then(running.when, since):
                        out.append(running)
        return out

    def _evaluations(self, repo: str, commit: str) -> list[Spend]:
        """What each finished evaluate job cost: the manifest it wrote as report.json under
        tuneform/evals/<hash>/ at `commit` (main) records its cost and when it ran."""
        from huggingface_hub.errors import EntryNotFoundError

        try:
            tree = self.api.list_repo_tree(repo, path_in_repo=EVALS_FOLDER, recursive=True, revision=commit)
            reports = [entry.path for entry in tree if entry.path.endswith("/report.json")]
            found = []
            for path in reports:
                text = Path(self.api.hf_hub_download(repo, path, revision=commit)).read_text()
                try:
                    manifest = Manifest.read_text(text)
                except ValueError as exc:
                    raise RegistryError(
                        f"{repo}: {path} on main is not an evaluate job's report ({exc})",
                        fix=f"delete {path} from main if no tuneform job wrote it",
                    ) from None
                found.append(Spend(repo, manifest.run_key or "", billed_usd(manifest), False, manifest.created))
        except EntryNotFoundError:
            return []  # no version was ever scored under changed evals
        except hub_failures() as exc:
            raise self._errors(exc, repo) from None
        return found

    def _in_flight(self, repo: str, branch: str, commit: str, tags: set[str]) -> Spend | None:
        """The job whose bundle is on jobs branch `branch` at `commit`, at its estimate, while its
        work is unpublished (None once it is, or when the branch holds no bundle). run.json is
        job/bundle.py's RunFacts, read loosely: the registry sits below the job and needs four keys."""
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = self.api.hf_hub_download(repo, JOB_RUN_JSON, revision=commit)
            info = self.api.get_paths_info(repo, [JOB_RUN_JSON], revision=commit, expand=True)
        except EntryNotFoundError:
            return None  # an upload cut short: no job was submitted from it
        except hub_failures() as exc:
            raise self._errors(exc, repo) from None
        try:
            facts = json.loads(Path(path).read_text())
            key, action, eval_hash = str(facts["run_key"]), facts.get("action"), facts.get("eval_hash")
            usd = float((facts.get("estimate") or {}).get("usd") or 0.0)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(
                f"{repo}@{branch}: {JOB_RUN_JSON} is not a job bundle's run.json ({type(exc).__name__}: {exc})",
                fix=f"delete branch {branch} if no job of it is running",
            ) from None
        done = self.has_evals(repo, key, eval_hash) if action == "evaluate" and eval_hash else tag_of(key) in tags
        if done:
            return None
        last = getattr(info[0], "last_commit", None) if info else None
        return Spend(repo, key, usd, True, last.date.isoformat() if last is not None and last.date else None)

    def download(self, repo: str, key: str, dest: Path) -> Path:
        """The model files of a version into `dest`: the root export, the one its evals score
        (tuneform/ and the merged/ and gguf/ exports left out)."""
        ignore = ["tuneform/*", ".gitattributes", f"{MERGED_FOLDER}/*", f"{GGUF_FOLDER}/*"]
        self.api.snapshot_download(repo, revision=tag_of(key), local_dir=str(dest), ignore_patterns=ignore)
        return dest

    # ----------------------------------------------------------------------------------------- writes
    def ensure_repo(self, repo: str, private: bool) -> None:
        """Create the model repo when it is missing (private per output.private); never changes an existing one."""
        if self.main_commit(repo) is not None:
            return
        retry(
            lambda: self.api.create_repo(repo, private=private, exist_ok=True),
            what=f"create {repo}",
            landed=lambda: True if self.main_commit(repo) else None,
            say=self.say,
        )

    def _files_at(self, repo: str, revision: str) -> set[str]:
        return set(self.api.list_repo_files(repo, revision=revision))

    def _commit(
        self, repo: str, operations: list[Any], message: str, revision: str, parent_commit: str | None, landed: Callable[[], str | None]
    ) -> str:
        def call() -> str:
            return str(self.api.create_commit(repo, operations, commit_message=message, revision=revision, parent_commit=parent_commit).oid)

        return retry(call, what=f"commit to {repo}@{revision}", landed=landed, say=self.say)

    def _head_with_key(self, repo: str, revision: str, key: str) -> str | None:
        """The commit `revision` points at when its manifest names `key` (a commit that landed)."""
        commit = self._resolve(repo, revision)
        manifest = self._manifest(repo, commit) if commit else None
        if manifest is None or manifest.run_key != key:
            return None
        return commit

    def _tag(self, repo: str, key: str, commit: str, message: str) -> None:
        """Tag a version: 409 (it exists) is success when the tag holds this key."""

        from huggingface_hub.errors import HfHubHTTPError

        def call() -> None:
            try:
                self.api.create_tag(repo, tag=tag_of(key), revision=commit, tag_message=message)
            except HfHubHTTPError as exc:
                if exc.response.status_code != 409:  # the client has no type for a conflict
                    raise
                if self.get(repo, key) is None:
                    raise RegistryError(f"{repo} has a tag {tag_of(key)} that is not run {key}: delete it or rename the run") from None

        retry(call, what=f"tag {tag_of(key)}", landed=lambda: True if self.get(repo, key) else None, say=self.say)

    def publish(
        self,
        repo: str,
        key: str,
        folder: Path,
        manifest: Manifest,
        *,
        parent_commit: str | None,
        move_main: bool,
        private: bool = True,
        message: str | None = None,
    ) -> Published:
        """Publish a finished folder (model files at its root) as version run-<key12>.

        The version is one commit on branch tuneform/versions/<key12> holding exactly its files,
        tagged, and the branch dropped (the tag keeps it). With `move_main` (gates passed), main
        then becomes the tagged version by server-side copy (set_main) from `parent_commit`, the
        main commit apply saw; when main moved since (412) or the gates failed, main stays where it
        is. Tagging first means a failure anywhere leaves main on a tagged version. `parent_commit`
        None means the caller saw no repo: main then must still hold no version.
        """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        existing = self.get(repo, key)
        if existing is not None:  # a job run again: tagged before, main perhaps not moved yet
            moved_main = self.main(repo) == key
            if move_main and not moved_main and parent_commit is not None:
                try:
                    self.set_main(repo, key, "", parent_commit=parent_commit)
                    moved_main = True
                except MainMoved:
                    pass
            return Published(existing, "", moved_main, f"{tag_of(key)} is already published")
        self.ensure_repo(repo, private)
        (folder / "tuneform").mkdir(parents=True, exist_ok=True)
        (folder / HUB_MANIFEST).write_text(manifest.text())
        ours = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        adds = [CommitOperationAdd(rel, str(folder / rel)) for rel in ours]
        message = message or f"{tag_of(key)}: {manifest.name} ({manifest.status})"

        def operations(revision: str) -> list[Any]:
            stale = self._files_at(repo, revision) - set(ours) - {".gitattributes"}
            return adds + [CommitOperationDelete(p) for p in sorted(stale)]

        note = ""
        moved = f"main of {repo} moved since apply planned this: tagged {tag_of(key)} only, main left where it is (plan the run file to restore it)"
        if move_main and parent_commit is None and self.main(repo) is not None:
            move_main, note = False, moved  # the repo was created and given a version since the caller looked
        base = parent_commit or self.main_commit(repo)
        # The version is committed and tagged first, on a branch of its own; main moves to it after,
        # so main never points at an untagged version (one that no restore could find again).
        branch = f"tuneform/versions/{key[:12]}"
        retry(
            lambda: self.api.create_branch(repo, branch=branch, revision=base or "main", exist_ok=True),
            what=f"create branch {branch}",
            say=self.say,
        )
        commit = self._commit(repo, operations(branch), message, branch, None, lambda: self._head_with_key(repo, branch, key))
        self._tag(repo, key, commit, message)
        self.delete_branches(repo, [branch])  # the tag keeps the commit
        version = self.get(repo, key)
        assert version is not None
        if move_main:
            try:
                on_main = self.set_main(repo, key, "", parent_commit=base, message=message)
                return Published(version, on_main, True, f"main of {repo} -> {tag_of(key)}")
            except MainMoved:
                note = moved
        return Published(version, commit, False, note or f"tagged {tag_of(key)} ({version.status}); main not moved")

    def delete_branches(self, repo: str, branches: list[str]) -> None:
        """Delete branches a finished version no longer needs; best effort (absent already, or left
        behind when the Hub fails: storage, not correctness, and a warning says which)."""
        from huggingface_hub.errors import RevisionNotFoundError

        for branch in branches:
            try:
                retry(lambda branch=branch: self.api.delete_branch(repo, branch=branch), what=f"delete branch {branch}", say=self.say)  # type: ignore[misc]
            except RevisionNotFoundError:
                pass
            except hub_failures() as exc:
                if self.say:
                    self.say(f"  warning: could not delete branch {branch} of {repo} ({type(exc).__name__}); delete it by hand")

    def set_main(self, repo: str, key: str, reason: str, *, parent_commit: str | None, message: str | None = None) -> str:
        """One commit on main, from `parent_commit` (the main commit the caller read), that makes it
        the tagged version: every file copied server side (LFS by reference), files absent at the
        tag deleted. No job, no upload of weights, $0. Main moved since: MainMoved, nothing changed."""
        from huggingface_hub import CommitOperationCopy, CommitOperationDelete

        tags = self.tags(repo)
        if tag_of(key) not in tags:
            raise RegistryError(f"{repo} has no tag {tag_of(key)}: nothing to restore")
        source = tags[tag_of(key)]
        if self.main(repo) == key:
            return source
        if parent_commit is None:  # a repo that holds the tag has a main: the caller read none
            raise main_moved(repo, key)
        tagged = self._files_at(repo, source) - {".gitattributes"}
        on_main = self._files_at(repo, parent_commit) - {".gitattributes"}
        ops: list[Any] = [CommitOperationCopy(p, p, src_revision=source) for p in sorted(tagged)]
        ops += [CommitOperationDelete(p) for p in sorted(on_main - tagged)]
        message = message or f"restore {tag_of(key)}" + (f" ({reason})" if reason else "")
        try:
            return self._commit(repo, ops, message, "main", parent_commit, lambda: self._head_with_key(repo, "main", key))
        except Exception as exc:
            if http_status(exc) == 412:  # the Hub refused: main is no longer at parent_commit
                raise main_moved(repo, key) from None
            raise

    def add_evals(self, repo: str, key: str, eval_hash: str, folder: Path) -> str:
        """Scores of version `key` under changed evals: tuneform/evals/<hash>/ on main."""
        from huggingface_hub import CommitOperationAdd

        prefix = f"{EVALS_FOLDER}/{eval_hash}"
        ops = [CommitOperationAdd(f"{prefix}/{p.relative_to(folder).as_posix()}", str(p)) for p in sorted(folder.rglob("*")) if p.is_file()]
        return self._commit(
            repo,
            ops,
            f"evals {eval_hash[:12]} for {tag_of(key)}",
            "main",
            None,
            lambda: "landed" if self.has_evals(repo, key, eval_hash) else None,
        )
