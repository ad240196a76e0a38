"""End-to-end benchmark: one email broadcast to N contracts through the four services.

    .venv/bin/python -m bench.e2e [--contracts N] [--ceiling-messages M]

Needs the local stack running (`make bench` starts it). For the length of the run the stack's
dispatcher is replaced by a bench dispatcher (same command, same consumer group) that relays to
Postfix's `smtp-sink` on 127.0.0.1:10125, so the receiving SMTP server is not the bottleneck;
the stack's dispatcher is started again at the end, whatever happened. See bench/README.md for
what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

import aiosmtplib
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from bench import invoice
from deploy.local import stack
from deploy.local.every_day import send_every_day
from services.composer.render import render
from shared import topics
from shared.events import (
    BROADCAST_EVENT_ADAPTER,
    BroadcastAccepted,
    BroadcastCompleted,
    BroadcastProgressed,
    BroadcastRejected,
    BroadcastStarted,
    CreateBroadcast,
    MessageRendered,
    StartBroadcast,
)
from shared.ids import broadcast_id_for

HOST = "127.0.0.1"
SINK_PORT = 10125
SINK_BACKLOG = 1024
DISPATCHER = "dispatcher"
SERVICES = ("targeting", "composer", "dispatcher", "tracker")
RESULTS = Path(__file__).resolve().parent / "results"

CEILING_CONNECTIONS = 8
RSS_INTERVAL_S = 0.5
# A broadcast that shows no new event for this long is stuck, not slow.
STALL_TIMEOUT_S = 120.0
# The bench dispatcher joins the consumer group of the one it replaces: let the rebalance settle
# before the clock starts, so it is not counted as pipeline time.
GROUP_SETTLE_S = 5.0

CRITERIA = [
    {"field": "status", "values": ["active", "to_renew"]},
    {"field": "building_type", "values": ["residential"]},
]


class BenchError(Exception):
    """A one-line failure of the bench itself (not a wrong figure, which is reported)."""


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # `timeout` and CI runners send SIGTERM: turn it into an exception so that every `finally`
    # runs and the stack's dispatcher is restored.
    raise SystemExit(128 + signum)


# --- machine -------------------------------------------------------------------------------


def _proc_field(path: str, name: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return "unknown"


def machine() -> dict[str, Any]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": os.cpu_count(),
        "memory_mb": int(mem_kb) // 1024 if mem_kb.isdigit() else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# --- smtp-sink -----------------------------------------------------------------------------


def _bench_paths(name: str) -> tuple[Path, Path]:
    """(log file, pid file) of a process the bench starts, next to the stack's own."""
    return stack.log_file(name), stack.run_dir() / "pids" / f"{name}.pid"


SINK_LOG, SINK_PID = _bench_paths("bench-smtp-sink")
DISPATCHER_LOG, DISPATCHER_PID = _bench_paths("bench-dispatcher")


