"""broadcast.deliveries: what became of each message handed over (or not) to its provider."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from shared.events.messages import MessageRef

FailureReason = Literal[
    "unknown_outcome",
    "render_failed",
    "missing_value",
    "sms_too_long",
    "invalid_address",
    "refused",
    "temporary_failure",
    "provider_error",
    # Targeting found no usable address for the contract on any of the run's channels: the
    # message was never rendered nor handed over (its address is empty).
    "no_contact",
    # Accepted by the provider, then returned for good by the recipient's system (a hard
    # bounce), or, for an SMS, failed at the handset: a `delivery.bounced` moved it here.
    "bounced",
]


class MessageDelivered(MessageRef):
    """The provider accepted the message."""

    type: Literal["delivery.delivered"] = "delivery.delivered"
    provider_code: int | None = None
    provider_message: str = ""


class DeliveryFailed(MessageRef):
    """The message will not reach its recipient without somebody acting on it."""

    type: Literal["delivery.failed"] = "delivery.failed"
    reason: FailureReason
    detail: str = ""
    provider_code: int | None = None


WaitReason = Literal["retry", "send_window", "throttled", "paused"]


class DeliveryDeferred(MessageRef):
    """Not handed over yet: it will be tried again at `due_at` (None: when its run is
    resumed). Not a final state."""

    type: Literal["delivery.deferred"] = "delivery.deferred"
    waiting_for: WaitReason
    due_at: datetime | None
    attempts: int
    detail: str = ""
    provider_code: int | None = None


class DeliveryCancelled(MessageRef):
    """Its broadcast was cancelled before the message was handed over."""

    type: Literal["delivery.cancelled"] = "delivery.cancelled"


class DeliveryCorrected(MessageRef):
    """A message reported failed with `unknown_outcome` (its dispatcher looked dead) whose
    dispatcher later learnt the provider's answer: `outcome`. Published beside that answer's
    own `delivery.delivered` or `delivery.failed`, which the tracker applies as the correction;
    targeting reads this one to leave a delivered message out of a resend to the failures."""

    type: Literal["delivery.corrected"] = "delivery.corrected"
    outcome: Literal["delivered", "failed"]


BounceKind = Literal["hard", "soft"]
# Where a report after the hand-over came from: a delivery status notification (RFC 3464) or
# an abuse report (RFC 5965) mailed to the message's return path, a sending provider's
# webhook, or the SMS gateway's.
ReportSource = Literal["dsn", "arf", "ses", "mailgun", "sms_gateway"]
# Room for a remote server's diagnostic, never a whole returned message.
ReportText = Annotated[str, Field(max_length=1000)]


class DeliveryBounced(MessageRef):
    """The recipient's system returned a message its provider had accepted. `hard`: it will
    never arrive (no such user, no such domain), and the address is suppressed; `soft`: it may,
    later (a full mailbox), and several in a row suppress it. For an SMS, a failure reported at
    the handset, always `hard` (the message failed): with a 5.x.x status the number is
    suppressed, with a 4.x.x one (a handset off) it counts in the streak like a soft bounce.
    `status` is the RFC 3463 code (`5.1.1`) when there is one."""

    type: Literal["delivery.bounced"] = "delivery.bounced"
    kind: BounceKind
    status: str = ""
    diagnostic: ReportText = ""
    source: ReportSource
    reported_at: datetime


class DeliveryComplained(MessageRef):
    """The recipient reported the message as unwanted (a feedback report, RFC 5965, or a
    provider's complaint webhook): the address is suppressed. The message stays delivered."""

    type: Literal["delivery.complained"] = "delivery.complained"
    feedback_type: str = "abuse"
    source: ReportSource
    reported_at: datetime


class DeliveryConfirmed(MessageRef):
    """The SMS gateway's receipt: the message reached the handset."""

    type: Literal["delivery.confirmed"] = "delivery.confirmed"
    source: ReportSource
    reported_at: datetime


class ReplyReceived(MessageRef):
    """A reply to an SMS, from its recipient's number. STOP, ARRET or ARRÊT (any case) opts
    the number out (targeting)."""

    type: Literal["delivery.replied"] = "delivery.replied"
    text: ReportText
    reported_at: datetime


# What is learnt of a message after its hand-over, from outside the engine.
DeliveryReport = DeliveryBounced | DeliveryComplained | DeliveryConfirmed | ReplyReceived

FinalDelivery = MessageDelivered | DeliveryFailed | DeliveryCancelled
DeliveryEvent = Annotated[
    MessageDelivered
    | DeliveryFailed
    | DeliveryDeferred
    | DeliveryCancelled
    | DeliveryCorrected
    | DeliveryReport,
    Field(discriminator="type"),
]
