"""Publishing the bench's commands and waiting for what they cause.

Every command a bench publishes, and every wait for an answer, an event or a state, is here, so
that moving the benches onto a shared client changes this module only.
"""

import asyncio
import os
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import invoice
from bench.contracts import CRITERIA
from bench.errors import BenchError
from bench.probes import ServerTimes, settled_sink_count
from bench.processes import SINK_LOG
from deploy.local.every_day import send_every_day
from shared import topics
from shared.client import endpoints, progress, watch
from shared.client.commands import Commands
from shared.client.watch import BroadcastWatch, WatchTimeout
from shared.clock import Clock, utc_now
from shared.events import (
    AnyBroadcastEvent,
    BroadcastAccepted,
    BroadcastCompleted,
    BroadcastProgressed,
    BroadcastRejected,
    BroadcastStarted,
    CreateBroadcast,
    StartBroadcast,
)

# A broadcast that shows no new event for this long is stuck, not slow.
STALL_TIMEOUT_S = 120.0


def create_command(tenant: str, request_id: str, broadcast_id: UUID) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": tenant,
            "request_id": request_id,
            "broadcast_id": broadcast_id,
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
    # When smtp-sink took the run's first and last message (epoch s); None if it was not seen.
    server_first: float | None
    server_last: float | None


async def run_broadcast(
    tenant: str, expected: int, timeout_s: float, clock: Clock = utc_now
) -> RunOutcome:
    """Create the bench's broadcast, start it and follow it to broadcast.completed; the clock
    starts at StartBroadcast. Also records where broadcast.messages and smtp-sink's count stood
    just before, for the stage windows and the sink check, and when smtp-sink took the run's
    first and last message."""
    request_id = f"{tenant}-create"
    # Chosen here, random, so the watcher follows it from before the create is sent.
    broadcast_id = uuid4()
    local = endpoints.local()
    # For broadcast.messages' metadata and end offsets: the stage windows start there.
    producer = AIOKafkaProducer(bootstrap_servers=local.kafka)
    offsets = AIOKafkaConsumer(bootstrap_servers=local.kafka, enable_auto_commit=False)
    await producer.start()
    await offsets.start()
    try:
        # The events are read from their current end before anything is published: no event
        # of this broadcast can be missed.
        async with Commands(local.kafka, requested_by="bench") as commands:
            watcher = BroadcastWatch(commands.events, broadcast_id, stall_s=STALL_TIMEOUT_S)
            connection = await asyncpg.connect(local.database_url)
            try:
                await send_every_day(commands, connection, tenant)
            finally:
                await connection.close()
            await commands.send(create_command(tenant, request_id, broadcast_id))
            await _expect_accepted(watcher, time.monotonic() + 60.0)

            message_parts = await partitions(producer, topics.MESSAGES.name)
            start_offsets = await offsets.end_offsets(message_parts)
            with SINK_LOG.open("rb") as sink_log:
                # Opened at its end before the count settles: every counter printed after
                # `sink_before` is read.
                sink_log.seek(0, os.SEEK_END)
                sink_before = settled_sink_count()
                server = ServerTimes(sink_log, sink_before, expected, clock)
                async with server.following():
                    started_epoch = clock().timestamp()
                    began = time.monotonic()
                    await commands.send(start_command(tenant, f"{tenant}-start", broadcast_id))
                    completed = await _await_completion(watcher, expected, began + timeout_s)
                    elapsed = time.monotonic() - began
        return RunOutcome(
            broadcast_id=broadcast_id,
            run_id=completed.run_id,
            completed=completed,
            started_epoch=started_epoch,
            elapsed_s=elapsed,
            sink_before=sink_before,
            server_first=server.first_at,
            server_last=server.last_at,
            messages_start={tp.partition: o for tp, o in start_offsets.items()},
        )
    finally:
        await offsets.stop()
        await producer.stop()


async def _next(watcher: BroadcastWatch, deadline: float) -> AnyBroadcastEvent:
    try:
        return await watcher.next(deadline)
    except WatchTimeout as stuck:
        raise BenchError(f"the broadcast did not complete: {stuck}") from None


async def _expect_accepted(watcher: BroadcastWatch, deadline: float) -> None:
    event = await _next(watcher, deadline)
    if isinstance(event, BroadcastRejected):
        raise BenchError(f"create rejected: {event.reason} {event.field}: {event.message}")
    if not isinstance(event, BroadcastAccepted):
        raise BenchError(f"expected broadcast.accepted, got {event.type}")


async def _await_completion(
    watcher: BroadcastWatch, expected: int, deadline: float
) -> BroadcastCompleted:
    shown = 0.0
    while True:
        event = await _next(watcher, deadline)
        if isinstance(event, BroadcastRejected):
            raise BenchError(f"start rejected: {event.reason} {event.field}: {event.message}")
        if isinstance(event, BroadcastStarted):
            print(f"  run {event.run_id} started", flush=True)
        if isinstance(event, BroadcastProgressed) and time.monotonic() - shown >= 10:
            shown = time.monotonic()
            c = event.counters
            # A line every 10 s rather than a redrawn bar: the bench's output is often a log.
            print(f"  {progress.bar(c.delivered + c.failed, expected)}", flush=True)
        if isinstance(event, BroadcastCompleted):
            return event


async def targeted(db: asyncpg.Connection, run_id: UUID, timeout: float) -> None:
    """Returns once targeting has published every recipient of the run and checkpointed."""

    async def done() -> bool:
        state = await db.fetchval("SELECT state FROM targeting.runs_v1 WHERE run_id = $1", run_id)
        return bool(state == "targeted")

    await watch.until(done, timeout, f"targeting run {run_id}")


async def drained(db: asyncpg.Connection, run_id: UUID, count: int, timeout: float) -> None:
    """Returns once the dispatcher has recorded an outcome for `count` messages of the run."""

    async def done() -> bool:
        finished: int = await db.fetchval(
            "SELECT count(*) FROM dispatcher.deliveries_v1 "
            "WHERE run_id = $1 AND finished_at IS NOT NULL",
            run_id,
        )
        return finished >= count

    await watch.until(done, timeout, f"the dispatcher draining {count} messages", 0.5)