def start_smtp_sink() -> None:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        raise BenchError("smtp-sink not found: run deploy/local/install.sh postfix")
    stack.stop_process(SINK_PID, timeout=5.0)  # a leftover of an interrupted bench
    if stack.port_in_use(SINK_PORT):
        raise BenchError(f"port {SINK_PORT} is taken by another process")
    # A fresh log: the counters parsed from it must be this sink's only.
    SINK_LOG.unlink(missing_ok=True)
    # -c: running counters on stdout; -t 3600: never drop an idle dispatcher connection during
    # the run (the default 100 s would); -u: smtp-sink refuses to keep root privileges.
    argv = [binary, "-c", "-t", "3600"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    argv += [f"{HOST}:{SINK_PORT}", str(SINK_BACKLOG)]
    stack.start_process(argv, log_file=SINK_LOG, pid_file=SINK_PID)
    stack.wait_tcp(SINK_PORT, timeout=10.0)


_MESSAGES = re.compile(rb"mesg=(\d+)")


def sink_count() -> int:
    """Messages smtp-sink received so far: the last `mesg=` counter it printed."""
    try:
        found = _MESSAGES.findall(SINK_LOG.read_bytes())
    except FileNotFoundError:
        return 0
    return int(found[-1]) if found else 0


def settled_sink_count(timeout: float = 5.0) -> int:
    """The count once it stopped moving: the last lines may still be on their way to the file."""
    deadline = time.monotonic() + timeout
    last = sink_count()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sink_count()
        if now == last:
            return now
        last = now
    return last


# --- dispatcher swap -----------------------------------------------------------------------


def start_bench_dispatcher() -> None:
    """The stack's dispatcher command, relaying to smtp-sink; returns once /health answers."""
    component = stack.components()[DISPATCHER]
    stack.stop_process(DISPATCHER_PID, timeout=20.0)  # a leftover of an interrupted bench
    (port,) = component.ports
    if stack.port_in_use(port):
        raise BenchError(f"port {port} still taken after stopping the stack's dispatcher")
    proc = stack.start_process(
        component.command,
        log_file=DISPATCHER_LOG,
        pid_file=DISPATCHER_PID,
        env={**component.env, "DISPATCHER_SMTP_PORT": str(SINK_PORT)},
        cwd=component.cwd,
    )
    healthy = stack.http_ok(port, "/health")
    deadline = time.monotonic() + component.start_timeout
    while not healthy():
        if proc.poll() is not None:
            raise BenchError(f"bench dispatcher exited ({proc.returncode}); see {DISPATCHER_LOG}")
        if time.monotonic() >= deadline:
            raise BenchError(f"bench dispatcher not healthy in time; see {DISPATCHER_LOG}")
        time.sleep(0.2)
    time.sleep(GROUP_SETTLE_S)


@contextlib.contextmanager
def dispatcher_swapped() -> Iterator[None]:
    """Run the body with the bench dispatcher; put the stack's dispatcher back as it was."""
    was_running = stack.running_pid(stack.components()[DISPATCHER].pid_file) is not None
    try:
        if was_running:
            stack.down([DISPATCHER])
        start_bench_dispatcher()
        yield
    finally:
        try:
            stack.stop_process(DISPATCHER_PID, timeout=20.0)
        finally:
            if was_running:
                stack.up([DISPATCHER])


@contextlib.contextmanager
def smtp_sink_running() -> Iterator[None]:
    try:
        start_smtp_sink()
        yield
    finally:
        stack.stop_process(SINK_PID, timeout=5.0)


# --- contracts -----------------------------------------------------------------------------

CONTRACT_COLUMNS = (
    "tenant_id",
    "contract_id",
    "version",
    "deleted",
    "number",
    "status",
    "building_type",
    "zone",
    "season",
    "client_name",
    "service_address",
    "language",
    "emails",
    "phones",
    "balance",
    "amount_paid",
    "attributes",
)


def contract_rows(tenant: str, count: int) -> Iterator[tuple[object, ...]]:
    """`count` contracts that all match CRITERIA, one French-speaking mailbox each."""
    for n in range(1, count + 1):
        number = f"B-{n:07d}"
        yield (
            tenant,
            number,
            1,
            False,
            number,
            "active" if n % 5 else "to_renew",
            "residential",
            f"Zone {n % 12 + 1}",
            "2026-2027",
            f"Client Bench {n}",
            f"{n % 9999 + 1} rue des Érables, Québec (Québec)",
            "fr",
            json.dumps([{"address": f"client{n}@bench.example", "opted_out": False}]),
            "[]",
            Decimal(n % 90_000) / 100,
            Decimal(0),
            "{}",
        )


async def load_contracts(conn: asyncpg.Connection, tenant: str, count: int) -> float:
    """COPY the contracts straight into targeting's read model; returns the seconds it took."""
    began = time.monotonic()
    await conn.copy_records_to_table(
        "contracts",
        schema_name="targeting",
        columns=list(CONTRACT_COLUMNS),
        records=contract_rows(tenant, count),
        timeout=300.0,
    )
    return time.monotonic() - began


async def delete_contracts(conn: asyncpg.Connection, tenant: str) -> None:
    # Only the rows this bench loaded: the run's records in other schemas stay as its history.
    await conn.execute("DELETE FROM targeting.contracts WHERE tenant_id = $1", tenant, timeout=120)


# --- peak RSS ------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    """Resident set of one process in kB; 0 once it is gone."""
    value = _proc_field(f"/proc/{pid}/status", "VmRSS").split()[0]
    return int(value) if value.isdigit() else 0


def service_trees() -> dict[str, list[int]]:
    """pid of every process of each service: the stack's pid files, the bench dispatcher's."""
    files = {name: stack.components()[name].pid_file for name in SERVICES}
    files[DISPATCHER] = DISPATCHER_PID
    trees: dict[str, list[int]] = {}
    for name, pid_file in files.items():
        pgid = stack.running_pid(pid_file)
        if pgid is None:
            raise BenchError(f"{name} is not running (pid file {pid_file})")
        trees[name] = sorted(stack.process_tree(pgid))
    return trees


@dataclass
class RssSampler:
    """Samples the summed VmRSS of each service's process tree every RSS_INTERVAL_S."""

    trees: Mapping[str, Sequence[int]]
    peak_kb: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def sample(self) -> None:
        for name, pids in self.trees.items():
            total = 0
            for pid in pids:
                total += _rss_kb(pid)
            self.peak_kb[name] = max(self.peak_kb.get(name, 0), total)
        self.samples += 1

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(RSS_INTERVAL_S)

    def peak_mb(self) -> dict[str, float]:
        return {name: round(kb / 1024, 1) for name, kb in self.peak_kb.items()}


# --- CPU time ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Everything that competes for the two cores during the run, not only the four services.
CPU_COMPONENTS = (*SERVICES, "kafka", "postgres", "bench-smtp-sink")


def _cpu_ticks(pid: int) -> int:
    """utime + stime of one process; 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return int(fields[11]) + int(fields[12])


def _pid_file(name: str) -> Path:
    if name == DISPATCHER:
        return DISPATCHER_PID
    if name == "bench-smtp-sink":
        return SINK_PID
    return stack.components()[name].pid_file


def cpu_snapshot() -> dict[str, dict[int, int]]:
    """Per component, CPU ticks of each process of its tree (PostgreSQL backends included)."""
    snapshot: dict[str, dict[int, int]] = {}
    for name in CPU_COMPONENTS:
        pgid = stack.running_pid(_pid_file(name))
        tree = stack.process_tree(pgid) if pgid is not None else {}
        snapshot[name] = {pid: _cpu_ticks(pid) for pid in tree}
    return snapshot


def cpu_seconds(before: Mapping[str, Mapping[int, int]]) -> dict[str, float]:
    """CPU seconds each component used since `before`; processes that exited in between are
    missed, processes started in between count from zero."""
    after = cpu_snapshot()
    used: dict[str, float] = {}
    for name, ticks in after.items():
        delta = sum(t - before.get(name, {}).get(pid, 0) for pid, t in ticks.items())
        used[name] = round(delta / CLOCK_TICKS, 1)
    return used


# --- the broadcast -------------------------------------------------------------------------


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


async def run_broadcast(tenant: str, expected: int, timeout_s: float) -> RunOutcome:
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

        async def send(command: CreateBroadcast | StartBroadcast) -> None:
            await producer.send_and_wait(
                topics.REQUESTS.name, command.model_dump_json().encode(), key=tenant.encode()
            )

        connection = await asyncpg.connect(stack.postgres_url())
        try:
            await send_every_day(producer, connection, tenant)
        finally:
            await connection.close()
        await send(create_command(tenant, request_id))
        await _expect_accepted(watcher, time.monotonic() + 60.0)

        message_parts = await partitions(producer, topics.MESSAGES.name)
        start_offsets = await offsets.end_offsets(message_parts)
        sink_before = settled_sink_count()
        started_epoch = time.time()
        began = time.monotonic()
        await send(
            StartBroadcast(
                tenant_id=tenant,
                request_id=f"{tenant}-start",
                requested_by="bench",
                broadcast_id=broadcast_id,
            )
        )
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


# --- per-stage throughput ------------------------------------------------------------------


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


def _window(count: int | None, first: datetime | None, last: datetime | None) -> Window | None:
    if not count or first is None or last is None:
        return None
    return Window(count, first.timestamp(), last.timestamp())


async def targeting_window(conn: asyncpg.Connection, run_id: UUID) -> Window | None:
    row = await conn.fetchrow(
        "SELECT messages, started_at, targeted_at FROM targeting.runs WHERE run_id = $1", run_id
    )
    return _window(row["messages"], row["started_at"], row["targeted_at"]) if row else None


async def dispatcher_window(conn: asyncpg.Connection, run_id: UUID) -> Window | None:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(claimed_at) AS first, max(finished_at) AS last "
        "FROM dispatcher.deliveries WHERE run_id = $1",
        run_id,
    )
    return _window(row["n"], row["first"], row["last"]) if row else None


async def dispatcher_claims(conn: asyncpg.Connection, run_id: UUID) -> Window | None:
    """The proxy for the composer when the topic cannot be read: first..last claim."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(claimed_at) AS first, max(claimed_at) AS last "
        "FROM dispatcher.deliveries WHERE run_id = $1",
        run_id,
    )
    return _window(row["n"], row["first"], row["last"]) if row else None


