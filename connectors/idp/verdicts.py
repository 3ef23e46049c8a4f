"""What a provider's response means for the caller: ok, retry (and after how long), refresh, fail.

Each provider module plugs its own ``classify`` (its rate-limit signals) and ``describe`` (its error
text) into the HTTP core; these are the defaults and the vocabulary they answer in.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import httpx

OK, RETRY, REFRESH, FAIL, NOT_FOUND = "ok", "retry", "refresh", "fail", "not_found"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a response: ok, retry (after ``wait`` s if the provider said), refresh, fail."""

    action: str
    wait: float | None = None
    reason: str = ""


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def default_classify(resp: httpx.Response) -> Verdict:
    status = resp.status_code
    if status < 300:
        return Verdict(OK)
    if status == 401:
        return Verdict(REFRESH, reason="authentication failed")
    if status == 404:
        return Verdict(NOT_FOUND, reason="not found")
    if status in RETRYABLE_STATUS or status >= 500:
        return Verdict(RETRY, retry_after_seconds(resp.headers.get("retry-after")), f"HTTP {status}")
    if status == 403:
        return Verdict(FAIL, reason="forbidden")
    return Verdict(FAIL, reason="request refused")


def default_describe(resp: httpx.Response) -> str:
    """Return the provider's own short error text, if the body has one."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    err = body.get("error")
    if isinstance(err, dict):
        return " ".join(str(err.get(k, "")) for k in ("code", "message") if err.get(k)).strip()
    if isinstance(err, str):
        return f"{err}: {body.get('error_description', '')}".strip(": ")
    for key in ("errorSummary", "message"):
        if isinstance(body.get(key), str):
            return body[key]
    return ""
