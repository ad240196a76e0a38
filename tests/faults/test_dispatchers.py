"""Dispatchers killed mid-broadcast, alone, in pairs or while their broadcast is paused, and a
rate limit shared by two of them.

A SIGKILL leaves claims whose outcome nobody recorded: they become "unknown" as soon as the
killed dispatcher restarts, or once it has been silent for the takeover delay when another
dispatcher runs; they are never sent again and each becomes a manual action. Everything else is
sent exactly once, and the broadcast completes within a minute of the restart.
"""

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.local import stack
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    actions_of,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, another_instance, publish_json, restart_service

pytestmark = pytest.mark.stack

AUDIENCE = 10_000
# A dispatcher silent for 5 s is taken for dead (15 s by default): the survivor of two finishes
# sooner.
TAKEOVER = {"DISPATCHER_TAKEOVER_SECONDS": "5", "DISPATCHER_HEARTBEAT_SECONDS": "1"}
# What one dispatcher may have claimed and not recorded at any moment: two waves of twice its
# eight connections.
IN_FLIGHT = 2 * 2 * 8
# From the restart (or the death, when another dispatcher runs) to the broadcast's completion.
RECOVERY_SECONDS = 60


@asynccontextmanager
async def two_dispatchers(settings: dict[str, str]) -> AsyncIterator[stack.Component]:
    """The stack's dispatcher and a second one, both with `settings` added; yields the second.
    Afterwards the second is stopped and the stack's dispatcher runs with the suite's settings
    again."""
    await asyncio.to_thread(restart_service, "dispatcher", settings)
    second = another_instance("dispatcher", settings)
    await asyncio.to_thread(stack.start_component, second)
    try:
        yield second
    finally:
        await asyncio.to_thread(stack.stop_component, second)
        pid = stack.running_pid(stack.components()["dispatcher"].pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # in case a test froze it and failed before thawing it
        await asyncio.to_thread(restart_service, "dispatcher")


@dataclass(frozen=True)
class Doomed:
    """The dispatcher a test kills, and what follows its death."""

    pid_file: Path
    after_death: Callable[[], None]


@asynccontextmanager
async def the_only_dispatcher() -> AsyncIterator[Doomed]:
    # With the default takeover delay: the restarted instance settles its claims itself.
    yield Doomed(stack.components()["dispatcher"].pid_file, partial(restart_service, "dispatcher"))


@asynccontextmanager
async def one_of_two_dispatchers() -> AsyncIterator[Doomed]:
    # Nobody restarts the second: the stack's dispatcher takes its claims over and finishes.
    async with two_dispatchers(TAKEOVER) as second:
        yield Doomed(second.pid_file, lambda: None)


async def start_broadcast(
    db: asyncpg.Pool,
    log: EventLog,
    size: int,
    settings: dict[str, Any] | None = None,
    before_start: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[str, str, str]:
    """A new tenant's broadcast to `size` contracts, started; `before_start` is given its
    domain (to set the sink's rules for it)."""
    tenant, domain = new_tenant()
    if settings:
        await configure(log, tenant, settings)
    if before_start is not None:
        await before_start(domain)
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


async def wait_for_count(sink: SmtpSink, domain: str, count: int, timeout: float = 180) -> None:
    """Until the sink holds `count` messages for `domain` (cheap: no message is fetched)."""
    async with asyncio.timeout(timeout):
        while await sink.count(domain) < count:
            await asyncio.sleep(0.2)


async def sweeps(port: int = stack.SERVICE_PORTS["dispatcher"]) -> float:
    """How many passes the dispatcher's sweeper has made since it started."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        if family.name == "broadcast_dispatcher_sweeps":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("the dispatcher exports no sweep counter")


async def quiet(log: EventLog, broadcast: str, size: int) -> dict[str, Any]:
    """The first progress of a paused broadcast where every message is delivered or held:
    none is in flight any more."""
    return await log.wait_for(
        lambda e: (
            e["type"] == "broadcast.progressed"
            and e["broadcast_id"] == broadcast
            and e["counters"]["delivered"] + e["counters"]["paused"] == size
        )
    )


def completions(log: EventLog, broadcast: str) -> list[dict[str, Any]]:
    """The `broadcast.completed` events of `broadcast` read so far (copies included)."""
    return [
        e
        for e in log.records
        if e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast
    ]


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
    """From the moment of the restart (or the death): completed within RECOVERY_SECONDS."""
    since = time.monotonic()
    completed = await log.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast,
        timeout=RECOVERY_SECONDS,
    )
    print(f"completed {time.monotonic() - since:.1f} s after the restart or the kill")
    received = await sent(sink, domain)
    assert [a for a, n in received.items() if n > 1] == []  # duplicates: 0
    actions = await actions_of(log, tenant, broadcast, limit=1000)
    unknown = {a["address"] for a in actions if a["reason"] == "unknown_outcome"}
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
    # Each unknown outcome is a manual action, and nothing else failed.
    assert len(actions) == len(unknown)
    print(f"{len(unknown)} unknown of {size}, {len(received)} received, none twice")


@pytest.mark.parametrize(
    "dispatchers",
    [
        pytest.param(the_only_dispatcher, id="the-only-one-restarted"),
        pytest.param(one_of_two_dispatchers, id="one-of-two-the-other-finishes"),
    ],
)
async def test_a_dispatcher_killed_halfway_sends_nothing_twice_and_loses_nothing(
    dispatchers: Callable[[], AbstractAsyncContextManager[Doomed]],
    db: asyncpg.Pool,
    smtp_sink: SmtpSink,
) -> None:
    async with dispatchers() as doomed:
        log = await EventLog("broadcast.events").open()
        try:
            tenant, domain, broadcast = await start_broadcast(db, log, AUDIENCE)
            await wait_for_count(smtp_sink, domain, AUDIENCE // 2)
            await asyncio.to_thread(stack.stop_process, doomed.pid_file, sig=signal.SIGKILL)
            assert await smtp_sink.count(domain) < AUDIENCE, "killed after the end"
            await asyncio.to_thread(doomed.after_death)
            await check_nothing_lost_nothing_twice(db, smtp_sink, log, tenant, domain, broadcast, 1)
        finally:
            await log.close()


async def test_a_paused_broadcast_stays_paused_across_a_killed_dispatcher_and_resumes_once(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    size = 3000
    log = await EventLog("broadcast.events").open()
    try:
        tenant, domain, broadcast = await start_broadcast(
            db, log, size, {**OPEN_ALL_WEEK, "email_per_second": 300}
        )
        await wait_for_count(smtp_sink, domain, size // 5)
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
        # What was in flight when the pause came lands; then nothing is in flight.
        held = (await quiet(log, broadcast, size))["counters"]["delivered"]
        assert await smtp_sink.count(domain) == held < size
        component = stack.components()["dispatcher"]
        await asyncio.to_thread(stack.stop_process, component.pid_file, sig=signal.SIGKILL)
        await asyncio.to_thread(restart_service, "dispatcher")
        # The restarted dispatcher has swept its ledger twice, the held messages with it.
        async with asyncio.timeout(60):
            while await sweeps() < 2:
                await asyncio.sleep(0.2)
        assert await smtp_sink.count(domain) == held  # still paused after the crash
        resume = {**pause, "type": "resume_broadcast", "request_id": f"resume-{broadcast}"}
        await publish_json("broadcast.requests", [(tenant, resume)])
        await check_nothing_lost_nothing_twice(
            db, smtp_sink, log, tenant, domain, broadcast, 1, size
        )
    finally:
        await log.close()


async def test_a_tenants_rate_holds_across_two_dispatchers(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    rate, window = 20, 20.0
    second = another_instance("dispatcher")
    await asyncio.to_thread(stack.start_component, second)
    log = await EventLog("broadcast.events").open()
    try:
        tenant, domain, broadcast = await start_broadcast(
            db, log, 1000, {**OPEN_ALL_WEEK, "email_per_second": rate}
        )
        await wait_for_count(smtp_sink, domain, 1, timeout=60)
        # Only lets the window pass: the rate is read from the sink's own receive times.
        await asyncio.sleep(3 + window + 1)
        cancel = {
            "type": "cancel_broadcast",
            "tenant_id": tenant,
            "request_id": f"cancel-{broadcast}",
            "requested_by": "user-42",
            "broadcast_id": broadcast,
        }
        await publish_json("broadcast.requests", [(tenant, cancel)])
        received = sorted(
            datetime.fromisoformat(m.received_at) for m in await smtp_sink.messages(domain)
        )
        begin = received[0] + timedelta(seconds=3)  # past the first second's burst
        within = [t for t in received if begin <= t < begin + timedelta(seconds=window)]
        # The buckets' bound (ARCHITECTURE, "Rate limits"): what is scheduled within the window
        # is at most its tokens, one second's burst and the one wave straddling its start; a
        # busy machine can only push into it what was in flight at its start, two dispatchers'
        # worth. Both dispatchers drawing their own tokens would send twice the rate (800). A
        # busy machine may be slower, but not by half at 20 messages a second.
        most = rate * window + rate + IN_FLIGHT // 2 + 2 * IN_FLIGHT
        assert rate * window * 0.5 <= len(within) <= most
        done = await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast
        )
        assert done["outcome"] == "cancelled"
    finally:
        await log.close()
        await asyncio.to_thread(stack.stop_component, second)
