"""Send windows with an injected clock: the dispatcher's hand-over against the real database
and SMTP sink, standing on a Saturday, then on Monday morning."""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.dispatcher import ledger
from services.dispatcher.handover import Handover, Limits
from services.dispatcher.refresh import Freshness
from services.dispatcher.retry import RetryPolicy
from services.dispatcher.smtp import SmtpRelay
from services.dispatcher.tenants import Directory
from shared.events import DeliveryDeferred, MessageRendered, RefreshRequested
from tests.stack import SmtpSink

pytestmark = pytest.mark.stack

TORONTO = ZoneInfo("America/Toronto")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def next_saturday_noon() -> datetime:
    """In the future, so that the stack's own dispatcher, on the real clock, leaves it alone."""
    day = datetime.now(TORONTO).date() + timedelta(days=1)
    while day.weekday() != 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 12, tzinfo=TORONTO).astimezone(UTC)


@pytest.fixture
async def relay(stack: None) -> AsyncIterator[SmtpRelay]:
    smtp = SmtpRelay(host="127.0.0.1", port=10025, size=2, timeout=10)
    yield smtp
    await smtp.close()


async def never_asked(requests: Sequence[RefreshRequested]) -> None:
    assert not requests, "no refresh expected"


def message(tenant: str, address: str) -> MessageRendered:
    return MessageRendered(
        tenant_id=tenant,
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        contract_id="C-1",
        channel="email",
        address=address,
        sender="avis@deneigement.example",
        body=f"From: avis@deneigement.example\r\nTo: {address}\r\nSubject: x\r\n\r\nBonjour\r\n",
    )


async def test_a_weekend_message_waits_until_monday_then_leaves_once(
    service_pool: asyncpg.Pool, relay: SmtpRelay, smtp_sink: SmtpSink
) -> None:
    tenant, domain = f"t{uuid4().hex[:10]}", f"{uuid4().hex[:8]}.example"
    address = f"lundi@{domain}"
    clock = Clock(next_saturday_noon())
    handover = Handover(
        service_pool,
        relay,
        Directory(service_pool),  # the tenant has no settings: the default, no email on weekends
        RetryPolicy(),
        Limits(wave_size=4, waves_in_flight=1, max_wait_seconds=2.0),
        ledger.Claimant(f"test-{uuid4()}", 1),
        clock,
        # About windows only: sent as rendered, however long it waited (see
        # test_ledger_refresh.py for the values at the moment of sending).
        Freshness(
            after=timedelta(days=3650), ask_again=timedelta(minutes=1), give_up=timedelta(hours=1)
        ),
        never_asked,
    )
    events = await handover.fresh([message(tenant, address)])
    assert [e.type for e in events] == ["delivery.deferred"]
    deferred = events[0]
    assert isinstance(deferred, DeliveryDeferred) and deferred.waiting_for == "send_window"
    assert deferred.due_at is not None  # a send window always says when it opens
    monday = deferred.due_at.astimezone(TORONTO)
    assert (monday.weekday(), monday.hour, monday.minute) == (0, 0, 0)
    assert monday - clock.now.astimezone(TORONTO) == timedelta(hours=36)

    # Next Monday by this clock, every tenant's weekend messages are due: take this tenant's
    # only, so that no other test's message is claimed or sent from here.
    async def due() -> list[tuple[str, str]]:
        return [(e.type, e.address) for e in await handover.due(limit=1000, tenant_id=tenant)]

    clock.now = monday.astimezone(UTC) - timedelta(seconds=1)  # Sunday, 23:59:59
    assert await due() == []
    assert await smtp_sink.messages(domain) == []

    clock.now = monday.astimezone(UTC) + timedelta(seconds=1)
    assert await due() == [("delivery.delivered", address)]
    assert await due() == []  # taken once
    assert [m.rcpt_tos for m in await smtp_sink.messages(domain)] == [[address]]
    state = await service_pool.fetchval(
        "SELECT state FROM dispatcher.deliveries WHERE tenant_id = $1", tenant
    )
    assert state == "delivered"
