"""Which of the tracker's announcements of a run's counters is the newest. Pure: no I/O.

The read model (`targeting.run_counters`) keeps one row per run, fed by `broadcast.progressed`
and `broadcast.completed`. Those may arrive twice, out of order (a batch redelivered after a
crash), and from two tracker instances (each announces the runs whose deliveries it read), so
the newest is decided by what the counters say, not by arrival:
1. a completion is final: no progress replaces it, except a progress of the completed run (it
   carries the outcome: a hard bounce reported after the completion), ranked by 2 and 3;
2. then the more final messages (delivered + failed + cancelled): that sum never decreases (a
   corrected unknown outcome moves one message from failed to delivered);
3. then the later `occurred_at`, for changes that keep the sum (a retry, a window, the total
   becoming known).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from shared.events import BroadcastCompleted, BroadcastProgressed, Counters, Outcome

Announcement = BroadcastProgressed | BroadcastCompleted


@dataclass(frozen=True)
class RunCounters:
    """A row of the read model."""

    run_id: UUID
    tenant_id: str
    broadcast_id: UUID
    counters: Counters
    outcome: Outcome | None
    occurred_at: datetime

    @property
    def completed(self) -> bool:
        return self.outcome is not None

    @property
    def finals(self) -> int:
        return self.counters.delivered + self.counters.failed + self.counters.cancelled

    @property
    def rank(self) -> tuple[bool, int, datetime]:
        """Greater is newer; the store compares the same three columns."""
        return self.completed, self.finals, self.occurred_at


def from_event(event: Announcement) -> RunCounters:
    return RunCounters(
        run_id=event.run_id,
        tenant_id=event.tenant_id,
        broadcast_id=event.broadcast_id,
        counters=event.counters,
        # A progress with an outcome is a completed run's counters changed by a late report:
        # as final as its completion, and newer.
        outcome=event.outcome,
        occurred_at=event.occurred_at,
    )


def newest(events: Iterable[Announcement]) -> list[RunCounters]:
    """The newest announcement of each run among `events` (one row per run, so that one
    upsert statement never touches a row twice)."""
    kept: dict[UUID, RunCounters] = {}
    for event in events:
        row = from_event(event)
        if row.run_id not in kept or row.rank > kept[row.run_id].rank:
            kept[row.run_id] = row
    return list(kept.values())
