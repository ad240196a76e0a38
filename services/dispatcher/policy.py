"""What a provider's answer means for a message. Pure: the rules in one place, easy to test.

- accepted: the provider took the message (SMTP 2xx, HTTP 2xx);
- throttled: the provider asks us to slow down (SMTP 421 / 451 / 454 with a rate or
  "too many" text or a 4.7.x code, HTTP 429): the relay backs off, the message waits, no attempt
  is counted against it;
- temporary: it may work later (SMTP 4xx, connection refused or reset, timeout, HTTP 5xx);
- permanent: it will never work as is (SMTP 5xx, HTTP 4xx other than 429, invalid address);
- unknown: the connection broke after the whole message was sent and before the provider
  answered (RFC 1047): it may have been accepted, so it is never sent again automatically.
"""

import re
from dataclasses import dataclass
from typing import Literal

from shared.events import FailureReason

Verdict = Literal["accepted", "throttled", "temporary", "permanent", "unknown"]

_SLOW_DOWN = re.compile(
    r"\b4\.7\.\d+\b|\brate\b|throttl|too many|slow down|try again later", re.IGNORECASE
)


@dataclass(frozen=True)
class Attempt:
    """What happened when a message was handed to its provider."""

    verdict: Verdict
    code: int | None
    detail: str
    reason: FailureReason | None = None
    # Seconds the provider asked us to wait (HTTP Retry-After), when it said.
    retry_after: float | None = None


def smtp_reply(code: int, detail: str) -> Attempt:
    if 200 <= code < 300:
        return Attempt("accepted", code, detail)
    if code in (421, 451, 454) and _SLOW_DOWN.search(detail):
        return Attempt("throttled", code, detail, "temporary_failure")
    if 400 <= code < 500:
        return Attempt("temporary", code, detail, "temporary_failure")
    if code in (501, 553) or "5.1.3" in detail:
        return Attempt("permanent", code, detail, "invalid_address")
    return Attempt("permanent", code, detail, "refused")


def connection_failure(detail: str) -> Attempt:
    return Attempt("temporary", None, detail, "temporary_failure")


def outcome_unknown(detail: str) -> Attempt:
    return Attempt("unknown", None, detail, "unknown_outcome")


def http_reply(status: int, detail: str, retry_after: str | None = None) -> Attempt:
    if 200 <= status < 300:
        return Attempt("accepted", status, detail)
    if status == 429:
        return Attempt("throttled", status, detail, "temporary_failure", _seconds(retry_after))
    if status >= 500:
        return Attempt("temporary", status, detail, "temporary_failure", _seconds(retry_after))
    if status in (400, 422):
        return Attempt("permanent", status, detail, "invalid_address")
    return Attempt("permanent", status, detail, "provider_error")


def invalid_address(detail: str) -> Attempt:
    return Attempt("permanent", None, detail, "invalid_address")


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is rare for SMS gateways and is ignored."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
