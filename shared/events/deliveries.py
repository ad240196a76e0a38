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


FinalDelivery = MessageDelivered | DeliveryFailed | DeliveryCancelled
DeliveryEvent = Annotated[
    MessageDelivered | DeliveryFailed | DeliveryDeferred | DeliveryCancelled | DeliveryCorrected,
    Field(discriminator="type"),
]
