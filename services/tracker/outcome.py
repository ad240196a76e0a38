"""How a finished run is judged, as the Campaigns seed names it. Pure."""

from shared.events import Outcome


def outcome(delivered: int, failed: int, cancelled: bool = False) -> Outcome:
    """Everything delivered: fully successful; nothing delivered (or nothing to send): failed.
    A run cancelled on purpose is cancelled, whatever was sent before."""
    if cancelled:
        return "cancelled"
    if delivered == 0:
        return "failed"
    if failed == 0:
        return "fully_successful"
    return "partially_successful"


def is_complete(messages_targeted: int | None, final: int) -> bool:
    """Complete once targeting's total is known and every message has a final state."""
    return messages_targeted is not None and final >= messages_targeted


def to_notify(created_by: str | None, requested_by: str) -> list[str]:
    """Whom a completion is addressed to: the broadcast's creator, then whoever started the run
    (started it, scheduled it or resent it) when that is someone else. A run announced before
    its creator was carried names the one who started it only."""
    return list(dict.fromkeys(p for p in (created_by, requested_by) if p))
