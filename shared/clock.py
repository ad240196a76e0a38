"""The one clock of the engine: every "now" comes from here, so tests can inject another day."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: timezone-aware UTC, never naive."""
    return datetime.now(UTC)
