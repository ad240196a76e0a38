"""The tracker's command subscriber, in memory with TestKafkaBroker: it answers a bad command of
its own with a rejection, and leaves targeting's commands to targeting. Neither needs the
database."""

from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker

from services.tracker.app import create_app
from shared import topics
from shared.events import BroadcastRejected


async def test_a_bad_command_is_rejected_and_the_others_are_left_to_targeting() -> None:
    broker = create_app().broker
    assert isinstance(broker, KafkaBroker)
    answers: list[dict[str, Any]] = []

    @broker.subscriber(topics.EVENTS.name, batch=False)
    async def collect(answer: dict[str, Any]) -> None:
        answers.append(answer)

    command = {"tenant_id": "acme", "request_id": "r-1", "requested_by": "u"}
    async with TestKafkaBroker(broker) as test_broker:
        resolve = {**command, "type": "resolve_action", "action_id": 0, "resolution": "send"}
        await test_broker.publish(resolve, topics.REQUESTS.name, key=b"acme")
        start = {**command, "type": "start_broadcast", "broadcast_id": "not-a-uuid"}
        await test_broker.publish(start, topics.REQUESTS.name, key=b"acme")

    (rejected,) = [BroadcastRejected.model_validate(a) for a in answers]
    assert (rejected.request_id, rejected.command, rejected.field) == (
        "r-1",
        "resolve_action",
        "action_id",
    )
