"""An in-memory GitHub REST server for tests: the calls a PR bot makes, answered as GitHub does.

It is a real HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, in a thread), so the code
under test runs its real HTTP client, headers, pagination and retries; nothing is patched.

Contract details it keeps because bots get them wrong (reference/github.md):
- list endpoints page 30 items by default, `per_page` up to 100, with a `Link` header
  (`rel="next"`, `"last"`, `"first"`, `"prev"`) of absolute URLs;
- comment authorship comes from the token: the Actions token is `github-actions[bot]`
  (`type: Bot`) and `GET /user` answers it 403 "Resource not accessible by integration";
  a read-only token (a fork PR's) gets that same 403 on writes;
- `POST`/`PATCH` of a body over 65,536 characters answer 422 "Body is too long";
- `GET commits/{sha}/pulls` returns `[]` for the first N calls after a merge (association lag),
  422 for a commit it does not know, and list items without `merged` (only `merged_at`);
- unknown or missing tokens answer 401 "Bad credentials" / "Requires authentication";
- `GET issues/{n}/events` lists `labeled`/`unlabeled` events (`actor`, `created_at`, `label`),
  oldest first, and `GET collaborators/{user}/permission` answers `permission` (admin, write,
  read, none) as GitHub maps roles (maintain -> write, triage -> read);
- timestamps come from one clock that moves one second per write, so "later than" is exact.

Faults are queued by tests: `fail(...)` (any status, e.g. 502), `rate_limit(...)` (403 with
`X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`, or 429 with `Retry-After`) and `drop(...)`
(close the connection without an answer, before or after the request took effect).
Every request is recorded in `calls` for assertions.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

BODY_LIMIT = 65_536
ACTIONS_LOGIN = "github-actions[bot]"
DOCS = "https://docs.github.com/rest"


@dataclass(frozen=True)
class Identity:
    """Who a token acts as: `actions` tokens cannot read `GET /user`; `write=False` is read-only."""

    login: str
    type: str = "User"
    actions: bool = False
    write: bool = True
    id: int = 0


@dataclass
class Call:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Fault:
    """A queued misbehaviour for requests matching `method` and `path` (a regex searched in the path)."""

    kind: str  # "status" or "drop"
    method: str | None
    path: str | None
    times: int
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after: bool = True  # drop: after the request took effect (True) or before (False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or re.search(self.path, path) is not None)


class _Answer(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found() -> _Answer:
    return _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


class FakeGitHub:
    """The server plus its state. Use `start()`/`stop()` or `with FakeGitHub() as gh:`.

    Control API for tests (all thread-safe):
      tokens: `token` (user `tuneform-bot`), `actions_token` (`github-actions[bot]`),
        `add_token(token, login, type=, actions=, write=)`;
      PRs: `add_pr(number, title=, labels=, head_sha=, base=)`, `merge_pr(number, sha, lag=)`,
        `associate(sha, number)`, `add_commit(sha)`, `push(number, sha)`;
      labels: `add_label(pr, name, actor=)`, `remove_label(pr, name, actor=)`;
      people: `set_permission(login, permission)`;
      comments: `add_comment(pr, body, login=, type=)`, `comments(pr)`, `comment(id)`;
      faults: `fail(status, ...)`, `rate_limit(...)`, `drop(...)`;
      observation: `calls`, `requests(method, path_regex)`, `errors` (the fake's own crashes).
    """

    def __init__(self, repository: str = "acme/models", *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.owner, self.repo = repository.split("/", 1)
        self.repository = repository
        self.repo_id = 700_000_001
        self._lock = threading.RLock()
        self._host, self._port = host, port
        self.tokens: dict[str, Identity] = {}
        self.token = "ghp_tuneformtesttoken"
        self.actions_token = "ghs_actionstesttoken"
        self.add_token(self.token, "tuneform-bot")
        self.add_token(self.actions_token, ACTIONS_LOGIN, type="Bot", actions=True)
        self.prs: dict[int, dict[str, Any]] = {}
        self._comments: dict[int, dict[str, Any]] = {}
        self._next_comment_id = 1_000_001
        self._commits: set[str] = set()
        self._associations: dict[str, list[int]] = {}
        self._lag: dict[str, int] = {}
        self._faults: list[Fault] = []
        self._events: dict[int, list[dict[str, Any]]] = {}
        self._permissions: dict[str, str] = {}
        self._clock = 1_767_225_600  # 2026-01-01T00:00:00Z; moves one second per write (_tick)
        self.calls: list[Call] = []
        self.errors: list[str] = []  # the fake's own bugs (tracebacks), checked by the fixture
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to use as GITHUB_API_URL."""
        assert self._server is not None, "start() the server first"
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> Self:
        fake: FakeGitHub = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with fake._lock:
                    fake._sockets.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with fake._lock:
                    fake._sockets.discard(request)
                super().shutdown_request(request)

        class Handler(_Handler):
            server_state = fake

        self._server = Server((self._host, self._port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close kept-alive connections and join the server thread."""
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding -----------------------------------------------------------------------------------

    def add_token(self, token: str, login: str, *, type: str = "User", actions: bool = False, write: bool = True) -> Identity:
        with self._lock:
            identity = Identity(login=login, type=type, actions=actions, write=write, id=10_000 + len(self.tokens))
            self.tokens[token] = identity
            return identity

    def add_pr(
        self,
        number: int,
        *,
        title: str = "Add a run",
        labels: tuple[str, ...] | list[str] = (),
        head_sha: str | None = None,
        base: str = "main",
        author: str = "alice",
    ) -> dict[str, Any]:
        with self._lock:
            head_sha = head_sha or f"{number:040x}"
            pr = {
                "number": number,
                "title": title,
                "state": "open",
                "merged": False,
                "merged_at": None,
                "merge_commit_sha": None,
                "head": {"sha": head_sha, "ref": f"pr-{number}"},
                "base": {"ref": base},
                "labels": [{"name": name} for name in labels],
                "user": {"login": author, "type": "User"},
            }
            self.prs[number] = pr
            self._commits.add(head_sha)
            return pr

    def merge_pr(self, number: int, sha: str, *, lag: int = 0) -> None:
        """Merge PR `number` as commit `sha`; `commits/{sha}/pulls` answers [] for the first `lag` calls."""
        with self._lock:
            pr = self.prs[number]
            pr.update(state="closed", merged=True, merged_at="2026-01-01T00:00:00Z", merge_commit_sha=sha)
            self._commits.add(sha)
            self._associations.setdefault(sha, []).append(number)
            self._lag[sha] = lag

    def associate(self, sha: str, number: int) -> None:
        """Make `commits/{sha}/pulls` list PR `number` (e.g. a rebase-merged commit)."""
        with self._lock:
            self._commits.add(sha)
            self._associations.setdefault(sha, []).append(number)

    def add_commit(self, sha: str) -> None:
        """A commit that exists but belongs to no PR (a direct push)."""
        with self._lock:
            self._commits.add(sha)

    def push(self, number: int, sha: str) -> None:
        """A new head commit on PR `number` (GitHub keeps the labels)."""
        with self._lock:
            self.prs[number]["head"]["sha"] = sha
            self._commits.add(sha)

    def add_label(self, pr: int, name: str, *, actor: str = "carol") -> None:
        """`actor` adds label `name` to PR `pr`: the label, and a `labeled` event at the clock's time."""
        with self._lock:
            labels = self.prs[pr]["labels"]
            if all(label["name"] != name for label in labels):
                labels.append({"name": name})
            self._event(pr, "labeled", name, actor)

    def remove_label(self, pr: int, name: str, *, actor: str = "carol") -> None:
        with self._lock:
            self.prs[pr]["labels"] = [label for label in self.prs[pr]["labels"] if label["name"] != name]
            self._event(pr, "unlabeled", name, actor)

    def set_permission(self, login: str, permission: str) -> None:
        """`login`'s permission on the repository: admin, write, read or none (the default)."""
        with self._lock:
            self._permissions[login] = permission

    def _event(self, pr: int, kind: str, name: str, actor: str) -> None:
        events = self._events.setdefault(pr, [])
        events.append(
            {
                "id": 30_000_000 + sum(len(e) for e in self._events.values()),
                "actor": {"login": actor, "type": "User"},
                "event": kind,
                "commit_id": None,
                "created_at": self._tick(),
                "label": {"name": name, "color": "ededed"},
            }
        )

    def _tick(self) -> str:
        """The clock's time as GitHub writes it (seconds), one second later than the last."""
        self._clock += 1
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock))

    def add_comment(self, pr: int, body: str, *, login: str = "alice", type: str = "User") -> int:
        with self._lock:
            return int(self._create_comment(pr, body, {"login": login, "id": 20_000 + len(login), "type": type})["id"])

    def comments(self, pr: int) -> list[dict[str, Any]]:
        """PR `pr`'s comments, oldest first (copies)."""
        with self._lock:
            return [copy.deepcopy(c) for c in self._comments.values() if c["_issue"] == pr]

    def comment(self, comment_id: int) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._comments[comment_id])

    # -- faults ------------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 502,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (before they take effect)."""
        with self._lock:
            self._faults.append(Fault("status", method, path, times, status, dict(headers or {}), body or {"message": "Server Error"}))

    def rate_limit(
        self,
        *,
        reset_in: int | None = None,
        retry_after: int | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """A primary limit (403, `X-RateLimit-Remaining: 0`, reset `reset_in` s from now) or, with
        `retry_after`, a secondary limit (429, `Retry-After`)."""
        if retry_after is not None:
            self.fail(
                429,
                method=method,
                path=path,
                times=times,
                headers={"Retry-After": str(retry_after)},
                body={
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": DOCS,
                },
            )
            return
        reset = int(time.time()) + (reset_in if reset_in is not None else 60)
        self.fail(
            403,
            method=method,
            path=path,
            times=times,
            headers={
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used": "5000",
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Resource": "core",
            },
            body={"message": "API rate limit exceeded for installation ID 1.", "documentation_url": DOCS},
        )

    def drop(self, *, method: str | None = None, path: str | None = None, times: int = 1, after: bool = True) -> None:
        """Close the connection without answering; with `after`, the request took effect first."""
        with self._lock:
            self._faults.append(Fault("drop", method, path, times, after=after))

    def requests(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Recorded calls, filtered by method and a regex searched in the path."""
        with self._lock:
            return [c for c in self.calls if (method is None or c.method == method) and (path is None or re.search(path, c.path))]

    # -- request handling (called from handler threads) --------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _identity(self, headers: dict[str, str]) -> Identity:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            raise _Answer(401, {"message": "Requires authentication", "documentation_url": DOCS})
        if scheme.lower() not in ("bearer", "token") or token not in self.tokens:
            raise _Answer(401, {"message": "Bad credentials", "documentation_url": DOCS})
        return self.tokens[token]

    def _html(self, tail: str) -> str:
        return f"https://github.com/{self.owner}/{self.repo}/{tail}"

    def _create_comment(self, pr: int, body: str, user: dict[str, Any]) -> dict[str, Any]:
        cid = self._next_comment_id
        self._next_comment_id += 1
        now = self._tick()
        comment = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"/repos/{self.owner}/{self.repo}/issues/comments/{cid}",
            "html_url": self._html(f"pull/{pr}#issuecomment-{cid}"),
            "issue_url": f"/repos/{self.owner}/{self.repo}/issues/{pr}",
            "body": body,
            "user": dict(user),
            "created_at": now,
            "updated_at": now,
            "author_association": "NONE" if user.get("type") == "Bot" else "MEMBER",
            "_issue": pr,
        }
        self._comments[cid] = comment
        return comment

    @staticmethod
    def _public(comment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    def _pr_json(self, pr: dict[str, Any], *, full: bool) -> dict[str, Any]:
        out = copy.deepcopy(pr)
        out["html_url"] = self._html(f"pull/{pr['number']}")
        out["url"] = f"/repos/{self.owner}/{self.repo}/pulls/{pr['number']}"
        if not full:
            # List endpoints return "simple" pull requests: no `merged` field, only `merged_at`.
            out.pop("merged", None)
        return out

    def _page(self, items: list[Any], path: str, query: dict[str, str], base_url: str) -> tuple[list[Any], dict[str, str]]:
        try:
            per_page = min(max(int(query.get("per_page", "30")), 1), 100)
            page = max(int(query.get("page", "1")), 1)
        except ValueError:
            raise _Answer(422, {"message": "Invalid per_page or page", "documentation_url": DOCS}) from None
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(n: int) -> str:
            # Like GitHub, next-page links name the repository by id, not by owner/name: clients
            # must follow the Link header rather than build page URLs themselves.
            q = dict(query, per_page=str(per_page), page=str(n))
            by_id = re.sub(r"^/repos/[^/]+/[^/]+/", f"/repositories/{self.repo_id}/", path)
            return f"{base_url}{by_id}?{urlencode(q)}"

        rels = []
        if page > 1:
            rels += [f'<{link(page - 1)}>; rel="prev"', f'<{link(1)}>; rel="first"']
        if page < last:
            rels += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        return chunk, ({"Link": ", ".join(rels)} if rels else {})

    def _check_body(self, payload: Any) -> str:
        if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
            raise _Answer(422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.', "documentation_url": DOCS})
        body: str = payload["body"]
        if len(body) > BODY_LIMIT:
            raise _Answer(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "IssueComment",
                            "code": "unprocessable",
                            "field": "data",
                            "message": f"Body is too long (maximum is {BODY_LIMIT} characters)",
                        }
                    ],
                    "documentation_url": DOCS,
                },
            )
        return body

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], payload: Any, base_url: str
    ) -> tuple[int, Any, dict[str, str]]:
        """Route one request; returns (status, JSON body, headers)."""
        who = self._identity(headers)
        if path == "/user" and method == "GET":
            if who.actions:
                raise _Answer(403, {"message": "Resource not accessible by integration", "documentation_url": DOCS})
            return 200, {"login": who.login, "id": who.id, "type": who.type}, {}
        if by_id := re.fullmatch(r"/repositories/([0-9]+)(/.*)", path):
            if int(by_id.group(1)) != self.repo_id:
                raise _not_found()
            path = f"/repos/{self.owner}/{self.repo}{by_id.group(2)}"
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)", path)
        if not m or (m.group(1).lower(), m.group(2).lower()) != (self.owner.lower(), self.repo.lower()):
            raise _not_found()
        rest = m.group(3)
        with self._lock:
            if method == "GET" and (m2 := re.fullmatch(r"/pulls/([0-9]+)", rest)):
                pr = self.prs.get(int(m2.group(1)))
                if pr is None:
                    raise _not_found()
                return 200, self._pr_json(pr, full=True), {}
            if method == "GET" and (m2 := re.fullmatch(r"/commits/([0-9a-fA-F]{4,40})/pulls", rest)):
                sha = m2.group(1).lower()
                if sha not in self._commits:
                    raise _Answer(422, {"message": f"No commit found for SHA: {sha}", "documentation_url": DOCS})
                if self._lag.get(sha, 0) > 0:
                    self._lag[sha] -= 1
                    return 200, [], {}
                numbers = list(self._associations.get(sha, []))
                numbers += [n for n, pr in self.prs.items() if pr["head"]["sha"] == sha and n not in numbers]
                items = [self._pr_json(self.prs[n], full=False) for n in numbers]
                chunk, link = self._page(items, path, query, base_url)
                return 200, chunk, link
            if m2 := re.fullmatch(r"/issues/([0-9]+)/comments", rest):
                number = int(m2.group(1))
                if number not in self.prs:
                    raise _not_found()
                if method == "GET":
                    items = [self._public(c) for c in self._comments.values() if c["_issue"] == number]
                    chunk, link = self._page(items, path, query, base_url)
                    return 200, chunk, link
                if method == "POST":
                    if not who.write:
                        raise _Answer(403, {"message": "Resource not accessible by integration", "documentation_url": DOCS})
                    body = self._check_body(payload)
                    comment = self._create_comment(number, body, {"login": who.login, "id": who.id, "type": who.type})
                    return 201, self._public(comment), {"Location": comment["url"]}
            if m2 := re.fullmatch(r"/issues/comments/([0-9]+)", rest):
                found = self._comments.get(int(m2.group(1)))
                if found is None:
                    raise _not_found()
                comment = found
                if method == "GET":
                    return 200, self._public(comment), {}
                if method == "PATCH":
                    if not who.write:
                        raise _Answer(403, {"message": "Resource not accessible by integration", "documentation_url": DOCS})
                    # As on GitHub, a token with write access may edit anyone's comment: a bot that
                    # picks the wrong comment silently hijacks it. `_edited_by` lets tests see that.
                    body = self._check_body(payload)
                    comment["body"] = body
                    comment.setdefault("_edited_by", []).append(who.login)
                    comment["updated_at"] = self._tick()
                    return 200, self._public(comment), {}
                if method == "DELETE":
                    if comment["user"]["login"] != who.login:
                        raise _Answer(403, {"message": "Must have admin rights to Repository.", "documentation_url": DOCS})
                    del self._comments[comment["id"]]
                    return 204, None, {}
            if method == "GET" and (m2 := re.fullmatch(r"/issues/([0-9]+)/events", rest)):
                if int(m2.group(1)) not in self.prs:
                    raise _not_found()
                chunk, link = self._page(copy.deepcopy(self._events.get(int(m2.group(1)), [])), path, query, base_url)
                return 200, chunk, link
            if method == "GET" and (m2 := re.fullmatch(r"/collaborators/([^/]+)/permission", rest)):
                login = m2.group(1)
                permission = self._permissions.get(login, "none")
                role = {"admin": "admin", "write": "write", "read": "read", "none": "none"}[permission]
                return 200, {"permission": permission, "role_name": role, "user": {"login": login, "type": "User"}}, {}
            if method == "GET" and (m2 := re.fullmatch(r"/issues/([0-9]+)/labels", rest)):
                pr = self.prs.get(int(m2.group(1)))
                if pr is None:
                    raise _not_found()
                items = [{"id": i + 1, "name": label["name"], "color": "ededed", "default": False} for i, label in enumerate(pr["labels"])]
                chunk, link = self._page(items, path, query, base_url)
                return 200, chunk, link
        raise _not_found()


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP, applies faults, delegates to FakeGitHub.handle, writes JSON."""

    server_state: FakeGitHub
    protocol_version = "HTTP/1.1"  # keep-alive, as GitHub; every answer has a Content-Length
    timeout = 10  # idle kept-alive connections end on their own
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _serve(self) -> None:
        state = self.server_state
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        call = Call(self.command, parts.path, query, headers, payload)
        with state._lock:
            state.calls.append(call)
        base_url = state.url
        fault = state._take_fault(self.command, parts.path)
        if fault is not None and fault.kind == "drop" and not fault.after:
            self.close_connection = True
            return
        try:
            if fault is not None and fault.kind == "status":
                raise _Answer(fault.status, fault.body, fault.headers)
            if payload is not None and not isinstance(payload, dict):
                raise _Answer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
            status, body, extra = state.handle(self.command, parts.path, query, headers, payload, base_url)
        except _Answer as answer:
            status, body, extra = answer.status, answer.body, answer.headers
        except Exception:  # a bug in the fake itself: answer 500, and make the test fail loudly
            with state._lock:
                state.errors.append(traceback.format_exc())
            status, body, extra = 500, {"message": "fakegithub crashed; see FakeGitHub.errors"}, {}
        call.status = status
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve
