"""The one Hugging Face Hub client of tuneform, and the retry rule every Hub write goes through.

The client is made per call from HF_ENDPOINT and HF_TOKEN as they are now (tests point HF_ENDPOINT
at a local server after import). huggingface_hub retries reads itself but not create_commit,
create_repo, create_tag or run_job, so writes go through `retry`, which reads the state again
before each new try: a write whose answer was lost is not made twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tuneform.core.errors import TuneformError

RETRY_STATUSES = (429, 500, 502, 503, 504)
T = TypeVar("T")


def hub_api(token: str | None = None) -> Any:
    """An HfApi for HF_ENDPOINT (read now, not at the client's import) and HF_TOKEN."""
    from huggingface_hub import HfApi, get_token

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token or get_token() or None)


def token_user() -> str | None:
    """The Hub user that HF_TOKEN (or the saved login) belongs to: the namespace `tuneform init`
    suggests. None when there is no token, the client is offline, or the Hub does not answer:
    init then asks or says what to set, it never fails for want of a suggestion."""
    from huggingface_hub import get_token

    if hub_offline() or not get_token():
        return None
    try:
        return str(hub_api().whoami()["name"])
    except hub_failures():
        return None


def hub_offline() -> bool:
    """The client's own offline switch (HF_HUB_OFFLINE, read at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_failures() -> tuple[type[Exception], ...]:
    """What a Hub call raises when the Hub, not tuneform, failed: an HTTP error answer
    (HfHubHTTPError and its typed subclasses: RepositoryNotFoundError, RevisionNotFoundError,
    GatedRepoError, ...), a transport failure (httpx), or a connection, timeout or offline error
    (OSError). Catch this tuple, not Exception, where a Hub failure is reported and not a bug."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, httpx.HTTPError, OSError)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of an HfHubHTTPError; only for statuses without a typed error (409, 412,
    429, 5xx): RepositoryNotFoundError and the other typed errors are caught by type."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    return http_status(exc) in RETRY_STATUSES


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retry(
    call: Callable[[], T],
    *,
    what: str,
    landed: Callable[[], T | None] | None = None,
    attempts: int = 5,
    base_delay: float | None = None,
    say: Callable[[str], None] | None = None,
) -> T:
    """Run a write; on 429/5xx/connection errors wait (Retry-After, else exponential backoff) and
    try again. `landed` reads the state before a retry: a non-None answer means the write already
    took effect (its answer was lost) and is returned instead of writing twice."""
    delay = base_delay if base_delay is not None else float(os.environ.get("TUNEFORM_RETRY_DELAY", "1"))
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except hub_failures() as exc:
            if not _transient(exc) or attempt == attempts:
                raise
            wait = _retry_after(exc)
            wait = min(60.0, wait if wait is not None else delay * 2 ** (attempt - 1))
            if say:
                status = http_status(exc)
                say(
                    f"  {what}: {'HTTP ' + str(status) if status else type(exc).__name__}; retrying in {wait:.0f}s ({attempt}/{attempts - 1})"
                )
            time.sleep(wait)
            if landed is not None:
                try:
                    done = landed()
                except hub_failures() + (TuneformError,):  # unreadable now: write again, the next read decides
                    done = None
                if done is not None:
                    return done
    raise AssertionError("unreachable")
