"""Read a repository's files either from the working tree or from a git revision.

Plan compares two states of the repository (a base revision and the working tree) with the same
code, so both sit behind one small interface. Reading is where untrusted paths are contained:
a path that escapes the repository, directly or through a symlink, is refused here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from tuneform.core.errors import TuneformError

LFS_PREFIX = b"version https://git-lfs.github.com/spec/v1"
SHOWN_PATH = 200  # characters of a path quoted in a message before it is shortened


class TreeError(TuneformError):
    """A path that cannot be read: missing, a directory, outside the repository, or a git failure."""


class Tree(Protocol):
    """A snapshot of repository files addressed by repository-relative POSIX paths."""

    label: str
    memo: dict[str, Any]  # per-snapshot results (parsed suites) that callers may reuse

    def read(self, path: str) -> bytes:
        """The file's bytes; TreeError when it is missing or not allowed."""
        ...

    def list(self, folder: str, suffixes: tuple[str, ...]) -> list[str]:
        """Files directly or deeply under `folder` whose names end with one of `suffixes`, sorted."""
        ...

    def sha256(self, path: str) -> str: ...

    def size(self, path: str) -> int: ...


def is_lfs_pointer(head: bytes) -> bool:
    """A Git LFS pointer committed where the data should be (the checkout lacked `lfs: true`)."""
    return head.startswith(LFS_PREFIX)


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class WorkTree:
    """The files on disk under `root`."""

    root: Path
    label: str = "working tree"
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _hashes: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    def resolve(self, path: str) -> Path:
        """Absolute path of `path`, refusing anything that leads outside the repository."""
        candidate = self.root / PurePosixPath(path)
        real = resolve_path(candidate, path)
        if real != self.root and self.root not in real.parents:
            raise TreeError(f"{shown(path)} leads outside the repository (through a symlink): use a file inside it")
        return real

    def read(self, path: str) -> bytes:
        real = self.resolve(path)
        try:
            return real.read_bytes()
        except IsADirectoryError:
            raise TreeError(f"{shown(path)} is a directory, not a file") from None
        except FileNotFoundError:
            raise TreeError(f"{shown(path)} does not exist") from None
        except OSError as exc:
            raise os_problem(path, exc) from None

    def exists(self, path: str) -> bool:
        try:
            return self.resolve(path).exists()
        except (TreeError, OSError):  # OSError: a name too long to look up exists nowhere
            return False

    def list(self, folder: str, suffixes: tuple[str, ...]) -> list[str]:
        base = self.root / folder
        if not base.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in dirnames:
                if os.path.islink(os.path.join(dirpath, name)):  # os.walk does not enter it, but a copy would
                    link = Path(dirpath, name).relative_to(self.root).as_posix()
                    self.resolve(link)  # TreeError if it leads out
                    raise TreeError(
                        f"{shown(link)} is a symlinked folder: its files would be neither hashed into the run key nor "
                        "safe to copy into a job bundle",
                        fix="replace the link with the folder itself (or link its files one by one)",
                    )
            for name in filenames:
                if name.endswith(suffixes):
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(found)

    def sha256(self, path: str) -> str:
        if path not in self._hashes:
            digest = hashlib.sha256()
            with open(self.resolve(path), "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            self._hashes[path] = digest.hexdigest()
        return self._hashes[path]

    def size(self, path: str) -> int:
        try:
            return self.resolve(path).stat().st_size
        except FileNotFoundError:
            raise TreeError(f"{shown(path)} does not exist") from None
        except OSError as exc:
            raise os_problem(path, exc) from None


def shown(path: str) -> str:
    """A path as messages quote it: in full, unless it is so long (a fuzzed 900 KB argument) that
    it would bury the message; then its start and end, and its length."""
    if len(path) <= SHOWN_PATH:
        return f"'{path}'"
    return f"'{path[: SHOWN_PATH // 2]}...{path[-SHOWN_PATH // 4 :]}' ({len(path):,} characters)"


def resolve_path(path: Path, typed: str) -> Path:
    """`path.resolve()`, with the ways that fails on a user's path (a symlink loop, a name longer
    than the OS allows) raised as TreeError naming the path as typed."""
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11 raises it for a symlink loop
        raise os_problem(typed, OSError(errno.ELOOP, "symlink loop")) from None
    except OSError as exc:
        raise os_problem(typed, exc) from None


def os_problem(path: str, exc: OSError) -> TreeError:
    """The OS's refusal to read a path (a name too long, a permission, a symlink loop) with its fix."""
    if exc.errno == errno.ENAMETOOLONG:
        return TreeError(f"{shown(path)} is longer than a path may be", fix="use a shorter path")
    if exc.errno == errno.ELOOP:
        return TreeError(f"{shown(path)} is a symlink loop", fix="point the link at a file")
    return TreeError(f"{shown(path)} cannot be read: {exc.strerror}", fix="check the path and its permissions")


def argument_path(root: Path, typed: str) -> str | None:
    """The repository-relative POSIX path of a path typed on the command line (absolute, or
    relative to the working directory), or None when it is outside the repository at `root`.
    Raises TreeError when it cannot be resolved."""
    absolute = resolve_path(Path.cwd() / typed, typed)  # an absolute `typed` replaces the cwd
    try:
        absolute.stat()  # a name too long resolves, and fails only when looked up
    except (FileNotFoundError, NotADirectoryError):
        pass  # missing: the caller says what that means to it
    except OSError as exc:
        raise os_problem(typed, exc) from None
    try:
        return absolute.relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def git(root: Path, *args: str, check: bool = True, input: bytes | None = None) -> str:
    """Run git in `root`; raises TreeError with git's own message on failure."""
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, input=input)
    if check and proc.returncode != 0:
        raise TreeError(proc.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed")
    return proc.stdout.decode("utf-8", errors="replace")


@dataclass
class GitTree:
    """The files of one git revision, read with `git ls-tree` and `git cat-file` (no checkout)."""

    root: Path
    rev: str
    label: str = ""
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _entries: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)  # path -> (mode, blob)
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.label = self.label or self.rev
        listing = git(self.root, "ls-tree", "-r", "-z", "--full-tree", self.rev)
        for entry in listing.split("\0"):
            if not entry:
                continue
            meta, path = entry.split("\t", 1)
            mode, kind, blob = meta.split()
            if kind == "blob":
                self._entries[path] = (mode, blob)

    def _target(self, path: str, depth: int = 0) -> tuple[str, str]:
        norm = os.path.normpath(path).replace(os.sep, "/")
        if norm.startswith("../") or norm == "..":
            raise TreeError(f"{shown(path)} leads outside the repository (through a symlink): use a file inside it")
        if norm not in self._entries:
            raise TreeError(f"{shown(path)} does not exist at {self.label}")
        mode, blob = self._entries[norm]
        if mode == "120000":  # a symlink: follow it inside the tree, never outside
            if depth > 8:
                raise TreeError(f"{shown(path)}: too many levels of symlinks")
            target = self._blob(blob).decode("utf-8", errors="replace")
            if target.startswith("/"):
                raise TreeError(f"{shown(path)} leads outside the repository (through a symlink): use a file inside it")
            return self._target(str(PurePosixPath(norm).parent / target), depth + 1)
        return norm, blob

    def _blob(self, blob: str) -> bytes:
        if blob not in self._cache:
            proc = subprocess.run(["git", "cat-file", "blob", blob], cwd=self.root, capture_output=True)
            if proc.returncode != 0:
                raise TreeError(proc.stderr.decode(errors="replace").strip())
            self._cache[blob] = proc.stdout
        return self._cache[blob]

    def read(self, path: str) -> bytes:
        return self._blob(self._target(path)[1])

    def exists(self, path: str) -> bool:
        try:
            self._target(path)
            return True
        except TreeError:
            return False

    def list(self, folder: str, suffixes: tuple[str, ...]) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self._entries if p.startswith(prefix) and p.endswith(suffixes))

    def sha256(self, path: str) -> str:
        blob = self._target(path)[1]
        hashes = self.memo.setdefault("sha256", {})
        if blob not in hashes:
            hashes[blob] = _hash_bytes(self._blob(blob))
        return hashes[blob]

    def size(self, path: str) -> int:
        return len(self.read(path))

    def prefetch(self, paths: Iterable[str]) -> None:
        """Read many blobs in one `git cat-file --batch` call (plan reads every run file)."""
        blobs = [self._entries[p][1] for p in paths if p in self._entries and self._entries[p][1] not in self._cache]
        if not blobs:
            return
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, capture_output=True, input=("\n".join(blobs) + "\n").encode())
        out, pos = proc.stdout, 0
        for blob in blobs:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            self._cache[blob] = out[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1


def repo_root(start: Path) -> Path:
    """The git top-level above `start`, or `start` itself outside a git repository."""
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True)
    if proc.returncode == 0:
        return Path(proc.stdout.decode().strip())
    return start.resolve()


def default_base(root: Path) -> str | None:
    """Merge base of HEAD with main (or origin/main): what a pull request is compared against.

    None when no such branch has a commit yet (a fresh `git init`, or work on another branch
    before the first push): nothing was ever merged, so there is nothing to compare with and the
    caller compares with the empty tree. A main that shares no history with HEAD is a TreeError."""
    for candidate in ("main", "origin/main", "master", "origin/master"):
        if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=root, capture_output=True).returncode:
            continue
        proc = subprocess.run(["git", "merge-base", candidate, "HEAD"], cwd=root, capture_output=True)
        if proc.returncode == 0:
            return proc.stdout.decode().strip()
        raise TreeError(f"'{candidate}' shares no commit with HEAD, so there is no merge base to compare with: pass --base REF")
    return None


def resolve_rev(root: Path, rev: str) -> str:
    """Full commit SHA of `rev`; TreeError naming the fix when it is unknown."""
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root, capture_output=True)
    if proc.returncode != 0:
        raise TreeError(f"unknown git revision '{rev}': fetch it (git fetch, or fetch-depth: 0 in CI) or pass another --base")
    return proc.stdout.decode().strip()
