"""The ACL rules against the code: each service may read what its app subscribes to and write
what it publishes to, no more; the platform and the clients write their requests and read their
own answers, nothing else; nobody but the operator creates or alters. Then the CreateAcls request
and the command, without a broker."""

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.protocol.admin import CreateAclsRequest_v1, CreateAclsResponse_v1
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import LogicPublisher
from faststream.kafka.subscriber.usecase import LogicSubscriber

from deploy import kafka_acls
from deploy.kafka_acls import PLATFORM, AclsRefused, Operation, Pattern, ResourceType, rules
from shared import topics
from shared.fastlane import FastLane
from shared.kafka_security import KafkaSecurity
from shared.requesters import RequestClientsError, answers_topic_for, parse, topic_for

SERVICES = ("targeting", "composer", "dispatcher", "tracker")
CLIENTS = parse('{"acme-crm": ["acme"], "ops-tool": "*"}')
RULES = rules(CLIENTS)
REQUEST_TOPICS = CLIENTS.topics()
ANSWERS_TOPICS = CLIENTS.answers_topics()

# What Kafka's authorizer lets an ALLOW binding imply besides its own operation.
IMPLIES_DESCRIBE = {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}


def allowed(principal: str, operation: Operation, kind: ResourceType, name: str) -> bool:
    """Whether RULES let `principal` do `operation` on a resource, as Kafka decides it."""
    return any(
        acl.principal == principal
        and acl.resource_type is kind
        and (name == acl.name if acl.pattern is Pattern.LITERAL else name.startswith(acl.name))
        and (
            acl.operation in (operation, Operation.ALL)
            or (operation is Operation.DESCRIBE and acl.operation in IMPLIES_DESCRIBE)
        )
        for acl in RULES
    )


def bound(principal: str, operation: Operation) -> set[str]:
    """The topics bound to `principal` for exactly `operation`."""
    return {
        acl.name
        for acl in RULES
        if acl.principal == principal
        and acl.operation is operation
        and acl.resource_type is ResourceType.TOPIC
    }


@dataclass(frozen=True)
class Declared:
    """What a service's app declares: its subscribers' topics and groups, its publishers'
    topics, and the topics its fast lanes send to straight through aiokafka."""

    subscribed: set[str]
    groups: set[str]
    published: set[str]
    lanes: set[str]


def declared(service: str) -> Declared:
    lanes: list[str] = []
    original = FastLane.__init__

    def recording(self: FastLane, broker: KafkaBroker, topic: str, *args: Any, **kw: Any) -> None:
        lanes.append(topic)
        original(self, broker, topic, *args, **kw)

    module = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.settings").Settings
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FastLane, "__init__", recording)
        broker = module.create_app(settings(BROADCAST_REQUEST_CLIENTS=CLIENTS)).broker
    assert isinstance(broker, KafkaBroker)
    subscribers = [s for s in broker.subscribers if isinstance(s, LogicSubscriber)]
    publishers = [p for p in broker.publishers if isinstance(p, LogicPublisher)]
    assert (len(subscribers), len(publishers)) == (
        len(broker.subscribers),
        len(broker.publishers),
    )
    return Declared(
        subscribed={t for s in subscribers for t in s.topic_names},
        # A subscriber without a group ("") belongs to no service's prefix: caught below.
        groups={s.group_id or "" for s in subscribers},
        published={p.topic for p in publishers},
        lanes=set(lanes),
    )


