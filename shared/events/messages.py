"""broadcast.messages: a message rendered for its provider, and the identity every
per-message event carries."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from shared.events.base import Channel, Record

_REF = frozenset(
    {
        "tenant_id",
        "broadcast_id",
        "run_id",
        "recipient_id",
        "contract_id",
        "channel",
        "address",
        "targeted_at",
    }
)


class MessageRef(Record):
    """The fields that identify one message of one run, carried by every per-message event.

    `targeted_at` is when targeting published the recipient: the start of its end-to-end
    latency."""

    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    recipient_id: UUID
    contract_id: str
    channel: Channel
    address: str
    targeted_at: datetime | None = None

    def ref(self) -> dict[str, Any]:
        """These fields alone, to build the next event about the same message."""
        return {name: getattr(self, name) for name in _REF}


SmsEncoding = Literal["gsm7", "ucs2"]


class MessageRendered(MessageRef):
    """A message ready for its provider: a full RFC 5322 message for email, the text for SMS.

    For SMS, `sms_encoding` and `sms_segments` say what the message will cost."""

    type: Literal["message.rendered"] = "message.rendered"
    sender: str
    body: str
    sms_encoding: SmsEncoding | None = None
    sms_segments: int | None = None
    # A preview goes to the person who asked for it, at once: send windows do not apply.
    preview: bool = False
    # The recipient's rendition it was rendered from (0: as targeted); the dispatcher takes a
    # later one only in place of the message it asked to refresh.
    rendition: int = 0
