"""Dispatchers killed mid-broadcast, alone, in pairs or while their broadcast is paused, and a
rate limit shared by two of them.

A SIGKILL leaves claims whose outcome nobody recorded: after the lease they become "unknown",
are never sent again and each becomes a manual action. Everything else is sent exactly once.
"""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from deploy.local import stack
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, publish_json, restart_service, second_dispatcher

pytestmark = pytest.mark.stack

AUDIENCE = 20_000
LEASE = {"DISPATCHER_LEASE_SECONDS": "8"}
# What one dispatcher may have claimed and not recorded at any moment: two waves of twice its
# eight connections.
IN_FLIGHT = 2 * 2 * 8


@pytest.fixture
def short_leases(stack: None) -> Iterator[None]:
    restart_service("dispatcher", LEASE)
    yield
    restart_service("dispatcher")


async def start_broadcast(
    db: asyncpg.Pool, log: EventLog, size: int, settings: dict[str, Any] | None = None
) -> tuple[str, str, str]:
    tenant, domain = new_tenant()
    if settings:
        await configure(log, tenant, settings)
    await load(
        db,
        [
            contract(
                tenant, f"C-{n}", status="active", building="residential", emails=[f"c{n}@{domain}"]
            )
            for n in range(size)
        ],
        timeout=120,
    )
    create = french_only(tenant)
    return tenant, domain, await create_and_start(log, create)


async def sent(sink: SmtpSink, domain: str) -> Counter[str]:
    return Counter(m.rcpt_tos[0] for m in await sink.messages(to_domain=domain))


async def wait_for_count(sink: SmtpSink, count: int, timeout: float = 180) -> None:
    """Until the sink holds `count` messages in all (cheap: no message is fetched)."""
    async with asyncio.timeout(timeout):
        while await sink.count() < count:
            await asyncio.sleep(0.2)


async def check_nothing_lost_nothing_twice(
    db: asyncpg.Pool,
    sink: SmtpSink,
    log: EventLog,
    tenant: str,
    domain: str,
    broadcast: str,
    killed: int,
    size: int = AUDIENCE,
) -> None:
    completed = await log.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast,
        timeout=300,
    )
    received = await sent(sink, domain)
    assert [a for a, n in received.items() if n > 1] == []  # duplicates: 0
    unknown = {
        r["address"]
        for r in await db.fetch(
            "SELECT address FROM dispatcher.deliveries WHERE tenant_id = $1 AND state = 'unknown'",
            tenant,
        )
    }
    everyone = {f"c{n}@{domain}" for n in range(size)}
    assert everyone - set(received) - unknown == set()  # missing: 0
    assert len(unknown) <= killed * IN_FLIGHT
    counters = completed["counters"]
    # An unknown message may have reached the relay before its dispatcher died: that is what
    # unknown means. Every other message in the sink was counted delivered.
    assert (counters["delivered"], counters["failed"]) == (
        len(set(received) - unknown),
        len(unknown),
    )
    actions = await db.fetchval(
        "SELECT count(*) FROM tracker.actions a JOIN tracker.messages m USING (recipient_id) "
        "WHERE a.tenant_id = $1 AND m.reason = 'unknown_outcome'",
        tenant,
    )
    assert actions == len(unknown)


