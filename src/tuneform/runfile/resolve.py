"""Facts from outside a run file that decide what it trains: revisions and content hashes.

A run key must change when the bytes a run trains on change, and only then. Local files are
hashed; Hub revisions are resolved to commit SHAs when the Hub answers. When it does not
(offline, private repo without a token), the revision is kept as written and a warning says the
key is only as stable as that name.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneform.runfile.spec import HubSource, LocalSource, Resolved, RunSpec
from tuneform.runfile.trees import Tree, TreeError, is_lfs_pointer

_SHA = re.compile(r"^[0-9a-f]{40}$")


def _client_offline() -> bool:
    from tuneform.core.hub import (
        hub_offline,  # the client's own switch, as every Hub call sees it
    )

    return hub_offline()


@dataclass(frozen=True)
class HubModel:
    """What the Hub says about a model repository: its config.json and parameter count, or why not.

    ``exists`` is True when the Hub showed the repository (even if its config could not be read:
    gated, no config.json), False when it answered that there is no such repository or revision,
    and None when it was not asked or did not answer (offline, network).
    """

    config: dict[str, Any] | None = None
    params: int | None = None
    exists: bool | None = None
    reason: str | None = None


def _answer_reason(exc: BaseException) -> str:
    """A Hub failure in a few words: its HTTP status, else the exception's class."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"HTTP {status}" if status else type(exc).__name__


@dataclass
class HubResolver:
    """Resolves Hub revisions to commit SHAs, and reads model configs, once per question, with a
    short timeout.

    `offline` skips the network entirely (plan in CI without network must stay fast).
    """

    offline: bool = field(default_factory=_client_offline)
    timeout: float = 5.0
    _cache: dict[tuple[str, str, str], tuple[str | None, str | None]] = field(default_factory=dict)
    _models: dict[tuple[str, str], HubModel] = field(default_factory=dict)

    def model(self, repo_id: str, revision: str) -> HubModel:
        """The model repository's config.json and parameter count (the safetensors headers, read
        with HTTP Range requests, never the weights): what prices a model the catalog lacks."""
        cache_key = (repo_id, revision)
        if cache_key not in self._models:
            self._models[cache_key] = self._ask_model(repo_id, revision)
        return self._models[cache_key]

    def _ask_model(self, repo_id: str, revision: str) -> HubModel:
        if self.offline:
            return HubModel(reason="offline (HF_HUB_OFFLINE)")
        from huggingface_hub.errors import (
            GatedRepoError,
            NotASafetensorsRepoError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
            SafetensorsParsingError,
        )

        from tuneform.core.hub import hub_api, hub_failures
        from tuneform.runfile import jsonsafe

        api = hub_api()
        try:
            path = api.hf_hub_download(repo_id, "config.json", revision=revision, etag_timeout=self.timeout)
            config = jsonsafe.loads(jsonsafe.decode_text(Path(path).read_bytes()))
        except GatedRepoError:  # before its base class: the repository exists
            return HubModel(exists=True, reason="a gated repository: accept its terms on the Hub and set HF_TOKEN")
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            return HubModel(exists=False, reason=f"no such model repository or revision on the Hub ({_answer_reason(exc)})")
        except RemoteEntryNotFoundError:
            base = self._version_base(api, repo_id, revision)
            return self.model(*base) if base else HubModel(exists=True, reason="the repository has no config.json")
        except jsonsafe.JsonError as exc:
            return HubModel(exists=True, reason=f"its config.json is not valid JSON ({exc})")
        except hub_failures() as exc:  # network, timeout, server: not an answer about the model
            reason = _answer_reason(exc)
            self.offline = self.offline or reason in ("ConnectError", "ConnectTimeout", "LocalEntryNotFoundError")
            return HubModel(reason=reason)
        if not isinstance(config, dict):
            return HubModel(exists=True, reason="its config.json is not a JSON object")
        unreadable: tuple[type[Exception], ...] = (NotASafetensorsRepoError, SafetensorsParsingError, *hub_failures())
        try:
            counts = api.get_safetensors_metadata(repo_id, revision=revision, timeout=self.timeout).parameter_count
            params = sum(counts.values()) or None
        except unreadable:
            params = None  # the shape in config.json still gives the count
        return HubModel(config, params, exists=True)

    def _version_base(self, api: Any, repo_id: str, revision: str) -> tuple[str, str] | None:
        """(base model id, revision) of a tuneform adapter version, which has no config.json: its
        manifest names the model it was trained on, whose shape it has (the job merges the adapter
        into it, job/pipeline.py `starting_model`). None for anything else."""
        from tuneform.core.hub import hub_failures
        from tuneform.core.manifest import HUB_MANIFEST, Manifest

        unreadable: tuple[type[Exception], ...] = (*hub_failures(), ValueError, OSError)
        try:
            path = api.hf_hub_download(repo_id, HUB_MANIFEST, revision=revision, etag_timeout=self.timeout)
            manifest = Manifest.read_text(Path(path).read_text())
        except unreadable:
            return None
        base, base_revision = manifest.hub_model_id, manifest.model_revision or "main"
        if base is None or (base, base_revision) == (repo_id, revision):
            return None  # a local folder only the job that trained it could read, or itself
        return base, base_revision

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> tuple[str | None, str | None]:
        """(commit SHA or None, reason it could not be resolved or None)."""
        if _SHA.match(revision):
            return revision, None
        cache_key = (repo_type, repo_id, revision)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._ask(repo_type, repo_id, revision)
        return self._cache[cache_key]

    def _ask(self, repo_type: str, repo_id: str, revision: str) -> tuple[str | None, str | None]:
        if self.offline:
            return None, "offline (HF_HUB_OFFLINE)"
        from tuneform.core.hub import (  # the client is imported only when the Hub is asked
            hub_api,
            hub_failures,
        )

        api = hub_api()
        try:
            info: Any
            if repo_type == "dataset":
                info = api.dataset_info(repo_id, revision=revision, timeout=self.timeout)
            else:
                info = api.model_info(repo_id, revision=revision, timeout=self.timeout)
        except hub_failures() as exc:  # network, auth, 404: all mean "not resolvable now"
            reason = _answer_reason(exc)
            self.offline = self.offline or reason in ("ConnectError", "ConnectTimeout", "LocalEntryNotFoundError")
            return None, reason
        return info.sha, None


