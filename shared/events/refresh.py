"""broadcast.runs: a waiting message rendered again with its contract's current values.

A message that waited long (a send window, a pause, a late retry) must leave with the values of
its contract at the moment it is sent, not those it was rendered with. The dispatcher asks for a
new rendition; targeting answers with the recipient as its contract stands now (to the composer,
on broadcast.recipients, with the `rendition` asked for), or declines when the contract is gone
or its address is no longer usable.
"""

from typing import Literal

from shared.events.deliveries import FailureReason
from shared.events.messages import MessageRef


class RefreshRequested(MessageRef):
    """The dispatcher holds this message and wants it rendered again as `rendition`."""

    type: Literal["message.refresh_requested"] = "message.refresh_requested"
    rendition: int


class RefreshDeclined(MessageRef):
    """The message cannot be rendered again: targeting found its contract deleted or the
    address no longer usable (`no_contact`), or the composer could not render the new
    rendition (`missing_value`, `sms_too_long`, `render_failed`...). The dispatcher, which
    holds the message, fails it with `reason`: it is never sent with the values it had, and
    only the dispatcher announces its outcome."""

    type: Literal["message.refresh_declined"] = "message.refresh_declined"
    rendition: int
    reason: FailureReason = "no_contact"
    detail: str
