"""Kafka's ACLs as code: who may read and write what, and the one command that applies them.

python -m deploy.kafka_acls show               # the rules, one per line, for review
python -m deploy.kafka_acls apply [BOOTSTRAP]  # the missing topics, then every binding

Why the rules are what they are (issue 18):
- Each service is a SCRAM principal of its own name, allowed what its code does and no more:
  a stolen service password reads and writes what that service does, not the whole system.
- A request is bound to its sender by the topic it arrives on (shared/requesters.py), so the
  request topics are the rules that matter most: the platform alone writes broadcast.requests,
  a client alone its broadcast.requests.<client>, and nobody else either. One exception, from
  the code: the tracker pauses a failing broadcast by publishing pause_broadcast on the
  platform's topic (services/tracker/pauses.py).
- The platform and the clients are principals too: they write their requests and read their
  answers without a consumer group (shared/client/log.py), so no group. The platform reads
  broadcast.events, a client its own broadcast.events.<client> only: broadcast.events carries
  every tenant's story (addresses included), and a client reads what answers its own requests.
  Whoever answers requests (targeting, the tracker, the composer's render previews) writes
  every answers topic.
- Topics are bound literally (a new topic is a change of these rules); a service's consumer
  groups by the prefix `<service>.` that `shared.kafka.batch_consumer` names them with, so no
  service may join, commit for, or read the offsets of another's.
- Nobody but the operator creates, alters or deletes: it is a super user (`super.users`, no
  ACL needed), and `apply` creates the topics, with their partition counts, as it.
- Kafka's authorizer lets READ and WRITE imply DESCRIBE (metadata, end offsets, committed
  offsets), so DESCRIBE is bound only where it is the whole need: the tracker's lag exporter
  (shared/lag.py) lists every service's groups and the end offsets of their topics. Readiness
  (shared/readiness.py) looks at the service's own groups and topics: READ covers it.
- Idempotent producers (every producer here) need no IDEMPOTENT_WRITE on the cluster since
  Kafka 3.0 (KIP-679): WRITE on some topic suffices.

The rules are pure data (`rules`); `apply` is the one function that talks to Kafka.
"""

import asyncio
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request

from shared import partitions, requesters
from shared.admin import ensure_topics
from shared.kafka_security import KafkaSecurity, tool_security
from shared.partitions import TopicPartitionsError
from shared.requesters import RequestClientsError, Requesters, answers_topic_for, topic_for
from shared.topics import (
    CONTRACTS,
    DEAD_LETTERS,
    DELIVERIES,
    EVENTS,
    MESSAGES,
    RECIPIENTS,
    REQUESTS,
    RUNS,
    TENANTS,
    Topic,
)

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
PLATFORM = "platform"


