"""A small audience that exercises every targeting rule, as plain JSON the platform would send."""

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

import asyncpg

from shared.client import commands, watch
from tests.stack import DATABASE_URL, EventLog, SmtpSink, publish_json

# Tests must not depend on the day they run: by default no email leaves on a weekend.
OPEN_ALL_WEEK: dict[str, Any] = {
    "email_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "sms_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "sms_quiet_hours": None,
}


def contract(
    tenant: str,
    number: str,
    *,
    status: str,
    building: str,
    emails: list[str],
    language: str = "fr",
    opted_out: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "type": "contract.upserted",
        "tenant_id": tenant,
        "contract_id": number,
        "version": 1,
        "contract": {
            "number": number,
            "status": status,
            "building_type": building,
            "client_name": f"Client {number}",
            "service_address": f"{number} rue des Érables",
            "language": language,
            "emails": [{"address": e, "opted_out": e in opted_out} for e in emails],
            "balance": "125.50",
        },
    }


def user_unknown(address: str, times: int | None = None) -> dict[str, Any]:
    """An SMTP sink rule: `address` refused for good (550 at RCPT), `times` times (None: every
    time)."""
    return {
        "address": address,
        "stage": "rcpt",
        "code": 550,
        "message": "5.1.1 User unknown",
        "times": times,
        "action": "reply",
    }


async def bouncing(smtp_sink: SmtpSink, domain: str) -> str:
    """An address of `domain` the SMTP sink refuses for good (550 at RCPT), every time."""
    address = f"ancien@{domain}"
    await smtp_sink.set_rules([user_unknown(address)])
    return address


def new_tenant() -> tuple[str, str]:
    tenant = f"t{uuid4().hex[:10]}"
    return tenant, f"{tenant}.example"


async def load(db: asyncpg.Pool, contracts: list[dict[str, Any]], timeout: float = 30) -> None:
    """Publish the contracts and wait until targeting's read model holds all of them."""
    tenant = contracts[0]["tenant_id"]
    await publish_json(
        "audience.contracts", ((f"{tenant}:{c['contract_id']}", c) for c in contracts)
    )
    await watch.until_contracts(db, tenant, len(contracts), timeout=timeout)


def create_command(tenant: str, **overrides: Any) -> dict[str, Any]:
    command: dict[str, Any] = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-42",
        "name": "Surcharge pour excédent de neige",
        "criteria": [
            {"field": "status", "values": ["active", "to_renew"]},
            {"field": "building_type", "values": ["residential"]},
        ],
        "channels": ["email"],
        "languages": ["fr", "en"],
        "content": {
            "email": {
                "fr": {
                    "subject": "Surcharge pour excédent de neige — {{ contract.number }}",
                    "html": "<p>Bonjour {{ contract.client_name }},</p>"
                    "<p>Une surcharge s'applique au {{ contract.service_address }}.</p>",
                },
                "en": {
                    "subject": "Excess snow surcharge — {{ contract.number }}",
                    "html": "<p>Hello {{ contract.client_name }},</p>"
                    "<p>A surcharge applies at {{ contract.service_address }}.</p>",
                },
            }
        },
        "sender": {"address": "diffusions@deneigement.example", "name": "Déneigement Québec"},
    }
    command.update(overrides)
    return command


def french_only(tenant: str, **overrides: Any) -> dict[str, Any]:
    """The seed's broadcast with French content only."""
    create = create_command(tenant, languages=["fr"], **overrides)
    del create["content"]["email"]["en"]
    return create


