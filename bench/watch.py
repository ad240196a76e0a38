"""Publishing the bench's commands and waiting for what they cause.

Every command a bench publishes, and every wait for an answer, an event or a state, is here, so
that moving the benches onto a shared client changes this module only.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from bench import invoice
from bench.contracts import CRITERIA
from bench.errors import BenchError
from bench.probes import settled_sink_count
from deploy.local import stack
from deploy.local.every_day import send_every_day
from shared import topics
from shared.clock import Clock, utc_now
from shared.events import (
    BROADCAST_EVENT_ADAPTER,
    BroadcastAccepted,
    BroadcastCompleted,
    BroadcastProgressed,
    BroadcastRejected,
    BroadcastStarted,
    CreateBroadcast,
    StartBroadcast,
)
from shared.ids import broadcast_id_for

# A broadcast that shows no new event for this long is stuck, not slow.
STALL_TIMEOUT_S = 120.0


def create_command(tenant: str, request_id: str) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": tenant,
            "request_id": request_id,
            "requested_by": "bench",
            "name": "Facture de déneigement (bench)",
            "criteria": CRITERIA,
            "channels": ["email"],
            "languages": ["fr"],
            "content": {"email": {"fr": {"subject": invoice.SUBJECT, "html": invoice.HTML}}},
            "sender": invoice.SENDER,
        }
    )


def start_command(tenant: str, request_id: str, broadcast_id: UUID) -> StartBroadcast:
    return StartBroadcast(
        tenant_id=tenant, request_id=request_id, requested_by="bench", broadcast_id=broadcast_id
    )


async def send(producer: AIOKafkaProducer, command: CreateBroadcast | StartBroadcast) -> None:
    """Publish a command on broadcast.requests, keyed by its tenant; returns once acknowledged."""
    await producer.send_and_wait(
        topics.REQUESTS.name, command.model_dump_json().encode(), key=command.tenant_id.encode()
    )


async def partitions(producer: AIOKafkaProducer, topic: str) -> list[TopicPartition]:
    # The producer's lookup waits for the topic's metadata; the consumer's answers from a cache
    # that holds only subscribed topics.
    found = await asyncio.wait_for(producer.partitions_for(topic), timeout=30.0)
    if not found:
        raise BenchError(f"topic {topic} has no partitions; is the stack up?")
    return [TopicPartition(topic, p) for p in sorted(found)]


@dataclass
class RunOutcome:
    broadcast_id: UUID
    run_id: UUID
    completed: BroadcastCompleted
    started_epoch: float  # wall clock at StartBroadcast, to place the stages on the same axis
    elapsed_s: float
    sink_before: int
    messages_start: dict[int, int]


class EventWatcher:
    """broadcast.events from the current end on, filtered to one broadcast, with deadlines."""

    def __init__(self, consumer: AIOKafkaConsumer, broadcast_id: UUID) -> None:
        self._consumer = consumer
        self._broadcast_id = broadcast_id
        self._pending: list[Any] = []
        self.last_event_at = time.monotonic()

    async def next(self, deadline: float) -> Any:
        """The next event of the broadcast; BenchError at the deadline or after a stall."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise BenchError("the broadcast did not complete before the deadline")
            if now - self.last_event_at >= STALL_TIMEOUT_S:
                raise BenchError(f"no event from the broadcast for {STALL_TIMEOUT_S:.0f}s")
            batch = await self._consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    try:
                        event = BROADCAST_EVENT_ADAPTER.validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not ours to judge: other producers share the topic
                    if getattr(event, "broadcast_id", None) == self._broadcast_id:
                        self.last_event_at = time.monotonic()
                        self._pending.append(event)
            if self._pending:
                return self._pending.pop(0)


