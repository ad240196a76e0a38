"""The composer answers a render request on its answers topic (broadcast.events for the
platform's): checked in memory with TestKafkaBroker (no database: rendering one stores
nothing)."""

import json
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from services.composer.app import create_app
from services.composer.settings import Settings
from shared import topics
from shared.requesters import parse
from tests.unit.test_previews import request
from tests.unit.test_render import EMAIL


async def test_a_render_request_is_answered_keyed_by_its_broadcast() -> None:
    app = create_app()
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    wire: list[tuple[bytes | None, dict[str, Any]]] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(message: KafkaMessage) -> None:
        wire.append((message.raw_message.key, json.loads(message.body)))  # type: ignore[union-attr]

    asked = request(EMAIL, language="en")
    broken = request({"email": {"fr": {"subject": "s", "html": "{{ 1 // 0 }}"}}})
    async with TestKafkaBroker(broker) as test_broker:
        for one in (asked, broken):
            await test_broker.publish(
                one.model_dump(mode="json"), topics.RUNS.name, key=str(one.broadcast_id).encode()
            )

    assert [(key, answer["type"]) for key, answer in wire] == [
        (str(asked.broadcast_id).encode(), "broadcast.rendered"),
        (str(broken.broadcast_id).encode(), "broadcast.rejected"),
    ]
    assert wire[0][1]["email"]["subject"] == "Notice — SAMPLE-0001"
    assert (wire[1][1]["request_id"], wire[1][1]["reason"]) == ("req-1", "render_failed")


async def test_a_clients_render_request_is_answered_on_its_answers_topic_only() -> None:
    """Rendered for a client, answered where that client alone reads; one whose answers topic
    this composer was not configured with goes to the dead letters, not to broadcast.events."""
    app = create_app(Settings(BROADCAST_REQUEST_CLIENTS=parse('{"acme-crm": ["acme"]}')))
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    wire: list[tuple[str, str]] = []

    @broker.subscriber(
        topics.EVENTS.name, "broadcast.events.acme-crm", topics.DEAD_LETTERS.name, batch=False
    )
    async def collect(message: KafkaMessage) -> None:
        record = message.raw_message
        assert isinstance(record, ConsumerRecord)
        wire.append((record.topic, json.loads(message.body)["type"]))

    asked = request(EMAIL, language="en").model_copy(
        update={"answers_topic": "broadcast.events.acme-crm"}
    )
    stray = request(EMAIL).model_copy(update={"answers_topic": "broadcast.events.unknown"})
    async with TestKafkaBroker(broker) as test_broker:
        for one in (asked, stray):
            await test_broker.publish(
                one.model_dump(mode="json"), topics.RUNS.name, key=str(one.broadcast_id).encode()
            )

    assert wire == [
        ("broadcast.events.acme-crm", "broadcast.rendered"),
        (topics.DEAD_LETTERS.name, "message.dead_lettered"),
    ]