async def tracker_window(conn: asyncpg.Connection, run_id: UUID) -> Window | None:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(updated_at) AS first, max(updated_at) AS last "
        "FROM tracker.messages WHERE run_id = $1",
        run_id,
    )
    return _window(row["n"], row["first"], row["last"]) if row else None


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


# --- SMTP ceiling --------------------------------------------------------------------------


def ceiling_message() -> bytes:
    """One message as the composer renders it for this broadcast, built once."""
    message = render(invoice.compiled_run(), invoice.recipient(1), datetime.now(UTC))
    assert isinstance(message, MessageRendered), message
    return message.body.encode()


async def smtp_ceiling(total: int, message: bytes) -> float:
    """Seconds for one process with CEILING_CONNECTIONS persistent connections to send `total`
    copies of `message` with sendmail; connections are opened before the clock starts."""
    clients = [
        aiosmtplib.SMTP(hostname=HOST, port=SINK_PORT, timeout=30.0)
        for _ in range(CEILING_CONNECTIONS)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    tickets = itertools.count()

    async def pump(client: aiosmtplib.SMTP) -> None:
        while next(tickets) < total:
            await client.sendmail(invoice.SENDER["address"], ["client1@bench.example"], message)

    try:
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(pump(c) for c in clients)), timeout=600.0)
        return time.monotonic() - began
    finally:
        for client in clients:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()


