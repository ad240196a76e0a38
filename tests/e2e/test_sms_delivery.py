"""SMS through the gateway, end to end: a 5xx is retried and delivered once, a 429 waits as
long as its Retry-After says, a permanent 4xx fails with its reason and a manual action, and
the tenant's SMS rate holds (and a change of it applies to a broadcast already running).

The gateway's failure rules are shared by everybody: these tests add rules for their own
numbers only and take them away afterwards, leaving any other rule in place. The suite's
dispatcher retries after 1 and 2 s (tests/stack.py)."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from deploy.local.stack import SERVICE_PORTS
from services.dispatcher.webhooks.gateway import SIGNATURE_HEADER, signature
from shared.local_mode import DEVELOPMENT_SMS_GATEWAY_TOKEN
from tests.e2e.audience import OPEN_ALL_WEEK, ask, configure, contract, load
from tests.e2e.audience import new_tenant as fresh_tenant
from tests.stack import EventLog, SmsSink

pytestmark = pytest.mark.stack
DISPATCHER = f"http://127.0.0.1:{SERVICE_PORTS['dispatcher']}"


@pytest.fixture
async def deliveries(stack: None) -> AsyncIterator[EventLog]:
    """Everything published on broadcast.deliveries from the start of the test."""
    log = await EventLog("broadcast.deliveries").open()
    yield log
    await log.close()


def numbers(count: int) -> list[str]:
    """Fresh E.164 numbers (15 digits) no other test or earlier run uses: the sink keeps every
    SMS it accepted."""
    assert count < 1000
    prefix = f"+1514{uuid4().int % 10**8:08d}"
    return [f"{prefix}{i:03d}" for i in range(count)]


def reply(to: str, status: int, **extra: Any) -> dict[str, Any]:
    return {"to": to, "status": status, "times": 1} | extra


async def rate_applied(db: asyncpg.Pool, tenant: str, rate: float) -> None:
    """Wait until the dispatcher's shared bucket for the tenant's SMS has this rate (it is
    written just after the settings `configure` waits for)."""
    async with asyncio.timeout(30):
        while (
            await db.fetchval(
                "SELECT per_second FROM dispatcher.rate_limits WHERE key = $1",
                f"tenant:{tenant}:sms",
            )
            != rate
        ):
            await asyncio.sleep(0.05)


async def sms_broadcast(
    db: asyncpg.Pool,
    log: EventLog,
    tenant: str,
    phones: list[str],
    settings: dict[str, Any] | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """One contract per number, an SMS broadcast to all of them, started; (broadcast id, run
    id, its started event)."""
    settings = {**OPEN_ALL_WEEK, **(settings or {})}
    await configure(log, tenant, settings)
    if settings.get("sms_per_second"):
        await rate_applied(db, tenant, settings["sms_per_second"])
    records = []
    for i, phone in enumerate(phones):
        record = contract(tenant, f"C-{i}", status="active", building="residential", emails=[])
        record["contract"]["phones"] = [{"address": phone}]
        records.append(record)
    await load(db, records)
    create = {
        "type": "create_broadcast",
        "name": "Avis SMS",
        "channels": ["sms"],
        "languages": ["fr"],
        "content": {"sms": {"fr": {"text": "Deneigement {{ contract.number }} demain matin"}}},
        "sender": {"address": "avis@sms.example"},
    }
    created = await ask(log, tenant, create)
    assert created["type"] == "broadcast.accepted", created
    broadcast_id: str = created["broadcast_id"]
    started = await ask(log, tenant, {"type": "start_broadcast", "broadcast_id": broadcast_id})
    assert started["type"] == "broadcast.accepted", started
    run_id: str = started["run_id"]
    began = await log.wait_for(lambda e: e["type"] == "broadcast.started" and e["run_id"] == run_id)
    return broadcast_id, run_id, began


async def completion(log: EventLog, run_id: str, timeout: float = 60) -> dict[str, Any]:
    return await log.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["run_id"] == run_id, timeout=timeout
    )


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_gateway_error_is_retried_and_delivered_once(
    db: asyncpg.Pool,
    events: EventLog,
    deliveries: EventLog,
    sms_sink: SmsSink,
) -> None:
    tenant, _ = fresh_tenant()
    flaky, fine = numbers(2)
    await sms_sink.set_rules([reply(flaky, 503)])
    _, run_id, _ = await sms_broadcast(db, events, tenant, [flaky, fine])
    done = await completion(events, run_id)
    assert done["outcome"] == "fully_successful"
    assert (done["counters"]["delivered"], done["counters"]["failed"]) == (2, 0)
    sent = await sms_sink.messages({flaky, fine})
    assert sorted(m["to"] for m in sent) == sorted([flaky, fine])  # once each
    assert {m["text"] for m in sent if m["to"] == flaky} == {"Deneigement C-0 demain matin"}
    # A message's outcomes travel in order (keyed by recipient): its deferrals come first.
    await deliveries.wait_for(lambda e: e["type"] == "delivery.delivered" and e["address"] == flaky)
    deferred = [
        e for e in deliveries.records if e["type"] == "delivery.deferred" and e["address"] == flaky
    ]
    assert [(e["waiting_for"], e["attempts"], e["provider_code"]) for e in deferred] == [
        ("retry", 1, 503)
    ]
    [delivered] = [m for m in sent if m["to"] == flaky]
    assert at(delivered["received_at"]) >= at(deferred[0]["due_at"]) - timedelta(seconds=0.05)


async def test_a_gateway_that_asks_to_slow_down_is_waited_for_then_delivers_once(
    db: asyncpg.Pool,
    events: EventLog,
    deliveries: EventLog,
    sms_sink: SmsSink,
) -> None:
    tenant, _ = fresh_tenant()
    [busy] = numbers(1)
    # Longer than the suite's default back-off (2 s): the wait is the gateway's.
    await sms_sink.set_rules([reply(busy, 429, retry_after=4)])
    _, run_id, _ = await sms_broadcast(db, events, tenant, [busy])
    done = await completion(events, run_id)
    assert (done["counters"]["delivered"], done["counters"]["failed"]) == (1, 0)
    await deliveries.wait_for(lambda e: e["type"] == "delivery.delivered" and e["address"] == busy)
    [throttled] = [
        e for e in deliveries.records if e["type"] == "delivery.deferred" and e["address"] == busy
    ]
    # A slow-down is not the message's fault: no attempt is counted against it.
    assert (throttled["waiting_for"], throttled["attempts"], throttled["provider_code"]) == (
        "throttled",
        0,
        429,
    )
    # Due 4 s after the reply, which came a moment before the event: not the suite's 2 s.
    asked_at, due = at(throttled["occurred_at"]), at(throttled["due_at"])
    assert due - asked_at > timedelta(seconds=3)
    [sent] = await sms_sink.messages({busy})
    assert at(sent["received_at"]) >= due - timedelta(seconds=0.05)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(403, "provider_error"), (422, "invalid_address"), (400, "invalid_address")],
)
async def test_a_refusal_fails_at_once_with_a_manual_action(
    db: asyncpg.Pool,
    events: EventLog,
    sms_sink: SmsSink,
    status: int,
    reason: str,
) -> None:
    tenant, _ = fresh_tenant()
    refused, fine = numbers(2)
    # Once only: a retry would be accepted and show as delivered.
    await sms_sink.set_rules([reply(refused, status)])
    broadcast_id, run_id, _ = await sms_broadcast(db, events, tenant, [refused, fine])
    done = await completion(events, run_id)
    assert done["outcome"] == "partially_successful"
    counters = done["counters"]
    assert (counters["delivered"], counters["failed"], counters["pending_retry"]) == (1, 1, 0)
    assert counters["failed_by_reason"] == {reason: 1}
    assert [m["to"] for m in await sms_sink.messages({refused, fine})] == [fine]

    listed = await ask(events, tenant, {"type": "list_actions", "broadcast_id": broadcast_id})
    assert [
        (a["contract_id"], a["channel"], a["address"], a["reason"], a["state"])
        for a in listed["actions"]
    ] == [("C-0", "sms", refused, reason, "open")]
    assert f"injected failure {status}" in listed["actions"][0]["detail"]


async def received_times(sink: SmsSink, phones: set[str]) -> list[datetime]:
    return sorted(at(m["received_at"]) for m in await sink.messages(phones))


async def test_the_tenants_sms_rate_spaces_the_messages(
    db: asyncpg.Pool, events: EventLog, sms_sink: SmsSink
) -> None:
    tenant, _ = fresh_tenant()
    phones = numbers(12)
    rate = 2.0
    _, run_id, began = await sms_broadcast(db, events, tenant, phones, {"sms_per_second": rate})
    done = await completion(events, run_id)
    assert done["counters"]["delivered"] == len(phones)
    times = await received_times(sms_sink, set(phones))
    assert len(times) == len(phones)
    # The bucket holds one second of tokens (the burst); every other message waits for its
    # token: the last one leaves at least (12 - 2) / 2 = 5 s after the run started.
    least = (len(phones) - rate) / rate
    assert (times[-1] - at(began["occurred_at"])).total_seconds() >= least - 0.05


async def test_a_lower_sms_rate_applies_to_a_broadcast_already_running(
    db: asyncpg.Pool, events: EventLog, sms_sink: SmsSink
) -> None:
    tenant, _ = fresh_tenant()
    phones = numbers(30)
    fast, slow = 6.0, 2.0
    _, run_id, _ = await sms_broadcast(db, events, tenant, phones, {"sms_per_second": fast})
    async with asyncio.timeout(60):
        while not await sms_sink.messages(set(phones)):
            await asyncio.sleep(0.1)
    lowered = {**OPEN_ALL_WEEK, "sms_per_second": slow}
    asked = datetime.now(UTC)  # the new rate applies after this
    configured = await configure(events, tenant, lowered)
    assert configured["type"] == "tenant.configured", configured
    # The moment the shared bucket has the new rate: every token taken after it comes at `slow`.
    await rate_applied(db, tenant, slow)
    changed = datetime.now(UTC)

    done = await completion(events, run_id, timeout=120)
    assert done["counters"]["delivered"] == len(phones)
    times = await received_times(sms_sink, set(phones))
    assert len(times) == len(phones)
    # A token taken at the old rate waits at most 2 s (the dispatcher's pacing budget), so
    # whatever arrives more than 4 s after the change drew its token at the new rate, from a
    # bucket that holds one second of tokens at most: `slow` a second after the change.
    late = [t for t in times if t > changed + timedelta(seconds=4)]
    assert late, "everything was sent within 4 s of the change: the old rate still applied"
    assert (late[-1] - asked).total_seconds() >= (len(late) - 1) / slow - 0.05


async def gateway_posts(path: str, body: dict[str, Any]) -> None:
    """A post of the gateway to the stack's dispatcher, signed as the gateway signs it (with
    the development token the stack runs on)."""
    raw = json.dumps(body).encode()
    headers = {SIGNATURE_HEADER: signature(DEVELOPMENT_SMS_GATEWAY_TOKEN.encode(), raw)}
    async with httpx.AsyncClient(base_url=DISPATCHER) as http:
        response = await http.post(path, content=raw, headers=headers)
    assert response.status_code == 200, response.text


async def test_a_receipt_confirms_an_sms_and_a_stop_reply_suppresses_its_number(
    db: asyncpg.Pool, events: EventLog, sms_sink: SmsSink
) -> None:
    tenant, _ = fresh_tenant()
    phone, other = numbers(2)
    broadcast_id, run_id, _ = await sms_broadcast(db, events, tenant, [phone, other])
    assert (await completion(events, run_id))["counters"]["delivered"] == 2
    references = {m["to"]: m["reference"] for m in await sms_sink.messages({phone, other})}

    # The handset got one, and the other never did: confirmed, and failed with its action.
    await gateway_posts(
        "/webhooks/sms/receipts", {"reference": references[phone], "status": "delivered"}
    )
    await gateway_posts(
        "/webhooks/sms/receipts",
        {
            "reference": references[other],
            "status": "failed",
            "code": 30005,
            "detail": "unknown handset",
            "permanent": True,  # the number is at fault: suppressed at once
        },
    )
    progressed = await events.wait_for(
        lambda e: (
            e["type"] == "broadcast.progressed"
            and e.get("run_id") == run_id
            and e["counters"]["hard_bounced"] == 1
        )
    )
    assert (progressed["counters"]["delivered"], progressed["counters"]["failed"]) == (1, 1)
    async with asyncio.timeout(30):
        while (
            await db.fetchval("SELECT confirmed FROM tracker.runs WHERE run_id = $1", UUID(run_id))
            != 1
        ):
            await asyncio.sleep(0.1)
    # Each message says whether its handset confirmed it.
    listed = await ask(events, tenant, {"type": "list_messages", "broadcast_id": broadcast_id})
    seen = {m["address"]: (m["state"], m["confirmed_at"] is not None) for m in listed["messages"]}
    assert seen == {phone: ("delivered", True), other: ("failed", False)}

    # « Arrêt » from the number, in any case and spacing: never texted again.
    await gateway_posts(
        "/webhooks/sms/replies", {"from": phone, "to": "+15550000000", "text": "  arrÊt "}
    )
    suppressed = await events.wait_for(
        lambda e: (
            e["type"] == "contact.suppressed"
            and e["tenant_id"] == tenant
            and e["reason"] == "sms_stop"
        )
    )
    assert (suppressed["channel"], suppressed["address"]) == ("sms", phone)
    answer = await ask(events, tenant, {"type": "estimate_broadcast", "channels": ["sms"]})
    assert answer["suppressed_addresses"] == {"sms": 2}  # the STOP and the failed handset
