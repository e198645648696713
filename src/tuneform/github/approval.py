"""Budget approval: a label tied to an amount and to the head commit it was given on.

A plan over its budget caps applies only when a person with write access approved it. What they
approve is what the plan comment showed them, so the approval is read back from GitHub alone,
never from files or artifacts the pull request controls:

- The trusted comment workflow (comment.yml) stamps the sticky plan comment with a hidden line
  right after its marker: `<!-- tuneform:approval head=<sha> usd=<total> planned=<time> -->`.
  `planned` is GitHub's own time of the first write of the comment for that head and total
  (the comment's `updated_at`), and is kept while both stay the same; a new push or a new total
  gets a new time. Only the line after the marker of a comment authored by our bot is read, and
  every tuneform marker a plan body carries is removed before posting, so a PR cannot forge one.
- The approval is the latest `labeled` event of the approval label (issue events API), made by
  someone whose repository permission is write or admin, after `planned`. A label added before
  the last push (or before the comment showed the new total) approves nothing.
- At apply, the merged PR's `head.sha` must be the stamp's head, and the plan apply makes must
  cost no more than the stamp's amount, which then caps the jobs' time limits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tuneform.core.errors import UsageError
from tuneform.github.client import GitHub, GitHubError, _actions_run_url, _event_title, check_head, marker

PLAN_KEY = "plan"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_STAMP = re.compile(
    r"^<!-- tuneform:approval head=(?P<head>[0-9a-f]{40}) usd=(?P<usd>[0-9]+(?:\.[0-9]+)?)"
    r"(?: planned=(?P<planned>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z))? -->$"
)
WRITE_PERMISSIONS = ("admin", "write")  # `permission` maps maintain to write, triage to read


@dataclass(frozen=True)
class Stamp:
    """The approval stamp of a plan comment: which head it planned, its total, since when."""

    head: str
    usd: float
    planned: str | None  # GitHub's ISO time (seconds, UTC); None while the first write is pending

    def line(self) -> str:
        planned = f" planned={self.planned}" if self.planned else ""
        return f"<!-- tuneform:approval head={self.head} usd={self.usd:.4f}{planned} -->"


def read_stamp(body: str) -> Stamp | None:
    """The stamp on the line right after the plan marker (nowhere else), or None."""
    lines = body.split("\n", 2)
    if len(lines) < 2 or lines[0] != marker(PLAN_KEY) or not (found := _STAMP.match(lines[1])):
        return None
    return Stamp(found["head"], float(found["usd"]), found["planned"])


@dataclass(frozen=True)
class LabelCheck:
    """Whether the approval label approves a stamp, and the sentence that says so or why not."""

    ok: bool
    message: str
    actor: str | None = None


def check_label(gh: GitHub, pr: int, label: str, stamp: Stamp | None) -> LabelCheck:
    """The latest `labeled` event of `label` on `pr`: by someone with write permission, after the
    stamp's planned time, while the label is still on the PR."""
    if stamp is None or stamp.planned is None:
        return LabelCheck(False, f"PR #{pr} has no plan comment by {gh.bot_login()} with an approval stamp: wait for the plan comment")
    if label not in gh.labels(pr):
        return LabelCheck(False, f"PR #{pr} does not carry the label '{label}'")
    events = [e for e in gh.issue_events(pr) if e.get("event") == "labeled" and str((e.get("label") or {}).get("name")) == label]
    if not events:
        return LabelCheck(False, f"PR #{pr} has no labeled event for '{label}'")
    latest = max(events, key=lambda e: str(e.get("created_at", "")))
    actor = str((latest.get("actor") or {}).get("login", ""))
    when = str(latest.get("created_at", ""))
    if not when > stamp.planned:  # ISO 8601 UTC with seconds: text order is time order
        return LabelCheck(
            False,
            f"approval withdrawn by a new push (or a new total): '{label}' was added at {when}, before {stamp.head[:7]} was planned "
            f"({stamp.planned}): add the label again",
            actor,
        )
    permission = gh.permission(actor)
    if permission not in WRITE_PERMISSIONS:
        return LabelCheck(
            False,
            f"'{label}' was added by @{actor}, whose permission is {permission}: someone with write access must add it",
            actor,
        )
    return LabelCheck(True, f"approved ${stamp.usd:.2f} at {stamp.head[:7]} by @{actor}", actor)


