"""Manual actions and resends to the failures, through the running stack: each send applied is
one new message, counted at the SMTP sink; a resend to the failures leaves out unknown outcomes
(unless asked) and the messages somebody took care of, and closes the actions of those it
sends again."""

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.e2e.audience import (
    actions_of,
    ask,
    completed,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
    received,
    resend_failed,
    until_action,
    user_unknown,
)
from tests.stack import EventLog, SmtpSink

pytestmark = pytest.mark.stack


def lost_once(address: str) -> dict[str, Any]:
    """The connection drops after the whole message: its outcome is unknown (the sink keeps
    nothing of it)."""
    return {
        "address": address,
        "stage": "data",
        "code": 451,
        "message": "closing",
        "times": 1,
        "action": "disconnect",
    }


async def broadcast_to(
    db: asyncpg.Pool, events: EventLog, tenant: str, addresses: list[str]
) -> tuple[str, dict[str, Any]]:
    """A broadcast to one contract per address, started and completed: its id and completion."""
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate(addresses)
        ],
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    return broadcast_id, await completed(events, broadcast_id)


async def actions_by_address(
    events: EventLog, tenant: str, broadcast_id: str
) -> dict[str, dict[str, Any]]:
    return {a["address"]: a for a in await actions_of(events, tenant, broadcast_id)}


def resolve(action: dict[str, Any], resolution: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "resolve_action",
        "action_id": action["action_id"],
        "resolution": resolution,
        **fields,
    }


