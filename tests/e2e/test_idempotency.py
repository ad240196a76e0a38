"""Every command is idempotent by `request_id`: the same command published twice gets one
answer per publish, the same answer each time, and its effect happens once (one broadcast, one
run, one preview, one message per recipient), even when the replay comes after later commands.
"""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from tests.e2e.audience import OPEN_ALL_WEEK, ask, configure, contract, distinct, french_only, load
from tests.e2e.audience import new_tenant as fresh_tenant
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


def answers(log: EventLog, request_id: str) -> list[dict[str, Any]]:
    """The answers to a request: `broadcast.started` carries the request id of the start (or
    of the schedule) too, but it is not an answer."""
    return [
        e
        for e in log.records
        if e.get("request_id") == request_id and e["type"] != "broadcast.started"
    ]


async def publish_times(
    log: EventLog, tenant: str, body: dict[str, Any], times: int
) -> list[dict[str, Any]]:
    """Publish the very same command `times` times in a row (one request id) and return the
    answers that came for them, in order."""
    request_id: str = body["request_id"]
    before = len(answers(log, request_id))
    payload = {"tenant_id": tenant, "requested_by": "user-42", **body}
    await publish_json("broadcast.requests", [(tenant, payload)] * times)
    await log.wait_for(lambda _: len(answers(log, request_id)) >= before + times)
    return answers(log, request_id)[before:]


async def settle(log: EventLog, tenant: str) -> None:
    """Make sure every command published so far for the tenant was answered, and collect
    whatever else comes: a later command on the same key (the same partition of
    broadcast.requests) is answered only after them; answers keyed by broadcast id travel on
    other partitions, hence the drain after it."""
    estimate = await ask(log, tenant, {"type": "estimate_broadcast", "channels": ["email"]})
    assert estimate["type"] == "broadcast.estimated", estimate
    await log.drain(3)


def of(log: EventLog, kind: str, broadcast_id: str) -> list[dict[str, Any]]:
    return [e for e in log.records if e["type"] == kind and e.get("broadcast_id") == broadcast_id]


async def audience(db: asyncpg.Pool, tenant: str, domain: str, size: int) -> list[str]:
    addresses = [f"c{i}@{domain}" for i in range(size)]
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate(addresses)
        ],
    )
    return addresses


async def received(sink: SmtpSink, domain: str) -> Counter[str]:
    return Counter(r for m in await sink.messages(domain) for r in m.rcpt_tos)


def completed(broadcast_id: str, run_id: str) -> Any:
    return lambda e: (
        e["type"] == "broadcast.completed"
        and e["broadcast_id"] == broadcast_id
        and e["run_id"] == run_id
    )


async def until_finished(log: EventLog, tenant: str, broadcast_id: str) -> None:
    """Targeting learns of a completion a moment after the tracker announces it; asked for a
    resend to the failures of a run without any, it says `nothing_to_resend` once it knows
    (and `not_finished` before): a probe that changes nothing."""
    probe = {"type": "resend_broadcast", "broadcast_id": broadcast_id, "only_failed": True}
    async with asyncio.timeout(60):
        while (answer := await ask(log, tenant, probe))["reason"] != "nothing_to_resend":
            assert answer["reason"] == "not_finished", answer
            await asyncio.sleep(0.5)


async def test_a_replayed_create_and_start_make_one_broadcast_and_one_run(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    addresses = await audience(db, tenant, domain, 3)
    create = french_only(tenant)
    del create["tenant_id"]

    created = await publish_times(events, tenant, create, 2)
    assert [a["type"] for a in created] == ["broadcast.accepted"] * 2, created
    broadcast_id = created[0]["broadcast_id"]
    assert created[1]["broadcast_id"] == broadcast_id

    start = {
        "type": "start_broadcast",
        "request_id": f"start-{uuid4()}",
        "broadcast_id": broadcast_id,
    }
    started = await publish_times(events, tenant, start, 2)
    assert [a["type"] for a in started] == ["broadcast.accepted"] * 2, started
    run_id = started[0]["run_id"]
    assert run_id and started[1]["run_id"] == run_id
    done = await events.wait_for(completed(broadcast_id, run_id))
    assert (done["outcome"], done["counters"]["delivered"]) == ("fully_successful", 3)

    # Replayed once more after the run completed: the same answers, nothing new.
    again_created = await publish_times(events, tenant, create, 1)
    assert [(a["type"], a["broadcast_id"]) for a in again_created] == [
        ("broadcast.accepted", broadcast_id)
    ]
    again_started = await publish_times(events, tenant, start, 1)
    assert [(a["type"], a["run_id"]) for a in again_started] == [("broadcast.accepted", run_id)]

    await settle(events, tenant)
    assert len(answers(events, create["request_id"])) == 3  # one per publish
    assert len(answers(events, start["request_id"])) == 3
    assert {e["run_id"] for e in of(events, "broadcast.started", broadcast_id)} == {run_id}
    assert len(distinct(of(events, "broadcast.completed", broadcast_id))) == 1
    assert await received(smtp_sink, domain) == Counter(addresses)  # each one, once
    # Still one broadcast, completed: a new start is refused.
    restart = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, restart))["reason"] == "already_started"


