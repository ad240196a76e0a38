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


async def hostile_answers(records: list[bytes]) -> list[dict[str, Any]]:
    """What targeting answers to each raw record, in memory."""
    app = create_app()
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    wire: list[bytes] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(message: KafkaMessage) -> None:
        wire.append(message.body)

    async with TestKafkaBroker(broker) as test_broker:
        for record in records:
            await test_broker.publish(record, topics.REQUESTS.name, key=b"acme")
    return [json.loads(body) for body in wire]


async def test_hostile_records_get_one_bounded_answer_each() -> None:
    start = '{"type": "start_broadcast", "tenant_id": "acme", "requested_by": "u", '
    records = [
        b"[" * 1000 + b"]" * 1000,  # deeper than any parser's recursion
        (start + '"request_id": "r-\\ud800", "broadcast_id": "x"}').encode(),
        (start + '"request_id": "r-2", "' + "f" * 600_000 + '": 1}').encode(),
        ('{"type": "' + "t" * 600_000 + '", "request_id": "r-3"}').encode(),
    ]
    answers = await hostile_answers(records)
    assert [(a["reason"], a["request_id"]) for a in answers] == [
        ("invalid_json", None),
        ("invalid_json", "r-?"),  # a lone surrogate cannot be written back: replaced
        ("invalid_field", "r-2"),
        ("invalid_field", "r-3"),
    ]
    # Echoed input is cut: no answer can outgrow the producer's limit.
    assert all(len(json.dumps(a)) < 8_000 for a in answers)
    assert len(answers[3]["command"]) == 1024


async def test_a_command_its_handler_fails_on_gets_one_internal_error_answer() -> None:
    # In memory there is no database: handling any valid command fails, and not because an
    # outage would pass. Each command gets its own answer, and the next one is handled too.
    commands = [
        {
            "type": "start_broadcast",
            "tenant_id": "acme",
            "request_id": f"r-{n}",
            "requested_by": "u",
            "broadcast_id": "00000000-0000-0000-0000-00000000000" + str(n),
        }
        for n in (1, 2)
    ]
    answers = await hostile_answers([json.dumps(c).encode() for c in commands])
    assert [(a["request_id"], a["reason"], a["field"]) for a in answers] == [
        ("r-1", "internal_error", None),
        ("r-2", "internal_error", None),
    ]
    assert "operator" in answers[0]["message"] and "pool" not in answers[0]["message"]
