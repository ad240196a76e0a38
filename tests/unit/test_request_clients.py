"""Commands on a client's request topic, in memory with TestKafkaBroker: a tenant the client
holds reaches the handler; any other is answered `forbidden` by the service that owns the
command, once, and the handler (hence the store) never sees it. And the client library and the
CLI publish on the topic of the client they speak as."""

from typing import Any

import pytest
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker, TestKafkaBroker

from deploy import cli
from services.targeting import app as targeting
from services.targeting.commands import CommandHandler
from services.targeting.settings import Settings as TargetingSettings
from services.tracker import app as tracker
from services.tracker.settings import Settings as TrackerSettings
from shared import topics
from shared.client.commands import Commands
from shared.events import BroadcastRejected
from shared.requesters import RequestClientsError, parse
from shared.service import Runtime

CLIENTS = parse('{"acme-crm": ["acme"]}')
CLIENT_TOPIC = "broadcast.requests.acme-crm"
BASE = {"requested_by": "crm-user"}
ESTIMATE = {**BASE, "type": "estimate_broadcast", "criteria": [], "channels": ["email"]}
RESOLVE = {**BASE, "type": "resolve_action", "action_id": 7, "resolution": "ignore"}


async def exchange(
    app: AsgiFastStream, records: list[tuple[str, dict[str, Any]]]
) -> list[BroadcastRejected]:
    """Publish (topic, command) records; the rejections the service answered with."""
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    answers: list[dict[str, Any]] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(answer: dict[str, Any]) -> None:
        answers.append(answer)

    async with TestKafkaBroker(broker) as test_broker:
        for topic, command in records:
            await test_broker.publish(command, topic, key=command["tenant_id"].encode())
    return [BroadcastRejected.model_validate(a) for a in answers]


def command(template: dict[str, Any], tenant: str, request_id: str) -> dict[str, Any]:
    return {**template, "tenant_id": tenant, "request_id": request_id}


async def test_targeting_acts_for_the_clients_tenant_and_forbids_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled: list[tuple[str, str]] = []

    async def handle(self: CommandHandler, command: Any) -> None:
        handled.append((command.tenant_id, command.request_id))

    monkeypatch.setattr(CommandHandler, "handle", handle)
    app = targeting.create_app(TargetingSettings(BROADCAST_REQUEST_CLIENTS=CLIENTS))
    rejected = await exchange(
        app,
        [
            (CLIENT_TOPIC, command(ESTIMATE, "acme", "r-own")),
            (CLIENT_TOPIC, command(ESTIMATE, "globex", "r-spoofed")),
            # The platform's topic speaks for every tenant.
            (topics.REQUESTS.name, command(ESTIMATE, "globex", "r-platform")),
            # The tracker's command: the tracker answers it, targeting stays silent.
            (CLIENT_TOPIC, command(RESOLVE, "globex", "r-tracker")),
        ],
    )
    assert handled == [("acme", "r-own"), ("globex", "r-platform")]
    (forbidden,) = rejected
    assert (forbidden.request_id, forbidden.tenant_id, forbidden.command) == (
        "r-spoofed",
        "globex",
        "estimate_broadcast",
    )
    assert (forbidden.reason, forbidden.field) == ("forbidden", "tenant_id")
    # Nothing about the tenant: the same words whether it exists or not.
    assert forbidden.message == "this client may not act for this tenant"


async def test_the_tracker_forbids_its_own_commands_and_leaves_targetings_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answered: list[str] = []

    async def answer(pool: object, runs: object, command: Any, **_: object) -> BroadcastRejected:
        answered.append(command.request_id)
        return BroadcastRejected(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            command=command.type,
            reason="action_not_found",
            field="action_id",
            message="no such action",
        )

    monkeypatch.setattr(tracker, "answer", answer)
    # No database in memory: the handler reads the pool only to pass it to `answer`.
    monkeypatch.setattr(Runtime, "pool", property(lambda _: None))
    app = tracker.create_app(TrackerSettings(BROADCAST_REQUEST_CLIENTS=CLIENTS))
    rejected = await exchange(
        app,
        [
            (CLIENT_TOPIC, command(RESOLVE, "acme", "r-own")),
            (CLIENT_TOPIC, command(RESOLVE, "globex", "r-spoofed")),
            # Targeting's command: targeting answers it, the tracker stays silent.
            (CLIENT_TOPIC, command(ESTIMATE, "globex", "r-targeting")),
        ],
    )
    assert answered == ["r-own"]
    assert [(r.request_id, r.command, r.reason) for r in rejected] == [
        ("r-own", "resolve_action", "action_not_found"),
        ("r-spoofed", "resolve_action", "forbidden"),
    ]


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, key))


@pytest.mark.parametrize(
    ("client", "topic"),
    [(None, "broadcast.requests"), ("acme-crm", "broadcast.requests.acme-crm")],
)
async def test_the_client_library_publishes_on_its_clients_topic_keyed_by_tenant(
    client: str | None, topic: str
) -> None:
    commands = Commands("127.0.0.1:1", requested_by="crm-user", client=client)
    producer = RecordingProducer()
    commands._producer = producer
    await commands.send(command(ESTIMATE, "acme", "r-1"))
    assert producer.sent == [(topic, b"acme")]


def test_the_client_library_refuses_a_name_no_client_can_have() -> None:
    with pytest.raises(RequestClientsError, match="client name 'Acme'"):
        Commands("127.0.0.1:1", requested_by="crm-user", client="Acme")


def test_the_cli_speaks_as_the_client_of_its_option_or_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = ["list", "--tenant", "acme"]
    monkeypatch.delenv("BROADCAST_REQUEST_CLIENT", raising=False)
    assert cli.parser().parse_args(listing).client is None
    monkeypatch.setenv("BROADCAST_REQUEST_CLIENT", "acme-crm")
    assert cli.parser().parse_args(listing).client == "acme-crm"
    assert cli.parser().parse_args(["--client", "ops", *listing]).client == "ops"
    with pytest.raises(SystemExit) as usage:
        cli.parser().parse_args(["--client", "acme/crm", *listing])
    assert usage.value.code == cli.USAGE
    assert "client name 'acme/crm'" in capsys.readouterr().err
