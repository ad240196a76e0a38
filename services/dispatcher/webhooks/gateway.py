"""Our HTTP SMS gateway's receipts and replies: POST /webhooks/sms/receipts and /sms/replies.

The gateway signs each post with the token we authenticate to it with
(DISPATCHER_SMS_GATEWAY_TOKEN), in a header:
`X-Broadcast-Signature: sha256=<hex of HMAC-SHA256(token, raw body)>`.

A receipt names its message by the `reference` we sent it (our recipient id): `delivered`
confirms the SMS reached the handset, `failed` is a hard bounce with the gateway's code and
detail, whose status says whether the gateway found the number at fault (`permanent`). A reply
names the SMS it answers by `reference` when the gateway knows it; otherwise it answers the
latest SMS handed over to its number (one sender number serves every tenant, so the latest
message is the best guess there is). What a reply means (STOP) is targeting's to decide.
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from shared.clock import Clock

from ..intake import Finding
from . import reports
from .http import Request, Take, json_object, parsed, unauthorized

SIGNATURE_HEADER = "X-Broadcast-Signature"
_PREFIX = "sha256="


def signature(token: bytes, body: bytes) -> str:
    """The header's value for `body` (what the gateway sends)."""
    return _PREFIX + hmac.new(token, body, hashlib.sha256).hexdigest()


def verify(token: bytes, body: bytes, header: str | None) -> None:
    """Raises a 401 unless `header` is the body's signature by `token`."""
    if header is None:
        raise unauthorized(f"{SIGNATURE_HEADER}: missing")
    if not hmac.compare_digest(signature(token, body).encode(), header.strip().encode()):
        raise unauthorized(f"{SIGNATURE_HEADER}: does not verify")


class Receipt(BaseModel):
    reference: UUID
    status: Literal["delivered", "failed"]
    code: int | str | None = None
    detail: str | None = None
    # Whether the failure is the number's (unassigned, a landline): only then is it suppressed at
    # once. False when the gateway does not say: a failure taken wrongly as permanent (a phone
    # off for a day) suppresses a good number until someone re-enables it, while one taken
    # wrongly as transient still suppresses a dead number after a few in a row.
    permanent: bool = False


class Reply(BaseModel):
    sender: str = Field(alias="from", min_length=1, max_length=64)
    to: str = Field(max_length=64)
    text: str
    reference: UUID | None = None


def receipt_finding(receipt: Receipt, now: datetime) -> Finding:
    if receipt.status == "delivered":
        return Finding(receipt.reference, reports.confirmed("sms_gateway", now))
    said = " ".join(str(part) for part in (receipt.code, receipt.detail) if part is not None)
    status = reports.PERMANENT if receipt.permanent else reports.TRANSIENT
    return Finding(receipt.reference, reports.sms_failed(status, said, now))


# The recipient id of the latest SMS handed over to a number, if any.
Latest = Callable[[str], Awaitable[UUID | None]]


async def latest_sms_to(pool: asyncpg.Pool, number: str) -> UUID | None:
    found: UUID | None = await pool.fetchval(
        """SELECT recipient_id FROM dispatcher.deliveries
           WHERE channel = 'sms' AND state = 'delivered' AND address = $1
           ORDER BY finished_at DESC LIMIT 1""",
        number,
    )
    return found


class _Signed:
    def __init__(self, token: bytes, clock: Clock) -> None:
        self._token = token
        self._clock = clock

    def _body(self, request: Request) -> dict[str, Any]:
        verify(self._token, request.body, request.headers.get(SIGNATURE_HEADER.lower()))
        return json_object(request.body)


class GatewayReceipts(_Signed):
    """The handler of POST /webhooks/sms/receipts."""

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        receipt = parsed(Receipt, self._body(request), "")
        taken = await take([receipt_finding(receipt, self._clock())])
        return {"findings": 1, "published": len(taken)}


class GatewayReplies(_Signed):
    """The handler of POST /webhooks/sms/replies."""

    def __init__(self, token: bytes, clock: Clock, latest: Latest) -> None:
        super().__init__(token, clock)
        self._latest = latest

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        reply = parsed(Reply, self._body(request), "")
        answered = reply.reference or await self._latest(reply.sender)
        if answered is None:
            return {"findings": 0, "published": 0}
        taken = await take([Finding(answered, reports.replied(reply.text, self._clock()))])
        return {"findings": 1, "published": len(taken)}
