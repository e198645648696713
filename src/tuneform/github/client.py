"""GitHub REST calls of a PR bot: find the PR of a merge commit, keep one sticky comment per key.

Why this module is careful where peers are not (reference/github.md, "What peers get wrong"):

- The sticky comment is found among ALL of a PR's comments (pagination through `Link` headers),
  so a long PR never gets a second copy; listing only the first page (30 comments) is how CML
  ends up posting duplicates.
- The comment to update must carry our hidden marker AND be authored by our own identity. A
  human who quotes the marker (or another bot) never has their comment edited by tuneform.
- GitHub is eventually consistent and rate limited: the commit -> PR association lags a merge by
  tens of seconds, 5xx and dropped connections happen, and limits answer 403/429. Each of those
  is retried with backoff under a cap on the total wait; every sleep goes through an injectable
  function so tests run instantly against a real HTTP server.
- A create (POST) that may or may not have happened (connection dropped after sending, 5xx) is
  never blindly repeated: the comments are listed again and the marker decides, so a flaky
  network cannot leave two comments for one key.
- Errors are `GitHubError`s whose message says what to change (token, workflow permissions,
  repository name), because they end up in a CI log read by someone who did not write the bot.

Only httpx is used (one `httpx.Client`, so connections are reused across pages and retries).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from tuneform import __version__
from tuneform.core.errors import TuneformError, UsageError

log = logging.getLogger("tuneform.github")

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
#: Who authors comments made with the Actions `GITHUB_TOKEN` (`GET /user` answers 403 for it).
ACTIONS_BOT_LOGIN = "github-actions[bot]"
#: GitHub rejects comment bodies longer than this with 422 "Body is too long".
COMMENT_LIMIT = 65_536
#: What a trimmed body is cut to, in UTF-8 bytes: bytes bound characters and UTF-16 units alike,
#: whichever GitHub counts, and the margin leaves room for its own normalisation.
TRIM_TARGET = 65_000
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_SQUASH_TITLE = re.compile(r"\(#([0-9]+)\)\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
# Any tuneform marker in a body: a key's, or an approval stamp (github/approval.py) with fields.
_ANY_MARKER = re.compile(r"<!-- tuneform:[a-z0-9._-]{1,64}( [^>]*)? -->\n?")

Sleep = Callable[[float], None]


class GitHubError(TuneformError):
    """A GitHub call failed; the message says what to do about it.

    `status` is the HTTP status when GitHub answered (None for network failures and for
    problems found before any call, such as a missing token).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitError(GitHubError):
    """GitHub's rate limit holds for longer than tuneform is willing to wait."""


class PullRequestNotFound(GitHubError):
    """No pull request is associated with a commit (a direct push, or a fork's commit)."""

    #: `tuneform comment --commit SHA` exits 3 for it: a direct push, which workflows tell from a failure.
    failure_code = 3


class HeadMismatch(GitHubError):
    """A PR's head is not the commit the caller expected (`tuneform comment --expect-head`)."""


class _AmbiguousWrite(GitHubError):
    """A non-idempotent request may or may not have taken effect; the caller must look first."""


@dataclass(frozen=True)
class Comment:
    """The sticky comment after an upsert: `created` is False when an existing one was updated."""

    id: int
    url: str
    created: bool
    updated_at: str | None = None  # GitHub's time of the last write of this body


