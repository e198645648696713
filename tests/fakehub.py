"""An in-memory Hugging Face Hub + Jobs server for tests, spoken to by the REAL `huggingface_hub` client.

Stdlib only (`http.server.ThreadingHTTPServer` in a background thread). It follows the contract read from
huggingface_hub 1.33's source (hf_api.py, _jobs_api.py, _commit_api.py, lfs.py, file_download.py,
utils/_http.py) and shared/reference/hf-jobs.md (beside the repository):

* auth: `Authorization: Bearer <token>`; tokens map to user names; read-only tokens get 403 on writes; an
  unknown token gets 401 "Invalid credentials in Authorization header" on every authenticated route.
* repos (model / dataset / space): create, info (`sha`, `siblings`, `private`, `gated`), refs, branches, tags,
  commit history, tree, paths-info, auth-check, `/resolve/` downloads (HEAD + GET, Range), with the Hub's
  error headers (`X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound | GatedRepo`,
  `X-Error-Message`) so the client raises its typed errors.
* commits: preupload (regular | lfs), the git-LFS batch API (basic and multipart transfers, verify), the NDJSON
  commit endpoint (`file`, `lfsFile`, `deletedFile`, `deletedFolder`), `parentCommit` -> 412, atomic branch moves.
* jobs: run / inspect / list (label + stage filters, `Link` pagination) / cancel / labels / hardware / logs (SSE,
  replayed in full on every connection) / metrics (SSE).
* test control: job lifecycle methods, an `on_job_submitted` hook, fault injection (`server.faults`: error
  answers before handling, replies lost before or after the request was handled, holding the answer to a
  commit so a test can kill its client at a known state), a request
  log, the exact job payloads and commit payloads received.

Limitations (on purpose): repo ids must be `namespace/name`; no Xet (tests set HF_HUB_DISABLE_XET=1); no
discussions API beyond the PR ref a `create_pr=True` commit makes; no `.gitattributes` parsing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = [
    "HARDWARE",
    "OTHER_TOKEN",
    "READ_TOKEN",
    "USER_TOKEN",
    "CommitHold",
    "FakeHub",
    "FakeJob",
    "FakeRepo",
    "Fault",
    "Faults",
]

# Tokens the `fake_hub` fixture registers: alice (member of org "acme") with a write and a read token, and bob.
USER_TOKEN = "hf_fake_alice_write"
READ_TOKEN = "hf_fake_alice_read"
OTHER_TOKEN = "hf_fake_bob_write"

MIB = 1024 * 1024
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
JOB_STAGES = frozenset({"SCHEDULING", "RUNNING", "UPDATING"}) | TERMINAL_STAGES
LABEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9_-]{0,100}$")
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_LFS_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.gguf",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.pkl",
    "*.pickle",
    "*.parquet",
    "*.arrow",
    "*.zip",
    "*.gz",
    "*.tar",
    "*.tgz",
    "*.xz",
    "*.zst",
    "*.7z",
    "*.model",
    "*tfevents*",
)


def _hw(name: str, pretty: str, cpu: int, ram: int, usd_hour: float, gpu: tuple[str, int, int] | None) -> dict[str, Any]:
    micro = round(usd_hour / 60 * 1_000_000)
    accelerator = None
    if gpu is not None:
        model, qty, vram = gpu
        accelerator = {"type": "gpu", "model": model, "quantity": str(qty), "vram": f"{qty * vram} GB", "manufacturer": "Nvidia"}
    return {
        "name": name,
        "prettyName": pretty,
        "cpu": f"{cpu} vCPU",
        "ram": f"{ram} GB",
        "ephemeralStorage": "50 GB",
        "accelerator": accelerator,
        "unitCostMicroUSD": micro,
        "unitCostUSD": micro / 1_000_000,
        "unitLabel": "minute",
    }


# The flavor table of reference/hf-jobs.md ($/hour, GPU memory); cpu/ram are plausible figures, not contract.
HARDWARE: list[dict[str, Any]] = [
    _hw("cpu-basic", "CPU basic", 2, 16, 0.01, None),
    _hw("cpu-upgrade", "CPU upgrade", 8, 32, 0.03, None),
    _hw("t4-small", "Nvidia T4 - small", 4, 15, 0.40, ("T4", 1, 16)),
    _hw("t4-medium", "Nvidia T4 - medium", 8, 30, 0.60, ("T4", 1, 16)),
    _hw("l4x1", "1x Nvidia L4", 8, 30, 0.80, ("L4", 1, 24)),
    _hw("l4x4", "4x Nvidia L4", 48, 186, 3.80, ("L4", 4, 24)),
    _hw("l40sx1", "1x Nvidia L40S", 8, 62, 1.80, ("L40S", 1, 48)),
    _hw("l40sx4", "4x Nvidia L40S", 48, 382, 8.30, ("L40S", 4, 48)),
    _hw("l40sx8", "8x Nvidia L40S", 192, 1534, 23.50, ("L40S", 8, 48)),
    _hw("a10g-small", "Nvidia A10G - small", 4, 15, 1.00, ("A10G", 1, 24)),
    _hw("a10g-large", "Nvidia A10G - large", 12, 46, 1.50, ("A10G", 1, 24)),
    _hw("a10g-largex2", "2x Nvidia A10G - large", 24, 92, 3.00, ("A10G", 2, 24)),
    _hw("a10g-largex4", "4x Nvidia A10G - large", 48, 184, 5.00, ("A10G", 4, 24)),
    _hw("a100-large", "Nvidia A100 - large", 12, 142, 2.50, ("A100", 1, 80)),
    _hw("a100x4", "4x Nvidia A100", 48, 568, 10.00, ("A100", 4, 80)),
    _hw("a100x8", "8x Nvidia A100", 96, 1136, 20.00, ("A100", 8, 80)),
    _hw("h200", "Nvidia H200", 23, 256, 5.00, ("H200", 1, 141)),
    _hw("h200x2", "2x Nvidia H200", 46, 512, 10.00, ("H200", 2, 141)),
    _hw("h200x4", "4x Nvidia H200", 92, 1024, 20.00, ("H200", 4, 141)),
    _hw("h200x8", "8x Nvidia H200", 184, 2048, 40.00, ("H200", 8, 141)),
    _hw("rtx-pro-6000", "Nvidia RTX PRO 6000", 16, 128, 2.75, ("RTX PRO 6000", 1, 96)),
    _hw("rtx-pro-6000x2", "2x Nvidia RTX PRO 6000", 32, 256, 5.50, ("RTX PRO 6000", 2, 96)),
    _hw("rtx-pro-6000x4", "4x Nvidia RTX PRO 6000", 64, 512, 11.00, ("RTX PRO 6000", 4, 96)),
    _hw("rtx-pro-6000x8", "8x Nvidia RTX PRO 6000", 128, 1024, 22.00, ("RTX PRO 6000", 8, 96)),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _fake_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------------- data model


@dataclass
class Blob:
    """One file of a commit. LFS files keep their bytes in the repo's LFS store, keyed by sha256."""

    size: int
    oid: str  # git blob oid (of the content, or of the LFS pointer)
    content: bytes | None = None
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    @classmethod
    def regular(cls, data: bytes) -> Blob:
        return cls(size=len(data), oid=_git_blob_oid(data), content=data)

    @classmethod
    def lfs(cls, sha256: str, size: int) -> Blob:
        pointer = _lfs_pointer(sha256, size)
        return cls(size=size, oid=_git_blob_oid(pointer), lfs_sha256=sha256, pointer_size=len(pointer))


@dataclass
class Commit:
    oid: str
    parents: list[str]
    files: dict[str, Blob]
    title: str
    message: str
    author: str
    date: datetime


