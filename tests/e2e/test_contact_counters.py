"""Customers without a contact and the seed's three counters, through the running stack: a
contract with no usable address is a `no_contact` failure with its manual action (nothing is
rendered or sent for it), and each run counts its contracts targeted, reached (one message
delivered) and not reached (every message final, none delivered)."""

import asyncio
from typing import Any

import asyncpg
import pytest

from shared.client import watch
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
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


def residential(tenant: str, number: str, emails: list[str]) -> dict[str, Any]:
    return contract(tenant, number, status="active", building="residential", emails=emails)


async def test_a_customer_without_a_contact_is_a_failure_an_action_and_not_reached(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    bad, good, only, fine = (f"{n}@{domain}" for n in ("two.bad", "two.good", "only", "fine"))
    await smtp_sink.set_rules([user_unknown(bad), user_unknown(only)])
    await load(
        db,
        [
            residential(tenant, "C-1", [bad, good]),  # one refused, one delivered: reached
            residential(tenant, "C-2", [only]),  # its only address refused: not reached
            residential(tenant, "C-3", []),  # no address: no_contact, not reached
            residential(tenant, "C-4", [fine]),
        ],
    )
    estimate = await ask(events, tenant, {"type": "estimate_broadcast", "channels": ["email"]})
    broadcast_id = await create_and_start(events, french_only(tenant))
    done = await completed(events, broadcast_id)

    counters = done["counters"]
    assert done["outcome"] == "partially_successful"
    assert (counters["contracts_targeted"], counters["messages_targeted"]) == (4, 5)
    assert (counters["delivered"], counters["failed"], counters["cancelled"]) == (2, 3, 0)
    assert counters["failed_by_reason"] == {"refused": 2, "no_contact": 1}
    assert (counters["contracts_reached"], counters["contracts_not_reached"]) == (2, 2)
    # The estimate and the run agree: one message per usable address, one no_contact failure
    # per contract with none.
    assert estimate["contracts"] == counters["contracts_targeted"]
    assert estimate["unreachable_contracts"] == counters["failed_by_reason"]["no_contact"]
    assert (
        sum(estimate["messages"].values()) + estimate["unreachable_contracts"]
        == (counters["messages_targeted"])
    )
    # The tooling's view counts the same.
    view = await db.fetchrow(
        "SELECT contracts_targeted, contracts_reached, contracts_not_reached "
        "FROM tracker.run_counters_v1 WHERE run_id = $1::uuid",
        done["run_id"],
    )
    assert view is not None and tuple(view) == (4, 2, 2)
    # Nothing went through the composer or the dispatcher for C-3.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM dispatcher.deliveries_v1 WHERE run_id = $1::uuid AND "
            "contract_id = 'C-3'",
            done["run_id"],
        )
        == 0
    )
    assert await received(smtp_sink, domain) == {good: 1, fine: 1}

    actions = {a["contract_id"]: a for a in await actions_of(events, tenant, broadcast_id)}
    assert sorted((c, a["reason"], a["state"]) for c, a in actions.items()) == [
        ("C-1", "refused", "open"),
        ("C-2", "refused", "open"),
        ("C-3", "no_contact", "open"),
    ]
    nobody = actions["C-3"]
    assert (nobody["channel"], nobody["address"]) == ("email", "")

    # "send" needs an address to send it to; the corrected one gets exactly one message.
    send = {"type": "resolve_action", "action_id": nobody["action_id"], "resolution": "send"}
    nowhere = await ask(events, tenant, send)
    assert (nowhere["type"], nowhere["reason"], nowhere["field"]) == (
        "broadcast.rejected",
        "invalid_field",
        "address",
    )
    # An address the action's channel cannot use is refused, naming it: a phone for an email.
    phone = await ask(events, tenant, {**send, "address": "+15145550123"})
    assert (phone["type"], phone["reason"], phone["field"]) == (
        "broadcast.rejected",
        "invalid_field",
        "address",
    )
    assert "not an email address" in phone["message"]
    corrected = f"c3@{domain}"
    sent = await ask(events, tenant, {**send, "address": corrected})
    assert (sent["type"], sent["state"]) == ("action.resolved", "sending"), sent
    replayed = await ask(events, tenant, {**send, "address": corrected}, sent["request_id"])
    assert replayed["run_id"] == sent["run_id"]
    await until_action(events, tenant, nobody["action_id"], "sent")
    assert await received(smtp_sink, domain) == {good: 1, fine: 1, corrected: 1}
    # A follow-up is reported on its action: the run's counters stay as they were.
    again = await db.fetchrow(
        "SELECT delivered, failed, contracts_reached FROM tracker.run_counters_v1 "
        "WHERE run_id = $1::uuid",
        done["run_id"],
    )
    assert again is not None and tuple(again) == (2, 3, 2)

    # "ignore" works as for any other action.
    ignored = await ask(
        events,
        tenant,
        {
            "type": "resolve_action",
            "action_id": actions["C-2"]["action_id"],
            "resolution": "ignore",
        },
    )
    assert (ignored["type"], ignored["state"]) == ("action.resolved", "ignored")


async def test_only_customers_without_a_contact_make_the_run_failed(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    await load(db, [residential(tenant, "C-1", []), residential(tenant, "C-2", [])])
    broadcast_id = await create_and_start(events, french_only(tenant))
    done = await completed(events, broadcast_id)
    counters = done["counters"]
    assert done["outcome"] == "failed"
    assert (counters["contracts_targeted"], counters["messages_targeted"]) == (2, 2)
    assert counters["failed_by_reason"] == {"no_contact": 2}
    assert (counters["contracts_reached"], counters["contracts_not_reached"]) == (0, 2)
    assert await smtp_sink.count(domain) == 0


async def test_a_resend_to_the_failures_reaches_a_customer_once_they_have_an_address(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    fine, found = f"fine@{domain}", f"found@{domain}"
    await load(db, [residential(tenant, "C-1", []), residential(tenant, "C-2", [fine])])
    broadcast_id = await create_and_start(events, french_only(tenant))
    first = await completed(events, broadcast_id)
    assert first["counters"]["failed_by_reason"] == {"no_contact": 1}

    # Still without an address: there is nobody to send it to.
    nothing = await resend_failed(db, events, tenant, broadcast_id)
    assert (nothing["reason"], nothing["field"]) == ("nothing_to_resend", "only_failed")

    # The platform learns C-1's address: the resend sends it there, and only there.
    updated = {**residential(tenant, "C-1", [found]), "version": 2}
    await publish_json("audience.contracts", [(f"{tenant}:C-1", updated)])
    await watch.until_contracts(db, tenant, 1, min_version=2)
    resent = await resend_failed(db, events, tenant, broadcast_id)
    assert resent["type"] == "broadcast.accepted", resent
    second = await completed(events, broadcast_id, resent["run_id"])
    counters = second["counters"]
    assert (counters["contracts_targeted"], counters["messages_targeted"]) == (1, 1)
    assert (counters["contracts_reached"], counters["contracts_not_reached"]) == (1, 0)
    assert second["outcome"] == "fully_successful"
    assert await received(smtp_sink, domain) == {fine: 1, found: 1}
    (action,) = await actions_of(events, tenant, broadcast_id)
    assert (action["contract_id"], action["reason"]) == ("C-1", "no_contact")
    async with asyncio.timeout(30):
        while (await actions_of(events, tenant, broadcast_id))[0]["state"] != "resent":
            await asyncio.sleep(0.2)
