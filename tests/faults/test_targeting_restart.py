"""Targeting killed in the middle of streaming a 100,000-recipient run: nobody is missing.

The composer is held stopped while targeting streams, so that its input topic,
`broadcast.recipients`, can be counted exactly. The broadcast is then cancelled before the
composer comes back: every recipient is rendered and cancelled by the dispatcher, none is sent,
and the run completes as cancelled, so that nothing of this test stays running.
"""

import asyncio
import signal
from typing import cast
from uuid import UUID

import asyncpg
import pytest

from bench.e2e import load_contracts
from bench.recipients import end_offsets, recipients_of_run
from deploy.local import stack
from tests.e2e.audience import ask, create_and_start, french_only, new_tenant
from tests.stack import EventLog

pytestmark = pytest.mark.stack

AUDIENCE = 100_000


async def test_targeting_killed_mid_stream_resumes_and_misses_nobody(db: asyncpg.Pool) -> None:
    tenant, _ = new_tenant()
    async with db.acquire() as connection:
        # The pool's proxy forwards every call to the connection it holds.
        await load_contracts(cast(asyncpg.Connection, connection), tenant, AUDIENCE)
    await asyncio.to_thread(stack.down, ["composer"])
    start = await end_offsets()
    log = await EventLog("broadcast.events").open()
    create = french_only(tenant)
    broadcast_id: str | None = None
    try:
        broadcast_id = await create_and_start(log, create)
        started = await log.wait_for(
            lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
        )
        run_id = UUID(started["run_id"])
        async with asyncio.timeout(60):
            while (
                await db.fetchval("SELECT messages FROM targeting.runs WHERE run_id = $1", run_id)
                or 0
            ) < AUDIENCE // 4:
                await asyncio.sleep(0.05)
        component = stack.components()["targeting"]
        await asyncio.to_thread(stack.stop_process, component.pid_file, sig=signal.SIGKILL)
        at_kill = await db.fetchrow(
            "SELECT state, messages FROM targeting.runs WHERE run_id = $1", run_id
        )
        assert at_kill is not None
        assert at_kill["state"] == "streaming" and at_kill["messages"] < AUDIENCE
        await asyncio.to_thread(stack.up, ["targeting"])
        async with asyncio.timeout(120):
            while (
                await db.fetchval("SELECT state FROM targeting.runs WHERE run_id = $1", run_id)
                != "targeted"
            ):
                await asyncio.sleep(0.2)

        assert (
            await db.fetchval("SELECT messages FROM targeting.runs WHERE run_id = $1", run_id)
            == AUDIENCE
        )
        published = await recipients_of_run(start, str(run_id))
        assert len(set(published)) == AUDIENCE  # missing: none
        assert len(published) >= AUDIENCE  # a page published twice is allowed, and harmless
    finally:
        try:
            if broadcast_id is not None:
                await ask(log, tenant, {"type": "cancel_broadcast", "broadcast_id": broadcast_id})
            await asyncio.to_thread(stack.up, ["composer"])
            if broadcast_id is not None:
                done = await log.wait_for(
                    lambda e: (
                        e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
                    ),
                    timeout=300,
                )
                assert (done["outcome"], done["counters"]["cancelled"]) == ("cancelled", AUDIENCE)
        finally:
            await log.close()
            await db.execute("DELETE FROM targeting.contracts WHERE tenant_id = $1", tenant)
