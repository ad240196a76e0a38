"""Commands on a client's request topic, in memory with TestKafkaBroker: a tenant the client
holds reaches the handler; any other is answered `forbidden` by the service that owns the
command, once, and the handler (hence the store) never sees it. Every answer to a client's
request, the decoder's own included, goes to the client's answers topic and none to
broadcast.events. And the client library and the CLI publish on the topic of the client they
speak as, and read the answers on its answers topic."""

import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from deploy import cli
from services.targeting import app as targeting
from services.targeting.commands import CommandHandler
from services.targeting.settings import Settings as TargetingSettings
from services.tracker import app as tracker
from services.tracker.settings import Settings as TrackerSettings
from shared import topics
from shared.client.commands import Commands, EventsNotReadable
from shared.events import BroadcastRejected
from shared.requesters import RequestClientsError, parse
from shared.service import Runtime

CLIENTS = parse('{"acme-crm": ["acme"]}')
CLIENT_TOPIC = "broadcast.requests.acme-crm"
CLIENT_ANSWERS = "broadcast.events.acme-crm"
BASE = {"requested_by": "crm-user"}
ESTIMATE = {**BASE, "type": "estimate_broadcast", "criteria": [], "channels": ["email"]}
RESOLVE = {**BASE, "type": "resolve_action", "action_id": 7, "resolution": "ignore"}


async def exchange(
    app: AsgiFastStream, records: list[tuple[str, dict[str, Any] | bytes]]
) -> list[tuple[str, BroadcastRejected]]:
    """Publish (topic, command) records; the rejections the service answered with, each with
    the answers topic it went to."""
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    answers: list[tuple[str, dict[str, Any]]] = []

    @broker.subscriber(topics.EVENTS.name, CLIENT_ANSWERS, batch=False)
    async def collect(message: KafkaMessage) -> None:
        record = message.raw_message
        assert isinstance(record, ConsumerRecord)
        answers.append((record.topic, json.loads(message.body)))

    async with TestKafkaBroker(broker) as test_broker:
        for topic, command in records:
            await test_broker.publish(command, topic, key=b"acme")
    return [(topic, BroadcastRejected.model_validate(a)) for topic, a in answers]


def command(template: dict[str, Any], tenant: str, request_id: str) -> dict[str, Any]:
    return {**template, "tenant_id": tenant, "request_id": request_id}


async def test_targeting_acts_for_the_clients_tenant_and_forbids_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled: list[tuple[str, str, str]] = []

    async def handle(self: CommandHandler, command: Any, answers_topic: str) -> None:
        handled.append((command.tenant_id, command.request_id, answers_topic))

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
    # The handler is told where each command is answered: where its sender reads.
    assert handled == [
        ("acme", "r-own", CLIENT_ANSWERS),
        ("globex", "r-platform", topics.EVENTS.name),
    ]
    ((where, forbidden),) = rejected
    assert where == CLIENT_ANSWERS
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
    assert [(where, r.request_id, r.command, r.reason) for where, r in rejected] == [
        (CLIENT_ANSWERS, "r-own", "resolve_action", "action_not_found"),
        (CLIENT_ANSWERS, "r-spoofed", "resolve_action", "forbidden"),
    ]


async def test_the_decoders_own_answers_go_where_the_request_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unreadable records, invalid fields and commands the handler fails on by itself are
    answered by the decoder and the isolating wrapper, not the handler: on the client's answers
    topic for the client's requests, on broadcast.events for the platform's."""

    async def handle(self: CommandHandler, command: Any, answers_topic: str) -> None:
        raise ValueError("a bug this one command triggers")

    monkeypatch.setattr(CommandHandler, "handle", handle)
    app = targeting.create_app(TargetingSettings(BROADCAST_REQUEST_CLIENTS=CLIENTS))
    invalid = {**command(ESTIMATE, "acme", "r-invalid"), "channels": ["fax"]}
    rejected = await exchange(
        app,
        [
            (CLIENT_TOPIC, b"{oops"),
            (CLIENT_TOPIC, invalid),
            (CLIENT_TOPIC, command(ESTIMATE, "acme", "r-fails")),
            (topics.REQUESTS.name, b"{oops"),
            (topics.REQUESTS.name, command(ESTIMATE, "acme", "r-platform-fails")),
        ],
    )
    assert [(where, r.request_id, r.reason) for where, r in rejected] == [
        (CLIENT_ANSWERS, None, "invalid_json"),
        (CLIENT_ANSWERS, "r-invalid", "invalid_field"),
        (CLIENT_ANSWERS, "r-fails", "internal_error"),
        (topics.EVENTS.name, None, "invalid_json"),
        (topics.EVENTS.name, "r-platform-fails", "internal_error"),
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


@pytest.mark.parametrize(
    ("client", "topic"), [(None, "broadcast.events"), ("acme-crm", "broadcast.events.acme-crm")]
)
async def test_the_client_library_reads_the_answers_of_its_client(
    client: str | None, topic: str
) -> None:
    commands = Commands("127.0.0.1:1", requested_by="crm-user", client=client)
    assert commands.answers._consumer.subscription() == {topic}


async def test_a_client_may_not_follow_broadcast_events_and_is_told_why() -> None:
    assert Commands("127.0.0.1:1", requested_by="platform").events.records == []
    commands = Commands("127.0.0.1:1", requested_by="crm-user", client="acme-crm")
    with pytest.raises(EventsNotReadable, match=r"broadcast\.events\.acme-crm only.*get_broadcast"):
        commands.events  # noqa: B018 - the property refuses


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
