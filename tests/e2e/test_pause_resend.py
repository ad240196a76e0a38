"""Pause and resume (nobody gets the message twice), the auto-pause on failures, resend as a new
run, the grace delay and editing a draft, through the running stack."""

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    ask,
    broadcast_state,
    completed,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
    until_completed,
)
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


async def audience(db: asyncpg.Pool, tenant: str, domain: str, size: int) -> None:
    await load(
        db,
        [
            contract(
                tenant, f"C-{i}", status="active", building="residential", emails=[f"c{i}@{domain}"]
            )
            for i in range(size)
        ],
    )


def progressed(event: dict[str, Any], broadcast_id: str) -> bool:
    return bool(event["type"] == "broadcast.progressed" and event["broadcast_id"] == broadcast_id)


async def test_pause_then_resume_delivers_every_message_exactly_once(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    size = 200
    await configure(events, tenant, {**OPEN_ALL_WEEK, "email_per_second": 20})
    await audience(db, tenant, domain, size)
    broadcast_id = await create_and_start(events, french_only(tenant))
    await events.wait_for(
        lambda e: progressed(e, broadcast_id) and e["counters"]["delivered"] >= 20
    )
    pause = {"type": "pause_broadcast", "broadcast_id": broadcast_id}
    paused = await ask(events, tenant, pause, request_id=f"pause-{broadcast_id}")
    assert paused["type"] == "broadcast.accepted" and paused["run_id"], paused
    notice = await events.wait_for(
        lambda e: e["type"] == "broadcast.paused" and e["broadcast_id"] == broadcast_id
    )
    assert (notice["reason"], notice["requested_by"]) == ("requested", "user-42")
    assert await broadcast_state(db, broadcast_id) == "paused"

    # What was in flight lands; then every message is delivered or held, and what the sink
    # holds is what was delivered.
    quiet = await events.wait_for(
        lambda e: (
            progressed(e, broadcast_id)
            and e["counters"]["delivered"] + e["counters"]["paused"] == size
        )
    )
    held_at = await smtp_sink.count(domain)
    assert held_at == quiet["counters"]["delivered"] < size

    again = await ask(events, tenant, pause, request_id=f"pause-{broadcast_id}")
    assert again["type"] == "broadcast.accepted"  # a replay: answered, nothing changes
    resume = {"type": "resume_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, resume))["type"] == "broadcast.accepted"
    # The first pause replayed after the resume must not pause it again.
    assert (await ask(events, tenant, pause, request_id=f"pause-{broadcast_id}"))[
        "type"
    ] == "broadcast.accepted"
    assert await broadcast_state(db, broadcast_id) == "running"

    done = await completed(events, broadcast_id)
    assert done["outcome"] == "fully_successful"
    assert done["counters"]["delivered"] == size
    received = Counter(r for m in await smtp_sink.messages(domain) for r in m.rcpt_tos)
    assert len(received) == size and set(received.values()) == {1}  # all, once each
    assert await broadcast_state(db, broadcast_id) == "completed"
    late = await ask(events, tenant, resume)
    assert (late["reason"], late["field"]) == ("not_paused", "broadcast_id")


async def test_a_broadcast_pauses_itself_when_the_relay_refuses_everything(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    size = 100
    # Slow enough that a loaded machine, taking 20 s to apply the pause, still stops before half.
    settings = {
        **OPEN_ALL_WEEK,
        "email_per_second": 2,
        "auto_pause": {"failure_ratio": 0.5, "window_seconds": 60, "min_messages": 10},
    }
    await configure(events, tenant, settings)
    await audience(db, tenant, domain, size)
    await smtp_sink.set_rules(
        [
            {
                "address": f"@{domain}",
                "stage": "rcpt",
                "code": 550,
                "message": "5.7.1 Relaying denied",
                "times": None,
            }
        ]
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    notice = await events.wait_for(
        lambda e: e["type"] == "broadcast.paused" and e["broadcast_id"] == broadcast_id
    )
    assert (notice["reason"], notice["requested_by"]) == ("failure_ratio", "user-42")
    assert "messages failed within 60 s" in notice["detail"]
    assert await broadcast_state(db, broadcast_id) == "paused"
    # Messages already handed over when the pause arrived settle: every message has failed or
    # is held, so nothing more can fail.
    quiet = await events.wait_for(
        lambda e: (
            progressed(e, broadcast_id)
            and e["counters"]["failed"] + e["counters"]["paused"] == size
        )
    )
    failed = quiet["counters"]["failed"]
    assert 10 <= failed < size // 2  # it stopped instead of burning the audience

    # The relay is fixed; the operator resumes and the rest is delivered.
    await smtp_sink.clear_rules()
    await configure(events, tenant, {**settings, "email_per_second": 50})
    resume = {"type": "resume_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, resume))["type"] == "broadcast.accepted"
    done = await completed(events, broadcast_id)
    assert done["outcome"] == "partially_successful"
    assert (done["counters"]["failed"], done["counters"]["delivered"]) == (failed, size - failed)
    assert len(await smtp_sink.messages(domain)) == size - failed


async def test_resend_is_a_new_run_to_everyone_or_only_to_the_failures(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await audience(db, tenant, domain, 3)
    gone = f"c1@{domain}"
    await smtp_sink.set_rules(
        [
            {
                "address": gone,
                "stage": "rcpt",
                "code": 550,
                "message": "5.1.1 No such user",
                "times": 1,
            }
        ]
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    first = await completed(events, broadcast_id)
    assert (first["counters"]["delivered"], first["counters"]["failed"]) == (2, 1)

    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    refused = await ask(events, tenant, start)
    assert refused["reason"] == "already_started" and "resend" in refused["message"]

    resend_failed = {"type": "resend_broadcast", "broadcast_id": broadcast_id, "only_failed": True}
    while (answer := await ask(events, tenant, resend_failed))["type"] != "broadcast.accepted":
        # Completion and failures reach targeting on two topics: it says when it is not ready.
        assert answer["reason"] in ("not_finished",), answer
        await asyncio.sleep(0.5)
    second_run = answer["run_id"]
    assert second_run != first["run_id"]
    second = await completed(events, broadcast_id, second_run)
    assert second["counters"]["messages_targeted"] == 1
    assert second["counters"]["delivered"] == 1  # the rule answered once; the address is back
    to_gone = [m for m in await smtp_sink.messages(domain) if gone in m.rcpt_tos]
    assert len(to_gone) == 1

    everyone = {"type": "resend_broadcast", "broadcast_id": broadcast_id}
    await until_completed(db, broadcast_id)
    third_run = (await ask(events, tenant, everyone))["run_id"]
    too_soon = await ask(events, tenant, everyone)
    assert too_soon["reason"] == "not_finished"
    third = await completed(events, broadcast_id, third_run)
    assert third["counters"]["delivered"] == third["counters"]["messages_targeted"] == 3
    assert len({first["run_id"], second_run, third_run}) == 3
    received = Counter(r for m in await smtp_sink.messages(domain) for r in m.rcpt_tos)
    assert received == {f"c0@{domain}": 2, gone: 2, f"c2@{domain}": 2}
    await until_completed(db, broadcast_id)
    nothing = await ask(events, tenant, resend_failed)
    assert (nothing["reason"], nothing["field"]) == ("nothing_to_resend", "only_failed")


async def test_a_start_cancelled_within_the_grace_delay_sends_nothing(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    # Long enough for a cancel to arrive within it on a busy machine.
    grace = 10
    await configure(events, tenant, {**OPEN_ALL_WEEK, "grace_seconds": grace})
    await audience(db, tenant, domain, 5)

    cancelled_id = await create_and_start(events, french_only(tenant))
    await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == cancelled_id
    )
    cancel = {"type": "cancel_broadcast", "broadcast_id": cancelled_id}
    cancel_request = f"cancel-{cancelled_id}"
    assert (await ask(events, tenant, cancel, cancel_request))["type"] == "broadcast.accepted"
    stopped = await completed(events, cancelled_id)
    assert stopped["outcome"] == "cancelled"
    assert stopped["counters"]["messages_targeted"] == 0
    assert len(await smtp_sink.messages(domain)) == 0

    # Sent after all, on purpose; the old cancel, replayed within the new grace delay, is
    # answered and changes nothing.
    resend = {"type": "resend_broadcast", "broadcast_id": cancelled_id}
    resent = await ask(events, tenant, resend)
    assert resent["type"] == "broadcast.accepted", resent
    assert (await ask(events, tenant, cancel, cancel_request))["type"] == "broadcast.accepted"
    second = await completed(events, cancelled_id, resent["run_id"])
    assert (second["outcome"], second["counters"]["delivered"]) == ("fully_successful", 5)

    sent_id = await create_and_start(events, french_only(tenant))
    began = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == sent_id
    )
    done = await completed(events, sent_id)
    assert done["counters"]["delivered"] == 5
    first_out = await db.fetchval(
        "SELECT min(finished_at) FROM dispatcher.deliveries_v1 WHERE broadcast_id = $1::uuid",
        sent_id,
    )
    waited = (first_out - datetime.fromisoformat(began["occurred_at"])).total_seconds()
    assert waited >= grace - 0.1
    assert len(await smtp_sink.messages(domain)) == 10  # the resend's 5 and these 5


async def test_a_draft_can_be_edited_until_it_starts(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await audience(db, tenant, domain, 4)
    create = french_only(tenant)
    await publish_json("broadcast.requests", [(tenant, create)])
    broadcast_id = (await events.wait_for(lambda e: e.get("request_id") == create["request_id"]))[
        "broadcast_id"
    ]
    edited = french_only(
        tenant,
        name="Surcharge, zone C-1 et C-3",
        criteria=[{"field": "contract_id", "values": ["C-1", "C-3"]}],
    )
    edited["content"]["email"]["fr"]["subject"] = "Nouveau sujet {{ contract.number }}"
    definition = {k: v for k, v in edited.items() if k not in ("type", "request_id", "tenant_id")}
    update = {"type": "update_broadcast", "broadcast_id": broadcast_id, **definition}
    bad = {**update, "criteria": [{"field": "colour", "values": ["red"]}]}
    refused = await ask(events, tenant, bad)
    assert (refused["reason"], refused["field"]) == ("unknown_criterion", "criteria[0].field")
    first_update = f"update-{broadcast_id}"
    assert (await ask(events, tenant, update, first_update))["type"] == "broadcast.accepted"
    renamed = {"type": "rename_broadcast", "broadcast_id": broadcast_id, "name": "Final"}
    assert (await ask(events, tenant, renamed))["type"] == "broadcast.accepted"
    # Replaying the update does not undo the rename that came after it.
    assert (await ask(events, tenant, update, first_update))["type"] == "broadcast.accepted"
    assert (
        await db.fetchval(
            "SELECT name FROM targeting.broadcasts_v1 WHERE broadcast_id = $1::uuid", broadcast_id
        )
        == "Final"
    )

    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, start))["type"] == "broadcast.accepted"
    done = await completed(events, broadcast_id)
    assert done["counters"]["delivered"] == 2
    subjects = sorted(str(m.message["Subject"]) for m in await smtp_sink.messages(domain))
    assert subjects == ["Nouveau sujet C-1", "Nouveau sujet C-3"]
    late = await ask(events, tenant, update)
    assert (late["reason"], late["field"]) == ("already_started", "broadcast_id")
    reused = await ask(events, tenant, renamed, first_update)
    assert (reused["reason"], reused["field"]) == ("request_reused", "request_id")


async def test_an_old_configure_replayed_does_not_bring_old_settings_back(
    events: EventLog,
) -> None:
    tenant, _ = new_tenant()
    first = {"type": "configure_tenant", "settings": {"time_zone": "Europe/Paris"}}
    second = {"type": "configure_tenant", "settings": {"time_zone": "Asia/Tokyo"}}
    assert (await ask(events, tenant, first, f"conf-1-{tenant}"))["type"] == "tenant.configured"
    assert (await ask(events, tenant, second))["settings"]["time_zone"] == "Asia/Tokyo"
    replayed = await ask(events, tenant, first, f"conf-1-{tenant}")
    assert replayed["settings"]["time_zone"] == "Asia/Tokyo"
