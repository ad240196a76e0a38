"""No record, template or command stops a consumer: each gets its own outcome (`rejected`, a
failed message with its manual action, or a dead letter), and another tenant's canary is
answered or delivered right after it, through the real broker and database."""

import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    actions_of,
    ask,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, publish_json, publish_raw

pytestmark = pytest.mark.stack

SERVICE_PORTS = {"targeting": 9101, "composer": 9102, "dispatcher": 9103, "tracker": 9104}
# Once a hostile record is handled, the next one of another tenant is not held behind it.
CANARY_SECONDS = 30


async def canary(log: EventLog) -> None:
    """Another tenant's commands, to targeting and to the tracker, are answered at once; every
    service is alive."""
    tenant, _ = new_tenant()
    estimated = await ask(log, tenant, {"type": "estimate_broadcast", "channels": ["email"]})
    assert estimated["type"] == "broadcast.estimated", estimated
    listed = await ask(log, tenant, {"type": "list_actions"})
    assert listed["type"] == "actions.listed", listed
    async with httpx.AsyncClient(timeout=10) as http:
        for name, port in SERVICE_PORTS.items():
            assert (await http.get(f"http://127.0.0.1:{port}/health")).is_success, name


def keyed(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["key"] == key


def completed_event(broadcast_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id


def create(tenant: str, **changes: Any) -> dict[str, Any]:
    command = french_only(tenant)
    command.update(changes)
    return command


COMMANDS: dict[str, Callable[[str], dict[str, Any]]] = {
    "nul in a name": lambda t: create(t, name="Avis\x00"),
    "nul in requested_by": lambda t: create(t, requested_by="u\x00"),
    "nul in a criteria value": lambda t: create(
        t, criteria=[{"field": "status", "values": ["active\x00"]}]
    ),
    "nul in a link": lambda t: {
        "type": "configure_tenant",
        "settings": {"links": {"payment": "https://p.example/\x00"}},
    },
    "nul in a contract id": lambda t: {
        "type": "preview_broadcast",
        "broadcast_id": str(uuid4()),
        "to": "moi@x.example",
        "contract_id": "C-\x00",
    },
    "a subject nested 75 deep": lambda t: create(
        t,
        content={
            "email": {
                "fr": {"subject": "{{ " + "(" * 75 + "1" + ")" * 75 + " }}", "html": "<p>x</p>"}
            }
        },
    ),
    "a schedule in the year 9999": lambda t: {
        "type": "schedule_broadcast",
        "broadcast_id": str(uuid4()),
        "at": "9999-12-31T23:59:59",
    },
    "an action id of 2^63": lambda t: {
        "type": "resolve_action",
        "action_id": 2**63,
        "resolution": "ignore",
    },
    "nul in a history's contract id": lambda t: {
        "type": "contract_history",
        "contract_id": "C-\x00",
    },
}


@pytest.mark.parametrize("case", list(COMMANDS))
async def test_a_hostile_command_gets_one_answer_and_the_next_is_served(
    events: EventLog, case: str
) -> None:
    tenant, _ = new_tenant()
    request_id = f"req-{uuid4()}"
    body = {**COMMANDS[case](tenant), "request_id": request_id}
    answer = await ask(events, tenant, body)
    assert answer["type"] == "broadcast.rejected", answer
    assert answer["reason"] in ("invalid_field", "invalid_template"), answer
    assert answer["field"], answer
    await canary(events)
    assert [e for e in events.records if e.get("request_id") == request_id] == [answer]


def raw_command(fields: str) -> bytes:
    return ('{"type": "start_broadcast", "requested_by": "u", ' + fields + "}").encode()


RAW: dict[str, bytes] = {
    "json nested 1000 deep": b"[" * 1000 + b"]" * 1000,
    "a lone surrogate in request_id": raw_command(
        '"tenant_id": "t1", "request_id": "r\\ud800", "broadcast_id": "x"'
    ),
    "a lone surrogate in tenant_id": raw_command(
        '"tenant_id": "t\\udfff", "request_id": "r1", "broadcast_id": "x"'
    ),
    "a lone surrogate in type": b'{"type": "start\\ud800", "tenant_id": "t1", "request_id": "r"}',
    "a 600 KB field name": raw_command(
        '"tenant_id": "t1", "request_id": "r", "' + "f" * 600_000 + '": 1'
    ),
    "a 600 KB type": ('{"type": "' + "t" * 600_000 + '", "request_id": "r"}').encode(),
}


@pytest.mark.parametrize("case", list(RAW))
async def test_an_unreadable_command_is_rejected_within_bounds(events: EventLog, case: str) -> None:
    await publish_raw("broadcast.requests", [(b"hostile", RAW[case])])
    answer = await events.wait_for(lambda e: e["type"] == "broadcast.rejected")
    assert answer["reason"] in ("invalid_json", "invalid_field"), answer
    assert len(json.dumps(answer)) < 10_000
    await canary(events)


async def test_a_hostile_contract_record_is_dead_lettered_within_bounds(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, _ = new_tenant()
    letters = await EventLog("broadcast.dead-letters").open()
    try:
        key = f"{tenant}:C-1"
        await publish_raw("audience.contracts", [(key.encode(), b"\x01" * 200_000)])
        nul = contract(tenant, "C-2", status="active\x00", building="residential", emails=[])
        await publish_json("audience.contracts", [(f"{tenant}:C-2", nul)])
        await load(
            db,
            [contract(tenant, "C-3", status="active", building="residential", emails=[])],
        )
        found = [await letters.wait_for(keyed(k)) for k in (key, f"{tenant}:C-2")]
    finally:
        await letters.close()
    assert all(len(json.dumps(letter)) < 10_000 for letter in found)
    await canary(events)


TEMPLATES = {
    "division by zero": "{{ 1/0 }}",
    "an include": "{% include 'x' %}",
    "a type error": "{{ 1 + 'a' }}",
    "a huge range": "{{ range(10**9) | list | length }}",
    "a recursive macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "a 200 MB body": "{{ 'x' * 10**8 }}",
    "a 5000-digit number": "{{ 10**5000 }}",
    "three nested loops": "{% for a in range(9999) %}{% for b in range(9999) %}"
    "{% for c in range(9999) %}{% endfor %}{% endfor %}{% endfor %}",
}


async def test_absurd_templates_fail_their_messages_and_another_broadcast_completes(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    # A well-behaved tenant's broadcast runs while the poisoned ones are created and started.
    good, good_domain = new_tenant()
    await configure(events, good, {**OPEN_ALL_WEEK, "email_per_second": 20})
    await load(
        db,
        [
            contract(
                good,
                f"C-{i}",
                status="active",
                building="residential",
                emails=[f"c{i}@{good_domain}"],
            )
            for i in range(40)
        ],
    )
    good_id = await create_and_start(events, french_only(good))

    poisoned: dict[str, tuple[str, str]] = {}
    for case, html in TEMPLATES.items():
        tenant, domain = new_tenant()
        await load(
            db,
            [
                contract(
                    tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"]
                )
            ],
        )
        command = french_only(tenant)
        command["content"]["email"]["fr"]["html"] = html
        created = await ask(events, tenant, command)
        if created["type"] == "broadcast.rejected":  # refused at creation: fine, and final
            assert created["reason"] == "invalid_template", (case, created)
            continue
        start = {"type": "start_broadcast", "broadcast_id": created["broadcast_id"]}
        await configure(events, tenant, OPEN_ALL_WEEK)
        assert (await ask(events, tenant, start))["type"] == "broadcast.accepted"
        poisoned[case] = (tenant, created["broadcast_id"])

    for case, (tenant, broadcast_id) in poisoned.items():
        done = await events.wait_for(completed_event(broadcast_id))
        assert (done["counters"]["failed"], done["outcome"]) == (1, "failed"), case
        (action,) = await actions_of(events, tenant, broadcast_id)
        assert action["reason"] == "render_failed" and len(action["detail"]) <= 200, case

    completed = await events.wait_for(completed_event(good_id), timeout=120)
    assert (completed["counters"]["delivered"], completed["outcome"]) == (40, "fully_successful")
    assert await smtp_sink.count(good_domain) == 40
    await canary(events)


async def test_one_recipient_that_cannot_be_rendered_fails_alone_not_with_its_page(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    """Targeting streams recipients in pages of 32; the template fails for one contract of a
    page, and only that contract's message fails."""
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await load(
        db,
        [
            contract(
                tenant, f"C-{i}", status="active", building="residential", emails=[f"c{i}@{domain}"]
            )
            for i in range(40)
        ],
    )
    command = french_only(tenant)
    command["content"]["email"]["fr"]["html"] = (
        "{% if contract.number == 'C-7' %}{{ 1/0 }}{% endif %}Bonjour {{ contract.number }}"
    )
    broadcast_id = await create_and_start(events, command)
    done = await events.wait_for(completed_event(broadcast_id))
    assert (done["counters"]["delivered"], done["counters"]["failed"]) == (39, 1)
    assert done["outcome"] == "partially_successful"
    (action,) = await actions_of(events, tenant, broadcast_id)
    assert (action["reason"], action["contract_id"]) == ("render_failed", "C-7")
    received = await smtp_sink.messages(domain)
    assert len(received) == 39
    assert f"c7@{domain}" not in {to for m in received for to in m.rcpt_tos}


async def test_a_message_the_dispatcher_fails_on_becomes_an_unknown_outcome(
    events: EventLog,
) -> None:
    tenant, _ = new_tenant()
    recipient_id = str(uuid4())
    message = {
        "type": "message.rendered",
        "tenant_id": tenant,
        "broadcast_id": str(uuid4()),
        "run_id": str(uuid4()),
        "recipient_id": recipient_id,
        "contract_id": "C-1",
        "channel": "email",
        "address": "a\x00@x.example",  # PostgreSQL takes no NUL
        "sender": "avis@x.example",
        "body": "Subject: x\r\n\r\nx\r\n",
    }
    deliveries = await EventLog("broadcast.deliveries").open()
    letters = await EventLog("broadcast.dead-letters").open()
    try:
        await publish_json("broadcast.messages", [(recipient_id, message)])
        failed = await deliveries.wait_for(lambda e: e.get("recipient_id") == recipient_id)
        # The tracker cannot store that address either: its consumer sets the record aside.
        letter = await letters.wait_for(
            lambda e: e["service"] == "tracker" and e["key"] == recipient_id
        )
    finally:
        await deliveries.close()
        await letters.close()
    assert (failed["type"], failed["reason"]) == ("delivery.failed", "unknown_outcome")
    assert letter["topic"] == "broadcast.deliveries" and letter["error"]
    await canary(events)
