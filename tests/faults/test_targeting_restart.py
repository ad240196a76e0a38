"""Targeting killed in the middle of streaming a 100,000-recipient run: nobody is missing.

The composer is held stopped for the test so that its input topic, `broadcast.recipients`, can
be counted exactly; afterwards its consumer group is moved past this run's records, so the
rest of the suite does not wait for 100,000 renders (they would prove nothing more here). The
run then stays "running" in the tracker: nothing of it is delivered. Its contracts are removed.
"""

import asyncio
import signal
from uuid import UUID

import asyncpg
import pytest

from bench.e2e import load_contracts
from bench.recipients import end_offsets, recipients_of_run, skip_for_composer
from deploy.local import stack
from tests.e2e.audience import create_and_start, french_only, new_tenant
from tests.stack import EventLog

pytestmark = pytest.mark.stack

AUDIENCE = 100_000


async def test_targeting_killed_mid_stream_resumes_and_misses_nobody(db: asyncpg.Pool) -> None:
    tenant, _ = new_tenant()
    async with db.acquire() as connection:
        await load_contracts(connection, tenant, AUDIENCE)
    await asyncio.to_thread(stack.down, ["composer"])
    start = await end_offsets()
    log = await EventLog("broadcast.events").open()
    try:
        create = french_only(tenant)
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
        await log.close()
        await skip_for_composer(await end_offsets())
        await asyncio.to_thread(stack.up, ["composer"])
        await db.execute("DELETE FROM targeting.contracts WHERE tenant_id = $1", tenant)
