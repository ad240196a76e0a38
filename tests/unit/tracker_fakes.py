"""Stand-ins for the tracker's outside world in unit tests: a clock the test moves, a publisher
that keeps what it is given, and per-message events."""

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg

from shared.events import (
    DeliveryCancelled,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    WaitReason,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Any, bytes | None]] = []

    async def publish(
        self, message: Any, *, key: bytes | None = None, no_confirm: bool = False
    ) -> None:
        self.published.append((message, key))

    @property
    def messages(self) -> list[Any]:
        return [message for message, _ in self.published]


def no_pool() -> asyncpg.Pool:
    """The pool getter of a component whose queries the test replaced."""
    return cast(asyncpg.Pool, None)


def _ref(run_id: UUID) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "broadcast_id": uuid4(),
        "run_id": run_id,
        "recipient_id": uuid4(),
        "contract_id": "C-1",
        "channel": "email",
        "address": "someone@x.example",
    }


def delivered(run_id: UUID) -> MessageDelivered:
    return MessageDelivered(**_ref(run_id))


def failed(run_id: UUID) -> DeliveryFailed:
    return DeliveryFailed(**_ref(run_id), reason="refused")


def deferred(run_id: UUID, waiting_for: WaitReason) -> DeliveryDeferred:
    return DeliveryDeferred(**_ref(run_id), waiting_for=waiting_for, due_at=None, attempts=1)


def cancelled(run_id: UUID) -> DeliveryCancelled:
    return DeliveryCancelled(**_ref(run_id))
