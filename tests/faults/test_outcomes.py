"""Outcomes stay honest under faults: the database killed mid-broadcast, a relay slower than the
takeover delay, a dispatcher frozen while it holds claims. Counted at the SMTP sink: nothing
lost, nothing twice, and no message the relay accepted is left as "unknown"."""

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from deploy.local import stack
from tests.e2e.audience import OPEN_ALL_WEEK, actions_of
from tests.faults.test_dispatchers import sent as received
from tests.faults.test_dispatchers import start_broadcast, two_dispatchers, wait_for_count
from tests.stack import EventLog, SmtpSink

pytestmark = pytest.mark.stack

QUICK = {"DISPATCHER_TAKEOVER_SECONDS": "3", "DISPATCHER_HEARTBEAT_SECONDS": "0.5"}


async def run_counters(db: asyncpg.Pool, broadcast: str) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT delivered, failed, cancelled FROM tracker.runs "
        "WHERE broadcast_id = $1 AND purpose = 'broadcast'",
        broadcast,
    )
    return dict(row) if row else {}


async def until(check: Any, timeout: float, pause: float = 0.2) -> None:
    """Until `check()` is true; fails naming the check after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(pause)
    except TimeoutError:
        raise AssertionError(f"{check.__name__}: not true within {timeout} s") from None


async def test_the_database_killed_mid_broadcast_loses_no_known_outcome(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    size = 10_000
    log = await EventLog("broadcast.events").open()
    try:
        tenant, domain, broadcast = await start_broadcast(db, log, size)
        await wait_for_count(smtp_sink, domain, size // 4)
        postgres = stack.components()["postgres"]
        await asyncio.to_thread(stack.stop_process, postgres.pid_file, sig=signal.SIGKILL)
        assert await smtp_sink.count(domain) < size, "killed after the end"
        await asyncio.sleep(3)
        await asyncio.to_thread(stack.up, ["postgres"])
        restarted = time.monotonic()
        completed = await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast,
            timeout=60,
        )
        print(f"completed {time.monotonic() - restarted:.1f} s after the restart")
        got = await received(smtp_sink, domain)
        assert [a for a, n in got.items() if n > 1] == []  # duplicates: 0
        assert len(got) == size  # missing: 0
        # Every message the relay accepted is known as delivered: no false unknown, no action.
        assert (completed["counters"]["delivered"], completed["counters"]["failed"]) == (size, 0)
        assert completed["outcome"] == "fully_successful"
        assert await actions_of(log, tenant, broadcast) == []
    finally:
        await log.close()


@pytest.fixture
async def two_quick_dispatchers(db: asyncpg.Pool) -> AsyncIterator[None]:
    """The stack's dispatcher and a second one, both taking over after 3 s of silence."""
    async with two_dispatchers(QUICK):
        yield


async def slow_relay(sink: SmtpSink, domain: str, seconds: float) -> None:
    await sink.set_rules(
        [{"address": f"@{domain}", "stage": "data", "action": "delay", "seconds": seconds}]
    )


async def test_a_relay_slower_than_the_takeover_delay_leaves_no_claim_unknown(
    db: asyncpg.Pool, smtp_sink: SmtpSink, two_quick_dispatchers: None
) -> None:
    size = 24
    log = await EventLog("broadcast.events").open()
    try:
        _, domain, broadcast = await start_broadcast(
            db, log, size, {**OPEN_ALL_WEEK}, before_start=lambda d: slow_relay(smtp_sink, d, 5)
        )
        completed = await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast,
            timeout=120,
        )
        # Each message waited 5 s at the relay, longer than a silent dispatcher is given: both
        # dispatchers were alive, so none of their claims was taken.
        assert (completed["counters"]["delivered"], completed["counters"]["failed"]) == (size, 0)
        assert sorted((await received(smtp_sink, domain)).values()) == [1] * size
    finally:
        await log.close()


async def test_a_frozen_dispatchers_late_outcomes_correct_the_unknowns(
    db: asyncpg.Pool, smtp_sink: SmtpSink, two_quick_dispatchers: None
) -> None:
    size = 40
    log = await EventLog("broadcast.events").open()
    try:
        tenant, domain, broadcast = await start_broadcast(
            db, log, size, {**OPEN_ALL_WEEK}, before_start=lambda d: slow_relay(smtp_sink, d, 6)
        )
        frozen_id = socket.gethostname()  # the stack's dispatcher's identity in the ledger

        async def held_by_frozen() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM dispatcher.deliveries "
                    "WHERE tenant_id = $1 AND state = 'claimed' AND claimed_by = $2",
                    tenant,
                    frozen_id,
                )
            )

        await until(held_by_frozen, timeout=60, pause=0.05)
        pid = stack.running_pid(stack.components()["dispatcher"].pid_file)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            # The other dispatcher takes the frozen one for dead and settles its claims.
            async def settled() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM dispatcher.deliveries "
                        "WHERE tenant_id = $1 AND state = 'unknown'",
                        tenant,
                    )
                )

            await until(settled, timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)

        # Thawed, it reads the relay's answers and records them as corrections.
        async def exact() -> bool:
            return await run_counters(db, broadcast) == {
                "delivered": size,
                "failed": 0,
                "cancelled": 0,
            }

        await until(exact, timeout=60)
        assert sorted((await received(smtp_sink, domain)).values()) == [1] * size
        assert await actions_of(log, tenant, broadcast) == []  # nobody is asked to act
        states = await db.fetch(
            "SELECT DISTINCT state FROM dispatcher.deliveries WHERE tenant_id = $1", tenant
        )
        assert [r["state"] for r in states] == ["delivered"]

        # And a resend to the failures, unknown outcomes included, has nobody left to send to.
        async def none_to_resend() -> bool:
            return not await db.fetchval(
                "SELECT count(*) FROM targeting.failures f JOIN targeting.runs r USING (run_id) "
                "WHERE r.broadcast_id = $1 AND NOT f.closed",
                broadcast,
            )

        await until(none_to_resend, timeout=30)
    finally:
        await log.close()
