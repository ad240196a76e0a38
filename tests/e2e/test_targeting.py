"""Who a broadcast reaches: tenant isolation, explicit contract ids, name keywords."""

from uuid import uuid4

import asyncpg
import pytest

from tests.e2e.audience import contract, create_command, load, new_tenant, run_broadcast
from tests.stack import SmtpSink

pytestmark = pytest.mark.stack


async def test_a_tenant_never_reaches_another_tenants_contracts(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    tenant_a, domain_a = new_tenant()
    tenant_b, domain_b = new_tenant()
    for tenant, domain in ((tenant_a, domain_a), (tenant_b, domain_b)):
        await load(
            db,
            [
                contract(
                    tenant,
                    f"C-{n}",
                    status="active",
                    building="residential",
                    emails=[f"c{n}@{domain}"],
                )
                for n in (1, 2)
            ],
        )
    # The same contract ids exist in both tenants; naming them, or naming nothing, stays in A.
    _, by_ids = await run_broadcast(
        create_command(tenant_a, criteria=[{"field": "contract_id", "values": ["C-1", "C-2"]}])
    )
    _, everyone = await run_broadcast(create_command(tenant_a, criteria=[]))
    assert by_ids["counters"]["messages_targeted"] == 2
    assert everyone["counters"]["messages_targeted"] == 2
    assert await smtp_sink.messages(to_domain=domain_b) == []
    assert len(await smtp_sink.messages(to_domain=domain_a)) == 4


async def test_name_keywords_select_matching_clients(db: asyncpg.Pool, smtp_sink: SmtpSink) -> None:
    tenant, domain = new_tenant()
    await load(
        db,
        [
            contract(
                tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"]
            ),
            contract(
                tenant, "C-22", status="active", building="residential", emails=[f"b@{domain}"]
            ),
            contract(
                tenant, "C-3", status="active", building="residential", emails=[f"c@{domain}"]
            ),
        ],
    )
    # Client names are "Client C-1", "Client C-22", "Client C-3".
    _, completed = await run_broadcast(
        create_command(tenant, criteria=[{"field": "client_name", "values": ["client c-2", "C-3"]}])
    )
    assert completed["counters"]["contracts_targeted"] == 2
    received = sorted(m.rcpt_tos[0] for m in await smtp_sink.messages(to_domain=domain))
    assert received == [f"b@{domain}", f"c@{domain}"]


async def test_estimate_reports_contracts_messages_and_the_unreachable(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    from tests.stack import EventLog, publish_json

    tenant, domain = new_tenant()
    await load(
        db,
        [
            contract(
                tenant,
                "C-1",
                status="active",
                building="residential",
                emails=[f"a1@{domain}", f"a2@{domain}"],
            ),
            contract(tenant, "C-2", status="to_renew", building="residential", emails=[]),
            contract(
                tenant,
                "C-3",
                status="active",
                building="residential",
                emails=[f"out@{domain}"],
                opted_out=(f"out@{domain}",),
            ),
            contract(tenant, "C-4", status="active", building="commercial", emails=[f"d@{domain}"]),
        ],
    )
    criteria = create_command(tenant)["criteria"]
    request_id = f"estimate-{uuid4()}"
    log = await EventLog("broadcast.events").open()
    try:
        await publish_json(
            "broadcast.requests",
            [
                (
                    tenant,
                    {
                        "type": "estimate_broadcast",
                        "tenant_id": tenant,
                        "request_id": request_id,
                        "requested_by": "user-42",
                        "criteria": criteria,
                        "channels": ["email", "sms"],
                    },
                )
            ],
        )
        answer = await log.wait_for(lambda e: e.get("request_id") == request_id)
    finally:
        await log.close()
    assert answer["type"] == "broadcast.estimated"
    assert (answer["contracts"], answer["unreachable_contracts"]) == (3, 2)
    assert answer["messages"] == {"email": 2, "sms": 0}
    assert answer["opted_out_addresses"] == {"email": 1, "sms": 0}
    assert await smtp_sink.messages(to_domain=domain) == []  # an estimate sends nothing

    # The run counts what the estimate said: one message per usable address, and one
    # no_contact failure per contract without any (C-2; C-3 opted out of its only address).
    _, completed = await run_broadcast(create_command(tenant))
    counters = completed["counters"]
    assert counters["contracts_targeted"] == answer["contracts"]
    assert counters["messages_targeted"] == (
        answer["messages"]["email"] + answer["unreachable_contracts"]
    )
    assert counters["failed_by_reason"] == {"no_contact": answer["unreachable_contracts"]}
    assert counters["contracts_not_reached"] == answer["unreachable_contracts"]
    assert completed["outcome"] == "partially_successful"