# Kafka's codes (org.apache.kafka.common.resource / .acl), as CreateAcls carries them.
class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Pattern(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


_ALLOW = 3
_ANY_HOST = "*"


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding, from any host: `principal` (a SCRAM user name) may `operation` on
    the resource `name` (or, PREFIXED, every resource whose name starts with it)."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern is Pattern.PREFIXED else ""
        resource = f"{self.resource_type.name.lower()}:{self.name}{star}"
        return f"{self.principal:<12} {self.operation.name:<8} {resource}"

    def creation(self) -> tuple[int, str, int, str, str, int, int]:
        """The binding as CreateAcls v1 lays out one creation."""
        return (
            self.resource_type,
            self.name,
            self.pattern,
            f"User:{self.principal}",
            _ANY_HOST,
            self.operation,
            _ALLOW,
        )


@dataclass(frozen=True)
class Uses:
    """The topics a service's code consumes and produces (its app module's docstring and
    subscribers; `Runtime` adds the dead letters every service may write)."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]


def service_uses(clients: Requesters) -> dict[str, Uses]:
    """Each service's topics; targeting and the tracker read every request topic, and they and
    the composer (render previews) write every answers topic, broadcast.events first."""
    asked = clients.topics()
    answered = clients.answers_topics()
    return {
        "targeting": Uses(
            reads=(CONTRACTS.name, *asked, RUNS.name, EVENTS.name, DELIVERIES.name),
            writes=(*answered, RUNS.name, RECIPIENTS.name, DELIVERIES.name, TENANTS.name),
        ),
        "composer": Uses(
            reads=(RUNS.name, RECIPIENTS.name),
            writes=(MESSAGES.name, DELIVERIES.name, *answered, RUNS.name),
        ),
        "dispatcher": Uses(
            reads=(MESSAGES.name, RUNS.name, TENANTS.name),
            writes=(DELIVERIES.name, RUNS.name),
        ),
        "tracker": Uses(
            reads=(RUNS.name, *asked, DELIVERIES.name),
            # broadcast.requests: its automatic pauses, sent as the platform would.
            writes=(*answered, RUNS.name, REQUESTS.name),
        ),
    }


# The service whose lag exporter (services/tracker/metrics.py) watches every service's groups.
LAG_EXPORTER = "tracker"


def rules(clients: Requesters) -> tuple[Acl, ...]:
    """Every binding: the services', the platform's, then one client's after another.

    A client named like a service or the platform would share its principal, hence its
    rights: RequestClientsError names it."""
    uses = service_uses(clients)
    taken = sorted(set(clients.clients) & {*uses, PLATFORM})
    if taken:
        raise RequestClientsError(
            f"{requesters.VARIABLE}: client {taken[0]!r} is named like a principal of the "
            "engine (a service or the platform): choose another name"
        )
    return (
        *(acl for name, use in uses.items() for acl in _service(name, use)),
        *_lag_exporter(uses),
        *_requester(PLATFORM, (REQUESTS.name, CONTRACTS.name), EVENTS.name),
        *(
            acl
            for client in sorted(clients.clients)
            for acl in _requester(
                client, (topic_for(client),), answers_topic_for(topic_for(client))
            )
        ),
    )


def _topics(principal: str, operation: Operation, names: Iterable[str]) -> Iterator[Acl]:
    for name in names:
        yield Acl(principal, ResourceType.TOPIC, name, Pattern.LITERAL, operation)


def _service(name: str, use: Uses) -> Iterator[Acl]:
    yield from _topics(name, Operation.READ, use.reads)
    # Every service sets aside what it cannot handle (shared.service.Runtime).
    yield from _topics(name, Operation.WRITE, (*use.writes, DEAD_LETTERS.name))
    yield Acl(name, ResourceType.GROUP, f"{name}.", Pattern.PREFIXED, Operation.READ)


def _lag_exporter(uses: Mapping[str, Uses]) -> Iterator[Acl]:
    others = [name for name in uses if name != LAG_EXPORTER]
    for name in others:
        yield Acl(
            LAG_EXPORTER, ResourceType.GROUP, f"{name}.", Pattern.PREFIXED, Operation.DESCRIBE
        )
    own = uses[LAG_EXPORTER]
    # The topics its READ and WRITE do not already let it describe.
    watched = {topic: None for name in others for topic in uses[name].reads}
    yield from _topics(
        LAG_EXPORTER,
        Operation.DESCRIBE,
        (t for t in watched if t not in own.reads and t not in own.writes),
    )


def _requester(principal: str, writes: tuple[str, ...], answers: str) -> Iterator[Acl]:
    yield from _topics(principal, Operation.WRITE, writes)
    yield from _topics(principal, Operation.READ, (answers,))


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """All the bindings in one CreateAcls request, v1 only.

    aiokafka's own `CreateAclsRequest` carries one binding and also speaks v0, which has no
    pattern type: a broker that negotiated v0 would get every PREFIXED binding as a LITERAL
    one. Pinned to v1, such a broker refuses the request instead."""

    API_KEY = CreateAclsRequest_v1.API_KEY

    def __init__(self, acls: tuple[Acl, ...]) -> None:
        self._creations = [acl.creation() for acl in acls]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


class AclsRefused(Exception):
    """Bindings the broker did not create; the message names each, with Kafka's error."""


async def apply(
    bootstrap: str, security: KafkaSecurity, acls: tuple[Acl, ...], topics: tuple[Topic, ...]
) -> list[str]:
    """As the operator: create the missing `topics`, then every binding of `acls` (one that
    exists already stays as it is, so this can run again). Returns the topics created now;
    AclsRefused when the broker refused any binding."""
    created = await ensure_topics(bootstrap, topics, security)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="broadcast-acls", **security.client_options()
    )
    await admin.start()
    try:
        # aiokafka 0.14's admin client has no create_acls: its own request path, as for
        # create_topics. Any broker will do; it forwards to the controller.
        response = await admin._send_request(_CreateAcls(acls))
    finally:
        await admin.close()
    refused = [
        f"{acl}: {for_code(code).__name__}: {message or 'no message'}"
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code
    ]
    if refused:
        raise AclsRefused("the broker refused these ACL bindings:\n" + "\n".join(refused))
    return created


USAGE = "usage: python -m deploy.kafka_acls show | apply [BOOTSTRAP]"


def main(argv: list[str]) -> int:
    if argv != ["show"] and not (argv[:1] == ["apply"] and len(argv) <= 2):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        clients = requesters.parse(os.environ.get(requesters.VARIABLE))
        counts = partitions.parse(os.environ.get(partitions.VARIABLE))
        acls = rules(clients)
    except (RequestClientsError, TopicPartitionsError) as error:
        print(error, file=sys.stderr)
        return 2
    if argv[0] == "show":
        for acl in acls:
            print(acl)
        return 0
    try:
        operator = tool_security()
    except ValueError as error:  # pydantic's, naming the variable
        print(error, file=sys.stderr)
        return 2
    problem = _operator_problem(operator, acls)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    topics = counts.every_topic(clients)
    bootstrap = argv[1] if len(argv) > 1 else DEFAULT_BOOTSTRAP
    try:
        created = asyncio.run(apply(bootstrap, operator, acls, topics))
    except AclsRefused as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(topics)} topics ({len(created)} created now), {len(acls)} ACL bindings applied")
    return 0


def _operator_problem(operator: KafkaSecurity, acls: tuple[Acl, ...]) -> str | None:
    """Why these credentials cannot apply the rules: unauthenticated, or a bound principal."""
    if not operator.authenticated:
        return (
            "BROADCAST_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: ACLs are applied on an authenticated "
            "cluster, as its operator; set SASL_SSL with BROADCAST_KAFKA_SASL_USERNAME and "
            "BROADCAST_KAFKA_SASL_PASSWORD of a super user"
        )
    if operator.username in {acl.principal for acl in acls}:
        return (
            f"BROADCAST_KAFKA_SASL_USERNAME is {operator.username!r}, a principal these rules "
            "bind: the operator is a super user of its own"
        )
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
