"""Tenants are walled off from each other: a command naming another tenant's broadcast, action
or contract finds nothing and changes nothing, and an address that unsubscribed from one tenant
still gets another tenant's messages."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import asyncpg
import httpx
import pytest

from tests.e2e.audience import OPEN_ALL_WEEK, ask, configure, contract, distinct, load
from tests.e2e.audience import new_tenant as fresh_tenant
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


def definition(tenant: str, subject: str, **overrides: Any) -> dict[str, Any]:
    """A French email broadcast whose body needs the contract's transaction id."""
    command: dict[str, Any] = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-42",
        "name": subject,
        "criteria": [{"field": "status", "values": ["active"]}],
        "channels": ["email"],
        "languages": ["fr"],
        "content": {
            "email": {
                "fr": {
                    "subject": f"{subject} {{{{ contract.number }}}}",
                    "html": "<p>Transaction {{ contract.transaction_id }}</p>",
                }
            }
        },
        "sender": {"address": "diffusions@deneigement.example", "name": "Déneigement"},
    }
    command.update(overrides)
    return command


def customer(
    tenant: str, number: str, email: str, *, transaction: bool = True, opted_out: bool = False
) -> dict[str, Any]:
    record = contract(
        tenant,
        number,
        status="active",
        building="residential",
        emails=[email],
        opted_out=(email,) if opted_out else (),
    )
    if transaction:
        record["contract"]["details"] = {"transaction_id": f"TX-{number}"}
    return record


def of(log: EventLog, kind: str, broadcast_id: str) -> list[dict[str, Any]]:
    return [e for e in log.records if e["type"] == kind and e.get("broadcast_id") == broadcast_id]


def done(broadcast_id: str, run_id: str | None = None) -> Any:
    return lambda e: (
        e["type"] == "broadcast.completed"
        and e["broadcast_id"] == broadcast_id
        and (run_id is None or e["run_id"] == run_id)
    )


