"""The composer answers a render request on broadcast.events: checked in memory with
TestKafkaBroker (no database: rendering one stores nothing)."""

import json
from typing import Any

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from services.composer.app import create_app
from shared import topics
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
