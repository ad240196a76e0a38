"""The replay protocol with the requests table faked: a remembered request is applied once and
answered as the first time after, on the same answers topic."""

from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.targeting import replays, store, transitions
from services.targeting.answers import Answer, accepted
from services.targeting.broadcasts import Rejection
from services.targeting.store import LatestRun
from shared.events import AnyCommand, BroadcastAccepted, PauseBroadcast, StartBroadcast
from tests.unit.targeting_fakes import command_handler
from tests.unit.tracker_fakes import FakePublisher

POOL = cast(asyncpg.Pool, object())


class Requests:
    """`targeting.requests` in memory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: dict[tuple[str, str], store.Applied] = {}
        monkeypatch.setattr(store, "applied_request", self.applied_request)
        monkeypatch.setattr(store, "remember_request", self.remember_request)

    async def applied_request(
        self, pool: asyncpg.Pool, tenant_id: str, request_id: str
    ) -> store.Applied | None:
        return self.rows.get((tenant_id, request_id))

    async def remember_request(
        self,
        pool: asyncpg.Pool,
        tenant_id: str,
        request_id: str,
        command: str,
        broadcast_id: UUID | None,
        run_id: UUID | None,
    ) -> None:
        self.rows.setdefault((tenant_id, request_id), store.Applied(command, broadcast_id, run_id))


class Apply:
    """Counts the commands really applied; answers accepted with `run_id`."""

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        self.applied: list[AnyCommand] = []

    async def __call__(self, command: AnyCommand) -> Answer:
        assert isinstance(command, PauseBroadcast | StartBroadcast)
        self.applied.append(command)
        return accepted(command, command.broadcast_id, self.run_id)


def pause(broadcast_id: UUID, request_id: str = "p-1") -> PauseBroadcast:
    return PauseBroadcast(
        tenant_id="acme", request_id=request_id, requested_by="u", broadcast_id=broadcast_id
    )


async def test_a_remembered_command_is_applied_once_and_answered_the_same_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = Requests(monkeypatch)
    broadcast_id, first_run = uuid4(), uuid4()
    apply = Apply(first_run)
    first = await replays.applied_once(POOL, pause(broadcast_id), apply)
    apply.run_id = uuid4()  # the broadcast moved on: a second pause would answer otherwise
    again = await replays.applied_once(POOL, pause(broadcast_id), apply)
    assert len(apply.applied) == 1
    assert isinstance(first, BroadcastAccepted) and isinstance(again, BroadcastAccepted)
    assert (again.broadcast_id, again.run_id, again.command) == (
        broadcast_id,
        first_run,
        "pause_broadcast",
    )
    assert requests.rows[("acme", "p-1")] == store.Applied(
        "pause_broadcast", broadcast_id, first_run
    )


async def test_a_command_idempotent_by_construction_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = Requests(monkeypatch)
    start = StartBroadcast(
        tenant_id="acme", request_id="s-1", requested_by="u", broadcast_id=uuid4()
    )
    apply = Apply(uuid4())
    await replays.applied_once(POOL, start, apply)
    await replays.applied_once(POOL, start, apply)
    assert len(apply.applied) == 2  # the lifecycle finds the run it started
    assert requests.rows == {}


async def test_a_request_id_reused_for_another_broadcast_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Requests(monkeypatch)
    apply = Apply(uuid4())
    await replays.applied_once(POOL, pause(uuid4()), apply)
    with pytest.raises(Rejection) as caught:
        await replays.applied_once(POOL, pause(uuid4()), apply)
    assert (caught.value.code, caught.value.field) == ("request_reused", "request_id")
    assert len(apply.applied) == 1


async def test_a_refused_command_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    requests = Requests(monkeypatch)

    async def refuse(command: AnyCommand) -> Answer:
        raise Rejection("not_running", "broadcast_id", "this broadcast is draft, not running")

    with pytest.raises(Rejection):
        await replays.applied_once(POOL, pause(uuid4()), refuse)
    assert requests.rows == {}


async def test_a_replay_is_answered_where_the_first_answer_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client's pause, applied then replayed (answered from `targeting.requests`): both
    answers on the client's answers topic, and only the lifecycle's `broadcast.paused` on
    broadcast.events."""
    Requests(monkeypatch)
    run = LatestRun(uuid4(), 1, "u")

    async def paused(pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID) -> Any:
        return True, run

    monkeypatch.setattr(transitions, "pause", paused)
    events, client = FakePublisher(), FakePublisher()
    handler = command_handler(events, {"broadcast.events.acme-crm": client})
    command = pause(uuid4())
    for _ in range(2):
        await handler.handle(command, "broadcast.events.acme-crm")
    assert [(a.type, a.request_id, a.run_id) for a in client.messages] == [
        ("broadcast.accepted", "p-1", run.run_id)
    ] * 2
    assert [e.type for e in events.messages] == ["broadcast.paused"]