def marker(key: str) -> str:
    """The hidden HTML comment that identifies the sticky comment for `key` (invisible on GitHub)."""
    if not KEY_PATTERN.match(key):
        raise UsageError(f"invalid comment key {key!r}: use 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit")
    return f"<!-- tuneform:{key} -->"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_body(body: str, key: str, *, details_url: str | None = None, limit: int = TRIM_TARGET, header: str = "") -> str:
    """The comment body for `key`: the marker on the first line, then `body`, trimmed to fit.

    The marker goes first so that trimming can never cut it (a comment without its marker would
    be orphaned and the next upsert would post a second one). Markers already in `body` (ours, or
    another key's in a quoted report) are removed, so one comment can never match two keys. A body over the limit is cut on a
    line boundary, an open code fence is closed so the rest of the comment still renders, and a
    note says how much is missing and links to the full report (`details_url`, e.g. the workflow
    run) because a silently truncated eval table is worse than none. `header` (tuneform's own
    line, such as the approval stamp) goes right after the marker, where no body can put text.
    """
    tag = marker(key)
    text = tag + "\n" + (header + "\n" if header else "") + _ANY_MARKER.sub("", body).lstrip("\n")
    if _size(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    used = 0
    # The note's size depends on the omitted count; reserve for the worst case (all lines omitted).
    budget = limit - _size(_trim_note(len(lines), details_url)) - len("\n```\n")
    for line in lines:
        if used + _size(line) > budget:
            break
        kept.append(line)
        used += _size(line)
    if len(kept) <= 1 and len(lines) > 1:
        # The first line of the body alone is over the limit: cut it by characters rather than
        # posting nothing but the note.
        room = budget - used
        piece = lines[1].encode("utf-8")[: max(room - 1, 0)].decode("utf-8", errors="ignore")
        kept.append(piece + "\n")
    out = "".join(kept)
    if not out.endswith("\n"):
        out += "\n"
    if sum(1 for line in kept if _FENCE.match(line)) % 2:
        out += "```\n"
    return out + _trim_note(len(lines) - len(kept), details_url)


def _trim_note(omitted: int, details_url: str | None) -> str:
    where = f"[the full report]({details_url})" if details_url else "the workflow run's log and artifacts for the full report"
    return (
        f"\n---\n> [!NOTE]\n> Trimmed to fit GitHub's {COMMENT_LIMIT:,}-character comment limit: "
        f"{omitted:,} more lines are not shown. See {where}.\n"
    )


class GitHub:
    """One repository's REST API, with retries, pagination and errors that name the fix.

    Arguments default to what GitHub Actions sets: `GITHUB_API_URL` (GitHub Enterprise Server
    included), `GITHUB_TOKEN` and `GITHUB_REPOSITORY` ("owner/name"). `sleep` and `clock` are
    injectable so that tests exercise real backoff decisions without waiting. `max_wait` caps the
    seconds slept by one operation (retries of one request, or all requests of one upsert): a rate
    limit that resets later than that is reported instead of waited out, so a CI job fails fast
    with a clear message rather than hanging until its timeout.
    """

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        repository: str | None = None,
        *,
        bot_login: str | None = None,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 6,
        max_wait: float = 120.0,
        association_wait: float = 90.0,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        token = token if token is not None else os.environ.get("GITHUB_TOKEN")
        if not token:
            raise GitHubError(
                "GITHUB_TOKEN is not set: in a workflow add `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` "
                "to the step (and `permissions: pull-requests: write` to the job); locally export a token"
            )
        repository = repository or os.environ.get("GITHUB_REPOSITORY") or ""
        if not _REPOSITORY.match(repository):
            raise GitHubError(f"GITHUB_REPOSITORY must be 'owner/name', got {repository!r}")
        self.owner, self.repo = repository.split("/", 1)
        self._bot_login = bot_login
        self._sleep = sleep
        self._clock = clock
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.association_wait = association_wait
        self._client = httpx.Client(
            base_url=self.api_url + "/",
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"tuneform/{__version__}",
            },
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public operations -------------------------------------------------------------------------

    @property
    def _repo_path(self) -> str:
        return f"repos/{self.owner}/{self.repo}"

    def bot_login(self) -> str:
        """The login our comments are authored by, used to recognise our own sticky comments.

        `TUNEFORM_BOT_LOGIN` (or the constructor's `bot_login`) wins: a GitHub App's installation
        token cannot read `GET /user` either, and its comments are authored by `<app-slug>[bot]`.
        Otherwise a personal token's identity is `GET /user`'s login; the Actions `GITHUB_TOKEN`
        answers that call with 403, and its comments are authored by `github-actions[bot]`.
        Matching by login rather than by `user.type == "Bot"` keeps other bots' comments safe.
        """
        if self._bot_login:
            return self._bot_login
        configured = os.environ.get("TUNEFORM_BOT_LOGIN", "").strip()
        if configured:
            self._bot_login = configured
            return configured
        try:
            login = str(self._request("GET", "user").json()["login"])
        except GitHubError as exc:
            if exc.status != 403 or isinstance(exc, RateLimitError):
                raise
            login = ACTIONS_BOT_LOGIN
        self._bot_login = login
        return login

    def pull_request(self, number: int) -> dict[str, Any]:
        """`GET /repos/{o}/{r}/pulls/{n}`: the full PR object (it has `merged`; list items do not)."""
        return dict(self._request("GET", f"{self._repo_path}/pulls/{_number(number)}").json())

    def pr_for_commit(self, sha: str, *, title: str | None = None) -> int | None:
        """The number of the pull request whose merge produced commit `sha`, or None.

        A squash merge's title ends with `(#123)`: that guess costs one call and is trusted only
        when `GET pulls/123` says it is merged with `merge_commit_sha == sha` (titles are typed
        by people and can say anything). Otherwise `GET commits/{sha}/pulls` is asked, again
        with backoff while it answers `[]`, because GitHub associates a merge commit with its PR
        some tens of seconds after the merge. Among its answers the merged PR whose merge commit
        is `sha` wins; a single answer is taken as is (a rebase merge's commit belongs to
        exactly one PR but is not its `merge_commit_sha`).
        """
        sha = sha.strip().lower()
        if not _SHA.match(sha):
            raise GitHubError(f"commit {sha!r} is not a full 40-character SHA: pass `git rev-parse HEAD` or $GITHUB_SHA")
        guess = _squash_number(title)
        if guess is not None:
            try:
                pr = self.pull_request(guess)
            except GitHubError as exc:
                if exc.status != 404:
                    raise
            else:
                if pr.get("merged") and pr.get("merge_commit_sha") == sha:
                    return guess
                log.info("commit title names #%s but that PR was not merged as %s; asking GitHub", guess, sha[:12])
        waited = 0.0
        attempt = 0
        while True:
            pulls = list(self._request("GET", f"{self._repo_path}/commits/{sha}/pulls", params={"per_page": 100}).json())
            if pulls:
                return _pick_pull(pulls, sha)
            delay = min(2.0 * 2**attempt, 30.0)
            attempt += 1
            if waited + delay > self.association_wait:
                return None
            log.info("GitHub has not associated %s with a pull request yet; asking again in %.0f s", sha[:12], delay)
            self._sleep(delay)
            waited += delay

    def labels(self, pr: int) -> list[str]:
        """Names of the labels on PR `pr` (budget approval labels; push events carry none)."""
        return [str(label["name"]) for label in self._paginate(f"{self._repo_path}/issues/{_number(pr)}/labels")]

    def issue_events(self, pr: int) -> list[dict[str, Any]]:
        """`GET issues/{n}/events`: what happened to PR `pr` (labeled, unlabeled, ...), with the
        actor and GitHub's time of each: what a PR's files cannot forge."""
        return list(self._paginate(f"{self._repo_path}/issues/{_number(pr)}/events"))

    def permission(self, login: str) -> str:
        """`login`'s permission on the repository (admin, write, read, none; GitHub maps maintain
        to write and triage to read). Someone who is not a collaborator has none."""
        if not re.match(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$", login):
            return "none"
        try:
            data = self._request("GET", f"{self._repo_path}/collaborators/{login}/permission").json()
        except GitHubError as exc:
            if exc.status == 404:
                return "none"
            raise
        return str(data.get("permission") or "none")

    def comments(self, pr: int) -> list[dict[str, Any]]:
        """Every comment on PR `pr`, oldest first, following pagination to the last page."""
        return list(self._paginate(f"{self._repo_path}/issues/{_number(pr)}/comments"))

    def sticky_comment(self, pr: int, key: str) -> dict[str, Any] | None:
        """THE comment for `key` on PR `pr`: the oldest that carries its marker on its first line
        and is authored by `bot_login()` (None when there is none). A comment by anyone else that
        quotes the marker is never ours."""
        tag, me = marker(key), self.bot_login().lower()
        for c in self.comments(_number(pr)):
            if (c.get("body") or "").startswith(tag) and str((c.get("user") or {}).get("login", "")).lower() == me:
                return c
        return None

    def upsert_comment(self, pr: int, key: str, body: str, *, details_url: str | None = None, header: str = "") -> Comment:
        """Create or update THE comment for `key` on PR `pr`, so that there is exactly one.

        Ours is the oldest comment whose body holds `<!-- tuneform:{key} -->` and whose author is
        `bot_login()`. It is PATCHed (skipped when the body is already identical), else a new one
        is POSTed. A body over GitHub's limit is trimmed by `fit_body` (marker kept, note and
        `details_url` link added) instead of failing with 422. When a POST's outcome is unknown
        (connection dropped after sending, 5xx), the comments are listed again before trying
        again, so a retry never adds a duplicate.
        """
        number = _number(pr)
        if details_url is not None and not re.match(r"^https?://\S+$", details_url):
            raise UsageError(f"details_url must be an http(s) URL without spaces, got {details_url!r}")
        text = fit_body(body, key, details_url=details_url, header=header)
        tag = marker(key)
        me = self.bot_login().lower()
        waited = 0.0
        attempt = 0
        posted = False  # a POST whose outcome is unknown: a comment found now is the one it made
        while True:
            attempt += 1
            ours = [
                c
                for c in self.comments(number)
                if tag in (c.get("body") or "") and str((c.get("user") or {}).get("login", "")).lower() == me
            ]
            try:
                if ours:
                    existing = ours[0]
                    if len(ours) > 1:
                        log.warning("%d comments carry %s; updating the oldest (%s)", len(ours), tag, existing["id"])
                    if existing.get("body") == text:
                        return Comment(
                            int(existing["id"]), str(existing.get("html_url", "")), created=posted, updated_at=existing.get("updated_at")
                        )
                    try:
                        data = self._request(
                            "PATCH", f"{self._repo_path}/issues/comments/{int(existing['id'])}", json={"body": text}
                        ).json()
                    except GitHubError as exc:
                        if exc.status != 404:
                            raise
                        if attempt >= self.max_attempts:
                            raise
                        log.info("comment %s vanished before the update; looking again", existing["id"])
                        continue
                    return Comment(int(data["id"]), str(data.get("html_url", "")), created=posted, updated_at=data.get("updated_at"))
                posted = True
                data = self._request("POST", f"{self._repo_path}/issues/{number}/comments", json={"body": text}, idempotent=False).json()
                return Comment(int(data["id"]), str(data.get("html_url", "")), created=True, updated_at=data.get("updated_at"))
            except _AmbiguousWrite as exc:
                delay = _backoff(attempt)
                if attempt >= self.max_attempts or waited + delay > self.max_wait:
                    raise GitHubError(f"{exc} (gave up after {attempt} attempts)", status=exc.status) from None
                log.warning("%s; listing the comments again before retrying in %.0f s", exc, delay)
                self._sleep(delay)
                waited += delay

    # -- HTTP --------------------------------------------------------------------------------------

    def _paginate(self, path: str) -> Iterator[dict[str, Any]]:
        """Items of a list endpoint, page after page, by following `Link: <...>; rel="next"`.

        The next URL comes from the server; it is followed only when it points at our API URL so
        that the token is never sent anywhere else.
        """
        url: str | None = path
        params: dict[str, Any] | None = {"per_page": 100}
        pages = 0
        while url:
            response = self._request("GET", url, params=params)
            yield from response.json()
            pages += 1
            nxt = response.links.get("next", {}).get("url")
            if nxt and not (nxt == self.api_url or nxt.startswith(self.api_url + "/")):
                raise GitHubError(f"GitHub's next-page link {nxt!r} leaves {self.api_url}; refusing to send the token there")
            if nxt and pages >= 1000:
                raise GitHubError(f"more than 1000 pages of {path}; refusing to go on")
            url, params = nxt, None

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One call, retried on 5xx, dropped connections and rate limits; other errors raise.

        Only requests that are safe to repeat are repeated blindly. For a POST, a failure before
        the request left (connect errors) or a rate-limit refusal is retried here; anything that
        may have reached GitHub raises `_AmbiguousWrite` for the caller to resolve by looking.
        """
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.request(method, url, params=params, json=json)
            except httpx.TransportError as exc:
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                reason = f"{method} {_path(url)}: connection problem ({type(exc).__name__}: {exc})"
                if not idempotent and not unsent:
                    raise _AmbiguousWrite(reason) from exc
                delay = _backoff(attempt)
                status: int | None = None
            else:
                if response.status_code < 400:
                    return response
                status = response.status_code
                retry, reason = self._retry_delay(response, attempt)
                if retry is None:
                    raise self._error(response, method, url)
                delay = retry
                if status >= 500 and not idempotent:
                    raise _AmbiguousWrite(reason, status=status)
            if attempt >= self.max_attempts or waited + delay > self.max_wait:
                error = RateLimitError if status in (403, 429) else GitHubError
                hint = "try again later" if status else f"check GITHUB_API_URL ({self.api_url}) and the network, or try again later"
                raise error(f"{reason}; gave up after {attempt} attempts and {waited:.0f} s of waiting: {hint}", status=status)
            log.warning("%s; retrying in %.0f s", reason, delay)
            self._sleep(delay)
            waited += delay

    def _retry_delay(self, response: httpx.Response, attempt: int) -> tuple[float | None, str]:
        """Seconds to wait before repeating, or None when the answer is final.

        Rate limits (primary: 403/429 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`;
        secondary: `Retry-After`) are waited out as GitHub asks, unless that exceeds `max_wait`,
        in which case the error says when to come back. 5xx gets exponential backoff.
        """
        status = response.status_code
        where = f"{response.request.method} {_path(str(response.request.url))}"
        headers = response.headers
        if status in (403, 429):
            retry_after = headers.get("retry-after", "").strip()
            if retry_after.isdigit():
                delay = float(retry_after)
                if delay > self.max_wait:
                    raise RateLimitError(
                        f"{where}: GitHub asks to wait {delay:.0f} s (Retry-After), "
                        f"longer than tuneform waits ({self.max_wait:.0f} s): re-run the job later",
                        status=status,
                    )
                return delay, f"{where}: rate limited ({status}, Retry-After {retry_after} s)"
            if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
                reset = int(headers["x-ratelimit-reset"])
                delay = max(reset - self._clock(), 0.0) + 1.0
                if delay > self.max_wait:
                    when = datetime.fromtimestamp(reset, tz=UTC).strftime("%H:%M:%S UTC")
                    raise RateLimitError(
                        f"{where}: GitHub's API rate limit for this token is used up until {when} (in {delay:.0f} s), "
                        f"longer than tuneform waits ({self.max_wait:.0f} s): re-run the job after that, "
                        "or use a token with a higher limit",
                        status=status,
                    )
                return delay, f"{where}: rate limit used up ({status}), resets in {delay:.0f} s"
            if status == 429 or "rate limit" in _message(response).lower():
                return _backoff(attempt, base=60.0), f"{where}: rate limited ({status}: {_message(response)})"
            return None, ""
        if status >= 500:
            return _backoff(attempt), f"{where}: GitHub answered {status}"
        return None, ""

    def _error(self, response: httpx.Response, method: str, url: str) -> GitHubError:
        """A GitHubError for a final error answer, with the fix for the usual causes."""
        status = response.status_code
        message = _message(response)
        where = f"{method} {_path(url)}"
        if status == 401:
            text = (
                f"{where}: GitHub rejected the token (401 {message}): set GITHUB_TOKEN to a valid, unexpired token "
                "(in a workflow: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`)"
            )
        elif status == 403 and "not accessible by integration" in message.lower():
            text = (
                f"{where}: the token may not do this (403 {message}): give the job `permissions: pull-requests: write` "
                "(and `issues: read` for labels). Workflows triggered by `pull_request` from a fork always get a "
                "read-only token: post comments from a `workflow_run` workflow that reads the PR number from the plan artifact"
            )
        elif status == 403:
            text = f"{where}: forbidden (403 {message}): the token lacks access to {self.owner}/{self.repo}"
        elif status == 404:
            text = (
                f"{where}: not found (404): check GITHUB_REPOSITORY ({self.owner}/{self.repo}) and the PR number; "
                "a token without access to a private repository also gets 404"
            )
        elif status == 422 and "too long" in message.lower():
            text = f"{where}: comment body is too long (422 {message}): GitHub's limit is {COMMENT_LIMIT:,} characters"
        else:
            text = f"{where}: GitHub answered {status}: {message}"
        return GitHubError(text, status=status)


def check_head(gh: GitHub, pr: int, expect_head: str) -> None:
    """Raise HeadMismatch unless PR `pr`'s head is `expect_head`: an artifact that names a PR
    cannot aim a comment at a PR the plan did not run on."""
    head = str(((gh.pull_request(pr).get("head") or {}).get("sha")) or "").lower()
    if head != expect_head.strip().lower():
        raise HeadMismatch(
            f"PR #{pr}'s head is {head[:12] or 'unknown'}, not {expect_head[:12]}, the commit this report is for: "
            "the PR moved on since (its newer run comments) or the report names another PR; not commenting"
        )


def comment_command(
    pr: int | None,
    commit: str | None,
    key: str,
    body: str,
    *,
    details_url: str | None = None,
    expect_head: str | None = None,
    github: GitHub | None = None,
) -> Comment:
    """What `tuneform comment (--pr N | --commit SHA) --key KEY FILE` does.

    With `--commit`, the PR is looked up from the merge commit; the push event's head commit
    message (`GITHUB_EVENT_PATH`) serves as the squash-title guess when it is that commit's.
    `details_url` defaults, inside GitHub Actions, to the current workflow run, which is where
    the full report lives when the comment has to be trimmed. `expect_head` refuses to comment
    (`HeadMismatch`) unless the PR's head is that commit: an artifact that names a PR cannot aim
    the comment at a PR the plan did not run on. `github` is for tests and callers that already
    hold a client; otherwise one is built from the environment and closed after.
    """
    if (pr is None) == (commit is None):
        raise UsageError("give exactly one of --pr N or --commit SHA")
    marker(key)  # a bad key is a usage error; say so before any network call
    if expect_head is not None:
        expect_head = expect_head.strip().lower()
        if not _SHA.match(expect_head):
            raise UsageError(f"--expect-head must be a full 40-character commit SHA, got {expect_head!r}")
    if details_url is None:
        details_url = _actions_run_url()
    gh = github if github is not None else GitHub()
    try:
        if pr is None:
            assert commit is not None
            pr = gh.pr_for_commit(commit, title=_event_title(commit))
            if pr is None:
                raise PullRequestNotFound(
                    f"no pull request is associated with commit {commit.strip()[:12]} in {gh.owner}/{gh.repo} "
                    "(a direct push to the branch, or GitHub has not caught up yet): nothing to comment on"
                )
        if expect_head is not None:
            check_head(gh, pr, expect_head)
        return gh.upsert_comment(pr, key, body, details_url=details_url)
    finally:
        if github is None:
            gh.close()


# -- helpers ---------------------------------------------------------------------------------------


def _number(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"a pull request number is a positive integer, got {value!r}")
    return value


def _backoff(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """1, 2, 4, 8, ... seconds (times `base`), capped: deterministic so tests can assert it."""
    return float(min(base * 2 ** (attempt - 1), cap))


def _message(response: httpx.Response) -> str:
    """GitHub's `message`, with the `errors[].message` details of a 422 appended."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(data, dict):
        return response.reason_phrase
    message = str(data.get("message", response.reason_phrase))
    details = [str(e.get("message")) for e in data.get("errors", []) or [] if isinstance(e, dict) and e.get("message")]
    return "; ".join([message, *details]) if details else message


def _path(url: str) -> str:
    """A URL without scheme, host and query, for messages."""
    path = httpx.URL(url).path if "://" in url else "/" + url.lstrip("/")
    return path


def _squash_number(title: str | None) -> int | None:
    if not title:
        return None
    first = title.strip().splitlines()[0] if title.strip() else ""
    found = _SQUASH_TITLE.search(first)
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


def _pick_pull(pulls: list[dict[str, Any]], sha: str) -> int | None:
    """The PR a merge commit came from, among `commits/{sha}/pulls`'s answers (list items have
    `merged_at`, not `merged`)."""
    for pull in pulls:
        if pull.get("merged_at") and pull.get("merge_commit_sha") == sha:
            return int(pull["number"])
    if len(pulls) == 1:
        return int(pulls[0]["number"])
    merged = [p for p in pulls if p.get("merged_at")]
    if len(merged) == 1:
        return int(merged[0]["number"])
    return None


def _event() -> dict[str, Any]:
    """The workflow's event payload (`GITHUB_EVENT_PATH`), or {} outside Actions or when unreadable."""
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _event_title(sha: str) -> str | None:
    """The push event's head commit message when that commit is `sha` (a squash title guess)."""
    head = _event().get("head_commit") or {}
    if isinstance(head, dict) and str(head.get("id", "")).lower() == sha.strip().lower():
        return str(head.get("message") or "") or None
    return None


def event_labels() -> list[str]:
    """Labels of the pull request in the event payload: what a PR's files cannot forge (an
    approval label must be set by someone with triage rights on the repository)."""
    pull = _event().get("pull_request") or {}
    labels = pull.get("labels") if isinstance(pull, dict) else None
    return [str(label["name"]) for label in labels or [] if isinstance(label, dict) and "name" in label]


def _actions_run_url() -> str | None:
    """The current workflow run's page, when running inside GitHub Actions."""
    server, repository, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repository and run and run.isdigit():
        return f"{server.rstrip('/')}/{repository}/actions/runs/{run}"
    return None
