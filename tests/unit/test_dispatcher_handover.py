"""The hand-over's batch path without a database: the ledger's calls are faked at the module's
seam, so what is checked is what the hand-over does with their answers (waves, windows,
claims lost to copies, corrections, one event per message)."""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher import ledger
from services.dispatcher.handover import Handover, Limits
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.policy import Attempt
from services.dispatcher.providers import Providers
from services.dispatcher.refresh import Freshness
from services.dispatcher.retry import RetryPolicy
from shared import redaction
from shared.events import (
    DeliveryCorrected,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    MessageRendered,
    TenantSettings,
)

# A Wednesday, noon in Toronto: the default working week is open.
WEDNESDAY = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)
WAVE = 4


class Pool:
    """What the hand-over asks the pool itself: the rate-limit keys (none are limited)."""

    async def fetch(self, query: str, *args: object) -> list[object]:
        return []


class Tenants:
    def __init__(self, settings: dict[str, TenantSettings]) -> None:
        self._settings = settings

    async def get(self, tenant_ids: set[str]) -> dict[str, TenantSettings]:
        return {t: self._settings.get(t, TenantSettings()) for t in tenant_ids}


class Accepting:
    def __init__(self) -> None:
        self.sent: list[UUID] = []

    async def send(self, message: MessageRendered) -> Attempt:
        self.sent.append(message.recipient_id)
        return Attempt("accepted", 250, "ok")

    async def close(self) -> None:
        return None


class Ledger:
    """The ledger's answers: `taken` were claimed by another dispatcher, `earlier` finished
    before, `corrected` were settled as unknown while their wave was out."""

    def __init__(self) -> None:
        self.taken: set[UUID] = set()
        self.earlier: dict[UUID, ledger.Finished] = {}
        self.corrected: set[UUID] = set()
        self.waves: list[list[UUID]] = []
        self.recorded: dict[UUID, int] = {}
        self.parked: list[ledger.Wait] = []
        self._token = 0

    async def claim(
        self, pool: object, messages: Sequence[MessageRendered], me: ledger.Claimant
    ) -> ledger.Claims:
        self.waves.append([m.recipient_id for m in messages])
        claimed = {}
        for m in messages:
            if m.recipient_id not in self.taken and m.recipient_id not in self.earlier:
                self._token += 1
                claimed[m.recipient_id] = self._token
        finished = {
            m.recipient_id: self.earlier[m.recipient_id]
            for m in messages
            if m.recipient_id in self.earlier
        }
        return ledger.Claims(claimed, finished)

    async def record(
        self,
        pool: object,
        outcomes: dict[UUID, Attempt],
        tokens: dict[UUID, int],
        **flags: bool,
    ) -> ledger.Recorded:
        self.recorded.update(tokens)
        return ledger.Recorded(set(outcomes) - self.corrected, set(outcomes) & self.corrected)

    async def schedule(
        self, pool: object, waits: Sequence[ledger.Wait], now: datetime | None = None
    ) -> list[ledger.Wait]:
        self.parked.extend(waits)
        return list(waits)

    async def finished(self, pool: object, ids: Sequence[UUID]) -> dict[UUID, ledger.Finished]:
        return {}

    async def stopped_runs(self, pool: object, run_ids: set[UUID]) -> dict[UUID, str]:
        return {}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Ledger:
    fake = Ledger()
    for name in ("claim", "record", "schedule", "finished", "stopped_runs"):
        monkeypatch.setattr(ledger, name, getattr(fake, name))
    return fake


def handover(provider: Accepting, settings: dict[str, TenantSettings]) -> Handover:
    async def ask(requests: Sequence[Any]) -> None:
        return None

    return Handover(
        Pool(),  # type: ignore[arg-type]
        Providers({"email": provider}, DispatcherMetrics(CollectorRegistry()).provider_seconds),
        Tenants(settings),  # type: ignore[arg-type]
        RetryPolicy(),
        Limits(wave_size=WAVE, waves_in_flight=2, max_wait_seconds=2.0),
        ledger.Claimant("test", 1),
        lambda: WEDNESDAY,
        Freshness(timedelta(minutes=5), timedelta(seconds=30), timedelta(hours=1)),
        ask,
    )


