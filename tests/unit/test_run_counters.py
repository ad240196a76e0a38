"""Targeting's read model of the tracker's counters keeps the newest announcement of each run,
whatever order copies and announcements arrive in."""

from datetime import UTC, datetime, timedelta
from itertools import permutations
from uuid import uuid4

from services.targeting.counters import Announcement, newest
from shared.events import BroadcastCompleted, BroadcastProgressed, Counters

RUN, BROADCAST = uuid4(), uuid4()
T0 = datetime(2026, 12, 2, 10, tzinfo=UTC)


def progressed(seconds: int, **counters: int) -> BroadcastProgressed:
    return BroadcastProgressed(
        tenant_id="acme",
        broadcast_id=BROADCAST,
        run_id=RUN,
        counters=Counters(**counters),
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def completed(seconds: int, **counters: int) -> BroadcastCompleted:
    return BroadcastCompleted(
        tenant_id="acme",
        broadcast_id=BROADCAST,
        run_id=RUN,
        requested_by="u",
        outcome="partially_successful",
        counters=Counters(**counters),
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def test_the_completion_wins_over_any_progress_in_any_order() -> None:
    events: list[Announcement] = [
        progressed(1, delivered=1),
        progressed(2, delivered=2, pending_retry=1),
        # From another tracker instance whose clock runs ahead: fewer final messages.
        progressed(9, delivered=1),
        completed(3, delivered=2, failed=1),
    ]
    for order in permutations(events):
        (kept,) = newest(order)
        assert (kept.completed, kept.outcome, kept.counters.failed) == (
            True,
            "partially_successful",
            1,
        )


def test_more_final_messages_is_newer_and_time_breaks_ties() -> None:
    (kept,) = newest([progressed(5, delivered=1), progressed(1, delivered=2)])
    assert kept.counters.delivered == 2
    (kept,) = newest([progressed(2, delivered=1, pending_retry=1), progressed(1, delivered=1)])
    assert (kept.counters.pending_retry, kept.rank) == (1, (False, 1, T0 + timedelta(seconds=2)))


def test_one_row_per_run() -> None:
    other = progressed(1, delivered=3).model_copy(update={"run_id": uuid4()})
    assert len(newest([progressed(1), other, progressed(2)])) == 2
