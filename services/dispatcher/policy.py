"""What a provider's answer means for a message. Pure: the rules in one place, easy to test.

- accepted: the provider took the message (SMTP 2xx, HTTP 2xx);
- temporary: it may work later (SMTP 4xx, connection refused or reset, timeout, HTTP 429 / 5xx);
- permanent: it will never work as is (SMTP 5xx, HTTP 4xx other than 429, invalid address).
"""

from dataclasses import dataclass
from typing import Literal

from shared.events import FailureReason

Verdict = Literal["accepted", "temporary", "permanent"]


@dataclass(frozen=True)
class Attempt:
    """What happened when a message was handed to its provider."""

    verdict: Verdict
    code: int | None
    detail: str
    reason: FailureReason | None = None


def smtp_reply(code: int, detail: str) -> Attempt:
    if 200 <= code < 300:
        return Attempt("accepted", code, detail)
    if 400 <= code < 500:
        return Attempt("temporary", code, detail, "temporary_failure")
    if code in (501, 553) or "5.1.3" in detail:
        return Attempt("permanent", code, detail, "invalid_address")
    return Attempt("permanent", code, detail, "refused")


def connection_failure(detail: str) -> Attempt:
    return Attempt("temporary", None, detail, "temporary_failure")


def http_reply(status: int, detail: str) -> Attempt:
    if 200 <= status < 300:
        return Attempt("accepted", status, detail)
    if status == 429 or status >= 500:
        return Attempt("temporary", status, detail, "temporary_failure")
    if status in (400, 422):
        return Attempt("permanent", status, detail, "invalid_address")
    return Attempt("permanent", status, detail, "provider_error")


def invalid_address(detail: str) -> Attempt:
    return Attempt("permanent", None, detail, "invalid_address")