# --- service logs --------------------------------------------------------------------------

_PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|dead-lettered|failed", re.IGNORECASE)


def log_sizes() -> dict[str, int]:
    paths = {name: stack.log_file(name) for name in SERVICES}
    paths[DISPATCHER] = DISPATCHER_LOG
    return {name: p.stat().st_size if p.exists() else 0 for name, p in paths.items()}


def log_problems(before: Mapping[str, int]) -> dict[str, list[str]]:
    """Lines that look like errors, written to the services' logs during the bench."""
    found: dict[str, list[str]] = {}
    for name, offset in before.items():
        path = DISPATCHER_LOG if name == DISPATCHER else stack.log_file(name)
        with contextlib.suppress(FileNotFoundError), path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        hits = [line for line in lines if _PROBLEM.search(line)]
        if hits:
            found[name] = hits[:20]
    return found


# --- orchestration -------------------------------------------------------------------------


@dataclass
class Report:
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def measure_stages(run: RunOutcome, composer_timeout_s: float) -> dict[str, Any]:
    conn = await asyncpg.connect(stack.postgres_url(), timeout=10)
    try:
        composer, body_size = await composer_window(
            run.messages_start, run.run_id, composer_timeout_s
        )
        source = "kafka record timestamps of broadcast.messages"
        if composer is None:
            composer = await dispatcher_claims(conn, run.run_id)
            source = "dispatcher.deliveries claimed_at (fallback)"
        windows = {
            "targeting": await targeting_window(conn, run.run_id),
            "composer": composer,
            "dispatcher": await dispatcher_window(conn, run.run_id),
            "tracker": await tracker_window(conn, run.run_id),
        }
    finally:
        await conn.close()
    return {
        "stages": {k: w.per_s() if w else None for k, w in windows.items()},
        "stage_windows": {
            k: w.describe(run.started_epoch) if w else None for k, w in windows.items()
        },
        "composer_source": source,
        "rendered_body_bytes": body_size,
    }


async def e2e_phase(tenant: str, contracts: int, report: Report) -> None:
    """Swap the dispatcher, run the broadcast while sampling RSS, measure the stages."""
    with dispatcher_swapped():
        sampler = RssSampler(service_trees())
        sampling = asyncio.create_task(sampler.run())
        cpu_before = cpu_snapshot()
        try:
            run = await run_broadcast(tenant, contracts, timeout_s=120 + contracts / 100)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        cpu = cpu_seconds(cpu_before)
        sink_delta = settled_sink_count() - run.sink_before
    c = run.completed.counters
    report.data.update(
        {
            "broadcast_id": str(run.broadcast_id),
            "run_id": str(run.run_id),
            "outcome": run.completed.outcome,
            "elapsed_s": round(run.elapsed_s, 2),
            "end_to_end_per_s": round(c.delivered / run.elapsed_s, 1),
            "messages_targeted": c.messages_targeted,
            "delivered": c.delivered,
            "failed": c.failed,
            "sink_count": sink_delta,
            "peak_rss_mb": sampler.peak_mb(),
            # From just before CreateBroadcast to broadcast.completed (idle time is negligible).
            "cpu_s": cpu,
            "rss_samples": sampler.samples,
        }
    )
    report.data.update(await measure_stages(run, composer_timeout_s=180.0))
    for name, value, want in (
        ("delivered", c.delivered, contracts),
        ("messages_targeted", c.messages_targeted, contracts),
        ("sink_count", sink_delta, contracts),
        ("failed", c.failed, 0),
    ):
        if value != want:
            report.problems.append(f"{name} is {value}, expected {want}")


