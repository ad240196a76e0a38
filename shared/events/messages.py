"""broadcast.messages: a message rendered for its provider (alone, or in a page of one run's),
and the identity every per-message event carries."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from shared.events.base import PAGE_ENTRIES, Channel, Record, RunPage

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


class MessagesRendered(RunPage):
    """A page of one run's rendered messages, as the composer publishes a batch's. Each is
    exactly the `message.rendered` it would be alone, which is what a page holding one is."""

    type: Literal["messages.rendered"] = "messages.rendered"
    messages: list[MessageRendered] = Field(min_length=1, max_length=PAGE_ENTRIES)

    def entries(self) -> list[MessageRendered]:
        return self.messages


# What `broadcast.messages` carries.
MessageRecord = Annotated[MessageRendered | MessagesRendered, Field(discriminator="type")]