@dataclass
class FakeRepo:
    repo_type: str
    repo_id: str
    private: bool = False
    gated: str | bool = False  # False | "auto" | "manual"
    gated_access: set[str] = field(default_factory=set)  # users let through the gate
    created_at: datetime = field(default_factory=_now)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tag_messages: dict[str, str | None] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def resolve(self, rev: str | None) -> str | None:
        """Branch, tag, `refs/heads|tags/...`, `refs/pr/N` or a full commit sha -> commit oid (None if unknown)."""
        rev = rev or "main"
        if rev.startswith("refs/heads/"):
            return self.branches.get(rev[len("refs/heads/") :])
        if rev.startswith("refs/tags/"):
            return self.tags.get(rev[len("refs/tags/") :])
        if m := re.fullmatch(r"refs/pr/(\d+)", rev):
            return self.pull_requests.get(int(m.group(1)))
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if SHA1_RE.fullmatch(rev) and rev in self.commits:
            return rev
        return None

    def files_at(self, rev: str = "main") -> dict[str, Blob]:
        oid = self.resolve(rev)
        if oid is None:
            raise KeyError(f"unknown revision {rev!r} in {self.repo_id}")
        return self.commits[oid].files

    def read(self, path: str, rev: str = "main") -> bytes:
        blob = self.files_at(rev)[path]
        return blob.content if blob.lfs_sha256 is None else self.lfs[blob.lfs_sha256]  # type: ignore[return-value]

    def history(self, rev: str = "main") -> list[Commit]:
        oid = self.resolve(rev)
        out = []
        while oid is not None:
            commit = self.commits[oid]
            out.append(commit)
            oid = commit.parents[0] if commit.parents else None
        return out


@dataclass
class FakeJob:
    """A submitted job. `payload` is the exact JSON body the client POSTed (secrets included, for assertions)."""

    id: str
    namespace: str
    owner: dict[str, str]
    payload: dict[str, Any]
    submitted_by: str
    labels: dict[str, str]
    stage: str = "SCHEDULING"
    message: str | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, text), replayed on each connection
    seq: int = 0

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES

    @property
    def log_lines(self) -> list[str]:
        return [text for _, text in self.logs]

    def info(self) -> dict[str, Any]:
        """The JobInfo JSON the real API returns (secrets as a list of names, never values)."""
        p = self.payload
        now = _now()
        end = self.finished_at or now
        durations = {
            "schedulingSecs": int(((self.started_at or end) - self.created_at).total_seconds()),
            "runningSecs": int((end - self.started_at).total_seconds()) if self.started_at else None,
            "totalSecs": int((end - self.created_at).total_seconds()),
        }
        out: dict[str, Any] = {
            "id": self.id,
            "createdAt": _iso(self.created_at),
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "command": p.get("command"),
            "arguments": p.get("arguments", []),
            "environment": p.get("environment", {}),
            "secrets": sorted((p.get("secrets") or {}).keys()),
            "flavor": p.get("flavor"),
            "labels": dict(self.labels),
            "status": {"stage": self.stage, "message": self.message},
            "durations": durations,
            "owner": dict(self.owner),
            "initiator": {"type": "user", "id": _fake_id(self.submitted_by), "name": self.submitted_by},
        }
        if "dockerImage" in p:
            out["dockerImage"] = p["dockerImage"]
        if "spaceId" in p:
            out["spaceId"] = p["spaceId"]
        if p.get("volumes"):
            out["volumes"] = p["volumes"]
        return out


@dataclass
class RequestRecord:
    method: str
    path: str  # raw (still percent-encoded) path, without query
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes  # first 64 KiB
    status: int | None = None


# ------------------------------------------------------------------------------------------------------ faults


@dataclass
class Fault:
    method: str  # "GET", "POST", ... or "*"
    path: re.Pattern[str]  # searched in the request target: raw path, plus "?query" when there is one
    status: int
    times: int | None  # None = forever
    message: str
    retry_after: int | None = None
    error_code: str | None = None
    hits: int = 0
    drop: str | None = None  # "before" or "after": close the connection without an answer instead

    def matches(self, method: str, target: str) -> bool:
        return (self.method == "*" or self.method == method) and self.path.search(target) is not None


@dataclass
class CommitHold:
    """Holds the answer to the `nth` commit on a branch matching `branch` (after the commit is applied) until
    `release` is set or `timeout` passes; `reached` is set meanwhile, so a test can act (kill the client) while a
    known commit is in place and the client still waits."""

    branch: re.Pattern[str]
    nth: int
    timeout: float
    seen: int = 0
    commit: str | None = None  # the held commit's oid
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class _LogDrop:
    job_id: str | None
    after_events: int
    times: int
    hits: int = 0


@dataclass
class _JobFailure:
    message: str
    logs: tuple[str, ...]
    times: int
    hits: int = 0