async def ceiling_phase(messages: int, report: Report) -> None:
    message = ceiling_message()
    before = settled_sink_count()
    elapsed = await smtp_ceiling(messages, message)
    received = settled_sink_count() - before
    report.data["smtp_ceiling_per_s"] = round(messages / elapsed, 1)
    report.data["ceiling"] = {
        "messages": messages,
        "connections": CEILING_CONNECTIONS,
        "message_bytes": len(message),
        "elapsed_s": round(elapsed, 2),
        "sink_count": received,
    }
    if received != messages:
        report.problems.append(f"ceiling: smtp-sink counted {received} of {messages}")


async def load_phase(tenant: str, contracts: int, report: Report) -> None:
    conn = await asyncpg.connect(stack.postgres_url(), timeout=10)
    try:
        seconds = await load_contracts(conn, tenant, contracts)
    finally:
        await conn.close()
    report.data["load"] = {"rows": contracts, "seconds": round(seconds, 2)}


async def cleanup_phase(tenant: str) -> None:
    conn = await asyncpg.connect(stack.postgres_url(), timeout=10)
    try:
        await delete_contracts(conn, tenant)
    finally:
        await conn.close()


def run_bench(contracts: int, ceiling_messages: int, command: str) -> Report:
    tenant = f"bench-{int(time.time())}"
    report = Report()
    report.data.update(
        {
            "command": command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tenant": tenant,
            "recipients": contracts,
            "machine": machine(),
        }
    )
    logs_before = log_sizes()
    with smtp_sink_running():
        try:
            print(f"loading {contracts} contracts for {tenant} (COPY)", flush=True)
            asyncio.run(load_phase(tenant, contracts, report))
            print("broadcasting through the bench dispatcher -> smtp-sink", flush=True)
            asyncio.run(e2e_phase(tenant, contracts, report))
            print(f"SMTP ceiling: {ceiling_messages} messages, 8 connections", flush=True)
            asyncio.run(ceiling_phase(ceiling_messages, report))
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(cleanup_phase(tenant))
    report.data["service_log_problems"] = log_problems(logs_before)
    return report


def write_results(report: Report) -> Path:
    report.data["ok"] = not report.problems
    report.data["problems"] = report.problems
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report.data, indent=2, ensure_ascii=False) + "\n"
    path = RESULTS / f"run-{stamp}.json"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def print_table(data: Mapping[str, Any]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.1f}" if isinstance(value, float) else str(value)

    rows = [
        ("recipients", data.get("recipients")),
        ("elapsed (s)", data.get("elapsed_s")),
        ("end to end (/s)", data.get("end_to_end_per_s")),
        *((f"  {k} (/s)", v) for k, v in data.get("stages", {}).items()),
        ("SMTP ceiling (/s)", data.get("smtp_ceiling_per_s")),
        ("delivered", data.get("delivered")),
        ("smtp-sink count", data.get("sink_count")),
        *((f"  peak RSS {k} (MB)", v) for k, v in data.get("peak_rss_mb", {}).items()),
        *((f"  CPU {k} (s)", v) for k, v in data.get("cpu_s", {}).items()),
    ]
    for label, value in rows:
        print(f"{label:<28}{fmt(value):>14}")
    for problem in data.get("problems", []):
        print(f"PROBLEM: {problem}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.contracts < 1 or args.ceiling_messages < 1:
        parser.error("counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    command = " ".join([".venv/bin/python", "-m", "bench.e2e", *argv])
    try:
        report = run_bench(args.contracts, args.ceiling_messages, command)
    except (BenchError, stack.StackError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    path = write_results(report)
    print_table(report.data)
    print(f"\nwritten to {path} and {RESULTS / 'latest.json'}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