async def test_replayed_renames_and_schedules_apply_once(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    addresses = await audience(db, tenant, domain, 2)
    created = await ask(events, tenant, french_only(tenant))
    broadcast_id = created["broadcast_id"]

    first_name = {
        "type": "rename_broadcast",
        "request_id": f"rename-{uuid4()}",
        "broadcast_id": broadcast_id,
        "name": "Premier nom",
    }
    renamed = await publish_times(events, tenant, first_name, 2)
    assert [a["type"] for a in renamed] == ["broadcast.accepted"] * 2, renamed
    assert {a["broadcast_id"] for a in renamed} == {broadcast_id}
    final_name = {"type": "rename_broadcast", "broadcast_id": broadcast_id, "name": "Nom final"}
    assert (await ask(events, tenant, final_name))["type"] == "broadcast.accepted"
    # The first rename replayed after the second is answered and does not bring its name back.
    late_rename = await publish_times(events, tenant, first_name, 1)
    assert [(a["type"], a["broadcast_id"]) for a in late_rename] == [
        ("broadcast.accepted", broadcast_id)
    ]

    # Far enough ahead that a slow round trip on a busy machine still schedules it ahead.
    at = datetime.now(UTC) + timedelta(seconds=8)
    schedule = {
        "type": "schedule_broadcast",
        "request_id": f"schedule-{uuid4()}",
        "broadcast_id": broadcast_id,
        "at": at.isoformat(),
    }
    scheduled = await publish_times(events, tenant, schedule, 2)
    assert [(a["type"], a["broadcast_id"]) for a in scheduled] == [
        ("broadcast.accepted", broadcast_id)
    ] * 2, scheduled
    began = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
    )
    assert began["request_id"] == schedule["request_id"]  # started as its scheduler asked
    done = await events.wait_for(completed(broadcast_id, began["run_id"]))
    assert done["counters"]["delivered"] == 2

    # The schedule replayed after the run: answered as before, and nothing starts again.
    late_schedule = await publish_times(events, tenant, schedule, 1)
    assert [(a["type"], a["broadcast_id"]) for a in late_schedule] == [
        ("broadcast.accepted", broadcast_id)
    ]
    await settle(events, tenant)
    assert len(answers(events, first_name["request_id"])) == 3
    assert len(answers(events, schedule["request_id"])) == 3
    assert {e["run_id"] for e in of(events, "broadcast.started", broadcast_id)} == {began["run_id"]}
    assert len(distinct(of(events, "broadcast.completed", broadcast_id))) == 1
    assert await received(smtp_sink, domain) == Counter(addresses)
    restart = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, restart))["reason"] == "already_started"
    # The run went out under the last name given, not the replayed one.
    history = await ask(events, tenant, {"type": "contract_history", "contract_id": "C-0"})
    assert [(m["broadcast_id"], m["broadcast_name"]) for m in history["messages"]] == [
        (broadcast_id, "Nom final")
    ]


async def test_a_replayed_resend_makes_one_new_run(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    addresses = await audience(db, tenant, domain, 2)
    created = await ask(events, tenant, french_only(tenant))
    broadcast_id = created["broadcast_id"]
    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    first_run = (await ask(events, tenant, start))["run_id"]
    await events.wait_for(completed(broadcast_id, first_run))
    await until_finished(events, tenant, broadcast_id)

    resend = {
        "type": "resend_broadcast",
        "request_id": f"resend-{uuid4()}",
        "broadcast_id": broadcast_id,
    }
    resent = await publish_times(events, tenant, resend, 2)
    assert [a["type"] for a in resent] == ["broadcast.accepted"] * 2, resent
    second_run = resent[0]["run_id"]
    assert second_run not in (None, first_run) and resent[1]["run_id"] == second_run
    done = await events.wait_for(completed(broadcast_id, second_run))
    assert done["counters"]["delivered"] == done["counters"]["messages_targeted"] == 2
    await until_finished(events, tenant, broadcast_id)

    # Replayed after its run completed: the same run again, not a third one.
    late = await publish_times(events, tenant, resend, 1)
    assert [(a["type"], a["run_id"]) for a in late] == [("broadcast.accepted", second_run)]
    await settle(events, tenant)
    assert len(answers(events, resend["request_id"])) == 3
    assert {e["run_id"] for e in of(events, "broadcast.started", broadcast_id)} == {
        first_run,
        second_run,
    }
    assert len(distinct(of(events, "broadcast.completed", broadcast_id))) == 2
    assert await received(smtp_sink, domain) == Counter(addresses * 2)  # one per run


async def test_a_replayed_preview_sends_one_email(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = fresh_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await audience(db, tenant, domain, 3)
    created = await ask(events, tenant, french_only(tenant))
    broadcast_id = created["broadcast_id"]
    me = f"moi@{domain}"
    preview = {
        "type": "preview_broadcast",
        "request_id": f"preview-{uuid4()}",
        "broadcast_id": broadcast_id,
        "to": me,
        "contract_id": "C-1",
    }
    accepted = await publish_times(events, tenant, preview, 2)
    assert [a["type"] for a in accepted] == ["broadcast.accepted"] * 2, accepted
    run_id = accepted[0]["run_id"]
    assert run_id and accepted[1]["run_id"] == run_id
    previewed = await events.wait_for(
        lambda e: e["type"] == "broadcast.previewed" and e["run_id"] == run_id
    )
    assert (previewed["delivered"], previewed["address"]) == (True, me)

    # Replayed once its email went out: the same preview run, nothing sent again.
    late = await publish_times(events, tenant, preview, 1)
    assert [(a["type"], a["run_id"]) for a in late] == [("broadcast.accepted", run_id)]
    await settle(events, tenant)
    assert len(answers(events, preview["request_id"])) == 3
    # One notice: a copy may be published (two handlers settling the run at once), with the
    # same event id, which readers drop.
    assert len(distinct(of(events, "broadcast.previewed", broadcast_id))) == 1
    mails = await smtp_sink.messages(domain)
    assert [(m.rcpt_tos, str(m.message["Subject"])) for m in mails] == [
        ([me], "Surcharge pour excédent de neige — C-1")
    ]
    # The broadcast is still the draft it was: a preview starts nothing.
    assert of(events, "broadcast.started", broadcast_id) == []