@pytest.fixture(scope="module")
def apps() -> dict[str, Declared]:
    return {service: declared(service) for service in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_what_it_subscribes_to_and_nothing_else(
    apps: dict[str, Declared], service: str
) -> None:
    assert bound(service, Operation.READ) == apps[service].subscribed


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_what_it_publishes_to_and_nothing_else(
    apps: dict[str, Declared], service: str
) -> None:
    assert bound(service, Operation.WRITE) == apps[service].published


def test_the_fast_lanes_send_to_topics_a_publisher_declares(apps: dict[str, Declared]) -> None:
    # They bypass FastStream's publishers, so their topics are checked apart.
    assert {service for service, app in apps.items() if app.lanes} == {
        "targeting",
        "composer",
        "dispatcher",
    }
    assert all(app.lanes <= app.published for app in apps.values())


def test_targeting_and_the_tracker_read_every_request_topic(apps: dict[str, Declared]) -> None:
    for service in ("targeting", "tracker"):
        assert set(REQUEST_TOPICS) <= apps[service].subscribed
        assert all(allowed(service, Operation.READ, ResourceType.TOPIC, t) for t in REQUEST_TOPICS)


def test_the_answering_services_write_every_answers_topic(apps: dict[str, Declared]) -> None:
    # Targeting and the tracker answer their commands, the composer the render previews.
    for topic in ANSWERS_TOPICS:
        writers = {
            p for p in principals() if allowed(p, Operation.WRITE, ResourceType.TOPIC, topic)
        }
        assert writers == {"targeting", "composer", "tracker"}, topic
        assert {s for s, app in apps.items() if topic in app.published} == writers


@pytest.mark.parametrize("service", SERVICES)
def test_a_services_groups_are_its_own(apps: dict[str, Declared], service: str) -> None:
    groups = apps[service].groups
    assert groups and all(g.startswith(f"{service}.") for g in groups)
    for group in groups:
        readers = {p for p in principals() if allowed(p, Operation.READ, ResourceType.GROUP, group)}
        assert readers == {service}


def test_the_lag_exporter_describes_every_group_and_its_topics(apps: dict[str, Declared]) -> None:
    for app in apps.values():
        for group in app.groups:
            assert allowed("tracker", Operation.DESCRIBE, ResourceType.GROUP, group)
        for topic in app.subscribed:
            assert allowed("tracker", Operation.DESCRIBE, ResourceType.TOPIC, topic)
    # Describing is all: no other service's group may be joined or committed for.
    assert not allowed("tracker", Operation.READ, ResourceType.GROUP, "composer.runs")


def test_the_platform_writes_requests_and_contracts_and_reads_answers() -> None:
    assert bound(PLATFORM, Operation.WRITE) == {topics.REQUESTS.name, topics.CONTRACTS.name}
    assert bound(PLATFORM, Operation.READ) == {topics.EVENTS.name}
    assert {acl.resource_type for acl in RULES if acl.principal == PLATFORM} == {ResourceType.TOPIC}


@pytest.mark.parametrize("client", sorted(CLIENTS.clients))
def test_a_client_writes_its_own_request_topic_and_reads_its_answers_and_nothing_else(
    client: str,
) -> None:
    assert {
        (acl.operation, acl.resource_type, acl.name, acl.pattern)
        for acl in RULES
        if acl.principal == client
    } == {
        (Operation.WRITE, ResourceType.TOPIC, topic_for(client), Pattern.LITERAL),
        (
            Operation.READ,
            ResourceType.TOPIC,
            answers_topic_for(topic_for(client)),
            Pattern.LITERAL,
        ),
    }


def test_who_reads_answers() -> None:
    readers = {
        topic: {p for p in principals() if allowed(p, Operation.READ, ResourceType.TOPIC, topic)}
        for topic in ANSWERS_TOPICS
    }
    # broadcast.events: every tenant's story. Targeting follows completions and counters there.
    assert readers.pop(topics.EVENTS.name) == {PLATFORM, "targeting"}
    # A client's answers: that client alone.
    assert readers == {answers_topic_for(topic_for(c)): {c} for c in CLIENTS.clients}


def test_who_writes_requests_and_contracts() -> None:
    writers = {
        topic: {p for p in principals() if allowed(p, Operation.WRITE, ResourceType.TOPIC, topic)}
        for topic in (*REQUEST_TOPICS, topics.CONTRACTS.name)
    }
    # The platform's topic: the platform, and the tracker's automatic pauses (from its code).
    assert writers.pop(topics.REQUESTS.name) == {PLATFORM, "tracker"}
    assert writers.pop(topics.CONTRACTS.name) == {PLATFORM}
    assert writers == {topic_for(c): {c} for c in CLIENTS.clients}


def test_nobody_creates_alters_deletes_or_touches_the_cluster() -> None:
    # Those are the operator's, a super user that no rule names.
    assert {acl.operation for acl in RULES} == {Operation.READ, Operation.WRITE, Operation.DESCRIBE}
    assert {acl.resource_type for acl in RULES} == {ResourceType.TOPIC, ResourceType.GROUP}


def test_every_binding_once_and_prefixed_only_for_groups() -> None:
    assert len(set(RULES)) == len(RULES)
    assert all(
        (acl.pattern is Pattern.PREFIXED) == (acl.resource_type is ResourceType.GROUP)
        for acl in RULES
    )


@pytest.mark.parametrize("name", ["tracker", "platform"])
def test_a_client_may_not_share_a_principal_of_the_engine(name: str) -> None:
    with pytest.raises(RequestClientsError, match=f"BROADCAST_REQUEST_CLIENTS: client '{name}'"):
        rules(parse(f'{{"{name}": ["acme"]}}'))


def principals() -> set[str]:
    return {acl.principal for acl in RULES}


# The request, as the broker reads it: v1, pattern types included.


def test_the_request_is_create_acls_v1_with_every_binding() -> None:
    acls = rules(CLIENTS)
    request = kafka_acls._CreateAcls(acls).prepare({CreateAclsRequest_v1.API_KEY: (1, 3)})
    sent = CreateAclsRequest_v1.decode(request.encode())
    assert (request.API_KEY, request.API_VERSION) == (30, 1)
    assert sent.creations[-1] == (2, "broadcast.events.ops-tool", 3, "User:ops-tool", "*", 3, 3)
    prefixed = next(c for c in sent.creations if c[3] == "User:composer" and c[0] == 3)
    assert prefixed == (3, "composer.", 4, "User:composer", "*", 3, 3)
    assert len(sent.creations) == len(acls)


def test_a_broker_without_v1_is_refused_rather_than_sent_literal_prefixes() -> None:
    with pytest.raises(NotImplementedError):
        kafka_acls._CreateAcls(RULES).prepare({CreateAclsRequest_v1.API_KEY: (0, 0)})


class FakeAdmin:
    """The admin client `apply` uses, answering CreateAcls with the given error codes."""

    sent: list[Any] = []
    answers: list[tuple[int, str | None]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def _send_request(self, request: Any) -> Any:
        FakeAdmin.sent.append(request)
        return CreateAclsResponse_v1(0, FakeAdmin.answers)


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    ensured: list[tuple[str, Any]] = []

    async def ensure_topics(bootstrap: str, wanted: Any, security: Any) -> list[str]:
        ensured.append((bootstrap, wanted))
        return ["broadcast.requests.acme-crm"]

    monkeypatch.setattr(kafka_acls, "ensure_topics", ensure_topics)
    monkeypatch.setattr(kafka_acls, "AIOKafkaAdminClient", FakeAdmin)
    FakeAdmin.sent = []
    yield ensured


ACLS = RULES[:3]


async def test_apply_creates_the_topics_then_the_bindings(
    fake_kafka: list[tuple[str, Any]],
) -> None:
    FakeAdmin.answers = [(0, None)] * len(ACLS)
    wanted = (*topics.ALL, *CLIENTS.client_topics())
    created = await kafka_acls.apply("kafka:9093", KafkaSecurity(), ACLS, wanted)
    assert created == ["broadcast.requests.acme-crm"]
    assert fake_kafka == [("kafka:9093", wanted)]
    (request,) = FakeAdmin.sent
    assert len(request.prepare({30: (1, 1)}).creations) == len(ACLS)


async def test_apply_names_each_refused_binding_with_kafkas_message(
    fake_kafka: list[tuple[str, Any]],
) -> None:
    FakeAdmin.answers = [(0, None), (31, "not allowed"), (54, None)]
    with pytest.raises(AclsRefused) as refused:
        await kafka_acls.apply("kafka:9093", KafkaSecurity(), ACLS, topics.ALL)
    lines = str(refused.value).splitlines()[1:]
    assert lines == [
        f"{ACLS[1]}: ClusterAuthorizationFailedError: not allowed",
        f"{ACLS[2]}: SecurityDisabled: no message",
    ]


# The command.


def test_show_prints_one_rule_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROADCAST_REQUEST_CLIENTS", '{"acme-crm": ["acme"], "ops-tool": "*"}')
    assert kafka_acls.main(["show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [str(acl) for acl in RULES]
    assert "composer     READ     group:composer.*" in lines


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"BROADCAST_REQUEST_CLIENTS": "[1]"}, "BROADCAST_REQUEST_CLIENTS"),
        ({"BROADCAST_REQUEST_CLIENTS": '{"composer": "*"}'}, "BROADCAST_REQUEST_CLIENTS"),
        ({}, "BROADCAST_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"BROADCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "BROADCAST_KAFKA_SASL_USERNAME"),
        (
            {
                "BROADCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "BROADCAST_KAFKA_SASL_USERNAME": "tracker",
                "BROADCAST_KAFKA_SASL_PASSWORD": "x",
            },
            "BROADCAST_KAFKA_SASL_USERNAME is 'tracker'",
        ),
    ],
)
def test_apply_refuses_bad_settings_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    named: str,
) -> None:
    for name in ("BROADCAST_REQUEST_CLIENTS", "BROADCAST_KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert kafka_acls.main(["apply"]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["apply", "a", "b"], ["show", "x"], ["grant"]])
def test_bad_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert kafka_acls.main(argv) == 2
    assert "usage:" in capsys.readouterr().err
