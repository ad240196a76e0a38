"""Scheduled broadcasts: started at their time (the tenant's wall time when no offset is
given), never before; a cancelled schedule never starts."""

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.e2e.audience import OPEN_ALL_WEEK, configure, contract, create_command, load, new_tenant
from tests.stack import EventLog, publish_json

pytestmark = pytest.mark.stack


@pytest.fixture
async def events(stack: None) -> AsyncIterator[EventLog]:
    log = await EventLog("broadcast.events").open()
    yield log
    await log.close()


async def draft(db: asyncpg.Pool, log: EventLog, zone: str) -> tuple[str, str]:
    tenant, domain = new_tenant()
    await configure(log, tenant, {**OPEN_ALL_WEEK, "time_zone": zone})
    await load(
        db,
        [contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"])],
    )
    create = create_command(tenant, languages=["fr"])
    del create["content"]["email"]["en"]
    await publish_json("broadcast.requests", [(tenant, create)])
    created = await log.wait_for(lambda e: e.get("request_id") == create["request_id"])
    return tenant, created["broadcast_id"]


async def command(log: EventLog, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    request_id = f"req-{uuid4()}"
    payload = {"tenant_id": tenant, "request_id": request_id, "requested_by": "u-1", **body}
    await publish_json("broadcast.requests", [(tenant, payload)])
    return await log.wait_for(lambda e: e.get("request_id") == request_id)


@pytest.mark.parametrize("local", [False, True], ids=["utc", "tenant-wall-time"])
async def test_a_scheduled_broadcast_starts_at_its_time(
    db: asyncpg.Pool, events: EventLog, local: bool
) -> None:
    zone = "Asia/Tokyo"
    tenant, broadcast_id = await draft(db, events, zone)
    at = datetime.now(UTC) + timedelta(seconds=4)
    when = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None) if local else at
    scheduled = await command(
        events,
        tenant,
        {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": when.isoformat()},
    )
    assert scheduled["type"] == "broadcast.accepted", scheduled
    started = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
    )
    began = datetime.fromisoformat(started["occurred_at"])
    assert at - timedelta(milliseconds=50) <= began <= at + timedelta(seconds=5)
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    assert completed["counters"]["delivered"] == 1


async def test_a_cancelled_schedule_never_starts_and_the_past_is_refused(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, broadcast_id = await draft(db, events, "America/Toronto")
    past = await command(
        events,
        tenant,
        {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": "2020-01-01T08:00:00"},
    )
    assert (past["reason"], past["field"]) == ("invalid_field", "at")
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    schedule = {"type": "schedule_broadcast", "broadcast_id": broadcast_id, "at": soon}
    assert (await command(events, tenant, schedule))["type"] == "broadcast.accepted"
    cancel = {"type": "cancel_broadcast", "broadcast_id": broadcast_id}
    assert (await command(events, tenant, cancel))["type"] == "broadcast.accepted"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await events.drain(0.5)
        assert not [
            e
            for e in events.records
            if e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
        ]
    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await command(events, tenant, start))["reason"] == "already_started"
