"""broadcast.dead-letters: records no handler could parse, kept for an operator."""

from typing import Literal

from shared.events.base import Record


class DeadLettered(Record):
    """A record no handler could even parse, kept with the error for an operator."""

    type: Literal["message.dead_lettered"] = "message.dead_lettered"
    service: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str
    error: str
