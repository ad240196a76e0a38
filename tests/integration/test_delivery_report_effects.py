"""Delivery reports applied by the tracker's and targeting's stores, on a database of their own
(created and dropped here: the running stack's services and their schemas are left alone).
Counters exact under copies and replays; suppressed addresses out of targeting and estimates."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from deploy.local.stack import create_database, drop_database
from deploy.local.stack.postgres import postgres_url, provision_roles
from services.targeting import store as targeting
from services.targeting.audience import Estimate
from services.targeting.broadcasts import check_criteria
from services.targeting.suppressions import Suppressions
from services.tracker import store as tracker
from services.tracker.reports import Report
from shared.db import create_pool, migrate
from shared.events import (
    ContractUpserted,
    DeliveryBounced,
    DeliveryComplained,
    DeliveryConfirmed,
    DeliveryDeferred,
    MessageDelivered,
    ReenableContact,
    ReplyReceived,
)

pytestmark = pytest.mark.stack

DATABASE = "p19_report_effects"
SERVICES = Path(__file__).parents[2] / "services"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def database() -> Any:
    create_database(DATABASE)
    provision_roles(DATABASE)
    yield postgres_url(DATABASE)
    drop_database(DATABASE)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, size=4)  # with the services' JSON codecs
    for service in ("tracker", "targeting"):
        await migrate(pool, service, SERVICES / service / "migrations")
    yield pool
    await pool.close()


class Events:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, message: Any, *, key: bytes | None = None, **_: Any) -> None:
        self.published.append(message)


async def a_run(pool: asyncpg.Pool, tenant: str, messages: int) -> dict[str, Any]:
    run = {"tenant_id": tenant, "broadcast_id": uuid4(), "run_id": uuid4()}
    await pool.execute(
        """INSERT INTO tracker.runs (run_id, broadcast_id, tenant_id, requested_by, purpose,
                                     contracts_targeted, messages_targeted)
           VALUES ($1, $2, $3, 'u', 'broadcast', $4, $4)""",
        run["run_id"],
        run["broadcast_id"],
        tenant,
        messages,
    )
    return run


def message(
    run: dict[str, Any], contract: str, address: str, channel: str = "email"
) -> dict[str, Any]:
    return {
        **run,
        "recipient_id": uuid4(),
        "contract_id": contract,
        "channel": channel,
        "address": address,
    }


def hard(m: dict[str, Any], source: str = "dsn") -> DeliveryBounced:
    return DeliveryBounced(
        **m,
        kind="hard",
        status="5.1.1",
        diagnostic="no such user",
        source=source,
        reported_at=NOW,
    )


async def counters(pool: asyncpg.Pool, run: dict[str, Any]) -> asyncpg.Record:
    row = await pool.fetchrow(
        """SELECT state, outcome, delivered, failed, contracts_reached, contracts_not_reached,
                  hard_bounced, soft_bounced, complained, confirmed
           FROM tracker.run_counters_v1 WHERE run_id = $1""",
        run["run_id"],
    )
    assert row is not None
    return row


async def test_a_hard_bounce_fails_a_delivered_message_once_even_after_completion(
    pool: asyncpg.Pool,
) -> None:
    run = await a_run(pool, f"t-{uuid4().hex[:6]}", 2)
    ann, bob = message(run, "c1", "ann@example.com"), message(run, "c2", "bob@example.com")
    await tracker.record_deliveries(pool, [MessageDelivered(**ann), MessageDelivered(**bob)])
    await tracker.complete_finished(pool, [run["run_id"]])
    assert (await counters(pool, run))["outcome"] == "fully_successful"

    bounce = hard(ann)
    for copy in ([bounce], [bounce], [hard(ann, "ses")]):  # a replay, then the webhook's copy
        applied = await tracker.record_reports(pool, copy)
        assert applied.run_ids == {run["run_id"]}
    row = await counters(pool, run)
    assert dict(row) == {
        "state": "completed",
        "outcome": "partially_successful",
        "delivered": 1,
        "failed": 1,
        "contracts_reached": 1,
        "contracts_not_reached": 1,
        "hard_bounced": 1,
        "soft_bounced": 0,
        "complained": 0,
        "confirmed": 0,
    }
    failed = await pool.fetchrow(
        "SELECT state, reason, detail FROM tracker.messages WHERE recipient_id = $1",
        ann["recipient_id"],
    )
    assert dict(failed or {}) == {
        "state": "failed",
        "reason": "bounced",
        "detail": "5.1.1 no such user",
    }
    actions = await tracker.list_actions(pool, run["tenant_id"], None, "open", 10)
    assert [(a.address, a.reason) for a in actions] == [("ann@example.com", "bounced")]
    assert await tracker.announced_broadcasts(pool, [run["run_id"]]) == []
    await tracker.mark_completion_published(pool, run["run_id"])
    [view] = await tracker.announced_broadcasts(pool, [run["run_id"]])
    assert view.outcome == "partially_successful"
    assert (view.counters.delivered, view.counters.failed, view.counters.hard_bounced) == (1, 1, 1)
    assert view.counters.failed_by_reason == {"bounced": 1}


async def test_soft_bounces_complaints_and_receipts_are_counted_once_and_change_no_state(
    pool: asyncpg.Pool,
) -> None:
    run = await a_run(pool, f"t-{uuid4().hex[:6]}", 2)
    ann, sms = message(run, "c1", "ann@example.com"), message(run, "c2", "+15145550000", "sms")
    await tracker.record_deliveries(pool, [MessageDelivered(**ann), MessageDelivered(**sms)])
    reports: list[Report] = [
        DeliveryBounced(**ann, kind="soft", status="4.2.2", source="dsn", reported_at=NOW),
        DeliveryComplained(**ann, source="arf", reported_at=NOW),
        DeliveryConfirmed(**sms, source="sms_gateway", reported_at=NOW),
    ]
    first = await tracker.record_reports(pool, list(reports))
    again = await tracker.record_reports(pool, list(reports))
    assert len(first.recorded) == 3 and again.recorded == []
    row = await counters(pool, run)
    assert (row["delivered"], row["failed"]) == (2, 0)
    assert (row["soft_bounced"], row["complained"], row["confirmed"]) == (1, 1, 1)


async def test_a_bounce_before_its_delivery_still_ends_failed_and_a_waiting_one_waits(
    pool: asyncpg.Pool,
) -> None:
    run = await a_run(pool, f"t-{uuid4().hex[:6]}", 2)
    early, waiting = message(run, "c1", "ann@example.com"), message(run, "c2", "bob@example.com")
    await tracker.record_deferrals(
        pool,
        [
            DeliveryDeferred(
                **waiting, waiting_for="retry", due_at=NOW + timedelta(minutes=5), attempts=1
            )
        ],
    )
    await tracker.record_reports(pool, [hard(early), hard(waiting)])
    await tracker.record_deliveries(pool, [MessageDelivered(**early)])
    await tracker.record_deliveries(pool, [MessageDelivered(**early)])  # a copy
    row = await counters(pool, run)
    assert (row["delivered"], row["failed"], row["hard_bounced"]) == (0, 1, 2)
    states = await pool.fetch(
        "SELECT recipient_id, state FROM tracker.messages WHERE run_id = $1", run["run_id"]
    )
    assert {r["recipient_id"]: r["state"] for r in states} == {
        early["recipient_id"]: "failed",
        waiting["recipient_id"]: "waiting",
    }
    assert len(await tracker.list_actions(pool, run["tenant_id"], None, "open", 10)) == 1


async def test_the_worst_tenant_rates_and_the_per_tenant_view(pool: asyncpg.Pool) -> None:
    tenant = f"t-{uuid4().hex[:6]}"
    run = await a_run(pool, tenant, 4)
    sent = [message(run, f"c{n}", f"p{n}@example.com") for n in range(4)]
    await tracker.record_deliveries(pool, [MessageDelivered(**m) for m in sent])
    await tracker.record_reports(
        pool, [hard(sent[0]), DeliveryComplained(**sent[1], source="arf", reported_at=NOW)]
    )
    rates = await tracker.worst_report_rates(pool, 24, 4)
    assert rates.hard_bounce >= 0.25 and rates.complaint >= 0.25
    row = await pool.fetchrow(
        """SELECT accepted, hard_bounce_rate, complaint_rate
           FROM tracker.tenant_report_rates_v1 WHERE tenant_id = $1""",
        tenant,
    )
    assert dict(row or {}) == {"accepted": 4, "hard_bounce_rate": 0.25, "complaint_rate": 0.25}


def contract(tenant: str, number: str, email: str) -> ContractUpserted:
    return ContractUpserted.model_validate(
        {
            "tenant_id": tenant,
            "contract_id": number,
            "version": 1,
            "contract": {
                "number": number,
                "status": "active",
                "building_type": "residential",
                "client_name": "Client",
                "service_address": "1 rue des Érables",
                "emails": [{"address": email}],
                "phones": [{"address": "+15145550000"}],
            },
        }
    )


async def estimate(pool: asyncpg.Pool, tenant: str) -> Estimate:
    # As the estimate command starts it: every channel named, even at zero.
    found = Estimate(messages={"email": 0, "sms": 0})
    async with pool.acquire() as connection:
        async for rows in targeting.pages(connection, tenant, check_criteria([]), 0, 100):
            found.add(["email", "sms"], rows)
    return found


async def test_a_suppressed_address_is_left_out_until_re_enabled(pool: asyncpg.Pool) -> None:
    tenant, other = f"t-{uuid4().hex[:6]}", f"t-{uuid4().hex[:6]}"
    await targeting.apply_contract_changes(
        pool, [contract(tenant, "c1", "Ann@Example.com"), contract(other, "c1", "ann@example.com")]
    )
    events = Events()
    suppressions = Suppressions(lambda: pool, events, soft_bounces=3)
    run = {"tenant_id": tenant, "broadcast_id": uuid4(), "run_id": uuid4()}
    bounce = hard(message(run, "c1", "Ann@Example.com"))
    await suppressions.apply([bounce])
    await suppressions.apply([bounce])  # a redelivered batch announces nothing new
    assert [(e.type, e.reason, e.address) for e in events.published] == [
        ("contact.suppressed", "hard_bounce", "ann@example.com")
    ]
    mine = await estimate(pool, tenant)
    assert (mine.messages, mine.suppressed_addresses) == (
        {"email": 0, "sms": 1},
        {"email": 1, "sms": 0},
    )
    # Another tenant's contract with the same address is untouched.
    assert (await estimate(pool, other)).messages == {"email": 1, "sms": 1}
    # The platform's next upsert does not bring it back.
    await targeting.apply_contract_changes(pool, [contract(tenant, "c1", "ann@example.com")])
    assert (await estimate(pool, tenant)).suppressed_addresses["email"] == 1

    command = ReenableContact(
        tenant_id=tenant,
        request_id="r-1",
        requested_by="ops",
        channel="email",
        address="ANN@example.com",
        reason="customer fixed the mailbox",
    )
    assert (await suppressions.reenable(command)).was_suppressed
    assert (await suppressions.reenable(command)).was_suppressed  # a replay: the same answer
    assert (await estimate(pool, tenant)).messages == {"email": 1, "sms": 1}
    # The old report, replayed, does not suppress it again.
    await suppressions.apply([bounce])
    assert (await estimate(pool, tenant)).messages == {"email": 1, "sms": 1}
    history = await pool.fetchrow(
        "SELECT requested_by, note, reason FROM targeting.reenables WHERE tenant_id = $1",
        tenant,
    )
    assert dict(history or {}) == {
        "requested_by": "ops",
        "note": "customer fixed the mailbox",
        "reason": "hard_bounce",
    }


async def test_soft_bounces_in_a_row_and_a_stop_reply_suppress(pool: asyncpg.Pool) -> None:
    tenant = f"t-{uuid4().hex[:6]}"
    await targeting.apply_contract_changes(pool, [contract(tenant, "c1", "ann@example.com")])
    events = Events()
    suppressions = Suppressions(lambda: pool, events, soft_bounces=3)

    def soft(n: int) -> tuple[MessageDelivered, DeliveryBounced]:
        run = {"tenant_id": tenant, "broadcast_id": uuid4(), "run_id": uuid4()}
        m = message(run, "c1", "ann@example.com")
        at = NOW + timedelta(hours=n)
        return (
            MessageDelivered(**m, occurred_at=at),
            DeliveryBounced(**m, kind="soft", source="dsn", reported_at=at + timedelta(minutes=1)),
        )

    first, second, clean, third, fourth = soft(1), soft(2), soft(3), soft(4), soft(5)
    await suppressions.apply([first[0], first[1]])
    await suppressions.apply([second[0], second[1], clean[0]])  # the third is not bounced
    await suppressions.apply([third[0], third[1]])
    assert events.published == []  # 2 in a row, then a clean one, then 1
    await suppressions.apply([fourth[0], fourth[1]])
    assert events.published == []  # 2 in a row since the clean one
    fifth = soft(6)
    await suppressions.apply([fifth[0], fifth[1]])
    assert [(e.reason, e.recipient_id) for e in events.published] == [
        ("soft_bounces", fifth[1].recipient_id)
    ]

    run = {"tenant_id": tenant, "broadcast_id": uuid4(), "run_id": uuid4()}
    stop = ReplyReceived(
        **message(run, "c1", "+15145550000", "sms"), text=" Arrêt ! ", reported_at=NOW
    )
    await suppressions.apply([stop])
    assert events.published[-1].reason == "sms_stop"
    assert (await estimate(pool, tenant)).messages == {"email": 0, "sms": 0}


async def test_a_transient_sms_failure_fails_its_message_and_only_a_streak_suppresses(
    pool: asyncpg.Pool,
) -> None:
    tenant = f"t-{uuid4().hex[:6]}"
    await targeting.apply_contract_changes(pool, [contract(tenant, "c1", "ann@example.com")])
    events = Events()
    suppressions = Suppressions(lambda: pool, events, soft_bounces=3)
    failed: list[DeliveryBounced] = []
    for n in (1, 2, 3):
        assert events.published == []  # the streak is n - 1 long
        assert (await estimate(pool, tenant)).messages == {"email": 1, "sms": 1}
        run = await a_run(pool, tenant, 1)
        sms = message(run, "c1", "+15145550000", "sms")
        at = NOW + timedelta(hours=n)
        delivered = MessageDelivered(**sms, occurred_at=at)
        failed.append(
            DeliveryBounced(
                **sms,
                kind="hard",
                status="4.0.0",  # Twilio's 30003: the handset is off
                diagnostic="Twilio undelivered, error 30003",
                source="sms_gateway",
                reported_at=at + timedelta(minutes=1),
            )
        )
        await tracker.record_deliveries(pool, [delivered])
        await tracker.record_reports(pool, [failed[-1]])
        await suppressions.apply([delivered, failed[-1]])
        # Each one fails its message, counted as a hard bounce, whatever the number's fate.
        row = await counters(pool, run)
        assert (row["delivered"], row["failed"], row["hard_bounced"]) == (0, 1, 1)
    states = await pool.fetch(
        "SELECT state, detail FROM tracker.messages WHERE recipient_id = ANY($1::uuid[])",
        [f.recipient_id for f in failed],
    )
    assert {(r["state"], r["detail"]) for r in states} == {
        ("failed", "4.0.0 Twilio undelivered, error 30003")
    }
    assert len(await tracker.list_actions(pool, tenant, None, "open", 10)) == 3
    # The third in a row suppresses the number, as soft bounces do; the email stays.
    assert [(e.reason, e.channel, e.address, e.recipient_id) for e in events.published] == [
        ("soft_bounces", "sms", "+15145550000", failed[-1].recipient_id)
    ]
    assert (await estimate(pool, tenant)).messages == {"email": 1, "sms": 0}
