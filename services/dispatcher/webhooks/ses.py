"""Amazon SES event notifications through Amazon SNS: POST /webhooks/ses.

SNS signs each message (its "Verifying the signatures of Amazon SNS messages"): the canonical
string is the message type's fields, `name\\nvalue\\n` each in a fixed order (Subject only when
present), signed with RSA PKCS#1 v1.5 over SHA-1 (SignatureVersion 1) or SHA-256 (2) by the
key of the certificate at SigningCertURL. The certificate is fetched only over https from an SNS
host (`sns.<region>.amazonaws.com`, `.com.cn` in China): TLS to that host vouches for it, and a
message cannot point us at a key of its own. Topics are allowed by name (DISPATCHER_SES_TOPIC_ARNS):
a valid signature on another account's topic proves nothing about our messages. A message whose
signed Timestamp is further than DISPATCHER_SES_MAX_AGE_SECONDS from now is refused (a captured
notification replayed); SNS's own retries carry the first Timestamp and stop within the hour.

The subscription must deliver the SNS envelope (raw message delivery off), and SES's
notifications must include the original headers: our Message-ID (`<{recipient_id}@domain>`) is
how a notification finds its message; SES's own `mail.messageId` is not ours.
"""

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict

from shared.clock import Clock
from shared.events import BounceKind

from ..intake import Finding
from . import reports
from .http import (
    Request,
    Take,
    forbidden,
    json_object,
    malformed,
    parsed,
    require_recent,
    unauthorized,
)

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The signed fields of each message type, in the canonical order; a subscription's
# confirmation and an unsubscription's sign the same ones.
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# Signing certificates kept: SNS uses one per region at a time.
_CACHED_CERTIFICATES = 16


class SnsMessage(BaseModel):
    """The SNS envelope, as SNS names its fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    Type: str
    MessageId: str
    TopicArn: str
    Message: str
    Timestamp: str
    SignatureVersion: str
    Signature: str
    SigningCertURL: str
    Subject: str | None = None
    SubscribeURL: str | None = None
    Token: str | None = None


def string_to_sign(message: SnsMessage) -> bytes:
    """The canonical string SNS signed for this message's type."""
    lines: list[str] = []
    for name in _SIGNED[message.Type]:
        value = getattr(message, name)
        if value is None:
            if name == "Subject":
                continue
            raise malformed(name)
        lines += [name, value]
    return ("\n".join(lines) + "\n").encode()


def from_sns(url: str) -> bool:
    """Whether `url` is https on an SNS host (certificates and subscription confirmations)."""
    parts = urlsplit(url)
    return parts.scheme == "https" and _SNS_HOST.match(parts.hostname or "") is not None


def verify(
    message: SnsMessage, certificate: x509.Certificate, now: datetime, max_age: float
) -> None:
    """Raises a 401 unless `certificate` signed `message` (whose type is a known one), a 403
    when its Timestamp is not within `max_age` seconds of `now`."""
    algorithm = _HASHES.get(message.SignatureVersion)
    if algorithm is None:
        raise unauthorized("SignatureVersion: not 1 or 2")
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise unauthorized("SigningCertURL: certificate out of its validity")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise unauthorized("SigningCertURL: not an RSA certificate")
    try:
        signature = base64.b64decode(message.Signature, validate=True)
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (binascii.Error, InvalidSignature):
        raise unauthorized("Signature: does not verify") from None
    require_recent("Timestamp", (now - _signed_at(message)).total_seconds(), max_age)


def _signed_at(message: SnsMessage) -> datetime:
    """The message's Timestamp (ISO 8601 in UTC, as SNS writes it), or a 400."""
    try:
        at = datetime.fromisoformat(message.Timestamp)
    except ValueError:
        raise malformed("Timestamp") from None
    if at.tzinfo is None:  # not SNS's, and not comparable with now
        raise malformed("Timestamp")
    return at


class _Header(BaseModel):
    name: str
    value: str


class _Mail(BaseModel):
    headers: list[_Header] = []


class _BouncedRecipient(BaseModel):
    status: str | None = None
    diagnosticCode: str | None = None


