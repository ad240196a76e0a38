"""The tracker's command subscriber, in memory with TestKafkaBroker: it answers a bad command of
its own with a rejection, and leaves targeting's commands to targeting; and a send with nowhere
to go is refused. None needs the database."""

from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from services.tracker import store
from services.tracker.app import create_app
from services.tracker.commands import answer
from shared import topics
from shared.events import BroadcastRejected, ResolveAction
from tests.unit.tracker_fakes import FakePublisher, no_pool


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


async def test_send_on_a_no_contact_action_without_an_address_is_refused_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve_action(*_: object) -> store.Resolution:
        raise store.AddressNeeded(7)

    monkeypatch.setattr(store, "resolve_action", resolve_action)
    runs = FakePublisher()
    send = ResolveAction(
        tenant_id="acme", request_id="r-2", requested_by="u", action_id=7, resolution="send"
    )
    reply = await answer(no_pool(), runs, send, history_limit=10)
    assert isinstance(reply, BroadcastRejected)
    assert (reply.reason, reply.field) == ("invalid_field", "address")
    assert runs.messages == []
