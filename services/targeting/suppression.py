"""When a delivery report suppresses an address. Pure: no I/O.

An address is suppressed, per tenant and channel, by a hard bounce (`hard_bounce`), a complaint
(`complaint`), a soft-bounce streak reaching the tenant-wide threshold (`soft_bounces`), or an
SMS reply asking to stop (`sms_stop`). A hard bounce with a transient status counts in the
streak instead (`in_streak`). Suppression acts as an unsubscribe: targeting never sends
to the address again until someone re-enables it (`reenable_contact`).
"""

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from shared.events import (
    Channel,
    DeliveryBounced,
    DeliveryComplained,
    ReplyReceived,
    SuppressionReason,
)

# Compared after NFC normalisation and casefolding: "Arrêt", "ARRÊT" and "ARRE\u0302T" alike.
STOP_WORDS = frozenset({"stop", "arret", "arrêt"})


def asks_to_stop(text: str) -> bool:
    """The whole reply is a stop word, whatever its case, its Unicode form and the blanks or
    punctuation around it ("  Stop! ", "arrêt."). A sentence that contains one is not: "don't
    stop" must not opt a customer out."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFKC", text).casefold())
    return _trimmed(folded) in STOP_WORDS


def _trimmed(text: str) -> str:
    def edge(character: str) -> bool:
        return character.isspace() or unicodedata.category(character)[0] in "PZSC"

    start, end = 0, len(text)
    while start < end and edge(text[start]):
        start += 1
    while end > start and edge(text[end - 1]):
        end -= 1
    return text[start:end]


def normalised(address: str) -> str:
    """How targeting compares addresses: an opt-out, a suppression and a contract's point."""
    return address.strip().lower()


@dataclass(frozen=True)
class Suppression:
    tenant_id: str
    channel: Channel
    address: str  # normalised
    contract_id: str
    reason: SuppressionReason
    recipient_id: UUID
    # When the report was made: a report older than the address's latest re-enable decides
    # nothing (a replay of the report whose suppression was undone).
    reported_at: datetime


Decisive = DeliveryBounced | DeliveryComplained | ReplyReceived


def in_streak(bounce: DeliveryBounced) -> bool:
    """Whether a bounce counts in its address's soft-bounce streak rather than suppressing it
    alone: a soft bounce, or a hard one whose RFC 3463 status is transient (4.x.x), such as an
    SMS that failed at a handset switched off: the message failed, but the number may take the
    next one. A hard bounce with 5.x.x or no status (nearly every email's) suppresses alone."""
    return bounce.kind == "soft" or bounce.status.startswith("4.")


def decided_by(report: Decisive) -> Suppression | None:
    """The suppression one report decides alone; None for a bounce in a streak (`in_streak`: a
    streak decides) or a reply that is not a stop word, or a stop word on an email."""
    reason: SuppressionReason | None = None
    if isinstance(report, DeliveryBounced):
        reason = None if in_streak(report) else "hard_bounce"
    elif isinstance(report, DeliveryComplained):
        reason = "complaint"
    elif report.channel == "sms" and asks_to_stop(report.text):
        reason = "sms_stop"
    return None if reason is None else suppression(report, reason)


def suppression(report: Decisive, reason: SuppressionReason) -> Suppression:
    return Suppression(
        tenant_id=report.tenant_id,
        channel=report.channel,
        address=normalised(report.address),
        contract_id=report.contract_id,
        reason=reason,
        recipient_id=report.recipient_id,
        reported_at=report.reported_at,
    )


@dataclass(frozen=True)
class Sent:
    """A message to an address with a soft-bounce streak: `bounced` once it bounced in the
    streak (`in_streak`). `sent_at`: when it was handed over, or, for a bounce whose hand-over
    was not noted (the streak's first), when the bounce was reported."""

    recipient_id: UUID
    sent_at: datetime
    bounced: bool


def streak(sent: Iterable[Sent]) -> int:
    """How many soft bounces in a row the address has: the messages that soft-bounced among
    those sent after the newest one delivered without bouncing (as known now: a message whose
    bounce is still to come counts as clean until it comes, and the streak is counted again at
    each soft bounce)."""
    ordered = sorted(sent, key=lambda s: (s.sent_at, s.recipient_id))
    count = 0
    for message in ordered:
        count = count + 1 if message.bounced else 0
    return count
