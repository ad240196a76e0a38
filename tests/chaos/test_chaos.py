"""The chaos test (issue 20), behind `make chaos`: three Kafka brokers and two instances of every
service (BROADCAST_KAFKA_BROKERS=3, BROADCAST_INSTANCES=2). During a broadcast of 20,000
messages, one broker and one instance of each service are killed (SIGKILL), then brought back.
Expected: 0 duplicates at the SMTP sink; 0 missing except unknown outcomes, no more than the
killed dispatcher had in flight; exact counters; one completion.

Not in `make test` (marker `chaos`, deselected by default): it needs the cluster and the second
instances, and takes minutes on two cores."""

import asyncio
import signal
import time

import asyncpg
import pytest

from deploy.local import stack
from tests.faults.test_dispatchers import (
    check_nothing_lost_nothing_twice,
    completions,
    start_broadcast,
    wait_for_count,
)
from tests.stack import EventLog, SmtpSink

pytestmark = [pytest.mark.stack, pytest.mark.chaos]

SIZE = 20_000
# Down long enough for the groups to rebalance and the cluster to elect new leaders.
DOWN_SECONDS = 10


def victims() -> list[stack.Component]:
    """One broker and the second instance of each service."""
    table = stack.components()
    missing = [n for n in ("kafka-2", *(f"{s}-2" for s in stack.SERVICE_PORTS)) if n not in table]
    assert not missing, f"{missing}: run with `make chaos` (three brokers, two instances)"
    return [table["kafka-2"], *(table[f"{s}-2"] for s in stack.SERVICE_PORTS)]


async def test_a_broker_and_one_instance_of_each_service_die_mid_broadcast(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    killed = victims()
    log = await EventLog("broadcast.events").open()
    try:
        tenant, domain, broadcast = await start_broadcast(db, log, SIZE)
        await wait_for_count(smtp_sink, domain, SIZE // 10, timeout=300)
        began = time.monotonic()
        for component in killed:
            stack.stop_process(component.pid_file, sig=signal.SIGKILL)
        print(f"killed {', '.join(c.name for c in killed)} at {await smtp_sink.count(domain)}")
        await asyncio.sleep(DOWN_SECONDS)
        for component in killed:
            await asyncio.to_thread(stack.start_component, component)
        print(f"back after {time.monotonic() - began:.1f} s")
        await check_nothing_lost_nothing_twice(
            db, smtp_sink, log, tenant, domain, broadcast, killed=1, size=SIZE
        )
        assert len(completions(log, broadcast)) == 1
    finally:
        await log.close()