def batch(tenants: Sequence[str], count: int) -> list[MessageRendered]:
    run_id = uuid4()
    return [
        MessageRendered(
            tenant_id=tenants[i % len(tenants)],
            broadcast_id=run_id,
            run_id=run_id,
            recipient_id=uuid4(),
            contract_id=f"C-{i}",
            channel="email",
            address=f"client{i}@example.org",
            sender="avis@example.org",
            body="Bonjour",
        )
        for i in range(count)
    ]


async def test_each_message_sent_once_in_waves_and_announced_in_its_order(fake: Ledger) -> None:
    provider = Accepting()
    messages = batch(["open"], 10)
    events = await handover(provider, {}).fresh(messages)
    assert [len(wave) for wave in fake.waves] == [4, 4, 2]
    assert sorted(provider.sent) == sorted(m.recipient_id for m in messages)
    assert all(isinstance(e, MessageDelivered) for e in events)
    assert [e.recipient_id for e in events] == [m.recipient_id for m in messages]
    # Fresh ids for every event, random ones (version 4), none shared.
    assert len({e.event_id for e in events}) == len(events)
    assert {e.event_id.version for e in events} == {4}


async def test_a_window_is_applied_to_each_tenant_of_the_batch(fake: Ledger) -> None:
    provider = Accepting()
    messages = batch(["open", "weekend"], 8)
    weekend = TenantSettings(email_days=["sat", "sun"])
    events = await handover(provider, {"weekend": weekend}).fresh(messages)
    delivered = {e.recipient_id for e in events if isinstance(e, MessageDelivered)}
    deferred = [e for e in events if isinstance(e, DeliveryDeferred)]
    assert delivered == {m.recipient_id for m in messages if m.tenant_id == "open"}
    assert {e.recipient_id for e in deferred} == {
        m.recipient_id for m in messages if m.tenant_id == "weekend"
    }
    assert {(e.waiting_for, e.due_at) for e in deferred} == {
        ("send_window", datetime(2026, 12, 5, 5, 0, tzinfo=UTC))
    }
    assert set(provider.sent) == delivered


async def test_copies_claimed_elsewhere_are_left_and_finished_ones_announced_again(
    fake: Ledger,
) -> None:
    provider = Accepting()
    messages = batch(["open"], 6)
    elsewhere, done = messages[1].recipient_id, messages[4].recipient_id
    fake.taken.add(elsewhere)
    fake.earlier[done] = ledger.Finished("failed", Attempt("permanent", 550, "no", "refused"))
    events = await handover(provider, {}).fresh(messages)
    assert elsewhere not in provider.sent and done not in provider.sent
    assert elsewhere not in {e.recipient_id for e in events}
    again = [e for e in events if e.recipient_id == done]
    assert len(again) == 1 and isinstance(again[0], DeliveryFailed)
    assert again[0].reason == "refused"
    sent = [m.recipient_id for m in messages if m.recipient_id not in (elsewhere, done)]
    assert sorted(fake.recorded) == sorted(sent)
    assert len(set(fake.recorded.values())) == len(sent)  # each with its own claim


async def test_an_outcome_that_corrects_an_unknown_is_announced_with_its_correction(
    fake: Ledger,
) -> None:
    messages = batch(["open"], 3)
    fake.corrected.add(messages[2].recipient_id)
    events = await handover(Accepting(), {}).fresh(messages)
    assert [(type(e), e.recipient_id) for e in events] == [
        (MessageDelivered, messages[0].recipient_id),
        (MessageDelivered, messages[1].recipient_id),
        (MessageDelivered, messages[2].recipient_id),
        (DeliveryCorrected, messages[2].recipient_id),
    ]
    assert isinstance(events[3], DeliveryCorrected) and events[3].outcome == "delivered"


class Exploding(Accepting):
    """A provider failing in a way nobody foresaw, quoting the recipient as relays do."""

    async def send(self, message: MessageRendered) -> Attempt:
        raise RuntimeError(f"550 5.1.1 <{message.address}>: recipient rejected")


async def test_a_provider_error_logs_no_address(
    fake: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    redaction.install("dispatcher")  # as the dispatcher's factory does
    (message,) = batch(["open"], 1)
    with caplog.at_level(logging.ERROR, logger="dispatcher"):
        (event,) = await handover(Exploding(), {}).fresh([message])
    assert isinstance(event, DeliveryFailed) and event.reason == "unknown_outcome"
    assert f"handing over {message.recipient_id} failed unexpectedly" in caplog.text
    assert "RuntimeError: 550 5.1.1 <<email>>: recipient rejected" in caplog.text
    assert message.address not in caplog.text