async def test_a_dispatcher_killed_halfway_sends_nothing_twice_and_loses_nothing(
    db: asyncpg.Pool, smtp_sink: SmtpSink, short_leases: None
) -> None:
    log = await EventLog("broadcast.events").open()
    try:
        baseline = await smtp_sink.count()
        tenant, domain, broadcast = await start_broadcast(db, log, AUDIENCE)
        await wait_for_count(smtp_sink, baseline + AUDIENCE // 2)
        component = stack.components()["dispatcher"]
        await asyncio.to_thread(stack.stop_process, component.pid_file, sig=signal.SIGKILL)
        assert await smtp_sink.count() - baseline < AUDIENCE, "killed after the end"
        await asyncio.to_thread(restart_service, "dispatcher", LEASE)
        await check_nothing_lost_nothing_twice(db, smtp_sink, log, tenant, domain, broadcast, 1)
    finally:
        await log.close()


async def test_a_paused_broadcast_stays_paused_across_a_killed_dispatcher_and_resumes_once(
    db: asyncpg.Pool, smtp_sink: SmtpSink, short_leases: None
) -> None:
    size = 3000
    log = await EventLog("broadcast.events").open()
    try:
        baseline = await smtp_sink.count()
        tenant, domain, broadcast = await start_broadcast(
            db, log, size, {**OPEN_ALL_WEEK, "email_per_second": 300}
        )
        await wait_for_count(smtp_sink, baseline + size // 5)
        pause = {
            "type": "pause_broadcast",
            "tenant_id": tenant,
            "request_id": f"pause-{broadcast}",
            "requested_by": "user-42",
            "broadcast_id": broadcast,
        }
        await publish_json("broadcast.requests", [(tenant, pause)])
        await log.wait_for(
            lambda e: e["type"] == "broadcast.paused" and e["broadcast_id"] == broadcast
        )
        await asyncio.sleep(3)  # what was in flight when the pause came lands
        held = await smtp_sink.count()
        assert held - baseline < size
        component = stack.components()["dispatcher"]
        await asyncio.to_thread(stack.stop_process, component.pid_file, sig=signal.SIGKILL)
        await asyncio.to_thread(restart_service, "dispatcher", LEASE)
        await asyncio.sleep(10)  # past the lease: the restarted dispatcher sweeps and waits
        assert await smtp_sink.count() == held  # still paused after the crash
        resume = {**pause, "type": "resume_broadcast", "request_id": f"resume-{broadcast}"}
        await publish_json("broadcast.requests", [(tenant, resume)])
        await check_nothing_lost_nothing_twice(
            db, smtp_sink, log, tenant, domain, broadcast, 1, size
        )
    finally:
        await log.close()


async def test_one_of_two_dispatchers_killed_the_other_finishes(
    db: asyncpg.Pool, smtp_sink: SmtpSink, short_leases: None
) -> None:
    second = second_dispatcher(LEASE)
    await asyncio.to_thread(stack.start_component, second)
    log = await EventLog("broadcast.events").open()
    try:
        baseline = await smtp_sink.count()
        tenant, domain, broadcast = await start_broadcast(db, log, AUDIENCE)
        await wait_for_count(smtp_sink, baseline + AUDIENCE // 2)
        await asyncio.to_thread(stack.stop_process, second.pid_file, sig=signal.SIGKILL)
        assert await smtp_sink.count() - baseline < AUDIENCE, "killed after the end"
        await check_nothing_lost_nothing_twice(db, smtp_sink, log, tenant, domain, broadcast, 1)
    finally:
        await log.close()
        await asyncio.to_thread(stack.stop_component, second)


async def test_a_tenants_rate_holds_across_two_dispatchers(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    rate, window = 20, 30.0
    second = second_dispatcher({})
    await asyncio.to_thread(stack.start_component, second)
    log = await EventLog("broadcast.events").open()
    try:
        baseline = await smtp_sink.count()
        tenant, _, broadcast = await start_broadcast(
            db, log, 1000, {**OPEN_ALL_WEEK, "email_per_second": rate}
        )
        await wait_for_count(smtp_sink, baseline + 1, timeout=60)
        await asyncio.sleep(3)  # past the first second's burst
        before, started = await smtp_sink.count(), time.monotonic()
        await asyncio.sleep(window)
        after, elapsed = await smtp_sink.count(), time.monotonic() - started
        assert abs((after - before) / elapsed - rate) <= rate * 0.10
        cancel = {
            "type": "cancel_broadcast",
            "tenant_id": tenant,
            "request_id": f"cancel-{broadcast}",
            "requested_by": "user-42",
            "broadcast_id": broadcast,
        }
        await publish_json("broadcast.requests", [(tenant, cancel)])
    finally:
        await log.close()
        await asyncio.to_thread(stack.stop_component, second)