async def reopened_action(
    db: asyncpg.Pool, events: EventLog, tenant: str, typo: str, fixed: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The action of a message to `typo` that failed, sent again to `fixed`, which failed too:
    open again. The action and the answer to that first send."""
    broadcast_id, _ = await broadcast_to(db, events, tenant, [typo])
    (action,) = (await actions_by_address(events, tenant, broadcast_id)).values()
    first = await ask(events, tenant, resolve(action, "send", address=fixed))
    assert (first["type"], first["state"]) == ("action.resolved", "sending"), first
    await until_action(events, tenant, action["action_id"], "open")
    return action, first


async def test_a_second_send_is_refused_and_the_first_one_replayed_sends_nothing_more(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    typo, first, second = f"jean@{domain}", f"jean.1@{domain}", f"jean.2@{domain}"
    await smtp_sink.set_rules([user_unknown(typo, times=1)])
    broadcast_id, done = await broadcast_to(db, events, tenant, [typo])
    assert done["counters"]["failed"] == 1
    (action,) = (await actions_by_address(events, tenant, broadcast_id)).values()

    send = resolve(action, "send", address=first)
    sent = await ask(events, tenant, send)
    assert (sent["type"], sent["state"]) == ("action.resolved", "sending")
    replayed = await ask(events, tenant, send, request_id=sent["request_id"])
    assert (replayed["type"], replayed["run_id"]) == ("action.resolved", sent["run_id"])
    # Two people correct the address differently: the second is told it was taken care of.
    refused = await ask(events, tenant, resolve(action, "send", address=second))
    assert (refused["type"], refused["reason"]) == ("broadcast.rejected", "already_resolved")
    assert refused["message"].endswith(("sending", "sent")), refused

    await until_action(events, tenant, action["action_id"], "sent")
    assert await received(smtp_sink, domain) == {first: 1}


async def test_a_send_after_its_follow_up_failed_is_one_new_message(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    typo, fixed = f"jean@{domain}", f"jean.tremblay@{domain}"
    await smtp_sink.set_rules([user_unknown(typo, times=1), user_unknown(fixed, times=1)])
    action, first = await reopened_action(db, events, tenant, typo, fixed)
    assert await smtp_sink.count(domain) == 0

    # The first send replayed is answered as before and sends nothing.
    send = resolve(action, "send", address=fixed)
    replayed = await ask(events, tenant, send, request_id=first["request_id"])
    assert (replayed["type"], replayed["run_id"]) == ("action.resolved", first["run_id"])
    assert replayed["state"] == "open"
    again = await ask(events, tenant, send)
    assert (again["type"], again["state"]) == ("action.resolved", "sending")
    assert again["run_id"] != first["run_id"]  # a new follow-up run: a new message

    await until_action(events, tenant, action["action_id"], "sent")
    assert await received(smtp_sink, domain) == {fixed: 1}


async def test_ignore_on_an_action_open_again_is_applied(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    typo, fixed = f"jean@{domain}", f"jean.tremblay@{domain}"
    await smtp_sink.set_rules([user_unknown(typo, times=1), user_unknown(fixed, times=1)])
    action, _ = await reopened_action(db, events, tenant, typo, fixed)

    ignored = await ask(events, tenant, resolve(action, "ignore"))
    assert (ignored["type"], ignored["resolution"], ignored["state"]) == (
        "action.resolved",
        "ignore",
        "ignored",
    )
    late = await ask(events, tenant, resolve(action, "send", address=fixed))
    assert (late["reason"], late["message"].endswith("ignored")) == ("already_resolved", True)
    assert await smtp_sink.count(domain) == 0


async def test_a_resend_to_the_failures_leaves_unknown_outcomes_out_and_closes_the_actions(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    gone, lost, fine = f"gone@{domain}", f"lost@{domain}", f"fine@{domain}"
    await smtp_sink.set_rules([user_unknown(gone, times=1), lost_once(lost)])
    broadcast_id, first = await broadcast_to(db, events, tenant, [gone, lost, fine])
    assert first["counters"]["failed_by_reason"] == {"refused": 1, "unknown_outcome": 1}

    resent = await resend_failed(db, events, tenant, broadcast_id)
    assert resent["type"] == "broadcast.accepted", resent
    second = await completed(events, broadcast_id, resent["run_id"])
    assert (second["counters"]["messages_targeted"], second["counters"]["delivered"]) == (1, 1)
    assert await received(smtp_sink, domain) == {gone: 1, fine: 1}  # `lost` may have it
    actions = await actions_by_address(events, tenant, broadcast_id)
    assert {address: a["state"] for address, a in actions.items()} == {
        gone: "resent",
        lost: "open",  # left to a person, who may know whether it arrived
    }
    assert actions[gone]["resolved_by"] == "user-42"


async def test_unknown_outcomes_are_resent_when_asked(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    lost, fine = f"lost@{domain}", f"fine@{domain}"
    await smtp_sink.set_rules([lost_once(lost)])
    broadcast_id, first = await broadcast_to(db, events, tenant, [lost, fine])
    assert first["counters"]["failed_by_reason"] == {"unknown_outcome": 1}

    refused = await resend_failed(db, events, tenant, broadcast_id)
    assert (refused["reason"], refused["field"]) == ("nothing_to_resend", "only_failed")
    assert "unknown outcome" in refused["message"]
    resent = await resend_failed(db, events, tenant, broadcast_id, include_unknown=True)
    assert resent["type"] == "broadcast.accepted", resent
    second = await completed(events, broadcast_id, resent["run_id"])
    assert (second["counters"]["messages_targeted"], second["counters"]["delivered"]) == (1, 1)
    assert await received(smtp_sink, domain) == {lost: 1, fine: 1}
    (action,) = (await actions_by_address(events, tenant, broadcast_id)).values()
    assert (action["address"], action["state"]) == (lost, "resent")


async def test_a_message_whose_action_was_resolved_is_left_out_of_a_resend_to_the_failures(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    sent, ignored, left, fine = (f"{name}@{domain}" for name in ("sent", "ignored", "left", "fine"))
    await smtp_sink.set_rules([user_unknown(a, times=1) for a in (sent, ignored, left)])
    broadcast_id, first = await broadcast_to(db, events, tenant, [sent, ignored, left, fine])
    assert first["counters"]["failed"] == 3
    actions = await actions_by_address(events, tenant, broadcast_id)
    assert (await ask(events, tenant, resolve(actions[sent], "send")))["state"] == "sending"
    assert (await ask(events, tenant, resolve(actions[ignored], "ignore")))["state"] == "ignored"
    await until_action(events, tenant, actions[sent]["action_id"], "sent")
    # The actions reach targeting on broadcast.runs, the resend on broadcast.requests: no order
    # between them, so the test waits until targeting has both.
    async with asyncio.timeout(30):
        while (
            await db.fetchval(
                "SELECT count(*) FROM targeting.failures WHERE run_id = $1::uuid AND closed",
                first["run_id"],
            )
            < 2
        ):
            await asyncio.sleep(0.2)

    resent = await resend_failed(db, events, tenant, broadcast_id)
    assert resent["type"] == "broadcast.accepted", resent
    second = await completed(events, broadcast_id, resent["run_id"])
    assert (second["counters"]["messages_targeted"], second["counters"]["delivered"]) == (1, 1)
    # `sent` got its follow-up only, `ignored` nothing, `left` the resend.
    assert await received(smtp_sink, domain) == {sent: 1, left: 1, fine: 1}
    states = await actions_by_address(events, tenant, broadcast_id)
    assert {address: a["state"] for address, a in states.items()} == {
        sent: "sent",
        ignored: "ignored",
        left: "resent",
    }
