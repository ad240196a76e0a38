"""Commands on a client's request topic, in memory with TestKafkaBroker: a tenant the client
holds reaches the handler; any other is answered `forbidden` by the service that owns the
command, once, and the handler (hence the store) never sees it."""

from typing import Any

import pytest
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker, TestKafkaBroker

from services.targeting import app as targeting
from services.targeting.commands import CommandHandler
from services.targeting.settings import Settings as TargetingSettings
from services.tracker import app as tracker
from services.tracker.settings import Settings as TrackerSettings
from shared import topics
from shared.events import BroadcastRejected
from shared.requesters import parse
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
    app = targeting.create_app(TargetingSettings(request_clients=CLIENTS))
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
    app = tracker.create_app(TrackerSettings(request_clients=CLIENTS))
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
