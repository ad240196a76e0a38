"""Authenticated Kafka with least-privilege principals, end to end.

A broker of its own beside the stack's (SASL_SSL with SCRAM-SHA-512, the KRaft standard
authorizer, the ACLs of deploy/kafka_acls.py applied by the operator, as
`BROADCAST_KAFKA_SECURE=1 make up` runs it), the four services each speaking as its own
principal to a database of their own, the stack's SMTP sink receiving the mail. Two request
clients: `crm` holds `tenant-held`, `other` holds `tenant-other`; each reads its own answers
topic and nothing of broadcast.events, so `crm` follows its broadcast with `get_broadcast`.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from deploy.local.stack import create_database, drop_database, start_component, stop_component
from deploy.local.stack.kafka import kafka
from deploy.local.stack.kafka_secure import Secrets
from deploy.local.stack.postgres import postgres_url, provision_roles
from deploy.local.stack.services import service
from shared.client import watch
from shared.client.commands import Commands, publish
from shared.client.log import TopicLog
from shared.kafka_security import KafkaSecurity
from tests.e2e.audience import OPEN_ALL_WEEK, contract, create_command
from tests.stack import SmtpSink

pytestmark = pytest.mark.stack

BROKER, CONTROLLER = 29092, 29093
BOOTSTRAP = f"127.0.0.1:{BROKER}"
CLIENTS = json.dumps({"crm": ["tenant-held"], "other": ["tenant-other"]})
DATABASE = "broadcast_kafka_security"
PORTS = {"targeting": 29101, "composer": 29102, "dispatcher": 29103, "tracker": 29104}
HELD, NOT_HELD = "tenant-held", "tenant-other"


class Secured:
    """The secure broker's credentials, as each principal would be configured."""

    def __init__(self, files: Secrets) -> None:
        self.files = files

    def as_(self, user: str, password: str | None = None) -> KafkaSecurity:
        return KafkaSecurity(
            protocol="SASL_SSL",
            username=user,
            password=password or self.files.passwords()[user],
            cafile=self.files.ca,
        )


def secure_service(name: str, port: int, files: Secrets) -> Any:
    """The stack's service, pointed at the secure broker as its own principal."""
    started = service(name, port=port)
    prefix = f"{name.upper()}_"
    env = {
        **started.env,
        "BROADCAST_REQUEST_CLIENTS": CLIENTS,
        f"{prefix}KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        f"{prefix}DATABASE_URL": f"postgresql://{name}:broadcast@127.0.0.1:15432/{DATABASE}",
        **files.client_env(prefix, name),
    }
    return replace(started, name=f"secure-{name}", env=env)


@pytest.fixture(scope="module")
def secured(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    create_database(DATABASE)
    provision_roles(DATABASE)
    base: Path = tmp_path_factory.mktemp("kafka-secure")
    broker = kafka(BROKER, CONTROLLER, secure=True, clients=CLIENTS, name="kafka-secure", base=base)
    started = []
    try:
        start_component(broker)
        started.append(broker)
        files = Secrets(base)
        for name, port in PORTS.items():
            component = secure_service(name, port, files)
            start_component(component)
            started.append(component)
        yield Secured(files)
    finally:
        for component in reversed(started):
            stop_component(component)
        drop_database(DATABASE)


@pytest.fixture
async def database(secured: Secured) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_url(DATABASE))
    yield connection
    await connection.close()


async def as_client(secured: Secured, client: str) -> Commands:
    return await Commands(
        BOOTSTRAP, requested_by="crm-user", client=client, security=secured.as_(client)
    ).open()


