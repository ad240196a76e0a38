"""Twilio's status callbacks and incoming messages: POST /webhooks/twilio/status and /inbound.

Used when the dispatcher sends through Twilio (DISPATCHER_SMS_PROVIDER=twilio). Twilio signs
each request (its "Webhooks security"): `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed by
the account's auth token, of the full URL Twilio called followed by every form parameter's name
and value, sorted by name. That URL is ours as the world sees it (DISPATCHER_PUBLIC_URL plus the
route), not the one this process was reached on behind a proxy.

A status callback names its message by `MessageSid`, which the ledger keeps as the delivery's
provider message (twilio_sms.py). `delivered` confirms it; `undelivered` and `failed` are a
hard bounce with Twilio's `ErrorCode`, whose status says whether the number is at fault
(`status_of`); the other statuses (queued, sent, ...) say nothing final.
An incoming message (`From`, `To`, `Body`) answers the latest SMS handed over to its number.
"""

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import asyncpg

from shared.clock import Clock

from ..intake import Finding
from . import reports
from .gateway import Latest
from .http import Request, Take, malformed, unauthorized

SIGNATURE_HEADER = "X-Twilio-Signature"

# Twilio's error codes (its Error and Warning Dictionary) that condemn the number, each as the
# RFC 3463 status closest to it. Every other code, or none, is transient, since the next message
# may get through: a handset off or out of range (30003), a full queue (30001), our account
# suspended (30002) or a price over our maximum (30010), a carrier filtering this content, not
# this number (30007), a lost segment (30009), an unknown error (30008), a code new to us.
_PERMANENT: dict[str, str] = {
    "30004": "5.7.1",  # blocked by the recipient: delivery not authorised
    "30005": "5.1.1",  # unknown destination handset: no such mailbox
    "30006": "5.1.1",  # a landline, or a carrier that takes no SMS
    "21211": "5.1.3",  # not a valid phone number: a bad address's syntax
    "21614": "5.1.1",  # not a mobile number
    "21610": "5.7.1",  # the recipient replied STOP to our number: Twilio refuses
}


def signature(auth_token: bytes, url: str, params: list[tuple[str, str]]) -> str:
    """What Twilio sends in the header for a POST of `params` to `url` (a parameter repeated
    with one value counts once, as Twilio's own validators do)."""
    signed = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(auth_token, signed.encode(), hashlib.sha1).digest()).decode()


def verified_form(auth_token: bytes, url: str, request: Request) -> dict[str, str]:
    """The request's form parameters, once its signature is Twilio's; a 401 otherwise."""
    header = request.headers.get(SIGNATURE_HEADER.lower())
    if header is None:
        raise unauthorized(f"{SIGNATURE_HEADER}: missing")
    try:
        params = parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise malformed("body (not a form)") from None
    expected = signature(auth_token, url, params)
    if not hmac.compare_digest(expected.encode(), header.strip().encode()):
        raise unauthorized(f"{SIGNATURE_HEADER}: does not verify")
    return dict(params)


def status_of(error_code: str) -> str:
    """The RFC 3463 status of a message Twilio reports undelivered or failed with `error_code`
    (empty when it gave none): 5.x.x when the number is at fault, 4.0.0 otherwise."""
    return _PERMANENT.get(error_code.strip(), reports.TRANSIENT)


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise malformed(name)
    return value


# The recipient id of the SMS Twilio knows by a sid, if the ledger has it.
BySid = Callable[[str], Awaitable[UUID | None]]


async def message_of_sid(pool: asyncpg.Pool, sid: str) -> UUID | None:
    found: UUID | None = await pool.fetchval(
        """SELECT recipient_id FROM dispatcher.deliveries
           WHERE channel = 'sms' AND provider_message = $1""",
        sid,
    )
    return found


class TwilioStatus:
    """The handler of POST /webhooks/twilio/status."""

    def __init__(self, auth_token: bytes, url: str, by_sid: BySid, clock: Clock) -> None:
        self._token = auth_token
        self._url = url
        self._by_sid = by_sid
        self._clock = clock

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        form = verified_form(self._token, self._url, request)
        sid, status = _field(form, "MessageSid"), _field(form, "MessageStatus")
        if status not in ("delivered", "undelivered", "failed"):
            return {"findings": 0, "published": 0}
        recipient = await self._by_sid(sid)
        if recipient is None:
            return {"findings": 0, "published": 0}
        now = self._clock()
        if status == "delivered":
            report = reports.confirmed("sms_gateway", now)
        else:
            code = form.get("ErrorCode", "")
            said = f"Twilio {status}" + (f", error {code}" if code else "")
            report = reports.sms_failed(status_of(code), said, now)
        taken = await take([Finding(recipient, report)])
        return {"findings": 1, "published": len(taken)}


class TwilioInbound:
    """The handler of POST /webhooks/twilio/inbound."""

    def __init__(self, auth_token: bytes, url: str, latest: Latest, clock: Clock) -> None:
        self._token = auth_token
        self._url = url
        self._latest = latest
        self._clock = clock

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        form = verified_form(self._token, self._url, request)
        answered = await self._latest(_field(form, "From"))
        if answered is None:
            return {"findings": 0, "published": 0}
        reply = reports.replied(form.get("Body", ""), self._clock())
        taken = await take([Finding(answered, reply)])
        return {"findings": 1, "published": len(taken)}
