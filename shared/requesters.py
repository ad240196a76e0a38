"""Who may speak for which tenant: one request topic per client, and the tenants each holds.

Kafka authenticates a producer but does not tell a consumer who produced a record. What it can
enforce is who may write a topic (ACLs), so a request is bound to its sender by the topic it
arrives on: `broadcast.requests` is the platform's, which acts for every tenant, and each other
client writes `broadcast.requests.<client>` only, where it may act for the tenants it holds.
Answers go back the same way (`answers_topic_for`): the platform's on `broadcast.events`, each
client's on its own `broadcast.events.<client>`, which it alone may read, so that no answer
reaches a client that did not ask.

The mapping comes from one environment variable, read the same way by every consumer of
requests, e.g. BROADCAST_REQUEST_CLIENTS='{"acme-crm": ["acme"], "ops-tool": "*"}'. A topic
outside the mapping allows nothing. Pure: no I/O, no Kafka.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from shared.events.base import TenantId
from shared.json_settings import json_object
from shared.topics import EVENTS, REQUESTS, Topic

VARIABLE = "BROADCAST_REQUEST_CLIENTS"
# A client holding this instead of a list acts for every tenant, as the platform does.
EVERY_TENANT = "*"
CLIENT_NAME = re.compile(r"[a-z0-9-]{1,40}")

_TENANT_ID: TypeAdapter[str] = TypeAdapter(TenantId)


class RequestClientsError(ValueError):
    """A mapping or a client name that cannot be used; the message says which and why."""


def topic_for(client: str | None) -> str:
    """The topic `client` publishes its requests on; None is the platform."""
    if client is None:
        return REQUESTS.name
    if not CLIENT_NAME.fullmatch(client):
        raise RequestClientsError(
            f"client name {client!r}: expected 1 to 40 lowercase letters, digits or '-'"
        )
    return f"{REQUESTS.name}.{client}"


def answers_topic_for(request_topic: str) -> str:
    """Where the answers to a request read from `request_topic` go: `broadcast.events` for the
    platform's, `broadcast.events.<client>` for a client's. The one rule for every answer
    (accepted, rejected, a query's, a render preview's), a replay's included: a request is
    answered where its sender reads. RequestClientsError for a topic that is no request topic."""
    if request_topic == REQUESTS.name:
        return EVENTS.name
    client = request_topic.removeprefix(f"{REQUESTS.name}.")
    if client == request_topic:
        raise RequestClientsError(f"{request_topic!r} is not a request topic")
    topic_for(client)  # a name no client can have (RequestClientsError) has no answers topic
    return f"{EVENTS.name}.{client}"


@dataclass(frozen=True)
class Requesters:
    """The configured clients: name -> the tenants it holds (None: every tenant)."""

    clients: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def topics(self) -> tuple[str, ...]:
        """Every request topic to subscribe to: the platform's first, then one per client."""
        return (REQUESTS.name, *(topic_for(c) for c in sorted(self.clients)))

    def answers_topics(self) -> tuple[str, ...]:
        """Every answers topic an answering service may publish to: the platform's first, then
        one per client, in the order of `topics`."""
        return tuple(answers_topic_for(t) for t in self.topics())

    def client_topics(
        self, requests: Topic = REQUESTS, events: Topic = EVENTS
    ) -> tuple[Topic, ...]:
        """The clients' topics to create, each client's requests then its answers: keyed and
        partitioned as the platform's `requests` and `events` (as configured, when given)."""
        return tuple(
            Topic(name, key=platform.key, partitions=platform.partitions)
            for request in self.topics()[1:]
            for platform, name in ((requests, request), (events, answers_topic_for(request)))
        )

    def may_act(self, topic: str, tenant_id: str) -> bool:
        """Whether a request read from `topic` may act for `tenant_id`; an unknown topic may
        act for nobody."""
        if topic == REQUESTS.name:
            return True
        client = topic.removeprefix(f"{REQUESTS.name}.")
        held = self.clients.get(client, frozenset()) if client != topic else frozenset()
        return held is None or tenant_id in held


def parse(text: str | None) -> Requesters:
    """The mapping as `VARIABLE` holds it (JSON); unset or blank: no client but the platform.

    RequestClientsError names the variable, the client and what is wrong."""
    raw = json_object(
        VARIABLE,
        text,
        'a JSON object of client -> tenants, e.g. {"acme-crm": ["acme"]}',
        RequestClientsError,
    )
    if raw is None:
        return Requesters()
    return Requesters({client: _tenants(client, held) for client, held in raw.items()})


def _tenants(client: str, held: object) -> frozenset[str] | None:
    try:
        topic_for(client)
    except RequestClientsError as error:
        raise RequestClientsError(f"{VARIABLE}: {error}") from None
    if held == EVERY_TENANT:
        return None
    if not isinstance(held, list) or not held:
        raise RequestClientsError(
            f'{VARIABLE}: client {client!r}: expected a non-empty list of tenant ids or "*"'
        )
    for tenant in held:
        try:
            _TENANT_ID.validate_python(tenant, strict=True)
        except ValidationError:
            raise RequestClientsError(
                f"{VARIABLE}: client {client!r}: {tenant!r} is not a tenant id (1 to 64 letters, "
                "digits, '_', '.' or '-', starting with a letter or digit)"
            ) from None
    return frozenset(held)
