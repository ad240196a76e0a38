"""Per-stage throughput of one run: each stage's first..last timestamps, and its rate over them.

targeting, dispatcher and tracker from their versioned views (docs/ARCHITECTURE.md); the
composer from the Kafka record timestamps of the run's records on broadcast.messages; the SMTP
server from smtp-sink's counters (bench.probes.ServerTimes), and the dispatcher ledger's
outcomes as the same window seen from the sending side.
PostgreSQL's `now()` is the start of the transaction, one per batch, so the database-based
windows can be short by up to one batch.
"""

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared import topics
from shared.client import endpoints


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
    "FROM targeting.runs_v1 WHERE run_id = $1",
    "dispatcher": "SELECT count(*) AS n, min(claimed_at) AS first, max(finished_at) AS last "
    "FROM dispatcher.deliveries_v1 WHERE run_id = $1",
    "claims": "SELECT count(*) AS n, min(claimed_at) AS first, max(claimed_at) AS last "
    "FROM dispatcher.deliveries_v1 WHERE run_id = $1",
    # The ledger's view of the SMTP server's window: first..last outcome recorded.
    "outcomes": "SELECT count(*) AS n, min(finished_at) AS first, max(finished_at) AS last "
    "FROM dispatcher.deliveries_v1 WHERE run_id = $1",
    "tracker": "SELECT count(*) AS n, min(updated_at) AS first, max(updated_at) AS last "
    "FROM tracker.messages_v1 WHERE run_id = $1",
}
TableStage = Literal["targeting", "dispatcher", "claims", "outcomes", "tracker"]


async def table_window(conn: asyncpg.Connection, stage: TableStage, run_id: UUID) -> Window | None:
    """The run's window as the stage's own view records it; None before it handled anything."""
    row = await conn.fetchrow(_QUERIES[stage], run_id)
    if row is None or not row["n"] or row["first"] is None or row["last"] is None:
        return None
    return Window(row["n"], row["first"].timestamp(), row["last"].timestamp())


async def _record_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, deadline: float
) -> ConsumerRecord[bytes, bytes] | None:
    consumer.seek(tp, offset)
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        if batch.get(tp):
            return batch[tp][0]
    return None


def _body_size(value: bytes) -> int:
    """The size of one rendered body, when the record is a `message.rendered` or a page of
    them (0 otherwise: the record's shape is the composer's to change)."""
    with contextlib.suppress(ValueError):
        found = json.loads(value)
        if isinstance(found, dict) and isinstance(found.get("messages"), list):
            found = found["messages"][0]
        if isinstance(found, dict) and isinstance(found.get("body"), str):
            return len(found["body"])
    return 0


async def composer_window(
    start: Mapping[int, int], run_id: UUID, count: int, timeout_s: float
) -> tuple[Window | None, int]:
    """First..last Kafka timestamp of the run's `count` messages on broadcast.messages, between
    the offsets recorded before the start and the end now; also the size of one rendered body.

    Only the first and the last record of each partition are read (16 records, whatever the
    size of the run; reading the 4 GB of a 1M run back took minutes): the bench publishes
    nothing else there while it runs, and both must carry the run's id, else None."""
    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.local().kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topics.MESSAGES.name, p) for p in sorted(start)]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        needle = str(run_id).encode()
        stamps: list[float] = []
        body_size = 0
        for tp in parts:
            if end[tp] <= start[tp.partition]:
                continue
            for offset in (start[tp.partition], end[tp] - 1):
                record = await _record_at(consumer, tp, offset, deadline)
                if record is None or record.value is None or needle not in record.value:
                    return None, body_size
                stamps.append(record.timestamp / 1000)
                body_size = body_size or _body_size(record.value)
        return (Window(count, min(stamps), max(stamps)) if stamps else None), body_size
    finally:
        await consumer.stop()


def first_message(
    started_epoch: float, server_first: float | None, outcomes: Window | None
) -> dict[str, Any]:
    """Seconds from StartBroadcast to the first message at the server, and where that comes
    from: smtp-sink's counters when they were seen, else the ledger's first outcome (later by
    up to a batch: see bench/README.md)."""
    if server_first is not None:
        first, source = server_first, "smtp-sink log (its counters, tailed)"
    elif outcomes is not None:
        first, source = outcomes.first, "dispatcher.deliveries_v1 finished_at (fallback)"
    else:
        return {"first_message_s": None, "first_message_source": None}
    return {"first_message_s": round(first - started_epoch, 3), "first_message_source": source}


async def measure_stages(
    run_id: UUID,
    count: int,
    messages_start: Mapping[int, int],
    started_epoch: float,
    server_first: float | None,
    server_last: float | None,
    composer_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """The stages' rates and windows (seconds after `started_epoch`, the StartBroadcast), for a
    run of `count` messages; `server_first` and `server_last` are when the SMTP server took the
    first and the last of them, if seen. The time to the first message at the server falls back
    to the ledger's first outcome."""
    conn = await asyncpg.connect(endpoints.local().database_url, timeout=10)
    try:
        composer, body_size = await composer_window(
            messages_start, run_id, count, composer_timeout_s
        )
        source = "kafka record timestamps of broadcast.messages"
        if composer is None:
            composer = await table_window(conn, "claims", run_id)
            source = "dispatcher.deliveries_v1 claimed_at (fallback)"
        windows = {
            "targeting": await table_window(conn, "targeting", run_id),
            "composer": composer,
            "dispatcher": await table_window(conn, "dispatcher", run_id),
            "outcomes": await table_window(conn, "outcomes", run_id),
            "smtp-sink": Window(count, server_first, server_last)
            if server_first is not None and server_last is not None
            else None,
            "tracker": await table_window(conn, "tracker", run_id),
        }
    finally:
        await conn.close()
    return {
        "stages": {k: w.per_s() if w else None for k, w in windows.items()},
        "stage_windows": {k: w.describe(started_epoch) if w else None for k, w in windows.items()},
        "composer_source": source,
        **first_message(started_epoch, server_first, windows["outcomes"]),
        "rendered_body_bytes": body_size,
    }
