"""Values at the moment of sending: a message held over a weekend leaves with the balance its
contract has when its window opens, not the one it was rendered with (issue 16, item 5).

The stack runs on the real clock; the weekend is this tenant's own: its email days leave today
out, so its message waits for the day after tomorrow. The window then "opens" for a hand-over
of this test, standing at that moment by an injected clock and taking this tenant's messages
only (as tests/integration/test_send_windows.py does); the new rendition it asks for goes
through the stack's targeting, composer and dispatcher, which the tenant's days now let send.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.dispatcher import ledger
from services.dispatcher.handover import Handover, Limits
from services.dispatcher.refresh import Freshness
from services.dispatcher.retry import RetryPolicy
from services.dispatcher.smtp import SmtpRelay
from services.dispatcher.tenants import TTL_SECONDS, Directory
from shared.client import watch
from shared.events import WEEKDAYS, RefreshRequested
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    completed,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack

TORONTO = ZoneInfo("America/Toronto")


@pytest.fixture
async def relay(stack: None) -> AsyncIterator[SmtpRelay]:
    smtp = SmtpRelay(host="127.0.0.1", port=10025, size=2, timeout=10)
    yield smtp
    await smtp.close()


def with_balance(tenant: str, address: str, balance: str, version: int) -> dict[str, Any]:
    upsert = contract(tenant, "C-1", status="active", building="residential", emails=[address])
    upsert["version"] = version
    upsert["contract"]["balance"] = balance
    return upsert


def waiting(broadcast_id: str) -> Any:
    return lambda e: (
        e["type"] == "broadcast.progressed"
        and e["broadcast_id"] == broadcast_id
        and e["counters"]["waiting_window"] == 1
    )


async def test_a_balance_changed_during_a_weekend_wait_is_the_one_received(
    db: asyncpg.Pool,
    service_pool: asyncpg.Pool,
    relay: SmtpRelay,
    smtp_sink: SmtpSink,
    events: EventLog,
) -> None:
    tenant, domain = new_tenant()
    address = f"solde@{domain}"
    # The day after tomorrow only: still ahead even if midnight passes while the test runs.
    later = datetime.now(TORONTO) + timedelta(days=2)
    await configure(events, tenant, {"email_days": [WEEKDAYS[later.weekday()]]})
    await load(db, [with_balance(tenant, address, "125.50", version=1)])
    create = french_only(tenant)
    create["content"]["email"]["fr"]["subject"] = "Solde {{ contract.balance }}"
    broadcast_id = await create_and_start(events, create)
    await events.wait_for(waiting(broadcast_id))

    # While it waits: the platform changes the balance, and the tenant's days come to include
    # today (so that the stack, on the real clock, sends what it is handed back).
    await publish_json(
        "audience.contracts",
        [(f"{tenant}:C-1", with_balance(tenant, address, "987.65", version=2))],
    )
    await watch.until_contracts(db, tenant, 1, min_version=2)
    await configure(events, tenant, OPEN_ALL_WEEK)
    # The stack's dispatcher may apply the settings it read before for up to its cache's life:
    # past it, the message handed back cannot be parked again for the old days (CI re-parked it
    # 1.4 s after the first park). A bound waited out, not a guess at the machine's speed.
    await asyncio.sleep(TTL_SECONDS + 0.5)

    row = await db.fetchrow(
        "SELECT recipient_id, due_at FROM dispatcher.deliveries_v1 "
        "WHERE tenant_id = $1 AND state = 'scheduled'",
        tenant,
    )
    assert row is not None
    assert row["due_at"].astimezone(TORONTO).date() == later.date()

    asked: list[RefreshRequested] = []

    async def ask(requests: Sequence[RefreshRequested]) -> None:
        asked.extend(requests)
        await publish_json(
            "broadcast.runs",
            [(str(r.broadcast_id), r.model_dump(mode="json")) for r in requests],
        )

    opening = row["due_at"] + timedelta(seconds=1)
    handover = Handover(
        service_pool,
        relay,
        Directory(service_pool),
        RetryPolicy(),
        Limits(wave_size=4, waves_in_flight=1, max_wait_seconds=2.0),
        ledger.Claimant(f"test-{uuid4()}", 1),
        lambda: opening,
        Freshness(
            after=timedelta(minutes=5), ask_again=timedelta(minutes=1), give_up=timedelta(hours=1)
        ),
        ask,
    )
    # Rendered two days before: not sent as it is, rendered again first.
    assert await handover.due(limit=1000, tenant_id=tenant) == []
    assert [(r.recipient_id, r.rendition) for r in asked] == [(row["recipient_id"], 1)]
    assert await smtp_sink.messages(domain) == []

    done = await completed(events, broadcast_id)
    counters = done["counters"]
    # One message, counted once: the new rendition replaced the waiting one.
    assert (counters["messages_targeted"], counters["delivered"], counters["failed"]) == (1, 1, 0)
    assert (counters["waiting_window"], counters["pending_retry"]) == (0, 0)
    assert (counters["contracts_targeted"], counters["contracts_reached"]) == (1, 1)
    (mail,) = await smtp_sink.messages(domain)
    assert mail.rcpt_tos == [address]
    subject = str(mail.message["Subject"])
    assert "987,65" in subject and "125,50" not in subject
    state = await db.fetchval(
        "SELECT state FROM dispatcher.deliveries_v1 WHERE recipient_id = $1", row["recipient_id"]
    )
    assert state == "delivered"
