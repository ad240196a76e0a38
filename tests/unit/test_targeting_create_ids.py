"""A create's answer, with the broadcasts table faked: the id the store made is accepted, and a
taken id is refused with the same words whoever holds it, naming nothing of theirs."""

from uuid import UUID, uuid4

import asyncpg
import pytest

from services.targeting import store
from shared import topics
from shared.events import BroadcastAccepted, BroadcastRejected, CreateBroadcast
from tests.unit.targeting_fakes import command_handler
from tests.unit.tracker_fakes import FakePublisher


def create(tenant: str, request_id: str, broadcast_id: UUID | None) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": tenant,
            "request_id": request_id,
            "requested_by": "u",
            "name": "Avis secret",
            "broadcast_id": broadcast_id,
            "channels": ["email"],
            "languages": ["fr"],
            "content": {"email": {"fr": {"subject": "s", "html": "h"}}},
            "sender": {"address": "a@x.example"},
        }
    )


async def test_the_id_the_store_gives_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    made = uuid4()

    async def create_broadcast(pool: asyncpg.Pool, command: CreateBroadcast) -> UUID:
        return made

    monkeypatch.setattr(store, "create_broadcast", create_broadcast)
    events = FakePublisher()
    await command_handler(events).handle(create("acme", "r-1", None), topics.EVENTS.name)
    [answer] = events.messages
    assert isinstance(answer, BroadcastAccepted) and answer.broadcast_id == made


async def test_a_taken_id_is_refused_alike_and_names_nothing_of_its_holder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store says only "taken": whether another tenant holds the id, with the request id
    the refused command also carries or another, or the same tenant does, the answer can only
    be the same, and it names no request id and no name."""

    async def taken(pool: asyncpg.Pool, command: CreateBroadcast) -> None:
        return None

    monkeypatch.setattr(store, "create_broadcast", taken)
    events = FakePublisher()
    broadcast_id = uuid4()
    for tenant, request_id in [
        ("intruder", "owners-request"),
        ("intruder", "r-9"),
        ("owner", "r-2"),
    ]:
        await command_handler(events).handle(
            create(tenant, request_id, broadcast_id), topics.EVENTS.name
        )
    answers = [
        (a.type, a.reason, a.field, a.message, a.broadcast_id)
        for a in events.messages
        if isinstance(a, BroadcastRejected)
    ]
    assert (
        answers
        == [
            (
                "broadcast.rejected",
                "broadcast_exists",
                "broadcast_id",
                f"broadcast {broadcast_id} already exists",
                broadcast_id,
            )
        ]
        * 3
    )