async def run_broadcast(
    tenant: str, expected: int, timeout_s: float, clock: Clock = utc_now
) -> RunOutcome:
    """Create the bench's broadcast, start it and follow it to broadcast.completed; the clock
    starts at StartBroadcast. Also records where broadcast.messages and smtp-sink's count stood
    just before, for the stage windows and the sink check."""
    request_id = f"{tenant}-create"
    broadcast_id = broadcast_id_for(tenant, request_id)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.KAFKA_BOOTSTRAP, acks="all", enable_idempotence=True
    )
    events = AIOKafkaConsumer(bootstrap_servers=stack.KAFKA_BOOTSTRAP, enable_auto_commit=False)
    offsets = AIOKafkaConsumer(bootstrap_servers=stack.KAFKA_BOOTSTRAP, enable_auto_commit=False)
    await producer.start()
    await events.start()
    await offsets.start()
    try:
        # Assigned by hand and positioned at the end before anything is published: no group to
        # join, and no event of this broadcast can be missed.
        event_parts = await partitions(producer, topics.EVENTS.name)
        events.assign(event_parts)
        await events.seek_to_end(*event_parts)
        for tp in event_parts:
            await events.position(tp)
        watcher = EventWatcher(events, broadcast_id)

        connection = await asyncpg.connect(stack.postgres_url())
        try:
            await send_every_day(producer, connection, tenant)
        finally:
            await connection.close()
        await send(producer, create_command(tenant, request_id))
        await _expect_accepted(watcher, time.monotonic() + 60.0)

        message_parts = await partitions(producer, topics.MESSAGES.name)
        start_offsets = await offsets.end_offsets(message_parts)
        sink_before = settled_sink_count()
        started_epoch = clock().timestamp()
        began = time.monotonic()
        await send(producer, start_command(tenant, f"{tenant}-start", broadcast_id))
        completed = await _await_completion(watcher, expected, began + timeout_s)
        elapsed = time.monotonic() - began
        return RunOutcome(
            broadcast_id=broadcast_id,
            run_id=completed.run_id,
            completed=completed,
            started_epoch=started_epoch,
            elapsed_s=elapsed,
            sink_before=sink_before,
            messages_start={tp.partition: o for tp, o in start_offsets.items()},
        )
    finally:
        await offsets.stop()
        await events.stop()
        await producer.stop()


async def _expect_accepted(watcher: EventWatcher, deadline: float) -> None:
    event = await watcher.next(deadline)
    if isinstance(event, BroadcastRejected):
        raise BenchError(f"create rejected: {event.reason} {event.field}: {event.message}")
    if not isinstance(event, BroadcastAccepted):
        raise BenchError(f"expected broadcast.accepted, got {event.type}")


async def _await_completion(
    watcher: EventWatcher, expected: int, deadline: float
) -> BroadcastCompleted:
    shown = 0.0
    while True:
        event = await watcher.next(deadline)
        if isinstance(event, BroadcastRejected):
            raise BenchError(f"start rejected: {event.reason} {event.field}: {event.message}")
        if isinstance(event, BroadcastStarted):
            print(f"  run {event.run_id} started", flush=True)
        if isinstance(event, BroadcastProgressed) and time.monotonic() - shown >= 10:
            shown = time.monotonic()
            c = event.counters
            print(f"  {c.delivered + c.failed}/{expected} done", flush=True)
        if isinstance(event, BroadcastCompleted):
            return event


async def targeted(db: asyncpg.Connection, run_id: UUID, timeout: float) -> None:
    """Returns once targeting has published every recipient of the run and checkpointed."""
    async with asyncio.timeout(timeout):
        while (
            await db.fetchval("SELECT state FROM targeting.runs WHERE run_id = $1", run_id)
            != "targeted"
        ):
            await asyncio.sleep(0.2)


async def drained(db: asyncpg.Connection, run_id: UUID, count: int, timeout: float) -> None:
    """Returns once the dispatcher has recorded an outcome for `count` messages of the run."""
    deadline = time.monotonic() + timeout
    while (
        await db.fetchval(
            "SELECT count(*) FROM dispatcher.deliveries "
            "WHERE run_id = $1 AND finished_at IS NOT NULL",
            run_id,
        )
        < count
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dispatcher did not drain {count} messages in {timeout} s")
        await asyncio.sleep(0.5)