@dataclass
class Resolution:
    """What `resolve_run` found: the key's inputs plus warnings and errors to show the user."""

    resolved: Resolved | None
    warnings: list[tuple[tuple[str | int, ...], str]]
    errors: list[tuple[tuple[str | int, ...], str]]


def local_model_dir(spec_id: str) -> str:
    """Repository-relative form of a local model id ('./models/x' -> 'models/x')."""
    return os.path.normpath(spec_id).replace(os.sep, "/")


def hash_folder(tree: Tree, folder: str) -> str:
    """Content hash of every file under a folder: names and bytes, not timestamps."""
    digest = hashlib.sha256()
    for path in tree.list(folder, ("",)):
        digest.update(path[len(folder) :].encode() + b"\0" + tree.sha256(path).encode() + b"\n")
    return digest.hexdigest()


def hash_local_dir(root: Path) -> str:
    """Content hash of a model directory outside the repository (local backend only)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def resolve_run(spec: RunSpec, tree: Tree, hub: HubResolver) -> Resolution:
    """Hash local inputs and resolve Hub revisions; errors for unreadable local files."""
    warnings: list[tuple[tuple[str | int, ...], str]] = []
    errors: list[tuple[tuple[str | int, ...], str]] = []

    model_content = None
    model_revision = spec.model.revision
    if spec.model.is_local:
        model_content = _local_model_hash(spec.model.id, tree, errors)
    else:
        sha, why = hub.resolve("model", spec.model.id, spec.model.revision)
        if sha:
            model_revision = sha
            if sha != spec.model.revision:
                warnings.append(
                    (
                        ("model", "revision"),
                        f"'{spec.model.revision}' moves when the repo changes (now {sha[:12]}): pin revision: {sha} for a reproducible run",
                    )
                )
        else:
            warnings.append(
                (
                    ("model", "revision"),
                    f"could not resolve '{spec.model.revision}' of {spec.model.id} to a commit ({why}): the run key uses the name as written; pin a commit SHA",
                )
            )

    sources: list[dict[str, Any]] = []
    for section, items in (("train", spec.data.train), ("eval", spec.data.eval)):
        for i, src in enumerate(items):
            where = ("data", section, i)
            if isinstance(src, LocalSource):
                sources.append({"sha256": _local_file_hash(src, tree, where, errors)})
            else:
                sources.append({"revision": _hub_dataset_revision(src, hub, where, warnings)})
    if errors:
        return Resolution(None, warnings, errors)
    return Resolution(Resolved(model_revision, model_content, tuple(sources)), warnings, errors)


def _local_model_hash(model_id: str, tree: Tree, errors: list) -> str | None:
    where = ("model", "id")
    if model_id.startswith("/"):
        root = Path(model_id)
        if not (root / "config.json").is_file():
            errors.append((where, f"'{model_id}' has no config.json: point model.id at a saved model folder"))
            return None
        return hash_local_dir(root)
    folder = local_model_dir(model_id)
    if folder.startswith("../") or folder == "..":
        errors.append(
            (where, f"'{model_id}' is outside the repository: use a folder inside it, or an absolute path with the local backend")
        )
        return None
    try:
        tree.read(f"{folder}/config.json")
    except TreeError:
        errors.append(
            (where, f"'{model_id}' has no config.json: point model.id at a saved model folder (save_pretrained) in the repository")
        )
        return None
    try:
        return hash_folder(tree, folder + "/")
    except TreeError as exc:  # a symlink in the folder that leads outside the repository
        errors.append((where, str(exc)))  # it names the file and says to use one inside the repository
        return None


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def with_fix(exc: TreeError, fix: str) -> str:
    """A tree's error with the fix for a missing file; other errors (a symlink leading out of the
    repository, a directory) already say what to do, and 'add the file' would mislead there."""
    message = str(exc)
    return f"{message}: {fix}" if " does not exist" in message else message


def _local_file_hash(src: LocalSource, tree: Tree, where: tuple, errors: list) -> str | None:
    field_path = where + ("path",)
    if not src.path.lower().endswith(DATA_SUFFIXES):
        errors.append((field_path, f"'{src.path}' is not a data file tuneform reads: use .jsonl, .json, .csv or .parquet"))
        return None
    try:
        head = tree.read(src.path)[:200]
    except TreeError as exc:
        errors.append((field_path, with_fix(exc, "add the file or fix the path (relative to the repository root)")))
        return None
    if is_lfs_pointer(head):
        errors.append(
            (field_path, f"'{src.path}' is a Git LFS pointer, not the data: run 'git lfs pull' (in CI: actions/checkout with lfs: true)")
        )
        return None
    return tree.sha256(src.path)


def _hub_dataset_revision(src: HubSource, hub: HubResolver, where: tuple, warnings: list) -> str:
    sha, why = hub.resolve("dataset", src.dataset, src.revision)
    if sha:
        if sha != src.revision:
            warnings.append(
                (
                    where + ("revision",),
                    f"dataset {src.dataset} '{src.revision}' resolved to {sha[:12]}: pin revision: {sha} for a reproducible run",
                )
            )
        return sha
    warnings.append(
        (
            where + ("revision",),
            f"could not resolve '{src.revision}' of dataset {src.dataset} ({why}): the run key uses the name as written; pin a commit SHA",
        )
    )
    return src.revision
