"""The scheduler on a fake clock, with the store and the lifecycle's start faked."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.targeting import store, transitions
from services.targeting.broadcasts import Rejection
from services.targeting.scheduler import Scheduler
from tests.unit.lock_fakes import LockPool, Locks

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# The scheduler's loop takes its turn on the database (Exclusive): a pool that answers it.
POOL = cast(asyncpg.Pool, LockPool(Locks()))


def due(tenant: str = "acme") -> store.Due:
    return store.Due(uuid4(), tenant, f"schedule-{uuid4().hex[:6]}", "planner")


class Fakes:
    """Due schedules as the store would list them; starts as the lifecycle would do them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, schedules: list[store.Due]) -> None:
        self.schedules = schedules
        self.asked: list[tuple[datetime, int, str | None]] = []
        self.starts: list[tuple[UUID, str, datetime | None]] = []
        self.refused: set[UUID] = set()
        monkeypatch.setattr(store, "due_schedules", self.due_schedules)
        monkeypatch.setattr(transitions, "start", self.start)

    async def due_schedules(
        self, pool: asyncpg.Pool, now: datetime, limit: int, tenant_id: str | None = None
    ) -> list[store.Due]:
        assert pool is POOL
        self.asked.append((now, limit, tenant_id))
        return self.schedules[:limit]

    async def start(
        self,
        pool: asyncpg.Pool,
        tenant_id: str,
        broadcast_id: UUID,
        request_id: str,
        requested_by: str,
        due_by: datetime | None = None,
    ) -> UUID:
        self.starts.append((broadcast_id, request_id, due_by))
        if broadcast_id in self.refused:
            raise Rejection("not_started", "at", "the schedule changed meanwhile")
        return UUID(int=broadcast_id.int + 1)


async def test_due_schedules_start_by_the_clock_and_their_runs_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = due(), due()
    fakes = Fakes(monkeypatch, [first, second])
    started: list[UUID] = []
    await Scheduler(lambda: POOL, started.append, lambda: NOW, tick=1, per_tick=100).start_due()
    assert fakes.asked == [(NOW, 100, None)]
    # Each start is checked under its lock against the time the scheduler read them at.
    assert fakes.starts == [
        (first.broadcast_id, first.request_id, NOW),
        (second.broadcast_id, second.request_id, NOW),
    ]
    assert started == [UUID(int=first.broadcast_id.int + 1), UUID(int=second.broadcast_id.int + 1)]


async def test_a_schedule_that_changed_meanwhile_is_skipped_and_the_others_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    moved, kept = due(), due()
    fakes = Fakes(monkeypatch, [moved, kept])
    fakes.refused.add(moved.broadcast_id)
    started: list[UUID] = []
    with caplog.at_level(logging.WARNING, "targeting"):
        await Scheduler(lambda: POOL, started.append, lambda: NOW, tick=1, per_tick=2).start_due()
    assert started == [UUID(int=kept.broadcast_id.int + 1)]
    assert f"scheduled broadcast {moved.broadcast_id} could not start" in caplog.text


async def test_one_tenant_only_and_at_most_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [due("t1"), due("t1"), due("t1")])
    started: list[UUID] = []
    await Scheduler(lambda: POOL, started.append, lambda: NOW, tick=1, per_tick=2).start_due("t1")
    assert fakes.asked == [(NOW, 2, "t1")]
    assert len(started) == 2


async def test_its_loop_ticks_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [])
    ticks = asyncio.Event()

    async def due_schedules(*args: Any) -> list[store.Due]:
        ticks.set()
        return await fakes.due_schedules(*args)

    monkeypatch.setattr(store, "due_schedules", due_schedules)
    loop = Scheduler(lambda: POOL, lambda _: None, lambda: NOW, tick=0.01, per_tick=1).loop
    await loop.start()
    await asyncio.wait_for(ticks.wait(), 5)
    await loop.stop()
    assert fakes.asked and all(asked == (NOW, 1, None) for asked in fakes.asked)
