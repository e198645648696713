"""Where the running tuneform was installed from, and the pip requirement that installs it again.

Two consumers need the same answer: `tuneform init` writes workflows that must install exactly
this tuneform on GitHub's runners, and the hf-jobs backend ships this tuneform to the job as a
wheel. Both read the installed distribution's metadata (importlib.metadata) and pip's record of
where it came from (PEP 610's `direct_url.json`, absent for a release from a package index).

Which requirement each kind of install gets (README "Install", docs/github.md):

- a release from a package index (no direct_url.json): `tuneform==VERSION`;
- a git URL: `tuneform @ git+URL@COMMIT`, the commit pip resolved (never a branch that moves),
  an ssh URL written as https (a runner has no key);
- an archive or wheel file: `tuneform==VERSION` plus the file's sha256 (the same file, once it is
  published), or `tuneform @ URL` plus the sha256 for a file on an http(s) server;
- an editable or source-folder install: the checkout's git remote (as https, which a runner can
  clone without a key) at its HEAD commit, when the checkout is clean and that commit is on a remote;
- anything else: `tuneform==VERSION` with a warning that names the line to edit.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import tuneform

NAME = "tuneform"
# What a URL in a requirement may contain: RFC 3986's characters, nothing else. No quote, space,
# backslash or control character reaches YAML or shell, and `${{` (a GitHub expression, which the
# runner would evaluate inside an `env:` value) cannot be spelt: `{` and `}` are not allowed.
_SAFE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9\-._~:/?#\[\]@!&'()*+,;=%]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


@dataclass(frozen=True)
class Origin:
    """What pip recorded about how this tuneform was installed.

    kind: "index" (no direct_url.json), "vcs", "archive", "directory" (a source folder, `editable`
    when installed with -e) or "unknown" (no distribution metadata at all)."""

    kind: str
    version: str
    url: str | None = None
    commit: str | None = None
    sha256: str | None = None
    editable: bool = False


@dataclass(frozen=True)
class InstallSpec:
    """The requirement a workflow installs (`requirement`, a PEP 508 string that starts with
    `tuneform`), the sha256 its file must have ("" when not checked), which kind of install it was
    derived from (`source`), and a warning when it may not install this same tuneform."""

    requirement: str
    sha256: str
    source: str
    warning: str | None = None


# How init names each `InstallSpec.source` to the user.
SOURCES = {
    "index": "a release from the package index",
    "vcs": "installed from git",
    "archive": "installed from a distribution file",
    "checkout": "a source checkout, at its pushed HEAD",
    "unknown": "no install record found",
}


def origin() -> Origin:
    """The running tuneform's installed distribution, as pip recorded it."""
    try:
        dist = metadata.distribution(NAME)
    except metadata.PackageNotFoundError:
        return Origin("unknown", tuneform.__version__)
    version = dist.version
    text = dist.read_text("direct_url.json")
    if not text:
        return Origin("index", version)
    try:
        direct = json.loads(text)
    except json.JSONDecodeError:
        return Origin("unknown", version)
    url = direct.get("url") if isinstance(direct.get("url"), str) else None
    if isinstance(direct.get("vcs_info"), dict):
        vcs = direct["vcs_info"]
        return Origin("vcs", version, url=url, commit=vcs.get("commit_id") if vcs.get("vcs") == "git" else None)
    if isinstance(direct.get("archive_info"), dict):
        info = direct["archive_info"]
        hashes = info.get("hashes") if isinstance(info.get("hashes"), dict) else {}
        sha256 = hashes.get("sha256")
        legacy = info.get("hash")  # PEP 610's older form: "sha256=<hex>"
        if not sha256 and isinstance(legacy, str) and legacy.startswith("sha256="):
            sha256 = legacy.removeprefix("sha256=")
        return Origin("archive", version, url=url, sha256=sha256 if isinstance(sha256, str) else None)
    if isinstance(direct.get("dir_info"), dict):
        return Origin("directory", version, url=url, editable=bool(direct["dir_info"].get("editable")))
    return Origin("unknown", version, url=url)