async def ask_all(
    log: EventLog, tenant: str, commands: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Publish the commands together and return their answers in the same order."""
    payloads = [
        {"tenant_id": tenant, "request_id": f"req-{uuid4()}", "requested_by": "user-666", **c}
        for c in commands
    ]
    await publish_json("broadcast.requests", [(tenant, p) for p in payloads])
    wanted = {p["request_id"] for p in payloads}
    found: dict[str, dict[str, Any]] = {}

    def answered(event: dict[str, Any]) -> bool:
        if event.get("request_id") in wanted and event["type"] != "broadcast.started":
            found.setdefault(event["request_id"], event)
        return len(found) == len(wanted)

    await log.wait_for(answered)
    return [found[p["request_id"]] for p in payloads]


async def test_another_tenants_broadcasts_actions_and_contracts_are_not_found(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    owner, domain = fresh_tenant()
    intruder, intruder_domain = fresh_tenant()
    # Slow enough that the intruder's commands reach targeting while the broadcast runs.
    await configure(events, owner, {**OPEN_ALL_WEEK, "email_per_second": 4})
    await configure(events, intruder, OPEN_ALL_WEEK)
    size = 12
    # The last customer has no transaction id: its message fails and becomes an action.
    await load(
        db,
        [
            customer(owner, f"C-{i}", f"c{i}@{domain}", transaction=i < size - 1)
            for i in range(size)
        ],
    )
    await load(db, [customer(intruder, "C-0", f"c0@{intruder_domain}")])
    draft_create = definition(
        owner, "Brouillon", criteria=[{"field": "contract_id", "values": ["C-0"]}]
    )
    draft = await ask(events, owner, draft_create)
    assert draft["type"] == "broadcast.accepted", draft
    draft_id = draft["broadcast_id"]
    running = await ask(events, owner, definition(owner, "Avis"))
    running_id = running["broadcast_id"]
    start = {"type": "start_broadcast", "broadcast_id": running_id}
    run_id = (await ask(events, owner, start))["run_id"]

    pirate = f"pirate@{intruder_domain}"
    replacement = {
        k: v
        for k, v in definition(intruder, "Piraté", criteria=[]).items()
        if k not in ("type", "tenant_id", "request_id", "requested_by")
    }
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    commands: list[dict[str, Any]] = []
    for broadcast_id in (draft_id, running_id):
        named = {"broadcast_id": broadcast_id}
        commands += [
            {"type": "start_broadcast", **named},
            {"type": "pause_broadcast", **named},
            {"type": "resume_broadcast", **named},
            {"type": "rename_broadcast", **named, "name": "Piraté"},
            {"type": "update_broadcast", **named, **replacement},
            {"type": "schedule_broadcast", **named, "at": later},
            {"type": "resend_broadcast", **named},
            {"type": "resend_broadcast", **named, "only_failed": True},
            {"type": "preview_broadcast", **named, "to": pirate},
            {"type": "preview_broadcast", **named, "to": pirate, "contract_id": "C-0"},
            {"type": "cancel_broadcast", **named},
        ]
    refused = await ask_all(events, intruder, commands)
    assert [(a["type"], a["reason"], a["field"]) for a in refused] == [
        ("broadcast.rejected", "broadcast_not_found", "broadcast_id")
    ] * len(commands), refused

    # The owner's broadcast ran to its end as if nothing had been asked: not paused, not
    # cancelled, one run.
    finished = await events.wait_for(done(running_id, run_id))
    assert finished["outcome"] == "partially_successful"
    counters = finished["counters"]
    assert (counters["delivered"], counters["failed"], counters["cancelled"]) == (size - 1, 1, 0)
    assert counters["failed_by_reason"] == {"missing_value": 1}
    assert of(events, "broadcast.paused", running_id) == []

    # The owner's action and contract are not the intruder's.
    listed = await ask(events, owner, {"type": "list_actions", "broadcast_id": running_id})
    [action] = listed["actions"]
    assert (action["contract_id"], action["state"]) == (f"C-{size - 1}", "open")
    action_id = action["action_id"]
    tracker_commands: list[dict[str, Any]] = [
        {"type": "resolve_action", "action_id": action_id, "resolution": "send", "address": pirate},
        {"type": "resolve_action", "action_id": action_id, "resolution": "ignore"},
        {"type": "list_actions", "broadcast_id": running_id},
        {"type": "list_actions"},
        {"type": "contract_history", "contract_id": f"C-{size - 1}"},
        {"type": "contract_history", "contract_id": "C-1"},
    ]
    send, ignore, by_broadcast, every, history, other_history = await ask_all(
        events, intruder, tracker_commands
    )
    for resolve in (send, ignore):
        assert (resolve["type"], resolve["reason"], resolve["field"]) == (
            "broadcast.rejected",
            "action_not_found",
            "action_id",
        ), resolve
    assert (by_broadcast["type"], by_broadcast["actions"]) == ("actions.listed", [])
    assert (every["type"], every["actions"]) == ("actions.listed", [])
    assert (history["type"], history["messages"]) == ("contract.history", [])
    assert (other_history["type"], other_history["messages"]) == ("contract.history", [])

    still = await ask(events, owner, {"type": "list_actions", "broadcast_id": running_id})
    assert [(a["action_id"], a["state"], a["resolved_by"]) for a in still["actions"]] == [
        (action_id, "open", None)
    ]
    own_history = await ask(
        events, owner, {"type": "contract_history", "contract_id": f"C-{size - 1}"}
    )
    assert [(m["broadcast_id"], m["state"], m["reason"]) for m in own_history["messages"]] == [
        (running_id, "failed", "missing_value")
    ]

    # The draft is still the owner's draft, as the owner wrote it: it starts (it was neither
    # cancelled nor started), under its own name, with its own subject and audience.
    started = await ask(events, owner, {"type": "start_broadcast", "broadcast_id": draft_id})
    assert started["type"] == "broadcast.accepted", started
    draft_done = await events.wait_for(done(draft_id, started["run_id"]))
    assert draft_done["counters"]["delivered"] == draft_done["counters"]["messages_targeted"] == 1
    first = await ask(events, owner, {"type": "contract_history", "contract_id": "C-0"})
    assert sorted((m["broadcast_name"], m["state"]) for m in first["messages"]) == [
        ("Avis", "delivered"),
        ("Brouillon", "delivered"),
    ]
    subjects = sorted(str(m.message["Subject"]) for m in await smtp_sink.messages(domain))
    assert subjects == sorted(["Brouillon C-0", *(f"Avis C-{i}" for i in range(size - 1))])
    assert await smtp_sink.messages(intruder_domain) == []  # no preview, no follow-up
    assert len(distinct(of(events, "broadcast.completed", running_id))) == 1
    assert len(distinct(of(events, "broadcast.completed", draft_id))) == 1


async def test_creating_a_broadcast_under_another_tenants_id_changes_nothing(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    owner, domain = fresh_tenant()
    intruder, _ = fresh_tenant()
    await configure(events, owner, OPEN_ALL_WEEK)
    await load(db, [customer(owner, "C-0", f"c0@{domain}")])
    create = definition(owner, "Avis")
    broadcast_id = (await ask(events, owner, create))["broadcast_id"]

    taken = definition(intruder, "Piraté", broadcast_id=broadcast_id, criteria=[])
    refused = await ask(events, intruder, taken)
    assert (refused["type"], refused["reason"], refused["field"]) == (
        "broadcast.rejected",
        "broadcast_exists",
        "broadcast_id",
    ), refused

    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    run_id = (await ask(events, owner, start))["run_id"]
    finished = await events.wait_for(done(broadcast_id, run_id))
    assert finished["counters"]["delivered"] == 1
    assert [str(m.message["Subject"]) for m in await smtp_sink.messages(domain)] == ["Avis C-0"]


def unsigned(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without what differs between any two answers: its own ids and time."""
    return {k: v for k, v in answer.items() if k not in ("event_id", "occurred_at", "request_id")}


async def test_a_taken_id_is_refused_alike_whoever_holds_it(events: EventLog) -> None:
    owner, _ = fresh_tenant()
    intruder, _ = fresh_tenant()
    create = definition(owner, "Avis secret")
    broadcast_id = (await ask(events, owner, create))["broadcast_id"]
    theirs = await ask(events, intruder, definition(intruder, "Piraté", broadcast_id=broadcast_id))
    # The same refusal the intruder gets for one of its own ids, used again by another of its
    # own requests: it cannot tell "another tenant holds it" from anything it did itself.
    own_id = (await ask(events, intruder, definition(intruder, "Le mien")))["broadcast_id"]
    own = await ask(events, intruder, definition(intruder, "Piraté", broadcast_id=own_id))
    assert (theirs["type"], theirs["reason"], theirs["field"]) == (
        "broadcast.rejected",
        "broadcast_exists",
        "broadcast_id",
    ), theirs
    assert unsigned(theirs) == unsigned(own) | {
        "broadcast_id": broadcast_id,
        "message": own["message"].replace(own_id, broadcast_id),
    }
    for secret in (create["request_id"], "Avis secret", owner):
        assert secret not in str(theirs), theirs


async def test_another_tenants_broadcast_id_is_never_accepted(events: EventLog) -> None:
    owner, _ = fresh_tenant()
    intruder, _ = fresh_tenant()
    create = definition(owner, "Avis")
    broadcast_id = (await ask(events, owner, create))["broadcast_id"]
    # Request ids are unique per tenant only: another tenant may use the same one.
    same_request = definition(intruder, "Piraté", broadcast_id=broadcast_id)
    same_request["request_id"] = create["request_id"]
    answer = await ask(events, intruder, same_request)
    assert (answer["type"], answer["reason"]) == ("broadcast.rejected", "broadcast_exists"), answer
    # The owner's create replayed, without an id as the first time: the owner's broadcast.
    replayed = await ask(events, owner, create)
    assert (replayed["type"], replayed["broadcast_id"]) == ("broadcast.accepted", broadcast_id)
    # The broadcast is not the intruder's: it cannot start it; the owner can.
    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, intruder, start))["reason"] == "broadcast_not_found"
    assert (await ask(events, owner, start))["type"] == "broadcast.accepted"


