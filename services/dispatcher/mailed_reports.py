"""Reports mailed to a return path, read: bounces (RFC 3464 DSNs) and complaints (RFC 5965
feedback reports). Pure.

A DSN's failed recipient gives `delivery.bounced`: hard for a 5.x.x status, soft for 4.x.x;
a delayed one (`Action: delayed`) is only news that the remote server still tries, so it is
not a bounce. A feedback report gives `delivery.complained`. Anything else mailed there (an
auto-reply, a vacation notice, spam, bytes that are not a message) is read as `other` or
`unreadable`: taken and counted, never an error, so that no sender retries it forever.

A message is named by the return path the report was mailed to. A feedback report also names
it by the Message-ID (`<recipient_id@domain>`, services/composer/mime.py) of the original it
quotes, as mailbox providers send them to the address registered with their feedback loop
rather than to the return path.
"""

import email
import email.policy
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from typing import Any, Literal
from uuid import UUID

from shared.ids import event_id_for

from .intake import Finding

# What a received mail was, a closed set (a metric's label).
MailKind = Literal["bounce", "complaint", "delay", "other", "unreadable"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MESSAGE_ID = re.compile(r"<\s*([0-9A-Fa-f-]{32,36})@[^>]*>")
# A remote server's diagnostic is evidence for a person, not a place for a whole message.
DIAGNOSTIC_CHARS = 300
_FEEDBACK_TYPE = re.compile(r"[a-z][a-z0-9-]{0,39}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class MailedReport:
    """What one received mail reports about the message it names, without naming it: the
    report's fields (`Finding.report`), if any, and the recipient ids of the original messages
    it quotes by Message-ID (feedback reports only)."""

    kind: MailKind
    report: dict[str, Any] | None = None
    quoted: list[UUID] = field(default_factory=list)


def read(data: bytes, now: datetime) -> MailedReport:
    """The report in `data`, one received mail, dated `now`. Never raises on its content."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        if message.get_content_type() != "multipart/report":
            return MailedReport("other")
        report_type = collapse_rfc2231_value(message.get_param("report-type", "") or "")
        if report_type.lower() == "delivery-status":
            return _delivery_status(message, now)
        if report_type.lower() == "feedback-report":
            return _feedback(message, now)
        return MailedReport("other")
    # The stdlib parser records defects rather than raising, but its header and parameter
    # decoding has raised on hostile input before (LookupError on a charset, IndexError, ...):
    # whatever it raises here, this mail is unreadable, and the receiver must go on.
    except Exception:
        return MailedReport("unreadable")


def findings(mail: MailedReport, return_paths: Sequence[UUID], data: bytes) -> list[Finding]:
    """The findings of `mail`, received for the messages of `return_paths` (the verified
    return paths it was mailed to) or, for a complaint, of the originals it quotes. Each has an
    event id of its own mail's bytes: a mail sent again after a lost answer reports the same."""
    if mail.report is None:
        return []
    named = list(return_paths) or (mail.quoted if mail.kind == "complaint" else [])
    digest = hashlib.sha256(data).hexdigest()[:32]
    return [
        Finding(
            recipient_id,
            {**mail.report, "event_id": event_id_for(recipient_id, f"mailed-report|{digest}")},
        )
        for recipient_id in dict.fromkeys(named)
    ]


def _parts(message: Message, content_type: str) -> list[Message]:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def _one_line(value: object, limit: int) -> str:
    return " ".join(_CONTROL.sub(" ", str(value)).split())[:limit]


def _delivery_status(message: Message, now: datetime) -> MailedReport:
    """The first failed recipient of the DSN (a return path names one message, which has one
    recipient); else `delay` if one is delayed; else `other` (a success notice, say)."""
    blocks: list[Message] = []
    for part in _parts(message, "message/delivery-status"):
        payload = part.get_payload()
        # The first block is about the message, the others each about one recipient.
        if isinstance(payload, list):
            blocks += [b for b in payload[1:] if isinstance(b, Message)]
    delayed = False
    for block in blocks:
        action = str(block.get("Action", "")).strip().lower()
        if action == "failed":
            status = _STATUS.search(str(block.get("Status", "")))
            return MailedReport(
                "bounce",
                {
                    "type": "delivery.bounced",
                    # A failure without a readable status is final all the same.
                    "kind": "soft" if status and status[1] == "4" else "hard",
                    "status": status[0] if status else "",
                    "diagnostic": _one_line(block.get("Diagnostic-Code", ""), DIAGNOSTIC_CHARS),
                    "source": "dsn",
                    "reported_at": now,
                },
            )
        delayed |= action == "delayed"
    return MailedReport("delay" if delayed else "other")


def _feedback(message: Message, now: datetime) -> MailedReport:
    feedback_type = "abuse"  # RFC 5965's field is required; a report without one is a complaint
    for part in _parts(message, "message/feedback-report"):
        fields = _fields(part)
        given = _one_line(fields.get("Feedback-Type", ""), 40).lower()
        if _FEEDBACK_TYPE.fullmatch(given):
            feedback_type = given
        break
    quoted: list[UUID] = []
    for part in [*_parts(message, "message/rfc822"), *_parts(message, "text/rfc822-headers")]:
        if (recipient_id := _recipient_id(_fields(part).get("Message-ID", ""))) is not None:
            quoted.append(recipient_id)
    report = {
        "type": "delivery.complained",
        "feedback_type": feedback_type,
        "source": "arf",
        "reported_at": now,
    }
    return MailedReport("complaint", report, quoted)


def _fields(part: Message) -> Message:
    """The header fields a report part carries: a message/* part's payload is the parsed
    message (or block), a text/rfc822-headers part's is text to parse."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else Message()
    raw = part.get_payload(decode=True)
    text = raw if isinstance(raw, bytes) else str(payload).encode("utf-8", "replace")
    return BytesHeaderParser(policy=email.policy.compat32).parsebytes(text)


def _recipient_id(message_id: object) -> UUID | None:
    found = _MESSAGE_ID.search(str(message_id))
    if found is None:
        return None
    try:
        return UUID(found[1])
    except ValueError:
        return None
