"""Bad requests are answered with `rejected`, naming the field and the reason; nothing is sent."""

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.e2e.audience import contract, create_command, load, new_tenant
from tests.stack import KAFKA, EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack

NAMES = ("bad-criterion", "bad-value", "no-tenant", "bad-template", "bad-variable")
SERVICE_PORTS = {"targeting": 9101, "composer": 9102, "dispatcher": 9103, "tracker": 9104}


def answer_to(request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("request_id") == request_id


async def test_bad_requests_are_rejected_with_field_and_reason(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    await load(
        db,
        [contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"])],
    )
    ids = {name: f"{name}-{uuid4()}" for name in NAMES}
    unknown_criterion = create_command(
        tenant, request_id=ids["bad-criterion"], criteria=[{"field": "colour", "values": ["red"]}]
    )
    unknown_value = create_command(
        tenant, request_id=ids["bad-value"], criteria=[{"field": "status", "values": ["sleeping"]}]
    )
    missing_tenant = create_command(tenant, request_id=ids["no-tenant"])
    del missing_tenant["tenant_id"]
    bad_template = create_command(tenant, request_id=ids["bad-template"])
    bad_template["content"]["email"]["en"]["html"] = "<p>Hello\n{{ contract.client_name }</p>"
    unknown_variable = create_command(tenant, request_id=ids["bad-variable"])
    unknown_variable["content"]["email"]["fr"]["subject"] = "Solde {{ invoice.total }}"

    log = await EventLog("broadcast.events").open()
    try:
        await publish_json(
            "broadcast.requests",
            [
                (tenant, c)
                for c in (
                    unknown_criterion,
                    unknown_value,
                    missing_tenant,
                    bad_template,
                    unknown_variable,
                )
            ],
        )
        answers = {}
        for name, request_id in ids.items():
            answers[name] = await log.wait_for(answer_to(request_id))
    finally:
        await log.close()

    assert all(a["type"] == "broadcast.rejected" for a in answers.values()), answers
    assert (answers["bad-criterion"]["reason"], answers["bad-criterion"]["field"]) == (
        "unknown_criterion",
        "criteria[0].field",
    )
    assert "colour" in answers["bad-criterion"]["message"]
    assert (answers["bad-value"]["reason"], answers["bad-value"]["field"]) == (
        "unknown_value",
        "criteria[0].values[0]",
    )
    assert (answers["no-tenant"]["reason"], answers["no-tenant"]["field"]) == (
        "invalid_field",
        "tenant_id",
    )
    assert answers["no-tenant"]["tenant_id"] is None
    assert (answers["bad-template"]["reason"], answers["bad-template"]["field"]) == (
        "invalid_template",
        "content.email.en.html",
    )
    assert "line 2" in answers["bad-template"]["message"]
    assert (answers["bad-variable"]["reason"], answers["bad-variable"]["field"]) == (
        "invalid_template",
        "content.email.fr.subject",
    )
    assert "invoice" in answers["bad-variable"]["message"]
    # Nothing was created, so nothing can start.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM targeting.broadcasts_v1 WHERE tenant_id = $1", tenant
        )
        == 0
    )
    assert await smtp_sink.messages(to_domain=domain) == []


async def test_a_record_that_is_not_json_is_rejected_and_services_keep_running(stack: None) -> None:
    log = await EventLog("broadcast.events").open()
    try:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        await producer.send_and_wait("broadcast.requests", b"\x00not json", key=b"garbage")
        await producer.stop()
        answer = await log.wait_for(
            lambda e: e["type"] == "broadcast.rejected" and e["reason"] == "invalid_json"
        )
    finally:
        await log.close()
    assert answer["request_id"] is None
    async with httpx.AsyncClient() as http:
        for name, port in SERVICE_PORTS.items():
            response = await http.get(f"http://127.0.0.1:{port}/health")
            assert response.is_success, (name, response.status_code)
