"""Stopping and killing services mid-broadcast: nothing lost, nothing sent twice, exact counters."""

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
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
from tests.stack import EventLog, SmtpSink, restart_service

pytestmark = pytest.mark.stack

AUDIENCE = 3000


async def broadcast_with_interruption(
    db: asyncpg.Pool, sink: SmtpSink, interrupt: Callable[[], Awaitable[None]]
) -> tuple[str, dict[str, Any]]:
    """Start a broadcast to AUDIENCE contracts, interrupt once a fifth was sent, await the end."""
    tenant, domain = new_tenant()
    await load(
        db,
        [
            contract(
                tenant, f"C-{n}", status="active", building="residential", emails=[f"c{n}@{domain}"]
            )
            for n in range(AUDIENCE)
        ],
        timeout=60,
    )
    log = await EventLog("broadcast.events").open()
    try:
        # Any day, and 300 messages a second: the broadcast lasts about 10 s, so the
        # interruption lands mid-broadcast however quickly this machine sends (CI once sent all
        # 3,000 before the composer's kill had taken effect).
        await configure(log, tenant, {**OPEN_ALL_WEEK, "email_per_second": 300})
        create = french_only(tenant)
        broadcast_id = await create_and_start(log, create)
        async with asyncio.timeout(60):
            while await sink.count(domain) < AUDIENCE // 5:
                await asyncio.sleep(0.05)
        await interrupt()
        sent_before_restart = await sink.count(domain)
        assert sent_before_restart < AUDIENCE, "the interruption came after the broadcast ended"
        completed = await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id,
            timeout=120,
        )
    finally:
        await log.close()
    return domain, completed


async def assert_each_recipient_got_exactly_one(sink: SmtpSink, domain: str) -> None:
    received = Counter(m.rcpt_tos[0] for m in await sink.messages(to_domain=domain))
    assert [a for a, n in received.items() if n > 1] == []  # duplicates: none
    assert len(received) == AUDIENCE  # missing: none


def restart(name: str, sig: signal.Signals) -> Callable[[], Awaitable[None]]:
    async def interrupt() -> None:
        component = stack.components()[name]
        await asyncio.to_thread(stack.stop_process, component.pid_file, sig=sig)
        # With the suite's settings, as the session started it: later tests rely on them.
        await asyncio.to_thread(restart_service, name)

    return interrupt


@pytest.mark.parametrize(
    ("service", "sig"),
    [
        # Stopped, it finishes its batch first; then it resumes where it left off.
        pytest.param("dispatcher", signal.SIGTERM, id="dispatcher-stopped-by-sigterm"),
        pytest.param("tracker", signal.SIGKILL, id="tracker-killed"),
    ],
)
async def test_a_service_interrupted_mid_broadcast_ends_with_exact_counters(
    service: str, sig: signal.Signals, db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    domain, completed = await broadcast_with_interruption(db, smtp_sink, restart(service, sig))
    assert completed["counters"] == {
        "contracts_targeted": AUDIENCE,
        "messages_targeted": AUDIENCE,
        "delivered": AUDIENCE,
        "failed": 0,
        "cancelled": 0,
        "pending_retry": 0,
        "waiting_window": 0,
        "paused": 0,
        "failed_by_reason": {},
        "contracts_reached": AUDIENCE,
        "contracts_not_reached": 0,
        # Nothing reported after the hand-over (no bounce, complaint or SMS receipt).
        "hard_bounced": 0,
        "soft_bounced": 0,
        "complained": 0,
        "confirmed": 0,
    }
    assert completed["outcome"] == "fully_successful"
    await assert_each_recipient_got_exactly_one(smtp_sink, domain)


async def test_composer_killed_mid_broadcast_loses_nothing(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    domain, completed = await broadcast_with_interruption(
        db, smtp_sink, restart("composer", signal.SIGKILL)
    )
    assert completed["counters"]["delivered"] == AUDIENCE
    await assert_each_recipient_got_exactly_one(smtp_sink, domain)
