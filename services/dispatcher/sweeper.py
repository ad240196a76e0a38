"""The sweeper: what happens to messages with no Kafka record to bring them, once per pass.

Every instance sweeps. A pass settles as unknown the claims of this instance's earlier lives
and of silent instances, reports the waiting messages of cancelled runs as cancelled, announces
outcomes a crash left recorded but unpublished, and hands over the waiting messages whose time
has come (FOR UPDATE SKIP LOCKED: two sweepers never take the same one).
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg
from prometheus_client import Counter

from shared.events import DeliveryDeferred

from . import ledger
from .handover import Event, Handover
from .instance import Heartbeat

Publish = Callable[[Sequence[Event]], Awaitable[None]]


class Sweeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        handover: Handover,
        heartbeat: Heartbeat,
        publish: Publish,
        passes: Counter,
        *,
        repair_after: timedelta,
        batch: int,
    ) -> None:
        self._pool = pool
        self._handover = handover
        self._heartbeat = heartbeat
        self._publish = publish
        self._passes = passes
        self._repair_after = repair_after
        self._batch = batch

    async def once(self) -> bool:
        """One pass; True when it took a full batch of due messages and more may be waiting
        (a `Periodic` step: it runs again at once)."""
        handover = self._handover
        events = [
            *await handover.expire(self._heartbeat.takeover()),
            *await handover.repair(self._repair_after),
            *await handover.due(self._batch),
        ]
        await self._publish(events)
        # Outcomes reached here have no Kafka record to replay them: marked announced only once
        # published, else the next pass announces them again.
        await ledger.mark_announced(
            self._pool, [e.recipient_id for e in events if not isinstance(e, DeliveryDeferred)]
        )
        self._passes.inc()
        return len(events) >= self._batch
