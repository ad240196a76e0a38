"""How a finished run is judged, as the Campaigns seed names it. Pure."""

from shared.events import Outcome


def outcome(delivered: int, failed: int) -> Outcome:
    """Everything delivered: fully successful; nothing delivered (or nothing to send): failed."""
    if delivered == 0:
        return "failed"
    if failed == 0:
        return "fully_successful"
    return "partially_successful"


def is_complete(messages_targeted: int | None, delivered: int, failed: int) -> bool:
    """Complete once targeting's total is known and every message has a final state."""
    return messages_targeted is not None and delivered + failed >= messages_targeted