def distinct(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as readers count them: copies (the same event id, republished) dropped."""
    return list({e["event_id"]: e for e in events}.values())


async def ask(
    log: EventLog, tenant: str, body: dict[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    """Publish a command and return its answer; replaying a request id returns the new answer."""
    request_id = request_id or body.get("request_id") or f"req-{uuid4()}"
    payload = {"tenant_id": tenant, "request_id": request_id, "requested_by": "user-42", **body}

    async def send(command: Mapping[str, Any]) -> None:
        await publish_json("broadcast.requests", [(tenant, dict(command))])

    return await commands.ask(log, send, payload)


async def actions_of(
    log: EventLog, tenant: str, broadcast_id: str | None = None, **query: Any
) -> list[dict[str, Any]]:
    """The tenant's manual actions (of one broadcast when given), as the platform lists them."""
    body: dict[str, Any] = {"type": "list_actions", **query}
    if broadcast_id is not None:
        body["broadcast_id"] = broadcast_id
    answer = await ask(log, tenant, body)
    assert answer["type"] == "actions.listed", answer
    actions: list[dict[str, Any]] = answer["actions"]
    return actions


async def configure(
    log: EventLog, tenant: str, settings: dict[str, Any], timeout: float = 30
) -> dict[str, Any]:
    """Configure the tenant and wait until the dispatcher applies the settings; the answer."""
    answer = await ask(log, tenant, {"type": "configure_tenant", "settings": settings})
    if answer["type"] != "tenant.configured":
        return answer
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        await watch.until_settings(
            connection,
            tenant,
            lambda applied: all(applied.get(k) == v for k, v in settings.items()),
            timeout,
        )
    finally:
        await connection.close()
    return answer


async def create_and_start(log: EventLog, create: dict[str, Any]) -> str:
    """Publish the create command and, once accepted, its start; return the broadcast id.

    A tenant the test did not configure is configured to send every day first."""
    tenant = create["tenant_id"]
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        known = await watch.tenant_settings(connection, tenant)
    finally:
        await connection.close()
    if known is None:
        await configure(log, tenant, OPEN_ALL_WEEK)
    accepted = await ask(log, tenant, create)
    assert accepted["type"] == "broadcast.accepted", accepted
    broadcast_id: str = accepted["broadcast_id"]
    start = {
        "type": "start_broadcast",
        "tenant_id": tenant,
        "request_id": f"{create['request_id']}-start",
        "requested_by": create["requested_by"],
        "broadcast_id": broadcast_id,
    }
    await publish_json("broadcast.requests", [(tenant, start)])
    return broadcast_id


async def run_broadcast(create: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Create and start; return every event of the broadcast up to the completed one."""
    log = await EventLog("broadcast.events").open()
    try:
        broadcast_id = await create_and_start(log, create)
        completed = await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
        )
        return [e for e in log.records if e.get("broadcast_id") == broadcast_id], completed
    finally:
        await log.close()


async def completed(log: EventLog, broadcast_id: str, run_id: str | None = None) -> dict[str, Any]:
    return await log.wait_for(
        lambda e: (
            e["type"] == "broadcast.completed"
            and e["broadcast_id"] == broadcast_id
            and (run_id is None or e["run_id"] == run_id)
        ),
        timeout=90,
    )


async def broadcast_state(db: asyncpg.Pool, broadcast_id: str) -> str | None:
    return await watch.broadcast_state(db, broadcast_id)


async def until_completed(db: asyncpg.Pool, broadcast_id: str) -> None:
    """Targeting learns of a completion from the tracker's event, a moment after it: until
    then a resend is refused with `not_finished`."""
    await watch.until_state(db, broadcast_id, {"completed"})


async def until_action(events: EventLog, tenant: str, action_id: int, state: str) -> None:
    """Until the tenant's action `action_id` is in `state` (a follow-up settled)."""
    async with asyncio.timeout(60):
        while {a["action_id"]: a["state"] for a in await actions_of(events, tenant)}[
            action_id
        ] != state:
            await asyncio.sleep(0.2)


async def resend_failed(
    db: asyncpg.Pool, events: EventLog, tenant: str, broadcast_id: str, **fields: Any
) -> dict[str, Any]:
    """The answer to a resend to the failures once targeting knows of the last run's
    completion and of each of its failures (two topics: it says `not_finished` until then)."""
    await until_completed(db, broadcast_id)
    command = {"type": "resend_broadcast", "broadcast_id": broadcast_id, "only_failed": True}
    async with asyncio.timeout(60):
        while (answer := await ask(events, tenant, command | fields)).get(
            "reason"
        ) == "not_finished":
            await asyncio.sleep(0.5)
    return answer


async def received(smtp_sink: SmtpSink, domain: str) -> Counter[str]:
    """How many messages each address of `domain` got at the SMTP sink."""
    return Counter(r for m in await smtp_sink.messages(domain) for r in m.rcpt_tos)