def post_plan_comment(gh: GitHub, pr: int, body: str, *, head: str, usd: float, label: str, details_url: str | None = None) -> LabelCheck:
    """Post the plan comment with its approval stamp and the approval's state, on PR `pr` whose
    head is `head` (the caller checked it) and whose plan totals `usd`.

    A stamp for another head or total gets a new planned time: the comment is written first
    without it, and GitHub's time of that write becomes `planned`, so any label added once the
    new total was visible counts, and none added before.
    """
    if not math.isfinite(usd) or usd < 0:
        raise UsageError(f"--approval-usd must be a dollar amount of 0 or more, got {usd!r}")
    head = head.strip().lower()
    existing = gh.sticky_comment(pr, PLAN_KEY)
    old = read_stamp(str(existing.get("body") or "")) if existing else None
    stamp = Stamp(head, round(usd, 4), None)
    if old is not None and old.planned and (old.head, old.usd) == (stamp.head, stamp.usd):
        stamp = old
    else:
        written = gh.upsert_comment(pr, PLAN_KEY, body + _state_line(label, stamp, None), details_url=details_url, header=stamp.line())
        stamp = Stamp(stamp.head, stamp.usd, _seconds(written.updated_at))
    check = check_label(gh, pr, label, stamp)
    gh.upsert_comment(pr, PLAN_KEY, body + _state_line(label, stamp, check), details_url=details_url, header=stamp.line())
    return check


def plan_comment_command(pr: int, head: str, body: str, *, usd: float, label: str, details_url: str | None = None) -> LabelCheck:
    """What `tuneform comment --pr N --expect-head SHA --key plan --approval-usd USD` does: the
    plan comment with its approval stamp, only while PR N's head is SHA."""
    if not _SHA.match(head.strip().lower()):
        raise UsageError(f"--expect-head must be a full 40-character commit SHA, got {head!r}")
    with GitHub() as gh:
        check_head(gh, pr, head)
        return post_plan_comment(gh, pr, body, head=head, usd=usd, label=label, details_url=details_url or _actions_run_url())


def _seconds(when: str | None) -> str:
    """GitHub's timestamp as the stamp keeps it (seconds, Z)."""
    if not when or not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}", when):
        raise GitHubError(f"GitHub's answer to the comment write has no usable updated_at ({when!r}): post the plan again")
    return when[:19] + "Z"


def _state_line(label: str, stamp: Stamp, check: LabelCheck | None) -> str:
    """The approval's state for reviewers, under the plan."""
    if check is not None and check.ok:
        return f"\n\n**Budget approval:** {check.message}. A new push withdraws it.\n"
    why = f" ({check.message})" if check is not None and check.actor else ""
    return (
        f"\n\n**Budget approval:** none for {stamp.head[:7]}{why}. If this plan is over budget, a person with write access "
        f"approves up to ${stamp.usd:.2f} by adding the label `{label}`; a new push withdraws it.\n"
    )


@dataclass(frozen=True)
class Approval:
    """What the merged PR of a commit approved at apply time.

    `usd` is the approved amount (None: nothing approved), `by` says at which head and by whom,
    `source` where it was read or why nothing is approved (shown when the plan stays over budget).
    """

    usd: float | None
    source: str
    pr: int | None = None  # the merged PR that was read; None when none was
    by: str = ""


def approval_from_commit(commit: str, label: str, *, github: GitHub | None = None) -> Approval:
    """What the merged pull request that produced `commit` approved (`tuneform apply
    --approval-from-commit SHA`): see the module's docstring for the conditions.

    Push events carry no labels, so everything is read through the API; the PR must be merged,
    so an open PR that merely contains the commit approves nothing. Any failure (no token, no
    PR, GitHub unreachable) approves nothing: an over-budget plan then stays an error.
    """
    short = commit.strip()[:12]
    try:
        gh = github if github is not None else GitHub()
    except GitHubError as exc:
        return Approval(None, f"GitHub could not be asked ({exc})")
    try:
        number = gh.pr_for_commit(commit, title=_event_title(commit))
        if number is None:
            return Approval(None, f"no pull request is associated with commit {short} in {gh.owner}/{gh.repo}")
        pr: dict[str, Any] = gh.pull_request(number)
        if not pr.get("merged"):
            return Approval(None, f"PR #{number} of commit {short} is not merged", number)
        head = str((pr.get("head") or {}).get("sha") or "").lower()
        comment = gh.sticky_comment(number, PLAN_KEY)
        stamp = read_stamp(str(comment.get("body") or "")) if comment else None
        if stamp is not None and stamp.head != head:
            return Approval(
                None,
                f"PR #{number}'s plan comment planned {stamp.head[:7]}, not its merged head {head[:7]}: approve after the last plan",
                number,
            )
        check = check_label(gh, number, label, stamp)
        if not check.ok:
            return Approval(None, f"PR #{number}, merged as {short}: {check.message}", number)
        assert stamp is not None  # check_label approves only a stamp
        return Approval(stamp.usd, f"PR #{number}, merged as {short}", number, f"at {head[:7]} by @{check.actor}")
    except GitHubError as exc:
        return Approval(None, f"GitHub could not be asked for the PR of commit {short} ({exc})")
    finally:
        if github is None:
            gh.close()
