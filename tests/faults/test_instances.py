"""Two instances of every service (the stack's and `<name>-2`, as BROADCAST_INSTANCES=2 starts
them): a broadcast completes exactly, a scheduled broadcast starts once, and the auto-pause
still fires when the tracker that saw the first failures is killed (its window is in the
database, not in its memory).
"""

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from deploy.local import stack
from tests.e2e.audience import OPEN_ALL_WEEK, ask, french_only
from tests.faults.test_dispatchers import (
    check_nothing_lost_nothing_twice,
    completions,
    start_broadcast,
)
from tests.stack import SUITE_ENV, EventLog, SmtpSink, another_instance, restart_service

pytestmark = pytest.mark.stack

AUDIENCE = 5_000


@asynccontextmanager
async def second_instances(
    names: tuple[str, ...] = tuple(stack.SERVICE_PORTS),
) -> AsyncIterator[dict[str, stack.Component]]:
    """`<name>-2` of each service beside the stack's, in the same groups; stopped afterwards."""
    started: dict[str, stack.Component] = {}
    try:
        for name in names:
            started[name] = another_instance(name, SUITE_ENV.get(name, {}))
            await asyncio.to_thread(stack.start_component, started[name])
        yield started
    finally:
        for component in started.values():
            await asyncio.to_thread(stack.stop_component, component)


async def test_a_broadcast_completes_exactly_with_two_instances_of_each_service(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    async with second_instances():
        log = await EventLog("broadcast.events").open()
        try:
            tenant, domain, broadcast = await start_broadcast(db, log, AUDIENCE)
            await check_nothing_lost_nothing_twice(
                db, smtp_sink, log, tenant, domain, broadcast, 0, AUDIENCE
            )
            # One completion, however many trackers announce completions.
            await asyncio.sleep(2)
            assert len(completions(log, broadcast)) == 1
        finally:
            await log.close()


async def test_a_scheduled_broadcast_starts_once_with_two_schedulers(db: asyncpg.Pool) -> None:
    async with second_instances(("targeting",)):
        log = await EventLog("broadcast.events").open()
        try:
            tenant, _, _ = await start_broadcast(db, log, 10)
            create = french_only(tenant)
            accepted = await ask(log, tenant, create)
            broadcast = accepted["broadcast_id"]
            at = datetime.now(UTC) + timedelta(seconds=3)
            schedule = {
                "type": "schedule_broadcast",
                "broadcast_id": broadcast,
                "at": at.isoformat(),
            }
            assert (await ask(log, tenant, schedule))["type"] == "broadcast.accepted"
            await log.wait_for(
                lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast,
                timeout=60,
            )
            started = [
                e
                for e in log.records
                if e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast
            ]
            assert len(started) == 1
        finally:
            await log.close()


async def test_the_auto_pause_fires_when_the_tracker_that_saw_the_first_failures_dies(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    first = stack.components()["tracker"]
    # The stack's tracker stops: the second sees every failure until it is killed.
    await asyncio.to_thread(stack.stop_component, first)
    try:
        async with second_instances(("tracker",)) as seconds:
            log = await EventLog("broadcast.events").open()
            try:
                settings = {
                    **OPEN_ALL_WEEK,
                    "email_per_second": 2,
                    "auto_pause": {"failure_ratio": 0.5, "window_seconds": 60, "min_messages": 10},
                }

                async def refuse_all(domain: str) -> None:
                    rule = {"address": f"@{domain}", "stage": "rcpt", "code": 550}
                    await smtp_sink.set_rules([{**rule, "message": "5.7.1 no", "times": None}])

                _, _, broadcast = await start_broadcast(
                    db, log, 100, settings, before_start=refuse_all
                )
                await log.wait_for(
                    lambda e: (
                        e["type"] == "broadcast.progressed"
                        and e["broadcast_id"] == broadcast
                        and e["counters"]["failed"] >= 6
                    ),
                    timeout=60,
                )
                await asyncio.to_thread(
                    stack.stop_process, seconds["tracker"].pid_file, sig=signal.SIGKILL
                )
                await asyncio.to_thread(stack.start_component, first)
                paused = await log.wait_for(
                    lambda e: e["type"] == "broadcast.paused" and e["broadcast_id"] == broadcast,
                    timeout=60,
                )
                assert paused["reason"] == "failure_ratio"
            finally:
                await log.close()
    finally:
        await asyncio.to_thread(restart_service, "tracker")  # with the suite's settings again
