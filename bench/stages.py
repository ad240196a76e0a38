"""Per-stage throughput of one run: each stage's first..last timestamps, and its rate over them.

targeting, dispatcher and tracker from their own tables; the composer from the Kafka record
timestamps of the run's records on broadcast.messages. PostgreSQL's `now()` is the start of the
transaction, one per batch, so the database-based windows can be short by up to one batch.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.local import stack
from shared import topics


@dataclass(frozen=True)
class Window:
    """`count` recipients handled between `first` and `last` (epoch seconds)."""

    count: int
    first: float
    last: float

    def per_s(self) -> float | None:
        span = self.last - self.first
        return round(self.count / span, 1) if span > 0 else None

    def describe(self, origin: float) -> dict[str, Any]:
        return {
            "count": self.count,
            "per_s": self.per_s(),
            "from_s": round(self.first - origin, 2),
            "to_s": round(self.last - origin, 2),
        }


# Each selects `n`, `first` and `last` (timestamps) of one run ($1). "claims" is the proxy for
# the composer when its topic cannot be read: the dispatcher's first..last claim.
_QUERIES = {
    "targeting": "SELECT messages AS n, started_at AS first, targeted_at AS last "
    "FROM targeting.runs WHERE run_id = $1",
    "dispatcher": "SELECT count(*) AS n, min(claimed_at) AS first, max(finished_at) AS last "
    "FROM dispatcher.deliveries WHERE run_id = $1",
    "claims": "SELECT count(*) AS n, min(claimed_at) AS first, max(claimed_at) AS last "
    "FROM dispatcher.deliveries WHERE run_id = $1",
    "tracker": "SELECT count(*) AS n, min(updated_at) AS first, max(updated_at) AS last "
    "FROM tracker.messages WHERE run_id = $1",
}
TableStage = Literal["targeting", "dispatcher", "claims", "tracker"]


async def table_window(conn: asyncpg.Connection, stage: TableStage, run_id: UUID) -> Window | None:
    """The run's window as the stage's own table records it; None before it handled anything."""
    row = await conn.fetchrow(_QUERIES[stage], run_id)
    if row is None or not row["n"] or row["first"] is None or row["last"] is None:
        return None
    return Window(row["n"], row["first"].timestamp(), row["last"].timestamp())


async def composer_window(
    start: Mapping[int, int], run_id: UUID, timeout_s: float
) -> tuple[Window | None, int]:
    """First..last Kafka timestamp of the run's records on broadcast.messages, read from the
    offsets recorded before the start up to the end now; also the size of one rendered body."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.KAFKA_BOOTSTRAP,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topics.MESSAGES.name, p) for p in sorted(start)]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, start[tp.partition])
        # The JSON is compact (pydantic): a byte search avoids parsing 100k bodies.
        needle = f'"run_id":"{run_id}"'.encode()
        count, first, last, body_size = 0, float("inf"), 0.0, 0
        remaining = {tp for tp in parts if end[tp] > start[tp.partition]}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp] or needle not in record.value:
                        continue
                    count += 1
                    first = min(first, record.timestamp / 1000)
                    last = max(last, record.timestamp / 1000)
                    if not body_size:
                        body_size = len(json.loads(record.value)["body"])
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
        if remaining:
            return None, body_size
        return (Window(count, first, last) if count else None), body_size
    finally:
        await consumer.stop()


async def measure_stages(
    run_id: UUID, messages_start: Mapping[int, int], started_epoch: float, composer_timeout_s: float
) -> dict[str, Any]:
    """The stages' rates and windows (seconds after `started_epoch`, the StartBroadcast)."""
    conn = await asyncpg.connect(stack.postgres_url(), timeout=10)
    try:
        composer, body_size = await composer_window(messages_start, run_id, composer_timeout_s)
        source = "kafka record timestamps of broadcast.messages"
        if composer is None:
            composer = await table_window(conn, "claims", run_id)
            source = "dispatcher.deliveries claimed_at (fallback)"
        windows = {
            "targeting": await table_window(conn, "targeting", run_id),
            "composer": composer,
            "dispatcher": await table_window(conn, "dispatcher", run_id),
            "tracker": await table_window(conn, "tracker", run_id),
        }
    finally:
        await conn.close()
    return {
        "stages": {k: w.per_s() if w else None for k, w in windows.items()},
        "stage_windows": {k: w.describe(started_epoch) if w else None for k, w in windows.items()},
        "composer_source": source,
        "rendered_body_bytes": body_size,
    }
