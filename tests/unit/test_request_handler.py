"""The request handler answers bad records itself: checked in memory with TestKafkaBroker."""

import json

from faststream.kafka import TestKafkaBroker

from services.targeting.app import create_app
from shared import topics


async def test_an_invalid_command_is_answered_with_rejected_naming_the_field() -> None:
    app = create_app()
    broker = app.broker
    assert broker is not None
    answers: list[dict[str, object]] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(event: dict[str, object]) -> None:
        answers.append(event)

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

    assert [(a["request_id"], a["reason"], a["field"]) for a in answers] == [
        ("r-1", "invalid_field", "broadcast_id"),
        (None, "invalid_json", None),
    ]
    assert "UUID" in str(answers[0]["message"]) or "uuid" in str(answers[0]["message"])
    assert json.dumps(answers)  # plain JSON on the wire
