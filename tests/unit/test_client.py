"""The shared client's parts that need no stack: endpoints, the bar, command ids, answers and
the broadcast watch, over a log fed by hand."""

import asyncio
import io
from typing import Any
from uuid import uuid4

import pytest

from shared.client import endpoints, progress
from shared.client.commands import (
    NoAnswer,
    answers_to,
    ask,
    command_with_ids,
    request_record,
)
from shared.client.log import TopicLog, parse
from shared.client.watch import BroadcastWatch, WatchTimeout
from shared.events import BroadcastProgressed, Counters, StartBroadcast


class HandFedLog(TopicLog):
    """A topic log without Kafka: `arrive` queues records that the next poll delivers."""

    def __init__(self) -> None:
        self.records = []
        self._arriving: list[dict[str, Any]] = []

    def arrive(self, *records: dict[str, Any]) -> None:
        self._arriving.extend(records)

    async def poll(self, timeout_ms: int = 200) -> list[dict[str, Any]]:
        await asyncio.sleep(0.01)  # as a fetch does: the loop runs, timeouts can fire
        new, self._arriving = self._arriving, []
        self.records.extend(new)
        return new


def test_endpoints_default_to_the_local_stack_and_follow_the_environment() -> None:
    assert endpoints.local({}).kafka == "127.0.0.1:19092"
    assert endpoints.local({}).database_url.endswith("@127.0.0.1:15432/broadcast")
    moved = endpoints.local({"BROADCAST_KAFKA": "k:9092", "BROADCAST_SMS_CONTROL": ""})
    assert moved.kafka == "k:9092"
    assert moved.sms_control == "http://127.0.0.1:10080"  # empty: the default


def test_the_bar_fills_with_what_is_done() -> None:
    assert progress.bar(5, 10, width=10) == "[#####.....] 5/10"
    assert progress.bar(12, 10, width=4) == "[####] 12/10"
    assert progress.bar(3, None, width=4) == "[????] 3/?"
    assert progress.bar(0, 0, width=4) == "[####] 0/0"


def test_redraw_overwrites_the_line() -> None:
    out = io.StringIO()
    progress.redraw("[##] 1/1", out)
    assert out.getvalue() == "\r[##] 1/1\033[K"


def test_a_command_gets_ids_unless_it_has_them() -> None:
    fresh = command_with_ids({"type": "x", "tenant_id": "t"}, requested_by="cli", prefix="cli")
    assert fresh["request_id"].startswith("cli-") and fresh["requested_by"] == "cli"
    kept = command_with_ids({"request_id": "r", "requested_by": "me"}, requested_by="cli")
    assert (kept["request_id"], kept["requested_by"]) == ("r", "me")
    model = StartBroadcast(tenant_id="t", request_id="r", requested_by="me", broadcast_id=uuid4())
    assert command_with_ids(model, requested_by="cli")["broadcast_id"] == str(model.broadcast_id)


def test_a_command_is_keyed_by_its_tenant() -> None:
    key, value = request_record({"tenant_id": "t", "type": "x"})
    assert (key, parse(value)) == (b"t", {"tenant_id": "t", "type": "x"})


def test_only_json_objects_are_records() -> None:
    assert parse(b'{"a": 1}') == {"a": 1}
    assert parse(b"[1]") is None
    assert parse(b"\xff") is None
    assert parse(None) is None


def test_broadcast_started_is_not_an_answer() -> None:
    records = [
        {"request_id": "r", "type": "broadcast.accepted"},
        {"request_id": "r", "type": "broadcast.started"},
        {"request_id": "other", "type": "broadcast.accepted"},
    ]
    assert answers_to(records, "r") == [records[0]]


async def test_ask_returns_the_answer_that_follows_its_own_publish() -> None:
    log = HandFedLog()
    log.records.append({"request_id": "r", "type": "broadcast.accepted", "n": 1})
    sent: list[Any] = []

    async def send(command: Any) -> None:
        sent.append(command)
        log.arrive({"request_id": "r", "type": "broadcast.started"})
        log.arrive({"request_id": "r", "type": "broadcast.accepted", "n": 2})

    answer = await ask(log, send, {"request_id": "r", "type": "start_broadcast"}, timeout=1)
    assert answer["n"] == 2 and len(sent) == 1


async def test_no_answer_in_time_says_which_command() -> None:
    async def send(command: Any) -> None:
        pass

    with pytest.raises(NoAnswer, match="start_broadcast r"):
        await ask(HandFedLog(), send, {"request_id": "r", "type": "start_broadcast"}, timeout=0.05)


def progressed(broadcast_id: Any, delivered: int) -> dict[str, Any]:
    event = BroadcastProgressed(
        tenant_id="t",
        broadcast_id=broadcast_id,
        run_id=uuid4(),
        counters=Counters(delivered=delivered),
    )
    return event.model_dump(mode="json")


async def test_the_watch_yields_its_broadcast_events_in_order() -> None:
    mine, other = uuid4(), uuid4()
    log = HandFedLog()
    log.arrive(progressed(other, 9), {"type": "not.an.event"}, progressed(mine, 1))
    log.arrive(progressed(mine, 2))
    watch = BroadcastWatch(log, mine)
    first = await watch.next(deadline=float("inf"))
    second = await watch.next(deadline=float("inf"))
    assert isinstance(first, BroadcastProgressed) and isinstance(second, BroadcastProgressed)
    assert (first.counters.delivered, second.counters.delivered) == (1, 2)


async def test_the_watch_gives_up_at_the_deadline_and_on_silence() -> None:
    now = [0.0]
    watch = BroadcastWatch(HandFedLog(), uuid4(), stall_s=5, monotonic=lambda: now[0])
    with pytest.raises(WatchTimeout, match="deadline"):
        await watch.next(deadline=0.0)
    now[0] = 5.0
    with pytest.raises(WatchTimeout, match="no event for 5 s"):
        await watch.next(deadline=100.0)