async def test_each_service_works_as_its_own_principal(
    secured: Secured, database: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    """A whole broadcast through the four services: each reads and writes what it needs."""
    domain = f"{uuid4().hex[:10]}.example"
    contracts = [
        contract(HELD, f"S-{n}", status="active", building="residential", emails=[f"c{n}@{domain}"])
        for n in range(3)
    ]
    await publish(
        BOOTSTRAP,
        "audience.contracts",
        ((f"{HELD}:{c['contract_id']}".encode(), json.dumps(c).encode()) for c in contracts),
        secured.as_("platform"),
    )
    await watch.until_contracts(database, HELD, 3, timeout=60)
    commands = await as_client(secured, "crm")
    try:
        configured = await commands.ask(
            {"type": "configure_tenant", "tenant_id": HELD, "settings": OPEN_ALL_WEEK}
        )
        assert configured["type"] == "tenant.configured", configured
        await watch.until_settings(
            database, HELD, lambda s: s.get("email_days") == OPEN_ALL_WEEK["email_days"], 60
        )
        accepted = await commands.ask(create_command(HELD))
        assert accepted["type"] == "broadcast.accepted", accepted
        broadcast_id = accepted["broadcast_id"]
        started = await commands.ask(
            {"type": "start_broadcast", "tenant_id": HELD, "broadcast_id": broadcast_id}
        )
        assert started["type"] == "broadcast.accepted", started
        latest: dict[str, Any] = {}

        # The tracker's completion on broadcast.events, as targeting's read model holds it.
        async def completed() -> bool:
            described = await commands.ask(
                {"type": "get_broadcast", "tenant_id": HELD, "broadcast_id": broadcast_id}
            )
            latest.update(described["broadcast"]["latest_run"] or {})
            return latest.get("state") == "completed"

        await watch.until(completed, 120, f"broadcast {broadcast_id} completed", interval=1.0)
    finally:
        await commands.close()
    assert latest["run_id"] == started["run_id"]
    assert latest["counters"]["delivered"] == 3
    assert await smtp_sink.count(domain) == 3
    # Readiness lists each service's own groups and their offsets: its principal may.
    async with httpx.AsyncClient() as http:
        for port in PORTS.values():
            ready = await http.get(f"http://127.0.0.1:{port}/ready")
            assert ready.status_code == 200, ready.text


async def test_a_client_is_forbidden_for_a_tenant_it_does_not_hold(secured: Secured) -> None:
    commands = await as_client(secured, "crm")
    try:
        answer = await commands.ask(
            {
                "type": "estimate_broadcast",
                "tenant_id": NOT_HELD,
                "criteria": [],
                "channels": ["email"],
            }
        )
    finally:
        await commands.close()
    assert answer["type"] == "broadcast.rejected", answer
    assert (answer["reason"], answer["field"]) == ("forbidden", "tenant_id")


async def test_a_client_can_neither_squat_nor_probe_another_clients_broadcast(
    secured: Secured, database: asyncpg.Connection
) -> None:
    """Through the authenticated broker, as two clients: `other` reuses the id and the request
    id `crm` used for its tenant, and learns nothing of it; `crm`'s broadcast is untouched."""
    crm, other = await as_client(secured, "crm"), await as_client(secured, "other")
    try:
        create = create_command(HELD, name="Avis secret")
        broadcast_id = (await crm.ask(create))["broadcast_id"]
        squat = create_command(
            NOT_HELD, name="Piraté", broadcast_id=broadcast_id, request_id=create["request_id"]
        )
        refused = await other.ask(squat)
        assert (refused["type"], refused["reason"], refused["field"]) == (
            "broadcast.rejected",
            "broadcast_exists",
            "broadcast_id",
        ), refused
        # Its own request id comes back (it sent it); nothing of crm's does.
        told = json.dumps({k: v for k, v in refused.items() if k != "request_id"})
        for secret in (create["request_id"], "Avis secret", HELD):
            assert secret not in told, refused
        for probe in ("get_broadcast", "start_broadcast"):
            asked = await other.ask(
                {"type": probe, "tenant_id": NOT_HELD, "broadcast_id": broadcast_id}
            )
            assert (asked["type"], asked["reason"]) == (
                "broadcast.rejected",
                "broadcast_not_found",
            ), asked
        held = await crm.ask(
            {"type": "get_broadcast", "tenant_id": HELD, "broadcast_id": broadcast_id}
        )
    finally:
        await crm.close()
        await other.close()
    assert (held["broadcast"]["name"], held["broadcast"]["state"]) == ("Avis secret", "draft")
    assert (
        await database.fetchval(
            "SELECT count(*) FROM targeting.broadcasts WHERE tenant_id = $1", NOT_HELD
        )
        == 0
    )


async def produce(security: KafkaSecurity, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **security.client_options())
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=HELD.encode()), 30)
    finally:
        await producer.stop()


async def consume(security: KafkaSecurity, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security.client_options(),
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=5000)
        await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("other", "broadcast.requests"),  # the platform's topic: acts for every tenant
        ("other", "broadcast.requests.crm"),  # another client's
        ("platform", "broadcast.recipients"),
        ("composer", "broadcast.requests"),  # a service speaks on its own topics only
        ("dispatcher", "audience.contracts"),
    ],
)
async def test_a_principal_cannot_write_a_topic_it_was_not_given(
    secured: Secured, user: str, topic: str
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(secured.as_(user), topic)


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("other", "broadcast.recipients"),  # who gets what: the recipients' addresses
        ("crm", "broadcast.messages"),
        ("platform", "broadcast.dead-letters"),
        ("dispatcher", "broadcast.requests.crm"),
        # Every tenant's answers and events; another client's answers.
        ("crm", "broadcast.events"),
        ("crm", "broadcast.events.other"),
        ("other", "broadcast.events.crm"),
        ("platform", "broadcast.events.crm"),
    ],
)
async def test_a_principal_cannot_read_a_topic_it_was_not_given(
    secured: Secured, user: str, topic: str
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await consume(secured.as_(user), topic)


async def test_a_client_writes_its_topic_and_reads_its_answers(secured: Secured) -> None:
    await produce(secured.as_("other"), "broadcast.requests.other")
    await consume(secured.as_("other"), "broadcast.events.other")
    log = await TopicLog(BOOTSTRAP, "broadcast.events.other", secured.as_("other")).open()
    await log.close()


async def test_a_wrong_password_or_no_tls_is_refused(secured: Secured) -> None:
    with pytest.raises(KafkaError):
        await produce(secured.as_("crm", password="not-its-password"), "broadcast.requests.crm")
    with pytest.raises(KafkaConnectionError):
        await produce(KafkaSecurity(), "broadcast.requests.crm")
