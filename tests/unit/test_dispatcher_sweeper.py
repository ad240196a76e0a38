"""The sweeper's pass, with the hand-over and the database faked: what it publishes, what it
marks announced, and when it asks to run again at once."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from prometheus_client import CollectorRegistry, Counter

from services.dispatcher.handover import Event
from services.dispatcher.sweeper import Sweeper
from shared.events import DeliveryCancelled, DeliveryDeferred, DeliveryFailed, MessageDelivered

TAKEOVER = timedelta(seconds=15)


def ref() -> dict[str, Any]:
    return {
        "tenant_id": "t-1",
        "broadcast_id": uuid4(),
        "run_id": uuid4(),
        "recipient_id": uuid4(),
        "contract_id": "C-1",
        "channel": "email",
        "address": "a@example.org",
    }


class Handover:
    def __init__(self, due: int) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._due = due

    async def expire(self, takeover: timedelta | None) -> list[Event]:
        self.calls.append(("expire", takeover))
        return [DeliveryFailed(**ref(), reason="unknown_outcome")]

    async def repair(self, older_than: timedelta) -> list[Event]:
        self.calls.append(("repair", older_than))
        return [DeliveryCancelled(**ref())]

    async def due(self, limit: int) -> list[Event]:
        self.calls.append(("due", limit))
        later = datetime.now(UTC) + timedelta(minutes=5)
        deferred: list[Event] = [
            DeliveryDeferred(**ref(), waiting_for="retry", due_at=later, attempts=1)
        ]
        return deferred + [MessageDelivered(**ref()) for _ in range(self._due - 1)]


class Heartbeat:
    def takeover(self) -> timedelta | None:
        return TAKEOVER


class Database:
    def __init__(self) -> None:
        self.announced: list[UUID] = []

    async def execute(self, query: str, ids: list[UUID]) -> str:
        assert "announced = true" in query
        self.announced.extend(ids)
        return "UPDATE"


async def sweep(due: int, batch: int) -> tuple[bool, list[Event], Database, Handover, float]:
    published: list[Event] = []

    async def publish(events: Sequence[Event]) -> None:
        published.extend(events)

    database, handover = Database(), Handover(due)
    registry = CollectorRegistry()
    passes = Counter("sweeps", "passes", registry=registry)
    sweeper = Sweeper(
        database,  # type: ignore[arg-type]
        handover,  # type: ignore[arg-type]
        Heartbeat(),  # type: ignore[arg-type]
        publish,
        passes,
        repair_after=timedelta(seconds=30),
        batch=batch,
    )
    more = await sweeper.once()
    return more, published, database, handover, registry.get_sample_value("sweeps_total") or 0


async def test_a_pass_publishes_then_marks_announced_all_but_the_deferrals() -> None:
    more, published, database, handover, passes = await sweep(due=2, batch=10)
    assert [e.type for e in published] == [
        "delivery.failed",
        "delivery.cancelled",
        "delivery.deferred",
        "delivery.delivered",
    ]
    assert database.announced == [
        e.recipient_id for e in published if not isinstance(e, DeliveryDeferred)
    ]
    assert handover.calls == [
        ("expire", TAKEOVER),
        ("repair", timedelta(seconds=30)),
        ("due", 10),
    ]
    assert (more, passes) == (False, 1.0)


async def test_a_full_batch_asks_for_another_pass_at_once() -> None:
    more, *_ = await sweep(due=8, batch=10)  # 2 settled + 8 due
    assert more
