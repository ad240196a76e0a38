"""The ledger's refresh: a message that waited long is not sent as it was rendered. It becomes
'refreshing' and a new rendition is asked for; copies and older renditions change nothing; the
new one is sent once, with its values; a refused or cancelled refresh sends nothing. Against
the real database, with an injected clock (a Monday noon ahead, so the stack's own dispatcher,
on the real clock, leaves these rows alone) and a provider that records what it is handed."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.dispatcher import ledger
from services.dispatcher.handover import Event, Handover, Limits
from services.dispatcher.policy import Attempt
from services.dispatcher.refresh import Freshness
from services.dispatcher.retry import RetryPolicy
from services.dispatcher.tenants import Directory
from shared.events import (
    MessageRendered,
    RefreshDeclined,
    RefreshRequested,
    WaitReason,
)

pytestmark = pytest.mark.stack

TORONTO = ZoneInfo("America/Toronto")
FRESHNESS = Freshness(
    after=timedelta(minutes=5), ask_again=timedelta(seconds=30), give_up=timedelta(hours=1)
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Recording:
    """A provider that accepts everything and remembers the bodies it was handed."""

    bodies: list[str] = field(default_factory=list)

    async def send(self, message: MessageRendered) -> Attempt:
        self.bodies.append(message.body)
        return Attempt("accepted", 250, "2.0.0 OK")

    async def close(self) -> None:
        pass


def next_monday_noon() -> datetime:
    day = datetime.now(TORONTO).date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 12, tzinfo=TORONTO).astimezone(UTC)


@dataclass
class Setup:
    handover: Handover
    clock: Clock
    provider: Recording
    asked: list[RefreshRequested]
    tenant: str
    pool: asyncpg.Pool


@pytest.fixture
def setup(service_pool: asyncpg.Pool) -> Setup:
    clock, provider = Clock(next_monday_noon()), Recording()
    asked: list[RefreshRequested] = []

    async def ask(requests: Sequence[RefreshRequested]) -> None:
        asked.extend(requests)

    handover = Handover(
        service_pool,
        provider,
        Directory(service_pool),  # no settings: the default, email on weekdays
        RetryPolicy(),
        Limits(wave_size=4, waves_in_flight=1, max_wait_seconds=2.0),
        ledger.Claimant(f"test-{uuid4()}", 1),
        clock,
        FRESHNESS,
        ask,
    )
    return Setup(handover, clock, provider, asked, f"t{uuid4().hex[:10]}", service_pool)


def message(s: Setup, body: str, rendered: datetime, rendition: int = 0) -> MessageRendered:
    return MessageRendered(
        occurred_at=rendered,
        tenant_id=s.tenant,
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        contract_id="C-1",
        channel="email",
        address="solde@refresh.example",
        sender="avis@deneigement.example",
        body=body,
        rendition=rendition,
    )


def rendition(old: MessageRendered, body: str, n: int, rendered: datetime) -> MessageRendered:
    return old.model_copy(
        update={"body": body, "rendition": n, "occurred_at": rendered, "event_id": uuid4()}
    )


async def parked(s: Setup, m: MessageRendered, waiting_for: WaitReason, attempts: int) -> None:
    """Waiting since it was rendered, due a second ago."""
    wait = ledger.Wait(m, s.clock.now - timedelta(seconds=1), waiting_for, attempts)
    await ledger.schedule(s.pool, [wait], s.clock.now)


async def refreshing(s: Setup, waiting_for: WaitReason) -> MessageRendered:
    """A message rendered two days ago, due now: taken, it is refreshing."""
    old = message(s, "Subject: x\r\n\r\n", s.clock.now - timedelta(days=2))
    await parked(s, old, waiting_for, 0)
    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    return old


async def row(pool: asyncpg.Pool, recipient_id: UUID) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT state, rendition, attempts, due_at, claim_token, reason "
        "FROM dispatcher.deliveries WHERE recipient_id = $1",
        recipient_id,
    )
    assert found is not None
    return found


def kinds(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def test_a_late_retry_is_rendered_again_and_only_its_new_rendition_leaves(
    service_pool: asyncpg.Pool, setup: Setup
) -> None:
    s = setup
    old = message(s, "Subject: Solde 125,50 $\r\n\r\n", s.clock.now - timedelta(minutes=40))
    await parked(s, old, "retry", 1)  # its first attempt was refused for now (451)

    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    assert [(r.recipient_id, r.rendition) for r in s.asked] == [(old.recipient_id, 1)]
    waiting = await row(service_pool, old.recipient_id)
    assert (waiting["state"], waiting["rendition"], waiting["claim_token"]) == (
        "refreshing",
        1,
        None,
    )
    assert waiting["due_at"] == s.clock.now + FRESHNESS.ask_again

    # Not overdue yet: not asked again. A copy of the old rendition, replayed from Kafka, is
    # neither sent nor does it replace anything.
    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    assert await s.handover.fresh([old]) == []
    assert len(s.asked) == 1 and s.provider.bodies == []
    assert (await row(service_pool, old.recipient_id))["state"] == "refreshing"

    # Unanswered (lost in a crash): asked again, for the same rendition, as the same event.
    s.clock.now += FRESHNESS.ask_again + timedelta(seconds=1)
    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    assert [r.rendition for r in s.asked] == [1, 1] and s.asked[0].event_id == s.asked[1].event_id

    new = rendition(old, "Subject: Solde 987,65 $\r\n\r\n", 1, s.clock.now)
    assert await s.handover.fresh([new]) == []
    renewed = await row(service_pool, old.recipient_id)
    assert (renewed["state"], renewed["rendition"], renewed["attempts"]) == ("scheduled", 1, 1)
    assert renewed["due_at"] == s.clock.now
    assert await s.handover.fresh([old, new]) == []  # copies of both: nothing changes
    assert await s.handover.fresh([old]) == []

    sent = await s.handover.due(limit=100, tenant_id=s.tenant)
    assert kinds(sent) == ["delivery.delivered"]
    assert s.provider.bodies == [new.body]
    assert (await row(service_pool, old.recipient_id))["state"] == "delivered"
    # Replays after the end: the first rendition is announced again as delivered (its
    # event may have been lost); nothing is handed over again.
    assert kinds(await s.handover.fresh([old])) == ["delivery.delivered"]
    assert await s.handover.fresh([new]) == []
    assert s.provider.bodies == [new.body]


async def test_a_quick_wait_leaves_as_rendered(service_pool: asyncpg.Pool, setup: Setup) -> None:
    s = setup
    paced = message(s, "Subject: x\r\n\r\n", s.clock.now - timedelta(seconds=20))
    await parked(s, paced, "throttled", 0)
    assert kinds(await s.handover.due(limit=100, tenant_id=s.tenant)) == ["delivery.delivered"]
    assert s.asked == [] and s.provider.bodies == [paced.body]


async def test_a_contract_gone_meanwhile_fails_with_no_contact_once(
    service_pool: asyncpg.Pool, setup: Setup
) -> None:
    s = setup
    old = await refreshing(s, "send_window")
    (asked,) = s.asked
    declined = RefreshDeclined(
        **asked.ref(), rendition=1, detail="the contract was deleted while the message waited"
    )
    (failed,) = await s.handover.declined([declined])
    assert failed.type == "delivery.failed" and failed.reason == "no_contact"
    assert "deleted" in failed.detail
    gone = await row(service_pool, old.recipient_id)
    assert (gone["state"], gone["reason"]) == ("failed", "no_contact")
    assert await s.handover.declined([declined]) == []  # a copy: nothing more
    stale = RefreshDeclined(**asked.ref(), rendition=0, detail="older")
    assert await s.handover.declined([stale]) == []
    assert s.provider.bodies == []


async def test_a_run_cancelled_while_refreshing_sends_nothing(
    service_pool: asyncpg.Pool, setup: Setup
) -> None:
    s = setup
    old = await refreshing(s, "paused")
    assert (await row(service_pool, old.recipient_id))["state"] == "refreshing"
    await ledger.record_cancelled_runs(service_pool, [old.run_id])
    # Cancelled here, or by the stack's own sweeper first: every sweep cancels these.
    await s.handover.expire(None)
    assert (await row(service_pool, old.recipient_id))["state"] == "cancelled"
    await s.handover.fresh([rendition(old, "Subject: y\r\n\r\n", 1, s.clock.now)])
    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    assert (await row(service_pool, old.recipient_id))["state"] == "cancelled"
    assert s.provider.bodies == []


async def test_a_refresh_unanswered_too_long_fails_the_message_unsent(
    service_pool: asyncpg.Pool, setup: Setup
) -> None:
    s = setup
    old = await refreshing(s, "send_window")
    s.clock.now += FRESHNESS.give_up + timedelta(seconds=1)
    (failed,) = await s.handover.due(limit=100, tenant_id=s.tenant)
    assert failed.type == "delivery.failed" and failed.reason == "render_failed"
    assert (await row(service_pool, old.recipient_id))["state"] == "failed"
    # A rendition that comes after all is not sent.
    await s.handover.fresh([rendition(old, "Subject: y\r\n\r\n", 1, s.clock.now)])
    assert await s.handover.due(limit=100, tenant_id=s.tenant) == []
    assert s.provider.bodies == []
