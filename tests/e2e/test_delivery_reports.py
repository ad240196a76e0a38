"""Delivery truth, end to end with a real MTA: the stack's dispatcher relays through a private
Postfix (tests/postfix.py) that takes mail for `nowhere.test`, where the recipient does not
exist. Postfix accepts the message (the relay's 250: "delivered"), then its local delivery
agent bounces it and Postfix mails its own DSN to the message's signed return path, on
`bounces.test`, whose MX is the dispatcher's bounce receiver. What a user sees follows: the
message failed (`bounced`) with its manual action, exact counters, the address suppressed
(`contact.suppressed`), left out of the next estimate and broadcast, and back after an explicit
re-enable. Every other message goes on from Postfix to the stack's SMTP sink."""

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.e2e.audience import (
    actions_of,
    ask,
    contract,
    create_and_start,
    create_command,
    load,
    new_tenant,
)
from tests.postfix import Postfix, free_port, needs_postfix, private_postfix
from tests.stack import EventLog, SmtpSink, restart_service

pytestmark = [needs_postfix, pytest.mark.stack]

RETURN_PATHS = "bounces.test"
GONE = "no-such-recipient@nowhere.test"


@pytest.fixture
async def through_postfix(stack: None) -> AsyncIterator[Postfix]:
    """The composer signs return paths on `bounces.test`; the dispatcher relays through Postfix
    and receives the bounce domain's mail; both as before afterwards."""
    receiver = free_port()
    routing = (
        # nowhere.test: local, every recipient taken at RCPT, so the local agent bounces an
        # unknown user after the relay's 250; the return paths go to the bounce receiver; the
        # rest on to the SMTP sink.
        "mydestination = nowhere.test\n"
        "local_recipient_maps =\n"
        "alias_maps =\n"
        "alias_database =\n"
        f"transport_maps = inline:{{ {{ {RETURN_PATHS} = smtp:[127.0.0.1]:{receiver} }} }}\n"
        "relayhost = [127.0.0.1]:10025\n"
    )
    with private_postfix("relay.test", routing) as postfix:
        restart_service("composer", {"COMPOSER_RETURN_PATH_DOMAIN": RETURN_PATHS})
        restart_service(
            "dispatcher",
            {
                "DISPATCHER_SMTP_PORT": str(postfix.port),
                "DISPATCHER_RETURN_PATH_DOMAIN": RETURN_PATHS,
                "DISPATCHER_BOUNCE_SMTP_PORT": str(receiver),
            },
        )
        try:
            yield postfix
        finally:
            restart_service("dispatcher")
            restart_service("composer", as_in_the_suite=False)


def counters_of(broadcast_id: str, hard_bounced: int) -> Any:
    """The run's counters once they count `hard_bounced`: on `broadcast.completed` when the
    bounce came first, else on the `broadcast.progressed` that follows it."""

    def found(event: dict[str, Any]) -> bool:
        return (
            event.get("broadcast_id") == broadcast_id
            and event["type"] in ("broadcast.completed", "broadcast.progressed")
            and event["counters"].get("hard_bounced") == hard_bounced
            and event["counters"]["pending_retry"] == 0
        )

    return found


async def estimate(events: EventLog, tenant: str) -> dict[str, Any]:
    answer = await ask(events, tenant, {"type": "estimate_broadcast", "channels": ["email"]})
    assert answer["type"] == "broadcast.estimated", answer
    return answer


async def test_a_real_bounce_fails_its_message_and_suppresses_its_address(
    through_postfix: Postfix, db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    kept = f"ok@{domain}"
    audience = [
        contract(tenant, "C-1", status="active", building="residential", emails=[GONE]),
        contract(tenant, "C-2", status="active", building="residential", emails=[kept]),
    ]
    await load(db, audience)
    first = await create_and_start(events, create_command(tenant))

    done = await events.wait_for(counters_of(first, hard_bounced=1), timeout=90)
    counters = done["counters"]
    assert (counters["delivered"], counters["failed"]) == (1, 1)
    assert counters["failed_by_reason"] == {"bounced": 1}
    assert (counters["contracts_reached"], counters["contracts_not_reached"]) == (1, 1)
    assert done["outcome"] == "partially_successful"
    [action] = await actions_of(events, tenant, first)
    assert (action["contract_id"], action["reason"], action["state"]) == ("C-1", "bounced", "open")
    suppressed = await events.wait_for(
        lambda e: e["type"] == "contact.suppressed" and e["tenant_id"] == tenant
    )
    assert (suppressed["address"], suppressed["reason"]) == (GONE, "hard_bounce")
    # Postfix's own words: it took the message, bounced it, and mailed the DSN to the return
    # path, which the receiver took.
    log = through_postfix.log()
    assert re.search(rf"to=<{re.escape(GONE)}>.*dsn=5\.1\.1, status=bounced", log)
    assert re.search(rf"to=<b\+[a-z2-7]+@{RETURN_PATHS}>, relay=127\.0\.0\.1.*status=sent", log)
    assert await smtp_sink.count(domain) == 1

    # The next broadcast leaves the address out, and its estimate says why.
    before = await estimate(events, tenant)
    assert before["suppressed_addresses"] == {"email": 1}
    assert (before["messages"], before["unreachable_contracts"]) == ({"email": 1}, 1)
    second = await create_and_start(events, create_command(tenant))
    again = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e.get("broadcast_id") == second,
        timeout=90,
    )
    assert again["counters"]["delivered"] == 1
    assert again["counters"]["failed_by_reason"] == {"no_contact": 1}
    assert through_postfix.log().count(f"to=<{GONE}>") == 1  # never handed over again
    assert await smtp_sink.count(domain) == 2

    # An explicit re-enable, answered and logged, makes it a recipient again.
    answer = await ask(
        events,
        tenant,
        {
            "type": "reenable_contact",
            "channel": "email",
            "address": GONE,
            "reason": "the customer fixed the address",
        },
    )
    assert (answer["type"], answer["was_suppressed"]) == ("contact.reenabled", True)
    after = await estimate(events, tenant)
    assert (after["messages"], after["suppressed_addresses"]) == ({"email": 2}, {"email": 0})