async def test_the_id_a_create_will_get_cannot_be_taken_first(events: EventLog) -> None:
    owner, _ = fresh_tenant()
    intruder, _ = fresh_tenant()
    request_id = f"req-{uuid4()}"
    # The id the owner's create got before ids were random: public, so computable by anyone.
    guessed = str(
        uuid5(UUID("6f1c2b1e-8f3a-4c52-9a57-2f0d8c3e4b10"), f"broadcast|{owner}|{request_id}")
    )
    squat = await ask(events, intruder, definition(intruder, "Piraté", broadcast_id=guessed))
    assert (squat["type"], squat["broadcast_id"]) == ("broadcast.accepted", guessed), squat

    create = definition(owner, "Avis", request_id=request_id)
    made = await ask(events, owner, create)
    assert made["type"] == "broadcast.accepted", made
    assert made["broadcast_id"] != guessed and UUID(made["broadcast_id"]).version == 4
    assert (await ask(events, owner, create))["broadcast_id"] == made["broadcast_id"]
    # Each keeps its own: the owner cannot reach the squatted id, the intruder not the owner's.
    described = await ask(
        events, owner, {"type": "get_broadcast", "broadcast_id": made["broadcast_id"]}
    )
    assert described["type"] == "broadcast.described", described
    for tenant, other in ((owner, guessed), (intruder, made["broadcast_id"])):
        asked = await ask(events, tenant, {"type": "get_broadcast", "broadcast_id": other})
        assert asked["reason"] == "broadcast_not_found", asked


