"""One broadcast through the four real services, driven with a plain Kafka client."""

from uuid import uuid4

import asyncpg
import pytest

from tests.e2e.audience import (
    actions_of,
    contract,
    create_command,
    load,
    new_tenant,
    run_broadcast,
)
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack


async def test_seed_example_reaches_each_reachable_email_once(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    rejected_address = f"gone@{domain}"
    await smtp_sink.set_rules(
        [
            {
                "address": rejected_address,
                "stage": "rcpt",
                "code": 550,
                "message": "5.1.1 User unknown",
                "times": None,
                "action": "reply",
            }
        ]
    )
    audience = [
        contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"]),
        contract(
            tenant,
            "C-2",
            status="to_renew",
            building="residential",
            emails=[f"b1@{domain}", f"b2@{domain}"],
        ),
        contract(tenant, "C-3", status="active", building="commercial", emails=[f"c@{domain}"]),
        contract(tenant, "C-4", status="cancelled", building="residential", emails=[f"d@{domain}"]),
        contract(tenant, "C-5", status="active", building="residential", emails=[]),
        contract(
            tenant,
            "C-6",
            status="active",
            building="residential",
            emails=[f"out@{domain}", f"f@{domain}"],
            opted_out=(f"out@{domain}",),
        ),
        contract(
            tenant,
            "C-7",
            status="to_renew",
            building="residential",
            emails=[f"g@{domain}"],
            language="en",
        ),
        contract(tenant, "C-8", status="active", building="residential", emails=[rejected_address]),
    ]
    await load(db, audience)

    events, completed = await run_broadcast(create_command(tenant))

    types = [e["type"] for e in events]
    assert types.count("broadcast.accepted") == 2  # create and start
    assert types.count("broadcast.started") == 1
    assert completed["counters"] == {
        "contracts_targeted": 6,  # C-1, C-2, C-5, C-6, C-7, C-8
        "messages_targeted": 7,  # a, b1, b2, f, g, gone, and C-5's no_contact failure
        "delivered": 5,
        "failed": 2,
        "cancelled": 0,
        "pending_retry": 0,
        "waiting_window": 0,
        "paused": 0,
        "failed_by_reason": {"refused": 1, "no_contact": 1},
        "contracts_reached": 4,  # C-1, C-2 (twice), C-6, C-7
        "contracts_not_reached": 2,  # C-5 (no address), C-8 (refused)
        # Nothing reported after the hand-over (no bounce, complaint or SMS receipt).
        "hard_bounced": 0,
        "soft_bounced": 0,
        "complained": 0,
        "confirmed": 0,
    }
    assert completed["outcome"] == "partially_successful"
    assert completed["requested_by"] == "user-42"

    received = await smtp_sink.messages(to_domain=domain)
    by_address = {m.rcpt_tos[0]: m.message for m in received}
    assert sorted(m.rcpt_tos[0] for m in received) == sorted(
        f"{x}@{domain}" for x in ("a", "b1", "b2", "f", "g")
    )
    assert by_address[f"a@{domain}"]["Subject"] == "Surcharge pour excédent de neige — C-1"
    assert by_address[f"g@{domain}"]["Subject"] == "Excess snow surcharge — C-7"
    plain = by_address[f"a@{domain}"].get_body(("plain",))
    assert plain is not None
    assert "Client C-1" in plain.get_content()
    assert by_address[f"a@{domain}"]["From"].addresses[0].display_name == "Déneigement Québec"

    log = await EventLog("broadcast.events").open()
    try:
        actions = await actions_of(log, tenant)
    finally:
        await log.close()
    assert sorted((a["contract_id"], a["address"], a["reason"]) for a in actions) == [
        ("C-5", "", "no_contact"),
        ("C-8", rejected_address, "refused"),
    ]


async def test_a_second_start_is_refused_and_sends_nothing_more(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    await load(
        db,
        [contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"])],
    )
    create = create_command(tenant)
    _, completed = await run_broadcast(create)
    assert completed["counters"]["delivered"] == 1

    double_click = f"double-click-{uuid4()}"
    log = await EventLog("broadcast.events").open()
    try:
        again = {
            "type": "start_broadcast",
            "tenant_id": tenant,
            "request_id": double_click,
            "requested_by": "user-42",
            "broadcast_id": completed["broadcast_id"],
        }
        await publish_json("broadcast.requests", [(tenant, again)])
        answer = await log.wait_for(lambda e: e.get("request_id") == double_click)
    finally:
        await log.close()
    assert answer["type"] == "broadcast.rejected"
    assert answer["reason"] == "already_started"
    assert len(await smtp_sink.messages(to_domain=domain)) == 1