class _Bounce(BaseModel):
    bounceType: str
    bouncedRecipients: list[_BouncedRecipient] = []
    timestamp: datetime | None = None


class _Complaint(BaseModel):
    complaintFeedbackType: str | None = None
    timestamp: datetime | None = None


class SesEvent(BaseModel):
    """SES's notification (`notificationType`) or event publishing record (`eventType`)."""

    notificationType: str | None = None
    eventType: str | None = None
    mail: _Mail
    bounce: _Bounce | None = None
    complaint: _Complaint | None = None


def findings(event: SesEvent, now: datetime) -> list[Finding]:
    """The finding about our message in a Bounce or Complaint; none for any other event or
    another sender's message. One message has one recipient: the first bounced entry speaks."""
    kind = event.eventType or event.notificationType
    if kind not in ("Bounce", "Complaint"):
        return []
    recipient = next(
        (
            found
            for header in event.mail.headers
            if header.name.lower() == "message-id"
            and (found := reports.recipient_of_message_id(header.value))
        ),
        None,
    )
    report: dict[str, Any]
    if kind == "Bounce":
        if event.bounce is None:
            raise malformed("Message.bounce")
        bounce = event.bounce
        first = bounce.bouncedRecipients[0] if bounce.bouncedRecipients else _BouncedRecipient()
        # Undetermined: SES could not tell; soft keeps the address until several in a row.
        kind_of: BounceKind = "hard" if bounce.bounceType == "Permanent" else "soft"
        report = reports.bounced(
            kind_of, first.status or "", first.diagnosticCode or "", "ses", bounce.timestamp or now
        )
    else:
        if event.complaint is None:
            raise malformed("Message.complaint")
        complaint = event.complaint
        report = reports.complained(
            complaint.complaintFeedbackType or "", "ses", complaint.timestamp or now
        )
    return [] if recipient is None else [Finding(recipient, report)]


Fetch = Callable[[str], Awaitable[bytes]]


class SigningCertificates:
    """SNS's signing certificates by URL, fetched once (`fetch` GETs a URL's body)."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._known: dict[str, x509.Certificate] = {}

    async def get(self, url: str) -> x509.Certificate:
        if not from_sns(url):
            raise forbidden("SigningCertURL: not https on an SNS host")
        if url not in self._known:
            pem = await self._fetch(url)
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise unauthorized("SigningCertURL: not a certificate") from None
            if len(self._known) >= _CACHED_CERTIFICATES:
                self._known.clear()
            self._known[url] = certificate
        return self._known[url]


class SesWebhook:
    """The handler of POST /webhooks/ses (see the module's docstring)."""

    def __init__(
        self,
        topics: frozenset[str],
        max_age: float,
        certificates: SigningCertificates,
        confirm: Callable[[str], Awaitable[None]],
        clock: Clock,
    ) -> None:
        """`confirm` GETs a SubscribeURL, raising when SNS does not answer 2xx."""
        self._topics = topics
        self._max_age = max_age
        self._certificates = certificates
        self._confirm = confirm
        self._clock = clock

    async def __call__(self, request: Request, take: Take) -> Mapping[str, Any]:
        message = parsed(SnsMessage, json_object(request.body), "")
        if message.Type not in _SIGNED:
            raise malformed("Type")
        if message.TopicArn not in self._topics:
            raise forbidden("TopicArn: not allowed")
        now = self._clock()
        verify(message, await self._certificates.get(message.SigningCertURL), now, self._max_age)
        if message.Type == "SubscriptionConfirmation":
            if message.SubscribeURL is None or not from_sns(message.SubscribeURL):
                raise forbidden("SubscribeURL: not https on an SNS host")
            await self._confirm(message.SubscribeURL)
            return {"subscribed": True}
        if message.Type == "UnsubscribeConfirmation":
            return {"findings": 0, "published": 0}
        event = parsed(SesEvent, json_object(message.Message.encode(), "Message"), "Message")
        found = findings(event, now)
        taken = await take(found)
        return {"findings": len(found), "published": len(taken)}
