"""Values at the moment of sending: whether a waiting message leaves as it was rendered, or is
rendered again first with its contract's current values. Pure.

Only messages taken from the ledger are asked about. Every one of them was never handed to a
provider (a send window, a paused run, pacing) or its last attempt was refused for now
(temporary, throttled): an outcome that may have reached the provider is final (`unknown`) and
never waits, so a refresh can never make a message leave twice.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.events import MessageRendered, RefreshRequested
from shared.ids import event_id_for


@dataclass(frozen=True)
class Freshness:
    # A message rendered longer ago than this is rendered again before it is sent.
    after: timedelta
    # A refresh unanswered this long is asked for again: the request, or its answer, may have
    # been lost in a crash. Asking twice is harmless (the same rendition is asked for).
    ask_again: timedelta
    # A refresh unanswered this long fails the message (`render_failed`, with its manual
    # action) rather than leaving it waiting forever: the new rendition cannot be rendered, or
    # targeting is down. It is never sent with the values it had.
    give_up: timedelta


def must_refresh(message: MessageRendered, now: datetime, freshness: Freshness) -> bool:
    """A preview goes out at once to whoever asked; its values are those they asked to see."""
    return not message.preview and now - message.occurred_at > freshness.after


def refresh_request(message: MessageRendered, rendition: int) -> RefreshRequested:
    return RefreshRequested(
        **message.ref(),
        # Asked again after a crash: the same event, recognisable as such.
        event_id=event_id_for(message.recipient_id, f"refresh-{rendition}"),
        rendition=rendition,
    )
