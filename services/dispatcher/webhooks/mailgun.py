"""Mailgun webhooks ("failed" and "complained" events): POST /webhooks/mailgun.

Mailgun signs each post with the domain's webhook signing key: `signature.signature` is the hex
HMAC-SHA256 of `timestamp + token`. Verified in constant time; a timestamp further than
DISPATCHER_MAILGUN_MAX_AGE_SECONDS from now, or a token already taken within that time, is
refused (a captured post replayed). A token is remembered only once its post was taken, so a
post that failed here (503) can come again. Mailgun gives our Message-ID without its angle
brackets in `event-data.message.headers.message-id`.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import Clock
from shared.events import BounceKind

from ..intake import Finding
from . import reports
from .http import Request, Take, forbidden, json_object, parsed, require_recent, unauthorized


class _Signature(BaseModel):
    timestamp: str
    token: str
    signature: str


class _DeliveryStatus(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    code: int | str | None = None
    message: str | None = None
    description: str | None = None
    enhanced_code: str | None = Field(default=None, alias="enhanced-code")


class _Headers(BaseModel):
    message_id: str | None = Field(default=None, alias="message-id")


class _Message(BaseModel):
    headers: _Headers = _Headers()


class EventData(BaseModel):
    """What of Mailgun's `event-data` says what happened to which message."""

    event: str
    severity: str | None = None
    timestamp: float | None = None
    delivery_status: _DeliveryStatus = Field(default=_DeliveryStatus(), alias="delivery-status")
    message: _Message = _Message()


class MailgunPost(BaseModel):
    signature: _Signature
    event_data: EventData = Field(alias="event-data")


def verify(signature: _Signature, key: bytes, now: float, max_age: float) -> None:
    """Raises a 401 unless `key` signed it, a 403 when it is not recent."""
    expected = hmac.new(
        key, (signature.timestamp + signature.token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.signature.encode()):
        raise unauthorized("signature: does not verify")
    try:
        signed_at = float(signature.timestamp)
    except ValueError:
        raise unauthorized("signature.timestamp: not a number") from None
    require_recent("signature.timestamp", now - signed_at, max_age)


def findings(data: EventData, now: datetime) -> list[Finding]:
    """The finding about our message in a "failed" or "complained" event; none for another
    event or another sender's message."""
    recipient = reports.recipient_of_message_id(data.message.headers.message_id)
    if recipient is None or data.event not in ("failed", "complained"):
        return []
    at = _moment(data.timestamp, now)
    if data.event == "complained":
        return [Finding(recipient, reports.complained("abuse", "mailgun", at))]
    status = data.delivery_status
    kind: BounceKind = "hard" if data.severity == "permanent" else "soft"
    said = status.message or status.description or ""
    diagnostic = f"{status.code} {said}".strip() if status.code is not None else said
    return [
        Finding(
            recipient, reports.bounced(kind, status.enhanced_code or "", diagnostic, "mailgun", at)
        )
    ]


def _moment(seconds: float | None, now: datetime) -> datetime:
    """Mailgun's event time, or now when it has none that makes sense."""
    if seconds is None:
        return now
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return now


class RecentTokens:
    """The signature tokens taken in the last `window` seconds (older ones are refused by their
    timestamp anyway, so they are forgotten)."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._taken: dict[str, float] = {}

    def seen(self, token: str) -> bool:
        return token in self._taken

    def remember(self, token: str, now: float) -> None:
        # Insertion order is time order: the expired ones are at the front.
        for old, at in list(self._taken.items()):
            if now - at <= self._window:
                break
            del self._taken[old]
        self._taken[token] = now


class MailgunWebhook:
    """The handler of POST /webhooks/mailgun (see the module's docstring)."""

    def __init__(self, key: bytes, max_age: float, clock: Clock) -> None:
        self._key = key
        self._max_age = max_age
        self._clock = clock
        # Twice the age: a timestamp up to max_age in the future is accepted too.
        self._tokens = RecentTokens(2 * max_age)

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        post = parsed(MailgunPost, json_object(request.body), "")
        now = self._clock()
        verify(post.signature, self._key, now.timestamp(), self._max_age)
        if self._tokens.seen(post.signature.token):
            raise forbidden("signature.token: already taken")
        found = findings(post.event_data, now)
        taken = await take(found)
        self._tokens.remember(post.signature.token, now.timestamp())
        return {"findings": len(found), "published": len(taken)}
