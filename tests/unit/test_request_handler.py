"""The request handler answers bad records itself: checked in memory with TestKafkaBroker."""

import json
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from services.targeting.app import create_app
from shared import topics
from shared.events import BroadcastRejected


async def test_an_invalid_command_is_answered_with_rejected_naming_the_field() -> None:
    app = create_app()
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    # What a plain Kafka client of the platform would read: the record's key and value bytes.
    wire: list[tuple[bytes | None, bytes]] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(message: KafkaMessage) -> None:
        record = message.raw_message
        assert isinstance(record, ConsumerRecord)
        wire.append((record.key, message.body))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            {
                "type": "start_broadcast",
                "tenant_id": "acme",
                "request_id": "r-1",
                "requested_by": "u",
                "broadcast_id": "not-a-uuid",
            },
            topics.REQUESTS.name,
            key=b"acme",
        )
        await test_broker.publish(b"{oops", topics.REQUESTS.name, key=b"acme")

    # Plain JSON on the wire: UTF-8 bytes that decode, with no FastStream in between, to one
    # JSON object per answer, keyed by the tenant (the answers name no broadcast).
    assert [key for key, _ in wire] == [b"acme", b"acme"]
    assert all(isinstance(body, bytes) for _, body in wire)
    answers: list[dict[str, Any]] = [json.loads(body.decode("utf-8")) for _, body in wire]
    assert all(isinstance(answer, dict) for answer in answers)
    assert [(a["type"], a["request_id"], a["reason"], a["field"]) for a in answers] == [
        ("broadcast.rejected", "r-1", "invalid_field", "broadcast_id"),
        ("broadcast.rejected", None, "invalid_json", None),
    ]
    assert [(a["tenant_id"], a["command"]) for a in answers] == [
        ("acme", "start_broadcast"),
        (None, None),
    ]
    assert "uuid" in answers[0]["message"].lower()
    # Every field of the event is on the wire and reads back as the same event: a consumer
    # in another language gets the whole contract (schema_version, event_id, occurred_at).
    for answer in answers:
        event = BroadcastRejected.model_validate(answer)
        assert answer == json.loads(event.model_dump_json())
        assert answer.keys() == BroadcastRejected.model_fields.keys()
        assert answer["schema_version"] == 1
