"""What the platform reads while a broadcast runs: waiting messages and failures by reason."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from shared.events import WEEKDAYS
from tests.e2e.audience import (
    actions_of,
    ask,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
)
from tests.e2e.audience import new_tenant as fresh_tenant
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


async def start(db: asyncpg.Pool, log: EventLog, tenant: str, addresses: list[str]) -> str:
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate(addresses)
        ],
    )
    create = french_only(tenant)
    return await create_and_start(log, create)


def of(broadcast_id: str, kind: str) -> Any:
    return lambda e: e["type"] == kind and e["broadcast_id"] == broadcast_id


async def test_a_retried_message_shows_as_pending_then_delivered(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    busy = f"busy@{domain}"
    rule = {"address": busy, "stage": "rcpt", "code": 450, "message": "4.2.1 Mailbox busy"}
    await smtp_sink.set_rules([rule | {"times": 2, "action": "reply"}])
    broadcast_id = await start(db, events, tenant, [busy, f"fine@{domain}", f"gone@{domain}"])
    pending = await events.wait_for(
        lambda e: (
            of(broadcast_id, "broadcast.progressed")(e) and e["counters"]["pending_retry"] == 1
        )
    )
    assert pending["counters"]["waiting_window"] == 0
    completed = await events.wait_for(of(broadcast_id, "broadcast.completed"))
    counters = completed["counters"]
    assert (counters["delivered"], counters["pending_retry"], counters["failed"]) == (3, 0, 0)


async def test_failures_are_counted_by_reason(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    gone, bad = f"gone@{domain}", f"bad@{domain}"
    await smtp_sink.set_rules(
        [
            {"address": gone, "stage": "rcpt", "code": 550, "message": "5.1.1 User unknown"},
            {"address": bad, "stage": "rcpt", "code": 553, "message": "5.1.3 Bad syntax"},
        ]
    )
    broadcast_id = await start(db, events, tenant, [gone, bad, f"ok@{domain}"])
    completed = await events.wait_for(of(broadcast_id, "broadcast.completed"))
    assert completed["outcome"] == "partially_successful"
    assert completed["counters"]["failed_by_reason"] == {"refused": 1, "invalid_address": 1}


async def test_a_message_outside_its_window_waits_and_a_cancel_ends_it(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    # The day after tomorrow: still ahead even if midnight passes while the test runs.
    later = datetime.now(ZoneInfo("America/Toronto")) + timedelta(days=2)
    await configure(events, tenant, {"email_days": [WEEKDAYS[later.weekday()]]})
    broadcast_id = await start(db, events, tenant, [f"later@{domain}"])
    waiting = await events.wait_for(
        lambda e: (
            of(broadcast_id, "broadcast.progressed")(e) and e["counters"]["waiting_window"] == 1
        )
    )
    assert waiting["counters"]["delivered"] == 0
    due = await db.fetchval(
        "SELECT due_at FROM tracker.messages_v1 WHERE tenant_id = $1 AND state = 'waiting'", tenant
    )
    assert due.astimezone(ZoneInfo("America/Toronto")).date() == later.date()
    assert due > datetime.now(UTC)
    cancel = {
        "type": "cancel_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-42",
        "broadcast_id": broadcast_id,
    }
    await publish_json("broadcast.requests", [(tenant, cancel)])
    completed = await events.wait_for(of(broadcast_id, "broadcast.completed"))
    assert completed["outcome"] == "cancelled"
    counters = completed["counters"]
    assert (counters["cancelled"], counters["waiting_window"], counters["delivered"]) == (1, 0, 0)


async def test_actions_are_listed_sent_again_to_a_corrected_address_or_ignored(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    typo, gone = f"jean.tremblay@{domain}", f"gone@{domain}"
    await smtp_sink.set_rules(
        [
            {"address": a, "stage": "rcpt", "code": 550, "message": "5.1.1 User unknown"}
            for a in (typo, gone)
        ]
    )
    broadcast_id = await start(db, events, tenant, [typo, gone, f"ok@{domain}"])
    await events.wait_for(of(broadcast_id, "broadcast.completed"))

    listed = await ask(events, tenant, {"type": "list_actions", "broadcast_id": broadcast_id})
    actions = {a["address"]: a for a in listed["actions"]}
    assert set(actions) == {typo, gone}
    assert {a["state"] for a in actions.values()} == {"open"}
    assert actions[typo]["reason"] == "refused" and actions[typo]["contract_id"] == "C-0"

    corrected = f"jean.tremblay2@{domain}"
    send = {
        "type": "resolve_action",
        "action_id": actions[typo]["action_id"],
        "resolution": "send",
        "address": corrected,
    }
    resolved = await ask(events, tenant, send)
    assert (resolved["type"], resolved["state"]) == ("action.resolved", "sending")
    replayed = await ask(events, tenant, send, request_id=resolved["request_id"])
    assert replayed["run_id"] == resolved["run_id"]  # the same request twice: harmless
    ignore = {"type": "resolve_action", "action_id": actions[gone]["action_id"]}
    assert (await ask(events, tenant, ignore | {"resolution": "ignore"}))["state"] == "ignored"
    conflict = await ask(events, tenant, ignore | {"resolution": "send"})
    assert (conflict["type"], conflict["reason"]) == ("broadcast.rejected", "already_resolved")
    missing = await ask(events, tenant, ignore | {"action_id": 10**12, "resolution": "ignore"})
    assert missing["reason"] == "action_not_found"

    async with asyncio.timeout(30):
        while {a["action_id"]: a["state"] for a in await actions_of(events, tenant)}[
            actions[typo]["action_id"]
        ] != "sent":
            await asyncio.sleep(0.2)
    received = [m.rcpt_tos[0] for m in await smtp_sink.messages(domain)]
    assert sorted(received) == sorted([f"ok@{domain}", corrected])  # one new message
    listed = await ask(events, tenant, {"type": "list_actions", "state": "open"})
    assert listed["actions"] == []
    other = await ask(events, fresh_tenant()[0], {"type": "list_actions"})
    assert other["actions"] == []  # tenants never see each other's actions

    history = await ask(events, tenant, {"type": "contract_history", "contract_id": "C-0"})
    assert [(m["address"], m["state"]) for m in history["messages"]] == [
        (typo, "failed"),
        (corrected, "delivered"),
    ]
    assert {m["broadcast_id"] for m in history["messages"]} == {broadcast_id}