class Faults:
    """Fault injection. Every rule fires for its next `times` matching requests (None: until cleared).

    - `fail(method, path_regex, status=500, times=1, message=..., retry_after=None, error_code=None)`: answer the
      matching requests (the regex is searched in the raw path, plus `?query` when there is one) with that status (JSON `{"error": message}` + `X-Error-Message`, `Retry-After` when given)
      before any routing or auth.
    - `rate_limit(method, path_regex, retry_after=1, times=1)`: 429 with `Retry-After`.
    - `drop(method, path_regex, times=1, after=True)`: close the connection without an answer. With `after`
      the server handled the request first (the branch, commit, tag or job exists; only the reply is lost:
      the client sees httpx.RemoteProtocolError); without, nothing was done. The request log records the
      status the lost answer had (`None` for a drop before handling).
    - `drop_logs(job_id=None, after_events=1, times=1)`: the next logs stream(s) send `after_events` `data:` events
      (the `===== Job started` event counts) and then the connection is cut mid-body (no final chunk), which the
      client sees as httpx.RemoteProtocolError.
    - `fail_next_job(message, logs=(), times=1)`: the next submitted job(s) go RUNNING, print `logs`, then end in
      ERROR with `status.message = message`; `on_job_submitted` is not called for them.
    - `hold_commit(branch_regex, nth=1, timeout=60)`: a `CommitHold`; the `nth` commit to a matching branch is
      applied, then its answer waits for `hold.release` (set by `clear()` and when the server stops).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[Fault] = []
        self.log_drops: list[_LogDrop] = []
        self.job_failures: list[_JobFailure] = []
        self.holds: list[CommitHold] = []

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        *,
        times: int | None = 1,
        message: str = "Internal Error - We're working hard to fix this as soon as possible!",
        retry_after: int | None = None,
        error_code: str | None = None,
    ) -> Fault:
        rule = Fault(method.upper(), re.compile(path_regex), status, times, message, retry_after, error_code)
        with self._lock:
            self.rules.append(rule)
        return rule

    def rate_limit(self, method: str, path_regex: str, *, retry_after: int = 1, times: int | None = 1) -> Fault:
        return self.fail(method, path_regex, 429, times=times, message="Too Many Requests", retry_after=retry_after)

    def drop(self, method: str, path_regex: str, *, times: int | None = 1, after: bool = True) -> Fault:
        rule = Fault(method.upper(), re.compile(path_regex), 0, times, "", drop="after" if after else "before")
        with self._lock:
            self.rules.append(rule)
        return rule

    def drop_logs(self, job_id: str | None = None, *, after_events: int = 1, times: int = 1) -> None:
        with self._lock:
            self.log_drops.append(_LogDrop(job_id, after_events, times))

    def fail_next_job(self, message: str = "Job failed with exit code: 1", *, logs: Iterable[str] = (), times: int = 1) -> None:
        with self._lock:
            self.job_failures.append(_JobFailure(message, tuple(logs), times))

    def hold_commit(self, branch_regex: str, *, nth: int = 1, timeout: float = 60.0) -> CommitHold:
        hold = CommitHold(re.compile(branch_regex), nth, timeout)
        with self._lock:
            self.holds.append(hold)
        return hold

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log_drops.clear()
            self.job_failures.clear()
            for hold in self.holds:
                hold.release.set()
            self.holds.clear()

    # -- used by the server
    def _take_rule(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _take_hold(self, branch: str, commit: str) -> CommitHold | None:
        with self._lock:
            for hold in self.holds:
                if hold.branch.search(branch) and hold.seen < hold.nth:
                    hold.seen += 1
                    if hold.seen == hold.nth:
                        hold.commit = commit
                        return hold
        return None

    def _take_log_drop(self, job_id: str) -> int | None:
        with self._lock:
            for drop in self.log_drops:
                if drop.hits < drop.times and drop.job_id in (None, job_id):
                    drop.hits += 1
                    return drop.after_events
        return None

    def _take_job_failure(self) -> _JobFailure | None:
        with self._lock:
            for failure in self.job_failures:
                if failure.hits < failure.times:
                    failure.hits += 1
                    return failure
        return None


# ---------------------------------------------------------------------------------------------- HTTP plumbing


class HttpError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the JSON error body


class _Request:
    """One parsed request plus the ways to answer it."""

    def __init__(self, handler: _Handler):
        self.h = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.raw_path = split.path
        self.segments = [unquote(s) for s in split.path.split("/")[1:]]
        self.query_items = parse_qsl(split.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = self._read_body()
        self.answered = False
        self.lost = False  # a drop-after fault: the request is handled, its answer never sent

    def _read_body(self) -> bytes:
        rfile = self.h.rfile
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(rfile.read(size))
                rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return rfile.read(length) if length else b""

    def q(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query_items:
            if key == name:
                return value
        return default

    def q_all(self, name: str) -> list[str]:
        return [value for key, value in self.query_items if key == name]

    def q_bool(self, name: str) -> bool:
        return (self.q(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HttpError(400, "Invalid JSON body") from None

    # -- answers
    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type: str | None = None) -> None:
        h = self.h
        h.record.status = status  # before the client can see the answer
        self.answered = True
        if self.lost:
            self.abort()
            return
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if (request_id := self.headers.get("X-Amzn-Trace-Id")) is not None:
            h.send_header("X-Request-Id", request_id)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.method != "HEAD" and body:
            h.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), headers, "application/json; charset=utf-8")

    def send_error(self, err: HttpError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self.send_json({**err.extra, "error": err.message}, err.status, headers)

    # -- chunked streams (SSE)
    def start_stream(self, content_type: str = "text/event-stream") -> None:
        h = self.h
        h.record.status = 200
        self.answered = True
        if self.lost:
            self.abort()
            return
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.h.wfile.flush()

    def end_stream(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()

    def abort(self) -> None:
        """Cut the connection mid-body: the client sees an incomplete chunked read."""
        self.h.close_connection = True
        try:
            self.h.wfile.flush()
            self.h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    timeout = 60  # idle keep-alive connections die eventually
    server: _Server
    record: RequestRecord

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK cost ~40 ms per request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.hub._track(self.connection, False)

    def _handle(self) -> None:
        self.server.hub._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: FakeHub):
        self.hub = hub
        super().__init__(address, _Handler)


@dataclass
class _Upload:
    repo_key: tuple[str, str]
    oid: str
    size: int
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class _Caller:
    user: str | None
    token: str | None
    read_only: bool


# -------------------------------------------------------------------------------------------------- the server


class FakeHub:
    """In-memory Hub + Jobs server.

    Args:
        tokens: token -> user name. Several tokens may map to one user.
        read_only_tokens: tokens (also in `tokens`) that may read but get 403 on any write.
        orgs: user -> organizations the user may read and write in.
        page_size: items per page of every paginated listing (jobs, commits, tree); `Link: <...>; rel="next"`.
        lfs_threshold: files of this size or more are LFS (the Hub uses 10 MB); so are `lfs_patterns` matches and
            files whose first 512 bytes contain a NUL byte.
        multipart_chunk_size: LFS objects bigger than this are uploaded in parts (None: always a single PUT).
        lfs_verify: whether batch answers carry a `verify` action.
        lfs_cdn_redirect: like the Hub, `/resolve/` of an LFS file answers 302 to a signed URL on another host name
            (`localhost` vs `127.0.0.1`), so the client takes the metadata from the 302 and downloads without its
            token. False: serve LFS bytes directly.
        sse_keepalive_s: seconds between `: keep-alive` comments on idle SSE streams (the Hub: 30).
        host, port: where to listen (port 0: a free one).
    Attributes for tests: `url`, `repos`, `jobs` (id -> FakeJob, `.payload` is the exact body), `job_requests`
    (every POST body to /api/jobs, accepted or not), `commit_requests` (parsed NDJSON lines of each commit call),
    `requests` (RequestRecord log), `faults`, `on_job_submitted`, `out_of_credits` (namespaces, or "*", answered
    402), `errors` (tracebacks of server bugs: assert it stays empty), `hook_errors` (exceptions of the hook).
    """

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        *,
        read_only_tokens: Iterable[str] = (),
        orgs: dict[str, list[str]] | None = None,
        page_size: int = 50,
        lfs_threshold: int = 10 * MIB,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        multipart_chunk_size: int | None = None,
        lfs_verify: bool = True,
        lfs_cdn_redirect: bool = True,
        sse_keepalive_s: float = 30.0,
        hardware: list[dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.tokens = dict(tokens or {})
        self.read_only_tokens = set(read_only_tokens)
        self.orgs = {user: list(names) for user, names in (orgs or {}).items()}
        self.page_size = page_size
        self.lfs_threshold = lfs_threshold
        self.lfs_patterns = tuple(lfs_patterns)
        self.multipart_chunk_size = multipart_chunk_size
        self.lfs_verify = lfs_verify
        self.lfs_cdn_redirect = lfs_cdn_redirect
        self.sse_keepalive_s = sse_keepalive_s
        self.hardware = [dict(h) for h in (hardware if hardware is not None else HARDWARE)]
        self.out_of_credits: set[str] = set()
        self.on_job_submitted: Callable[[FakeJob], Any] | None = None
        self.faults = Faults()

        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.job_requests: list[dict[str, Any]] = []
        self.commit_requests: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []
        self.hook_errors: list[str] = []

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._uploads: dict[str, _Upload] = {}
        self._downloads: dict[str, tuple[tuple[str, str], str]] = {}
        self._counter = itertools.count(1)
        self._stopping = False
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._httpd = _Server((host, port), self)
        address = self._httpd.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release held commits, wake and end open streams, close client connections, join the
        threads we started."""
        self.faults.clear()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # ---------------------------------------------------------------------------------------- conveniences
    def api(self, token: str | None = USER_TOKEN) -> Any:
        """A real `huggingface_hub.HfApi` pointed at this server."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=token)

    def client_env(self, token: str | None = USER_TOKEN) -> dict[str, str]:
        """Environment for a subprocess that should use this server through huggingface_hub's env variables."""
        env = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        if token:
            env["HF_TOKEN"] = token
        return env

    def requests_to(self, method: str, path_regex: str) -> list[RequestRecord]:
        pattern = re.compile(path_regex)
        return [r for r in list(self.requests) if r.method == method and pattern.search(r.path)]

    # ------------------------------------------------------------------------------------------ repo seeding
    def repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo:
        return self.repos[(repo_type, repo_id)]

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | str] | None = None,
        *,
        repo_type: str = "model",
        private: bool = False,
        gated: str | bool = False,
        gated_access: Iterable[str] = (),
        message: str = "initial commit",
    ) -> FakeRepo:
        """Create a repo directly (no HTTP), with `.gitattributes` and `files` in its first commit on `main`."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise ValueError(f"{repo_type} {repo_id} exists")
            repo = FakeRepo(repo_type, repo_id, private=private, gated=gated, gated_access=set(gated_access))
            self.repos[(repo_type, repo_id)] = repo
            self._initial_commit(repo, repo.namespace)
            if files:
                self.add_commit(repo_id, files, repo_type=repo_type, message=message)
            return repo

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | str] | None = None,
        *,
        delete: Iterable[str] = (),
        repo_type: str = "model",
        branch: str = "main",
        message: str = "update",
    ) -> str:
        """Commit directly on `branch` (no HTTP); LFS or regular as preupload would decide. Returns the oid."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            tree = dict(repo.files_at(branch))
            for path, data in (files or {}).items():
                raw = data.encode() if isinstance(data, str) else data
                if self._upload_mode(path, len(raw), raw[:512]) == "lfs":
                    sha = hashlib.sha256(raw).hexdigest()
                    repo.lfs[sha] = raw
                    tree[path] = Blob.lfs(sha, len(raw))
                else:
                    tree[path] = Blob.regular(raw)
            for path in delete:
                tree.pop(path)
            return self._new_commit(repo, branch, tree, message, "", repo.namespace).oid

    def tag(self, repo_id: str, tag: str, revision: str = "main", *, repo_type: str = "model") -> str:
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            oid = repo.resolve(revision)
            if oid is None:
                raise KeyError(revision)
            repo.tags[tag] = oid
            return oid

    def read_file(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> bytes:
        with self._lock:
            return self.repo(repo_id, repo_type).read(path, revision)

    def _initial_commit(self, repo: FakeRepo, author: str) -> None:
        attributes = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in self.lfs_patterns)
        self._new_commit(repo, "main", {".gitattributes": Blob.regular(attributes.encode())}, "initial commit", "", author)

    def _new_commit(
        self, repo: FakeRepo, branch: str | None, files: dict[str, Blob], title: str, message: str, author: str, parent: str | None = None
    ) -> Commit:
        parents = [parent] if parent else ([repo.branches[branch]] if branch in repo.branches else [])
        seed = json.dumps(
            [repo.repo_id, parents, sorted((p, b.oid) for p, b in files.items()), title, message, next(self._counter), time.time()]
        )
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parents, files, title, message, author, _now())
        repo.commits[commit.oid] = commit
        if branch is not None:
            repo.branches[branch] = commit.oid
        return commit

    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        if size == 0:
            return "regular"
        name = path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(path, pattern) for pattern in self.lfs_patterns):
            return "lfs"
        if size >= self.lfs_threshold or b"\0" in sample:
            return "lfs"
        return "regular"

    # ------------------------------------------------------------------------------------------ job control
    def job(self, job_id: str) -> FakeJob:
        with self._lock:
            return self.jobs[job_id]

    def set_job_stage(self, job_id: str, stage: str, message: str | None = None) -> FakeJob:
        """Move a job to `stage`. Terminal stages are final (a ValueError says so)."""
        if stage not in JOB_STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        with self._cond:
            job = self.jobs[job_id]
            if job.terminal:
                raise ValueError(f"job {job_id} is already {job.stage}")
            now = _now()
            if stage in ("RUNNING", "UPDATING") and job.started_at is None:
                job.started_at = now
                job.logs.append((_iso(now), f"===== Job started at {now.strftime('%Y-%m-%d %H:%M:%S')} ====="))  # type: ignore[arg-type]
            if stage in TERMINAL_STAGES:
                job.finished_at = now
            job.stage = stage
            job.message = message
            self._cond.notify_all()
            return job

    def start_job(self, job_id: str) -> FakeJob:
        return self.set_job_stage(job_id, "RUNNING")

    def complete_job(self, job_id: str, message: str | None = None) -> FakeJob:
        return self.set_job_stage(job_id, "COMPLETED", message)

    def fail_job(self, job_id: str, message: str = "Job failed with exit code: 1") -> FakeJob:
        return self.set_job_stage(job_id, "ERROR", message)

    def time_out_job(self, job_id: str) -> FakeJob:
        return self.set_job_stage(job_id, "ERROR", "Job timeout")

    def append_log(self, job_id: str, *lines: str) -> None:
        """Append log lines (each one SSE event); followers get them at once."""
        with self._cond:
            job = self.jobs[job_id]
            if job.terminal:
                raise ValueError(f"job {job_id} is {job.stage}: no more logs")
            for line in lines:
                job.logs.append((_iso(_now()), line))  # type: ignore[arg-type]
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `predicate()` (evaluated under the server lock) is true; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("condition not met in time")
                self._cond.wait(min(remaining, 0.1))

    # ------------------------------------------------------------------------------------ request handling
    def _handle(self, handler: _Handler) -> None:
        record = RequestRecord(handler.command, urlsplit(handler.path).path, [], {k.lower(): v for k, v in handler.headers.items()}, b"")
        handler.record = record
        try:
            req = _Request(handler)
        except (OSError, ValueError):
            handler.close_connection = True
            return
        record.query = req.query_items
        record.body = req.body[:65536]
        with self._lock:
            self.requests.append(record)
        try:
            target = req.raw_path + (f"?{urlsplit(handler.path).query}" if urlsplit(handler.path).query else "")
            rule = self.faults._take_rule(req.method, target)
            if rule is not None and rule.drop == "before":
                handler.close_connection = True
                return
            req.lost = rule is not None and rule.drop == "after"
            if rule is not None and not req.lost:
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
                raise HttpError(rule.status, rule.message, rule.error_code, headers)
            self._route(req)
            if not req.answered:
                raise HttpError(500, "fakehub: route produced no answer")
        except HttpError as err:
            if not req.answered:
                req.send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception:  # a bug in the fake: keep it visible
            trace = traceback.format_exc()
            with self._lock:
                self.errors.append(trace)
            if not req.answered:
                req.send_error(HttpError(500, "fakehub internal error: " + trace.strip().splitlines()[-1]))
            else:
                handler.close_connection = True

    def _route(self, req: _Request) -> None:
        s, m = req.segments, req.method
        if s[:1] == ["api"]:
            return self._route_api(req, s[1:])
        if s[:1] == ["_lfs"] and len(s) >= 2:
            return self._lfs_transfer(req, s[1:])
        if s[:1] == ["_cdn"] and len(s) == 2 and m in ("GET", "HEAD"):
            return self._cdn(req, s[1])
        repo_type = "model"
        rest = s
        if s and s[0] in ("datasets", "spaces"):
            repo_type, rest = REPO_TYPES[s[0]], s[1:]
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"] and m == "POST":
            repo_id = f"{rest[0]}/{rest[1][:-4]}"
            if rest[5] == "batch":
                return self._lfs_batch(req, repo_type, repo_id)
            if rest[5] == "verify":
                return self._lfs_verify(req, repo_type, repo_id)
        if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
            return self._resolve(req, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        raise HttpError(404, f"Sorry, we can't find the page you are looking for ({req.method} {req.raw_path}).")

    def _validate_yaml(self, req: _Request) -> None:
        """POST /api/validate-yaml: the client checks a README.md's metadata block before committing
        it. 400 with `errors` when the front matter is not a YAML mapping, else 200."""
        import yaml

        content = str((req.json() or {}).get("content", ""))
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            return req.send_json({"errors": [{"message": f"invalid YAML: {exc}"}]}, status=400)
        if meta is not None and not isinstance(meta, dict):
            return req.send_json({"errors": [{"message": "metadata must be a YAML mapping"}]}, status=400)
        req.send_json({"errors": [], "warnings": []})

    def _route_api(self, req: _Request, s: list[str]) -> None:
        m = req.method
        if s == ["whoami-v2"] and m == "GET":
            return self._whoami(req)
        if s == ["repos", "create"] and m == "POST":
            return self._create_repo(req)
        if s == ["validate-yaml"] and m == "POST":
            return self._validate_yaml(req)
        if s == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo(req)
        if s[:1] == ["jobs"]:
            return self._route_jobs(req, s[1:])
        if len(s) >= 3 and s[0] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[s[0]], f"{s[1]}/{s[2]}", s[3:]
            if not rest and m == "GET":
                return self._repo_info(req, repo_type, repo_id, None)
            if len(rest) == 2 and rest[0] == "revision" and m == "GET":
                return self._repo_info(req, repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "preupload" and m == "POST":
                return self._preupload(req, repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "commit" and m == "POST":
                return self._commit(req, repo_type, repo_id, rest[1])
            if rest == ["refs"] and m == "GET":
                return self._refs(req, repo_type, repo_id)
            if len(rest) == 2 and rest[0] == "branch" and m in ("POST", "DELETE"):
                return self._branch(req, repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "tag" and m in ("POST", "DELETE"):
                return self._tag(req, repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "commits" and m == "GET":
                return self._commits(req, repo_type, repo_id, rest[1])
            if len(rest) >= 2 and rest[0] == "tree" and m == "GET":
                return self._tree(req, repo_type, repo_id, rest[1], "/".join(rest[2:]))
            if len(rest) == 2 and rest[0] == "paths-info" and m == "POST":
                return self._paths_info(req, repo_type, repo_id, rest[1])
            if rest[:1] == ["auth-check"] and m == "GET":
                return self._auth_check(req, repo_type, repo_id, write=rest[1:] == ["write"])
            if rest == ["settings"] and m == "PUT":
                return self._settings(req, repo_type, repo_id)
        raise HttpError(404, f"Sorry, we can't find the page you are looking for ({req.method} {req.raw_path}).")

    # ---------------------------------------------------------------------------------------------- auth
    def _caller(self, req: _Request) -> _Caller:
        auth = req.headers.get("Authorization")
        if not auth:
            return _Caller(None, None, False)
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
        with self._lock:
            user = self.tokens.get(token)
        if user is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return _Caller(user, token, token in self.read_only_tokens)

    def _namespaces(self, user: str | None) -> set[str]:
        return set() if user is None else {user, *self.orgs.get(user, [])}

    def _require_user(self, caller: _Caller) -> str:
        if caller.user is None:
            raise HttpError(401, "Invalid username or password.")
        return caller.user

    def _require_write_namespace(self, caller: _Caller, namespace: str, what: str) -> str:
        user = self._require_user(caller)
        if namespace not in self._namespaces(user):
            raise HttpError(403, f'You don\'t have the rights to {what} under the namespace "{namespace}"')
        if caller.read_only:
            raise HttpError(403, f"You don't have the rights to {what}: this token is read-only (use a write token)")
        return user

    def _readable_repo(self, req: _Request, repo_type: str, repo_id: str) -> tuple[FakeRepo, _Caller]:
        caller = self._caller(req)
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and repo.namespace not in self._namespaces(caller.user)):
            status = 401 if caller.user is None else 404
            raise HttpError(status, "Repository not found", "RepoNotFound")
        return repo, caller

    def _writable_repo(self, req: _Request, repo_type: str, repo_id: str) -> tuple[FakeRepo, str]:
        repo, caller = self._readable_repo(req, repo_type, repo_id)
        user = self._require_write_namespace(caller, repo.namespace, f"write to {repo_type} {repo_id}")
        return repo, user

    def _check_gate(self, repo: FakeRepo, caller: _Caller) -> None:
        if not repo.gated or repo.namespace in self._namespaces(caller.user) or caller.user in repo.gated_access:
            return
        kind = {"model": "model", "dataset": "dataset", "space": "space"}[repo.repo_type]
        if caller.user is None:
            raise HttpError(
                401,
                f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                "GatedRepo",
            )
        raise HttpError(
            403,
            f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized list. Visit {self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id} to ask for access.",
            "GatedRepo",
        )

    def _rev(self, repo: FakeRepo, rev: str) -> str:
        oid = repo.resolve(rev)
        if oid is None:
            raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return oid

    # ------------------------------------------------------------------------------------------ user + repos
    def _whoami(self, req: _Request) -> None:
        caller = self._caller(req)
        user = self._require_user(caller)
        orgs = [
            {"type": "org", "id": _fake_id(org), "name": org, "fullname": org, "roleInOrg": "write", "isEnterprise": False, "canPay": True}
            for org in self.orgs.get(user, [])
        ]
        req.send_json(
            {
                "type": "user",
                "id": _fake_id(user),
                "name": user,
                "fullname": user.title(),
                "email": f"{user}@example.com",
                "emailVerified": True,
                "canPay": True,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": orgs,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "fakehub", "role": "read" if caller.read_only else "write", "createdAt": _iso(_now())},
                },
            }
        )

    def _create_repo(self, req: _Request) -> None:
        caller = self._caller(req)
        body = req.json() or {}
        name = body.get("name")
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HttpError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not REPO_NAME_RE.fullmatch(name) or name.endswith((".git", ".")):
            raise HttpError(400, f"Invalid repo name: {name!r}")
        namespace = body.get("organization") or self._require_user(caller)
        with self._lock:
            self._require_write_namespace(caller, namespace, f"create a {repo_type}")
            repo_id = f"{namespace}/{name}"
            url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
            if (repo_type, repo_id) in self.repos:
                # create_repo(exist_ok=True) reads the repo url from this 409's body
                raise HttpError(409, f"You already created this {repo_type} repo", extra={"url": url})
            if "visibility" in body:
                private = body["visibility"] != "public"
            else:
                private = bool(body.get("private", False))
            repo = FakeRepo(repo_type, repo_id, private=private)
            self.repos[(repo_type, repo_id)] = repo
            self._initial_commit(repo, caller.user or namespace)
        req.send_json({"url": url, "name": repo_id, "id": _fake_id(repo_type + repo_id)})

    def _delete_repo(self, req: _Request) -> None:
        caller = self._caller(req)
        body = req.json() or {}
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or self._require_user(caller)
        repo_id = f"{namespace}/{body.get('name')}"
        with self._lock:
            repo = self.repos.get((repo_type, repo_id))
            if repo is None or (repo.private and namespace not in self._namespaces(caller.user)):
                raise HttpError(404, "Repository not found", "RepoNotFound")
            self._require_write_namespace(caller, namespace, f"delete {repo_type} {repo_id}")
            del self.repos[(repo_type, repo_id)]
        req.send(200)

    def _settings(self, req: _Request, repo_type: str, repo_id: str) -> None:
        body = req.json() or {}
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            if "visibility" in body:
                repo.private = body["visibility"] != "public"
            elif "private" in body:
                repo.private = bool(body["private"])
            if "gated" in body:
                repo.gated = body["gated"] or False
        req.send_json({"private": repo.private, "gated": repo.gated})

    def _repo_info(self, req: _Request, repo_type: str, repo_id: str, rev: str | None) -> None:
        with self._lock:
            repo, _ = self._readable_repo(req, repo_type, repo_id)
            oid = self._rev(repo, rev or "main")
            commit = repo.commits[oid]
            blobs = req.q_bool("blobs")
            siblings = []
            for path in sorted(commit.files):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    blob = commit.files[path]
                    sibling.update(size=blob.size, blobId=blob.oid)
                    if blob.lfs_sha256:
                        sibling["lfs"] = {"size": blob.size, "sha256": blob.lfs_sha256, "pointerSize": blob.pointer_size}
                siblings.append(sibling)
            info: dict[str, Any] = {
                "_id": _fake_id(repo_type + repo_id),
                "id": repo_id,
                "author": repo.namespace,
                "sha": oid,
                "private": repo.private,
                "gated": repo.gated,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": _iso(repo.created_at),
                "lastModified": _iso(commit.date),
                "siblings": siblings,
                "usedStorage": sum(b.size for b in commit.files.values()),
            }
            if repo_type == "model":
                info["modelId"] = repo_id
        req.send_json(info)

    def _auth_check(self, req: _Request, repo_type: str, repo_id: str, write: bool) -> None:
        with self._lock:
            repo, caller = self._readable_repo(req, repo_type, repo_id)
            if write:
                self._require_write_namespace(caller, repo.namespace, f"write to {repo_type} {repo_id}")
            else:
                self._check_gate(repo, caller)
        req.send_json({"access": "write" if write else "read"})

    # ------------------------------------------------------------------------------------------- refs
    def _refs(self, req: _Request, repo_type: str, repo_id: str) -> None:
        with self._lock:
            repo, _ = self._readable_repo(req, repo_type, repo_id)
            out: dict[str, Any] = {
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in sorted(repo.branches.items())],
                "converts": [],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": oid} for t, oid in sorted(repo.tags.items())],
            }
            if req.q_bool("include_prs"):
                out["pullRequests"] = [
                    {"name": str(n), "ref": f"refs/pr/{n}", "targetCommit": oid} for n, oid in sorted(repo.pull_requests.items())
                ]
        req.send_json(out)

    def _branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> None:
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            if req.method == "DELETE":
                if branch not in repo.branches:
                    raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == "main":
                    raise HttpError(403, "Cannot delete the default branch")
                del repo.branches[branch]
                return req.send_json({})
            body = req.json() or {}
            if branch in repo.branches:
                raise HttpError(409, f"Reference refs/heads/{branch} already exists")
            if body.get("emptyBranch"):
                raise HttpError(400, "fakehub: empty branches are not supported")
            repo.branches[branch] = self._rev(repo, body.get("startingPoint") or "main")
        req.send_json({})

    def _tag(self, req: _Request, repo_type: str, repo_id: str, rev_or_tag: str) -> None:
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            if req.method == "DELETE":
                if rev_or_tag not in repo.tags:
                    raise HttpError(404, f"Invalid rev id: {rev_or_tag}", "RevisionNotFound")
                del repo.tags[rev_or_tag]
                repo.tag_messages.pop(rev_or_tag, None)
                return req.send_json({})
            body = req.json() or {}
            tag = body.get("tag")
            if not isinstance(tag, str) or not tag or tag.startswith(("refs/", "/")) or ".." in tag:
                raise HttpError(400, f"Invalid tag name: {tag!r}")
            oid = self._rev(repo, rev_or_tag)
            if tag in repo.tags:
                raise HttpError(409, f"Tag {tag} already exists")
            repo.tags[tag] = oid
            repo.tag_messages[tag] = body.get("message")
        req.send_json({})

    def _commits(self, req: _Request, repo_type: str, repo_id: str, rev: str) -> None:
        with self._lock:
            repo, _ = self._readable_repo(req, repo_type, repo_id)
            self._rev(repo, rev)
            items = [
                {"id": c.oid, "title": c.title, "message": c.message, "date": _iso(c.date), "authors": [{"user": c.author, "avatar": ""}]}
                for c in repo.history(rev)
            ]
        self._paginate(req, items)

    def _paginate(self, req: _Request, items: list[Any]) -> None:
        try:
            start = max(0, int(req.q("cursor") or 0))
        except ValueError:
            raise HttpError(400, "Invalid cursor") from None
        page = items[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            params = [(k, v) for k, v in req.query_items if k != "cursor"] + [("cursor", str(start + self.page_size))]
            headers["Link"] = f'<{self.url}{req.raw_path}?{urlencode(params)}>; rel="next"'
        req.send_json(page, headers=headers)

    # ------------------------------------------------------------------------------------------- tree
    def _entry(self, repo: FakeRepo, rev_oid: str, path: str, blob: Blob | None, expand: bool) -> dict[str, Any]:
        files = repo.commits[rev_oid].files
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs_sha256:
                entry["lfs"] = {"oid": blob.lfs_sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        else:
            inside = sorted((p, b.oid) for p, b in files.items() if p.startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, rev_oid, path)
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
            if blob is not None:
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
        return entry

    def _last_commit(self, repo: FakeRepo, rev_oid: str, path: str) -> Commit:
        def state(commit: Commit) -> list[tuple[str, str]]:
            return sorted((p, b.oid) for p, b in commit.files.items() if p == path or p.startswith(path + "/"))

        history = repo.history(rev_oid)
        current = state(history[0])
        last = history[0]
        for commit in history[1:]:
            if state(commit) != current:
                break
            last = commit
        return last

    def _tree(self, req: _Request, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        with self._lock:
            repo, _ = self._readable_repo(req, repo_type, repo_id)
            oid = self._rev(repo, rev)
            files = repo.commits[oid].files
            path = path.strip("/")
            prefix = f"{path}/" if path else ""
            if path and not any(p.startswith(prefix) for p in files):
                raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
            recursive, expand = req.q_bool("recursive"), req.q_bool("expand")
            entries: dict[str, Blob | None] = {}
            for file_path, blob in files.items():
                if not file_path.startswith(prefix):
                    continue
                parts = file_path[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                for i in range(1, min(depth, len(parts) - 1) + 1):  # directories on the way
                    entries.setdefault(prefix + "/".join(parts[:i]), None)
                if recursive or len(parts) == 1:
                    entries[file_path] = blob
            items = [self._entry(repo, oid, p, entries[p], expand) for p in sorted(entries)]
        self._paginate(req, items)

    def _paths_info(self, req: _Request, repo_type: str, repo_id: str, rev: str) -> None:
        form = parse_qsl(req.body.decode(), keep_blank_values=True)
        if (req.headers.get("Content-Type") or "").startswith("application/json"):
            data = req.json() or {}
            paths, expand = list(data.get("paths") or []), bool(data.get("expand"))
        else:
            paths = [v for k, v in form if k == "paths"]
            expand = any(k == "expand" and v.lower() in ("1", "true") for k, v in form)
        with self._lock:
            repo, _ = self._readable_repo(req, repo_type, repo_id)
            oid = self._rev(repo, rev)
            files = repo.commits[oid].files
            out = []
            for path in paths:
                path = path.strip("/")
                if path in files:
                    out.append(self._entry(repo, oid, path, files[path], expand))
                elif path and any(p.startswith(path + "/") for p in files):
                    out.append(self._entry(repo, oid, path, None, expand))
        req.send_json(out)

    # ------------------------------------------------------------------------------------------ downloads
    def _resolve(self, req: _Request, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        with self._lock:
            repo, caller = self._readable_repo(req, repo_type, repo_id)
            self._check_gate(repo, caller)
            oid = self._rev(repo, rev)
            blob = repo.commits[oid].files.get(path)
            if blob is None:
                raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": oid})
            headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes", "ETag": f'"{blob.oid}"'}
            if blob.lfs_sha256 is not None:
                headers.update({"X-Linked-Etag": f'"{blob.lfs_sha256}"', "X-Linked-Size": str(blob.size)})
                if self.lfs_cdn_redirect:
                    token = secrets.token_urlsafe(16)
                    self._downloads[token] = ((repo_type, repo_id), blob.lfs_sha256)
                    filename = quote(path.rsplit("/", 1)[-1])
                    cdn_host = "127.0.0.1" if self.host == "localhost" else "localhost"  # another host name, same socket
                    headers["Location"] = f"http://{cdn_host}:{self.port}/_cdn/{token}?filename={filename}"
                    return req.send(302, b"", headers)
                data = repo.lfs[blob.lfs_sha256]
            else:
                data = blob.content or b""
        self._send_bytes(req, data, headers)

    def _cdn(self, req: _Request, token: str) -> None:
        with self._lock:
            target = self._downloads.get(token)
            repo = self.repos.get(target[0]) if target else None
            if target is None or repo is None:
                raise HttpError(403, "Request has expired or the signature does not match")
            data = repo.lfs[target[1]]
        self._send_bytes(req, data, {"ETag": f'"{target[1]}"', "Accept-Ranges": "bytes"})

    def _send_bytes(self, req: _Request, data: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Content-Type": "application/octet-stream"}
        rng = req.headers.get("Range")
        if rng and req.method == "GET":
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else len(data) - 1
                else:
                    start, end = max(0, len(data) - int(m.group(2))), len(data) - 1
                if start >= len(data) or start > end:
                    return req.send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                end = min(end, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return req.send(206, data[start : end + 1], headers)
        req.send(200, data, headers)

    # ------------------------------------------------------------------------------------------- uploads
    def _preupload(self, req: _Request, repo_type: str, repo_id: str, rev: str) -> None:
        body = req.json() or {}
        files = body.get("files")
        if not isinstance(files, list):
            raise HttpError(400, "Invalid preupload payload: 'files' must be a list")
        ignore = [line.strip() for line in (body.get("gitIgnore") or "").splitlines() if line.strip() and not line.startswith("#")]
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            oid = self._rev(repo, rev)
            current = repo.commits[oid].files
            out = []
            for item in files:
                try:
                    path, size = item["path"], int(item["size"])
                    sample = base64.b64decode(item.get("sample") or "")
                except (KeyError, TypeError, ValueError):
                    raise HttpError(400, "Invalid preupload payload: each file needs path, size and sample") from None
                mode = self._upload_mode(path, size, sample)
                existing = current.get(path)
                remote_oid = None
                if existing is not None:
                    remote_oid = existing.lfs_sha256 if existing.lfs_sha256 else existing.oid
                should_ignore = any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pat) for pat in ignore)
                out.append({"path": path, "uploadMode": mode, "shouldIgnore": should_ignore, "oid": remote_oid})
        req.send_json({"files": out, "commitOid": oid})

    def _lfs_batch(self, req: _Request, repo_type: str, repo_id: str) -> None:
        body = req.json() or {}
        if body.get("operation") != "upload":
            raise HttpError(400, "fakehub: only the upload operation of the LFS batch API is implemented")
        objects = body.get("objects")
        if not isinstance(objects, list):
            raise HttpError(422, "Invalid batch request: 'objects' must be a list")
        out = []
        multipart = False
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            ref = (body.get("ref") or {}).get("name")
            if ref is not None and repo.resolve(ref) is None:
                raise HttpError(404, f"Invalid rev id: {ref}", "RevisionNotFound")
            base = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects"
            for obj in objects:
                oid, size = obj.get("oid"), obj.get("size")
                if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int) and size >= 0):
                    out.append(
                        {"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": {"code": 422, "message": "Invalid object"}}
                    )
                    continue
                entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in repo.lfs:
                    token = secrets.token_urlsafe(16)
                    self._uploads[token] = _Upload((repo_type, repo_id), oid, size)
                    upload: dict[str, Any] = {"href": f"{self.url}/_lfs/{token}", "expires_in": 86400}
                    chunk = self.multipart_chunk_size
                    if chunk and size > chunk:
                        multipart = True
                        count = -(-size // chunk)
                        upload["header"] = {
                            "chunk_size": str(chunk),
                            **{str(i): f"{self.url}/_lfs/{token}/part/{i}" for i in range(1, count + 1)},
                        }
                    entry["actions"] = {"upload": upload}
                    if self.lfs_verify:
                        entry["actions"]["verify"] = {"href": f"{base}/verify", "header": {}}
                out.append(entry)
        req.send_json(
            {"transfer": "multipart" if multipart else "basic", "objects": out, "hash_algo": "sha256"},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_transfer(self, req: _Request, s: list[str]) -> None:
        """Signed upload URLs (no auth header, like S3): single PUT, part PUTs, multipart completion POST."""
        with self._lock:
            upload = self._uploads.get(s[0])
        if upload is None:
            raise HttpError(403, "Request has expired or the signature does not match")
        if len(s) == 3 and s[1] == "part" and req.method == "PUT":
            with self._lock:
                upload.parts[int(s[2])] = req.body
            return req.send(200, b"", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})
        if len(s) == 1 and req.method == "PUT":
            return self._store_lfs(req, upload, req.body)
        if len(s) == 1 and req.method == "POST":
            body = req.json() or {}
            with self._lock:
                numbers = [int(p["partNumber"]) for p in body.get("parts", [])]
                if body.get("oid") != upload.oid or numbers != sorted(upload.parts):
                    raise HttpError(400, "Invalid multipart completion: parts or oid do not match the upload")
                data = b"".join(upload.parts[n] for n in numbers)
            return self._store_lfs(req, upload, data)
        raise HttpError(405, "Method not allowed")

    def _store_lfs(self, req: _Request, upload: _Upload, data: bytes) -> None:
        if len(data) != upload.size or hashlib.sha256(data).hexdigest() != upload.oid:
            raise HttpError(400, f"Uploaded content does not match oid {upload.oid} and size {upload.size}")
        with self._lock:
            repo = self.repos.get(upload.repo_key)
            if repo is None:
                raise HttpError(404, "Repository not found", "RepoNotFound")
            repo.lfs[upload.oid] = data
        req.send(200, b"", {"ETag": f'"{upload.oid}"'})

    def _lfs_verify(self, req: _Request, repo_type: str, repo_id: str) -> None:
        body = req.json() or {}
        with self._lock:
            repo, _ = self._writable_repo(req, repo_type, repo_id)
            data = repo.lfs.get(str(body.get("oid")))
            if data is None or len(data) != body.get("size"):
                raise HttpError(404, f"Object {body.get('oid')} not found")
        req.send_json({"message": "ok"})

    # ------------------------------------------------------------------------------------------- commits
    def _commit(self, req: _Request, repo_type: str, repo_id: str, rev: str) -> None:
        try:
            lines = [json.loads(line) for line in req.body.decode().splitlines() if line.strip()]
        except ValueError:
            raise HttpError(400, "Invalid NDJSON commit payload") from None
        with self._lock:
            self.commit_requests.append(
                {"repo_type": repo_type, "repo_id": repo_id, "revision": rev, "params": dict(req.query_items), "lines": lines}
            )
            repo, user = self._writable_repo(req, repo_type, repo_id)
            if not lines or lines[0].get("key") != "header":
                raise HttpError(400, "The first line of a commit payload must be the header")
            header = lines[0].get("value") or {}
            summary = header.get("summary")
            if not isinstance(summary, str) or not summary.strip():
                raise HttpError(400, "Commit summary is required")
            create_pr = req.q_bool("create_pr")
            branch = rev.removeprefix("refs/heads/")
            if branch not in repo.branches:
                if repo.resolve(rev) is None:
                    raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
                if not create_pr:
                    raise HttpError(400, f"Invalid rev id: {rev} is not a branch; commits can only be made on a branch")
            head = repo.resolve(branch if branch in repo.branches else rev)
            assert head is not None
            parent_commit = header.get("parentCommit")
            if parent_commit is not None and parent_commit != head:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[head].files)
            for line in lines[1:]:
                self._apply_op(repo, tree, line)
            description = header.get("description") or ""
            if create_pr:
                commit = self._new_commit(repo, None, tree, summary, description, user, parent=head)
                number = max([0, *repo.pull_requests]) + 1
                repo.pull_requests[number] = commit.oid
                pr_url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}/discussions/{number}"
            else:
                commit = self._new_commit(repo, branch, tree, summary, description, user, parent=head)
                pr_url = None
        hold = None if create_pr else self.faults._take_hold(branch, commit.oid)
        if hold is not None:
            hold.reached.set()
            hold.release.wait(hold.timeout)
        req.send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _apply_op(self, repo: FakeRepo, tree: dict[str, Blob], line: dict[str, Any]) -> None:
        key, value = line.get("key"), line.get("value") or {}
        path = str(value.get("path", "")).strip("/")
        if not path and key != "deletedFolder":
            raise HttpError(400, f"Missing path in commit operation {key}")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HttpError(400, f"Unsupported encoding {value.get('encoding')!r}")
            try:
                data = base64.b64decode(value.get("content") or "", validate=True)
            except ValueError:
                raise HttpError(400, f"Invalid base64 content for {path}") from None
            tree[path] = Blob.regular(data)
        elif key == "lfsFile":
            oid = value.get("oid")
            if value.get("algo", "sha256") != "sha256" or oid not in repo.lfs:
                raise HttpError(400, f"LFS object {oid} for {path} was not uploaded to this repo")
            size = len(repo.lfs[oid])
            if "size" in value and value["size"] != size:
                raise HttpError(400, f"LFS object size mismatch for {path}")
            tree[path] = Blob.lfs(oid, size)
        elif key == "deletedFile":
            if path not in tree:
                raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del tree[path]
        elif key == "deletedFolder":
            prefix = f"{path}/" if path else ""
            doomed = [p for p in tree if p.startswith(prefix)]
            if not doomed:
                raise HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del tree[p]
        else:
            raise HttpError(400, f"Unknown commit operation {key!r}")

    # ---------------------------------------------------------------------------------------------- jobs
    def _route_jobs(self, req: _Request, s: list[str]) -> None:
        m = req.method
        if s == ["hardware"] and m == "GET":
            self._caller(req)
            return req.send_json(self.hardware)
        if len(s) == 1 and m == "POST":
            return self._run_job(req, s[0])
        if len(s) == 1 and m == "GET":
            return self._list_jobs(req, s[0])
        if len(s) >= 2:
            namespace, job_id, rest = s[0], s[1], s[2:]
            if not rest and m == "GET":
                with self._lock:
                    job = self._job_for(req, namespace, job_id, write=False)
                    return req.send_json(job.info())
            if rest == ["cancel"] and m == "POST":
                return self._cancel_job(req, namespace, job_id)
            if rest == ["labels"] and m == "PUT":
                return self._update_labels(req, namespace, job_id)
            if rest == ["logs"] and m == "GET":
                return self._logs(req, namespace, job_id)
            if rest == ["metrics"] and m == "GET":
                return self._metrics(req, namespace, job_id)
        raise HttpError(404, f"Sorry, we can't find the page you are looking for ({req.method} {req.raw_path}).")

    def _job_for(self, req: _Request, namespace: str, job_id: str, *, write: bool) -> FakeJob:
        caller = self._caller(req)
        user = self._require_user(caller)
        job = self.jobs.get(job_id)
        if job is None or job.namespace != namespace or namespace not in self._namespaces(user):
            raise HttpError(404, "Job not found")
        if write:
            self._require_write_namespace(caller, namespace, "manage jobs")
        return job

    def _validate_labels(self, labels: Any) -> dict[str, str]:
        if labels is None:
            return {}
        if not isinstance(labels, dict):
            raise HttpError(400, "labels must be an object of string keys and values")
        for key, value in labels.items():
            if not isinstance(key, str) or not LABEL_RE.fullmatch(key):
                raise HttpError(400, f"Invalid label key {key!r}: use letters, digits, '-' and '_' (at most 100)")
            if not isinstance(value, str) or not LABEL_VALUE_RE.fullmatch(value):
                raise HttpError(400, f"Invalid label value {value!r} for {key!r}: use letters, digits, '-' and '_' (at most 100)")
        return dict(labels)

    def _validate_job(self, payload: Any) -> dict[str, str]:
        if not isinstance(payload, dict):
            raise HttpError(400, "Job spec must be a JSON object")
        command = payload.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise HttpError(400, "command is required: a non-empty list of strings")
        if not isinstance(payload.get("arguments", []), list):
            raise HttpError(400, "arguments must be a list of strings")
        if ("dockerImage" in payload) == ("spaceId" in payload):
            raise HttpError(400, "Exactly one of dockerImage or spaceId is required")
        image = payload.get("dockerImage", payload.get("spaceId"))
        if not isinstance(image, str) or not image:
            raise HttpError(400, "dockerImage/spaceId must be a non-empty string")
        for name in ("environment", "secrets"):
            value = payload.get(name, {})
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise HttpError(400, f"{name} must be an object of string values")
        flavor = payload.get("flavor")
        names = [h["name"] for h in self.hardware]
        if flavor not in names:
            raise HttpError(400, f"Invalid flavor {flavor!r}. Available flavors: {', '.join(names)}")
        timeout = payload.get("timeoutSeconds")
        if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
            raise HttpError(400, f"timeoutSeconds must be a positive integer, got {timeout!r}")
        attempts = payload.get("attempts")
        if attempts is not None and (not isinstance(attempts, int) or attempts < 1):
            raise HttpError(400, f"attempts must be a positive integer, got {attempts!r}")
        return self._validate_labels(payload.get("labels"))

    def _run_job(self, req: _Request, namespace: str) -> None:
        caller = self._caller(req)
        payload = req.json()
        with self._lock:
            self.job_requests.append(payload)
            user = self._require_write_namespace(caller, namespace, "run jobs")
            labels = self._validate_job(payload)
            if namespace in self.out_of_credits or "*" in self.out_of_credits:
                raise HttpError(
                    402, "You have insufficient credits to run this job. Please add a payment method or credits to your account."
                )
            owner_type = "user" if namespace == user else "org"
            job = FakeJob(
                id=secrets.token_hex(12),
                namespace=namespace,
                owner={"id": _fake_id(namespace), "name": namespace, "type": owner_type},
                payload=payload,
                submitted_by=user,
                labels=labels,
                seq=next(self._counter),
            )
            self.jobs[job.id] = job
            info = job.info()
            failure = self.faults._take_job_failure()
            if failure is not None:
                self.set_job_stage(job.id, "RUNNING")
                if failure.logs:
                    self.append_log(job.id, *failure.logs)
                self.set_job_stage(job.id, "ERROR", failure.message)
            self._cond.notify_all()
        if failure is None and self.on_job_submitted is not None:
            thread = threading.Thread(target=self._run_hook, args=(job,), name=f"fakehub-job-{job.id}", daemon=True)
            self._threads.append(thread)
            thread.start()
        req.send_json(info)

    def _run_hook(self, job: FakeJob) -> None:
        try:
            assert self.on_job_submitted is not None
            self.on_job_submitted(job)
        except Exception:
            self.hook_errors.append(traceback.format_exc())

    def _list_jobs(self, req: _Request, namespace: str) -> None:
        caller = self._caller(req)
        user = self._require_user(caller)
        if namespace not in self._namespaces(user):
            raise HttpError(403, f'You don\'t have the rights to list jobs under the namespace "{namespace}"')
        stages = {s.upper() for s in req.q_all("stage")}
        wanted = []
        for label in req.q_all("label"):
            key, sep, value = label.partition("=")
            wanted.append((key, value if sep else None))
        with self._lock:
            jobs = sorted((j for j in self.jobs.values() if j.namespace == namespace), key=lambda j: -j.seq)
            items = [
                j.info()
                for j in jobs
                if (not stages or j.stage in stages) and all(k in j.labels and (v is None or j.labels[k] == v) for k, v in wanted)
            ]
        self._paginate(req, items)

    def _cancel_job(self, req: _Request, namespace: str, job_id: str) -> None:
        with self._lock:
            job = self._job_for(req, namespace, job_id, write=True)
            if not job.terminal:  # canceling a finished job is a no-op
                self.set_job_stage(job_id, "CANCELED", "Canceled by user")
            info = job.info()
        req.send_json(info)

    def _update_labels(self, req: _Request, namespace: str, job_id: str) -> None:
        body = req.json() or {}
        with self._lock:
            job = self._job_for(req, namespace, job_id, write=True)
            job.labels = self._validate_labels(body.get("labels"))
            info = job.info()
        req.send_json(info)

    def _logs(self, req: _Request, namespace: str, job_id: str) -> None:
        with self._lock:
            job = self._job_for(req, namespace, job_id, write=False)
            tail = req.q("tail")
            start = max(0, len(job.logs) - int(tail)) if tail and tail.isdigit() else 0
        drop_after = self.faults._take_log_drop(job_id)
        req.start_stream()
        if drop_after == 0:
            return req.abort()
        index, sent = start, 0
        next_keepalive = time.monotonic() + self.sse_keepalive_s
        while True:
            with self._cond:
                while index >= len(job.logs) and not job.terminal and not self._stopping:
                    remaining = next_keepalive - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = job.logs[index:]
                index = len(job.logs)
                done = job.terminal or self._stopping
            for timestamp, text in batch:
                req.write_chunk(f"data: {json.dumps({'data': text, 'timestamp': timestamp})}\n\n".encode())
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    return req.abort()
            if done:
                return req.end_stream()
            if time.monotonic() >= next_keepalive:
                req.write_chunk(b": keep-alive\n\n")
                next_keepalive = time.monotonic() + self.sse_keepalive_s

    def _metrics(self, req: _Request, namespace: str, job_id: str) -> None:
        """One `event: metric` per second while the job runs; 500 once it finished (as the client expects)."""
        with self._lock:
            job = self._job_for(req, namespace, job_id, write=False)
            if job.terminal:
                raise HttpError(500, "Job is not running")
        req.start_stream()
        while True:
            with self._cond:
                if job.terminal or self._stopping:
                    return req.end_stream()
                running = job.stage == "RUNNING"
            if running:
                sample = {
                    "cpu_usage_pct": 0,
                    "cpu_millicores": 0,
                    "memory_used_bytes": 0,
                    "memory_total_bytes": 0,
                    "rx_bps": 0,
                    "tx_bps": 0,
                    "gpus": {},
                    "replica": job.id[:5],
                }
                req.write_chunk(f"event: metric\ndata: {json.dumps(sample)}\n\n".encode())
            with self._cond:
                self._cond.wait(1.0)