async def test_an_unsubscribed_address_is_skipped_for_its_tenant_only(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    first, domain = fresh_tenant()
    second, _ = fresh_tenant()
    clicked, flagged, kept = f"clicked@{domain}", f"flagged@{domain}", f"kept@{domain}"
    for tenant in (first, second):
        await configure(events, tenant, OPEN_ALL_WEEK)
    # The platform says `flagged` opted out with the first tenant only.
    await load(
        db,
        [
            customer(first, "C-1", clicked),
            customer(first, "C-2", flagged, opted_out=True),
            customer(first, "C-3", kept),
        ],
    )
    await load(db, [customer(second, "C-1", clicked), customer(second, "C-2", flagged)])
    estimate = {"type": "estimate_broadcast", "channels": ["email"]}
    before = await ask(events, first, estimate)
    assert (before["contracts"], before["unreachable_contracts"]) == (3, 1)
    assert (before["messages"], before["opted_out_addresses"]) == ({"email": 2}, {"email": 1})

    first_id = (await ask(events, first, definition(first, "Premier")))["broadcast_id"]
    start = {"type": "start_broadcast", "broadcast_id": first_id}
    first_run = (await ask(events, first, start))["run_id"]
    one = await events.wait_for(done(first_id, first_run))
    # `flagged` was C-2's only address: C-2 is not reached, a no_contact failure.
    assert (one["counters"]["contracts_targeted"], one["counters"]["messages_targeted"]) == (3, 3)
    assert (one["counters"]["delivered"], one["outcome"]) == (2, "partially_successful")
    assert one["counters"]["failed_by_reason"] == {"no_contact": 1}

    # `clicked` follows the one-click unsubscribe link of the first tenant's email.
    mail = {m.rcpt_tos[0]: m.message for m in await smtp_sink.messages(domain)}
    assert set(mail) == {clicked, kept}
    url = str(mail[clicked]["List-Unsubscribe"]).strip("<>")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    opted = await events.wait_for(
        lambda e: e["type"] == "contact.opted_out" and e["tenant_id"] == first
    )
    assert (opted["contract_id"], opted["channel"], opted["address"]) == ("C-1", "email", clicked)

    after = await ask(events, first, estimate)
    assert (after["contracts"], after["unreachable_contracts"]) == (3, 2)
    assert (after["messages"], after["opted_out_addresses"]) == ({"email": 1}, {"email": 2})
    resend = {"type": "resend_broadcast", "broadcast_id": first_id}
    while (resent := await ask(events, first, resend))["type"] != "broadcast.accepted":
        # Targeting learns of the completion a moment after the tracker announced it.
        assert resent["reason"] == "not_finished", resent
        await events.drain(0.5)
    two = await events.wait_for(done(first_id, resent["run_id"]))
    counters = two["counters"]
    assert (counters["contracts_targeted"], counters["messages_targeted"]) == (3, 3)
    assert (counters["delivered"], counters["failed"], two["outcome"]) == (
        1,
        2,  # C-1 and C-2 have no address left: no_contact
        "partially_successful",
    )

    # The second tenant's customers never unsubscribed from it: both get its message.
    other = await ask(events, second, estimate)
    assert (other["messages"], other["opted_out_addresses"]) == ({"email": 2}, {"email": 0})
    second_id = (await ask(events, second, definition(second, "Second")))["broadcast_id"]
    second_start = {"type": "start_broadcast", "broadcast_id": second_id}
    second_run = (await ask(events, second, second_start))["run_id"]
    three = await events.wait_for(done(second_id, second_run))
    assert (three["counters"]["messages_targeted"], three["counters"]["delivered"]) == (2, 2)

    got = sorted(
        (m.rcpt_tos[0], str(m.message["Subject"])) for m in await smtp_sink.messages(domain)
    )
    assert got == [
        (clicked, "Premier C-1"),  # before the click only
        (clicked, "Second C-1"),
        (flagged, "Second C-2"),
        (kept, "Premier C-3"),
        (kept, "Premier C-3"),
    ]
