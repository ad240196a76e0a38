"""A publish lost right after the database change it follows (the broker failed in between) is
repaired by the service's periodic pass. The loss is injected as the state it leaves behind: the
change recorded, its event marked unpublished, a few seconds ago."""

import asyncio
from uuid import UUID

import asyncpg
import pytest

from shared.ids import opt_out_event_id_for
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    ask,
    completed,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog

pytestmark = pytest.mark.stack


async def until_true(db: asyncpg.Pool, query: str, *args: object) -> None:
    """Until `query` answers true: an outbox marks a record after publishing it, so a reader
    may see the event a moment before the mark (10 s: a busy machine's worst)."""
    async with asyncio.timeout(10):
        while not await db.fetchval(query, *args):
            await asyncio.sleep(0.1)


async def test_an_opt_out_whose_announcement_was_lost_is_announced(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    address = f"leaving@{domain}"
    await db.execute(
        """INSERT INTO targeting.opt_outs (tenant_id, channel, address, contract_id,
                                           opted_out_at, announced)
           VALUES ($1, 'email', $2, 'C-1', now() - interval '10 seconds', false)""",
        tenant,
        address,
    )
    opted = await events.wait_for(
        lambda e: e["type"] == "contact.opted_out" and e["tenant_id"] == tenant, timeout=30
    )
    assert (opted["contract_id"], opted["channel"], opted["address"]) == ("C-1", "email", address)
    assert UUID(opted["event_id"]) == opt_out_event_id_for(tenant, "email", address)
    # Marked once published: seen on the topic, the mark follows within moments.
    await until_true(db, "SELECT announced FROM targeting.opt_outs WHERE tenant_id = $1", tenant)


async def test_an_auto_pause_whose_request_was_lost_is_asked_again(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, {**OPEN_ALL_WEEK, "email_per_second": 2})
    await load(
        db,
        [
            contract(
                tenant, f"C-{i}", status="active", building="residential", emails=[f"c{i}@{domain}"]
            )
            for i in range(100)
        ],
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    started = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
    )
    # What the tracker leaves when the broker fails after it decided to pause the run.
    await db.execute(
        """INSERT INTO tracker.auto_pauses (run_id, resumes, broadcast_id, tenant_id, detail,
                                            asked_at)
           VALUES ($1::uuid, 0, $2::uuid, $3, '9 of the last 10 messages failed',
                   now() - interval '10 seconds')""",
        started["run_id"],
        broadcast_id,
        tenant,
    )
    paused = await events.wait_for(
        lambda e: e["type"] == "broadcast.paused" and e["broadcast_id"] == broadcast_id,
        timeout=30,
    )
    assert (paused["reason"], paused["detail"]) == (
        "failure_ratio",
        "9 of the last 10 messages failed",
    )
    await until_true(
        db, "SELECT published FROM tracker.auto_pauses WHERE run_id = $1::uuid", started["run_id"]
    )

    cancel = {"type": "cancel_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, cancel))["type"] == "broadcast.accepted"
    assert (await completed(events, broadcast_id))["outcome"] == "cancelled"
