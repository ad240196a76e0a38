"""Scheduled broadcasts: started at their time (the tenant's wall time when no offset is
given), never before; a cancelled schedule never starts."""

from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.targeting.scheduler import Scheduler
from shared.db import create_pool
from shared.ids import run_id_for
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    ask,
    configure,
    contract,
    french_only,
    load,
    new_tenant,
)
from tests.stack import DATABASE_URL, EventLog, publish_json

pytestmark = pytest.mark.stack


STATE = "SELECT state FROM targeting.broadcasts WHERE broadcast_id = $1::uuid"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def draft(db: asyncpg.Pool, log: EventLog, zone: str) -> tuple[str, str]:
    tenant, domain = new_tenant()
    await configure(log, tenant, {**OPEN_ALL_WEEK, "time_zone": zone})
    await load(
        db,
        [contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"])],
    )
    create = french_only(tenant)
    await publish_json("broadcast.requests", [(tenant, create)])
    created = await log.wait_for(lambda e: e.get("request_id") == create["request_id"])
    return tenant, created["broadcast_id"]


@pytest.mark.parametrize("local", [False, True], ids=["utc", "tenant-wall-time"])
async def test_a_scheduled_broadcast_starts_at_its_time(
    db: asyncpg.Pool, events: EventLog, local: bool
) -> None:
    zone = "Asia/Tokyo"
    tenant, broadcast_id = await draft(db, events, zone)
    # Far enough ahead that a slow round trip on a busy machine still schedules it in the future.
    at = datetime.now(UTC) + timedelta(seconds=8)
    when = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None) if local else at
    scheduled = await ask(
        events,
        tenant,
        {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": when.isoformat()},
    )
    assert scheduled["type"] == "broadcast.accepted", scheduled
    started = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
    )
    began = datetime.fromisoformat(started["occurred_at"])
    assert began >= at - timedelta(milliseconds=50)  # never before its time
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    assert completed["counters"]["delivered"] == 1


async def test_a_cancelled_schedule_never_starts_and_the_past_is_refused(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, broadcast_id = await draft(db, events, "America/Toronto")
    past = await ask(
        events,
        tenant,
        {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": "2020-01-01T08:00:00"},
    )
    assert (past["reason"], past["field"]) == ("invalid_field", "at")
    at = datetime.now(UTC) + timedelta(hours=1)
    schedule = {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": at.isoformat()}
    assert (await ask(events, tenant, schedule))["type"] == "broadcast.accepted"
    cancel = {"type": "cancel_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, cancel))["type"] == "broadcast.accepted"
    # A scheduler whose clock is past the time starts nothing: the schedule is gone.
    started: list[UUID] = []
    pool = await create_pool(DATABASE_URL, size=2)
    try:
        scheduler = Scheduler(lambda: pool, started.append, Clock(at), tick=1, per_tick=100)
        await scheduler.start_due(tenant_id=tenant)
    finally:
        await pool.close()
    assert started == []
    assert await db.fetchval(STATE, broadcast_id) == "cancelled"
    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, start))["reason"] == "already_started"


async def test_a_schedule_becomes_due_at_the_tenant_wall_time_of_an_injected_clock(
    db: asyncpg.Pool, events: EventLog
) -> None:
    zone = ZoneInfo("Asia/Tokyo")
    tenant, broadcast_id = await draft(db, events, "Asia/Tokyo")
    tomorrow_8am = (datetime.now(zone) + timedelta(days=1)).replace(
        hour=8, minute=0, second=0, microsecond=0, tzinfo=None
    )
    schedule = {
        "type": "schedule_broadcast",
        "broadcast_id": broadcast_id,
        "at": tomorrow_8am.isoformat(),
    }
    assert (await ask(events, tenant, schedule))["type"] == "broadcast.accepted"
    due = tomorrow_8am.replace(tzinfo=zone)
    pool = await create_pool(DATABASE_URL, size=2)
    started: list[UUID] = []
    clock = Clock(due - timedelta(seconds=1))
    # The scheduler of a targeting instance, on the injected clock; the stack's own one, on
    # the real clock, leaves tomorrow's schedule alone.
    scheduler = Scheduler(lambda: pool, started.append, clock, tick=1, per_tick=100)
    try:
        await scheduler.start_due(tenant_id=tenant)
        assert started == []
        assert await db.fetchval(STATE, broadcast_id) == "scheduled"
        clock.now = due
        await scheduler.start_due(tenant_id=tenant)
        assert started == [run_id_for(UUID(broadcast_id), 1)]
        assert await db.fetchval(STATE, broadcast_id) == "running"
    finally:
        await pool.close()
    # Nothing was streamed (the run was started here, not by the stack): stop it for good.
    cancel = {"type": "cancel_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, cancel))["type"] == "broadcast.accepted"