def install_spec(found: Origin | None = None) -> InstallSpec:
    """The requirement that installs this same tuneform on a fresh machine (see the module doc).

    Every URL written is checked against a conservative character set, so the result is safe
    inside a double-quoted YAML value and a double-quoted shell word."""
    found = found or origin()
    pinned = f"{NAME}=={found.version}"
    edit = f'edit the line `TUNEFORM_REQUIREMENT: "{pinned}"` (and TUNEFORM_SHA256 below it) at the top of each .github/workflows/*.yml'

    if found.kind == "index":
        return InstallSpec(pinned, "", "index")
    if found.kind == "vcs":
        remote = _as_url(found.url) if found.url else None
        if remote and found.commit and _COMMIT.fullmatch(found.commit):
            return InstallSpec(f"{NAME} @ git+{remote}@{found.commit}", "", "vcs")
        return InstallSpec(
            pinned,
            "",
            "vcs",
            f"tuneform was installed from {found.url!r}, which is not an http(s) or ssh git URL with a commit that can be written safely: the workflows install {pinned} from the package index instead; {edit}",
        )
    if found.kind == "archive":
        sha = found.sha256 if found.sha256 and _SHA256.fullmatch(found.sha256) else ""
        if found.url and urlparse(found.url).scheme in ("http", "https") and _safe_url(found.url):
            return InstallSpec(f"{NAME} @ {found.url}", sha, "archive")
        if sha:
            return InstallSpec(pinned, sha, "archive")
        return InstallSpec(
            pinned,
            "",
            "archive",
            f"tuneform was installed from {found.url} and pip recorded no sha256 of it: the workflows install {pinned} from the package index instead; {edit}",
        )
    if found.kind == "directory":
        folder = _local_path(found.url)
        checkout = _published_checkout(folder) if folder else None
        if isinstance(checkout, tuple):
            remote, commit = checkout
            return InstallSpec(f"{NAME} @ git+{remote}@{commit}", "", "checkout")
        reason = checkout or f"{found.url} is not a local folder"
        return InstallSpec(
            pinned,
            "",
            "checkout",
            f"tuneform runs from the source folder {folder or found.url}, but {reason}: the workflows install {pinned} from the package index instead; {edit}",
        )
    return InstallSpec(
        pinned, "", "unknown", f"tuneform's install record was not found: the workflows install {pinned} from the package index; {edit}"
    )


def _safe_url(url: str) -> bool:
    return bool(_SAFE_URL.fullmatch(url))


def _local_path(url: str | None) -> Path | None:
    if not url or urlparse(url).scheme != "file":
        return None
    return Path(unquote(urlparse(url).path))


def _published_checkout(folder: Path) -> tuple[str, str] | str:
    """(remote URL, HEAD commit) of the git checkout at `folder` when it is clean and HEAD is on a
    remote branch; else the reason it cannot be installed from elsewhere."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head or not _COMMIT.fullmatch(head):
        return "it is not a git checkout with a commit"
    if git("status", "--porcelain", "--untracked-files=no") != "":
        return "the checkout has uncommitted changes"
    remotes = git("branch", "-r", "--contains", head, "--format=%(refname:short)") or ""
    for branch in remotes.splitlines():
        name = branch.split("/", 1)[0]
        url = git("remote", "get-url", name)
        if url:
            https = _as_url(url)
            if https:
                return https, head
    return f"HEAD {head[:12]} is on no remote branch with an http(s) or ssh URL (push it first)"


def _as_url(remote: str) -> str | None:
    """A git remote as a URL a CI runner can clone without a key: https as it is; ssh (scp-like
    `git@host:path` or `ssh://git@host/path`) as https://host/path, which works for a public
    repository; local paths and anything with unsafe characters: None."""
    scp = re.fullmatch(r"[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!/)(.+)", remote)
    if scp:
        remote = f"https://{scp.group(1)}/{scp.group(2)}"
    parsed = urlparse(remote)
    if parsed.scheme == "ssh" and parsed.hostname:
        remote = f"https://{parsed.hostname}{parsed.path}"
    if urlparse(remote).scheme not in ("https", "http") or not _safe_url(remote):
        return None
    return remote
