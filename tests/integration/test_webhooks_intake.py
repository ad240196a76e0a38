"""The webhook routes with a real intake: a report posted by Mailgun or the SMS gateway, about a
message the ledger holds, is on broadcast.deliveries with its message's identity before the
route answers 200; a report about no message of ours publishes nothing.

The routes run in this process (the stack's dispatcher is not restarted for them), on the
stack's Kafka and a throwaway database migrated as the dispatcher's role (migration 009 too).
"""

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from deploy.local.stack import create_database, drop_database
from deploy.local.stack.postgres import provision_roles
from services.dispatcher import app as dispatcher_app
from services.dispatcher.intake import Intake
from services.dispatcher.settings import Settings
from services.dispatcher.webhooks import Webhooks
from services.dispatcher.webhooks.gateway import SIGNATURE_HEADER, latest_sms_to, signature
from services.dispatcher.webhooks.twilio import message_of_sid
from shared import topics
from shared.client.log import TopicLog
from shared.db import create_pool, migrate
from shared.events import DeliveryEvent, DeliveryReport
from shared.fastlane import FastLane
from shared.kafka import make_broker

pytestmark = pytest.mark.stack

DATABASE = "webhooks_intake_test"
MAILGUN_KEY = "mailgun-test-signing-key"
MIGRATIONS = Path(dispatcher_app.__file__).parent / "migrations"


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    create_database(DATABASE)
    provision_roles(DATABASE)
    url = f"postgresql://dispatcher:broadcast@127.0.0.1:15432/{DATABASE}"
    pool = await create_pool(url, size=2)
    await migrate(pool, "dispatcher", MIGRATIONS)
    yield pool
    await pool.close()
    drop_database(DATABASE)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(mailgun_signing_key=SecretStr(MAILGUN_KEY))


@pytest.fixture
async def client(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The dispatcher's webhook routes, wired as create_app wires them."""
    registry = CollectorRegistry()
    broker = make_broker(settings, service="dispatcher", registry=registry)
    name = topics.DELIVERIES.name
    lane = FastLane(
        broker,
        name,
        broker.publisher(name, schema=DeliveryEvent),
        registry=registry,
        service="dispatcher",
    )
    await broker.connect()

    async def publish_reports(reports: Sequence[DeliveryReport]) -> None:
        await lane.publish_keyed((str(r.recipient_id), r) for r in reports)

    intake = Intake(lambda: pool, publish_reports)
    webhooks = Webhooks(settings, intake.take, lambda: pool, lambda: datetime.now(UTC))
    routes = dict(webhooks.routes)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await routes[scope["path"]](scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatcher") as http:
        yield http
    await webhooks.close()
    await broker.stop()


async def handed_over(pool: asyncpg.Pool, channel: str, address: str) -> dict[str, Any]:
    """A ledger row as the dispatcher leaves a message its provider accepted."""
    row = {
        "recipient_id": uuid4(),
        "run_id": uuid4(),
        "broadcast_id": uuid4(),
        "tenant_id": f"t{uuid4().hex[:10]}",
        "contract_id": "C-7",
        "channel": channel,
        "address": address,
    }
    await pool.execute(
        """INSERT INTO dispatcher.deliveries (recipient_id, run_id, broadcast_id, tenant_id,
               contract_id, channel, address, state, finished_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'delivered', now())""",
        *row.values(),
    )
    return row


def mailgun_failure(recipient: UUID) -> bytes:
    stamp, token = str(int(time.time())), uuid4().hex
    signed = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": stamp, "token": token, "signature": signed},
            "event-data": {
                "event": "failed",
                "severity": "permanent",
                "timestamp": time.time(),
                "delivery-status": {
                    "code": 550,
                    "message": "No such user",
                    "enhanced-code": "5.1.1",
                },
                "message": {"headers": {"message-id": f"{recipient}@example.org"}},
            },
        }
    ).encode()


def gateway(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    token = Settings().sms_gateway_token.get_secret_value().encode()
    return body, {SIGNATURE_HEADER: signature(token, body)}


async def test_reports_are_published_with_their_messages_identity(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    email = await handed_over(pool, "email", "jane@example.org")
    number = f"+3361{uuid4().int % 10**7:07d}"
    older = await handed_over(pool, "sms", number)
    sms = await handed_over(pool, "sms", number)
    async with TopicLog("127.0.0.1:19092", topics.DELIVERIES.name) as log:
        bounce = await client.post(
            "/webhooks/mailgun", content=mailgun_failure(email["recipient_id"])
        )
        body, headers = gateway({"reference": str(older["recipient_id"]), "status": "delivered"})
        receipt = await client.post("/webhooks/sms/receipts", content=body, headers=headers)
        body, headers = gateway({"from": number, "to": "+15550000000", "text": "STOP"})
        reply = await client.post("/webhooks/sms/replies", content=body, headers=headers)
        stranger = await client.post("/webhooks/mailgun", content=mailgun_failure(uuid4()))
        for response in (bounce, receipt, reply, stranger):
            assert response.status_code == 200, response.text
        assert [r.json()["published"] for r in (bounce, receipt, reply, stranger)] == [1, 1, 1, 0]
        ours = {str(row["recipient_id"]) for row in (email, older, sms)}
        await log.wait_until(
            lambda: len([r for r in log.records if r.get("recipient_id") in ours]) >= 3, 10.0
        )
    found = {r["recipient_id"]: r for r in log.records if r.get("recipient_id") in ours}
    hard = found[str(email["recipient_id"])]
    assert (hard["type"], hard["kind"], hard["status"], hard["source"]) == (
        "delivery.bounced",
        "hard",
        "5.1.1",
        "mailgun",
    )
    assert (hard["tenant_id"], hard["address"], hard["contract_id"]) == (
        email["tenant_id"],
        "jane@example.org",
        "C-7",
    )
    assert found[str(older["recipient_id"])]["type"] == "delivery.confirmed"
    # The reply without a reference answers the latest SMS handed over to its number.
    replied = found[str(sms["recipient_id"])]
    assert (replied["type"], replied["text"], replied["tenant_id"]) == (
        "delivery.replied",
        "STOP",
        sms["tenant_id"],
    )


async def test_twilios_sid_and_a_number_find_their_sms(pool: asyncpg.Pool) -> None:
    number = f"+3362{uuid4().int % 10**7:07d}"
    row = await handed_over(pool, "sms", number)
    sid = f"SM{uuid4().hex}"
    await pool.execute(
        "UPDATE dispatcher.deliveries SET provider_message = $2 WHERE recipient_id = $1",
        row["recipient_id"],
        sid,
    )
    assert await message_of_sid(pool, sid) == row["recipient_id"]
    assert await message_of_sid(pool, "SMunknown") is None
    assert await latest_sms_to(pool, number) == row["recipient_id"]
    assert await latest_sms_to(pool, "+15559999999") is None
