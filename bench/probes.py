"""What the bench reads off the machine while a run goes: the host, each service's peak RSS and
CPU seconds, smtp-sink's message count, and error lines in the services' logs.

Processes are found through the stack's pid files, and the bench's own for its dispatcher and
smtp-sink (bench.processes).
"""

import asyncio
import contextlib
import logging
import os
import platform
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg

from bench.errors import BenchError
from bench.processes import DISPATCHER, SINK_LOG, SINK_PID, bench_dispatchers
from deploy.local import stack
from deploy.local.stack.config import instances
from deploy.local.stack.kafka import stack_nodes
from shared.client import endpoints
from shared.clock import Clock, utc_now
from shared.service import Periodic

SERVICES = ("targeting", "composer", "dispatcher", "tracker")
SINK = "bench-smtp-sink"
RSS_INTERVAL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Everything that competes for the two cores during the run, not only the four services. Each
# sums all its instances: every service's (BROADCAST_INSTANCES), every Kafka node.
CPU_COMPONENTS = (*SERVICES, "kafka", "postgres", SINK)

_log = logging.getLogger(__name__)


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


def topology() -> dict[str, int]:
    """The stack the run measures: Kafka nodes, and instances of each service."""
    return {"kafka_nodes": len(stack_nodes()), "instances": instances()}


def _pid_files(group: str) -> list[Path]:
    """Where the pgid of each instance of a component is: the bench's own processes replace
    the stack's."""
    if group == DISPATCHER:
        return [pid_file for _, _, pid_file in bench_dispatchers()]
    if group == SINK:
        return [SINK_PID]
    return [
        c.pid_file for name, c in stack.components().items() if stack.instance_number(name, group)
    ]


def _tree(pid_file: Path) -> set[int]:
    pgid = stack.running_pid(pid_file)
    return set(stack.process_tree(pgid)) if pgid is not None else set()


@contextlib.asynccontextmanager
async def _in_background(
    name: str, step: Callable[[], Awaitable[None]], interval: float
) -> AsyncIterator[None]:
    """`step` every `interval` seconds while the body runs."""
    loop = Periodic(name, step, interval, _log)
    await loop.start()
    try:
        yield
    finally:
        await loop.stop()


# --- peak RSS ------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    """Resident set of one process in kB; 0 once it is gone."""
    value = _proc_field(f"/proc/{pid}/status", "VmRSS").split()[0]
    return int(value) if value.isdigit() else 0


def service_trees() -> dict[str, list[int]]:
    """pid of every process of each service, all its instances together."""
    trees: dict[str, list[int]] = {}
    for name in SERVICES:
        pids: set[int] = set()
        for pid_file in _pid_files(name):
            if stack.running_pid(pid_file) is None:
                raise BenchError(f"{name} is not running (pid file {pid_file})")
            pids |= _tree(pid_file)
        trees[name] = sorted(pids)
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

    async def _step(self) -> None:
        self.sample()

    def sampling(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Sample in the background, every RSS_INTERVAL_S, while the body runs."""
        return _in_background("rss sampler", self._step, RSS_INTERVAL_S)

    def peak_mb(self) -> dict[str, float]:
        return {name: round(kb / 1024, 1) for name, kb in self.peak_kb.items()}


# --- CPU time ------------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    """utime + stime of one process; 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return int(fields[11]) + int(fields[12])


def cpu_snapshot() -> dict[str, dict[int, int]]:
    """Per component, CPU ticks of each process of its tree (PostgreSQL backends included)."""
    snapshot: dict[str, dict[int, int]] = {}
    for name in CPU_COMPONENTS:
        pids = set().union(*map(_tree, _pid_files(name)))
        snapshot[name] = {pid: _cpu_ticks(pid) for pid in pids}
    return snapshot


async def idle_cpu(seconds: float) -> dict[str, float]:
    """CPU ms per second each component spends with nothing to do: the fixed cost of running it
    (heartbeats, periodic jobs, a cluster's replica fetches), apart from its cost per message."""
    before = cpu_snapshot()
    await asyncio.sleep(seconds)
    return {name: round(s * 1000 / seconds, 1) for name, s in cpu_seconds(before).items()}


def cpu_seconds(before: Mapping[str, Mapping[int, int]]) -> dict[str, float]:
    """CPU seconds each component used since `before`; processes that exited in between are
    missed, processes started in between count from zero."""
    after = cpu_snapshot()
    used: dict[str, float] = {}
    for name, ticks in after.items():
        delta = sum(t - before.get(name, {}).get(pid, 0) for pid, t in ticks.items())
        used[name] = round(delta / CLOCK_TICKS, 2)
    return used


# --- bytes written -------------------------------------------------------------------------


def _kafka_log_bytes() -> int:
    """Bytes in the partition logs of every Kafka node: every copy of every topic (the cluster's
    metadata log aside), so that replication shows."""
    roots = (stack.run_dir() / "kafka", stack.run_dir() / "kafka-cluster")
    total = 0
    for path in (p for root in roots for p in root.glob("**/*.log")):
        if not path.parent.name.startswith("__cluster_metadata"):
            with contextlib.suppress(OSError):  # a segment deleted meanwhile
                total += path.stat().st_size
    return total


async def bytes_written() -> dict[str, int]:
    """Running totals of what the stack has written: PostgreSQL's WAL position and the size of
    Kafka's partition logs; the difference of two is what a run wrote."""
    conn = await asyncpg.connect(endpoints.local().database_url, timeout=10)
    try:
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    finally:
        await conn.close()
    return {"postgres_wal": int(wal), "kafka_logs": _kafka_log_bytes()}


# --- smtp-sink count -----------------------------------------------------------------------

# smtp-sink -c prints `sess=… quit=… mesg=N` and a carriage return after every message, session
# end and QUIT, and flushes each line: a counter is complete once its terminator is written.
_MESSAGES = re.compile(rb"mesg=(\d+)[\r\n]")
# The last complete counter is always in the log's last few lines: at 1M messages the log holds
# about 27 MB, which the bench must not read (or match) whole every half second.
_TAIL_BYTES = 4096
SINK_POLL_S = 0.01


def _last_counter(data: bytes) -> int | None:
    found = _MESSAGES.findall(data)
    return int(found[-1]) if found else None


def sink_count() -> int:
    """Messages smtp-sink received so far: the last `mesg=` counter it printed."""
    try:
        with SINK_LOG.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
            return _last_counter(log.read()) or 0
    except FileNotFoundError:
        return 0


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


@dataclass
class ServerTimes:
    """When smtp-sink counted the first and the last of `expected` messages after `before`, on
    the bench's wall clock (epoch seconds): `log` (the sink's, opened at the point to read from)
    is tailed every SINK_POLL_S, so each time is late by at most that much. The sink prints a
    message's counter as it takes the message: this is the moment the message reached the
    server, which the dispatcher's ledger (`finished_at`, the start of the transaction that
    records a batch's outcomes) only bounds from above."""

    log: BinaryIO
    before: int
    expected: int
    clock: Clock = utc_now
    first_at: float | None = None
    last_at: float | None = None
    _partial: bytes = b""

    def poll(self) -> None:
        data = self._partial + self.log.read()
        end = max(data.rfind(b"\r"), data.rfind(b"\n")) + 1
        self._partial = data[end:]
        count = _last_counter(data[:end])
        if count is None:
            return
        now = self.clock().timestamp()
        if self.first_at is None and count > self.before:
            self.first_at = now
        if self.last_at is None and count >= self.before + self.expected:
            self.last_at = now

    async def _step(self) -> None:
        if self.last_at is None:
            self.poll()

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """Tail the log in the background while the body runs, and once more at the end."""
        try:
            async with _in_background("smtp-sink tail", self._step, SINK_POLL_S):
                yield
        finally:
            await self._step()


# --- service logs --------------------------------------------------------------------------

_PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|dead-lettered|failed", re.IGNORECASE)
_PROBLEMS_SHOWN = 20


def _service_logs() -> dict[str, Path]:
    """Each service instance's log, by instance: the bench dispatchers' in place of the stack's."""
    logs = {
        name: c.log_file
        for name, c in stack.components().items()
        if any(stack.instance_number(name, s) for s in SERVICES if s != DISPATCHER)
    }
    return logs | {c.name: log_file for c, log_file, _ in bench_dispatchers()}


def log_sizes() -> dict[str, int]:
    return {name: p.stat().st_size if p.exists() else 0 for name, p in _service_logs().items()}


def log_problems(before: Mapping[str, int]) -> dict[str, list[str]]:
    """Lines that look like errors, written to the services' logs during the bench."""
    found: dict[str, list[str]] = {}
    logs = _service_logs()
    for name, offset in before.items():
        hits: list[str] = []  # a log that is gone has nothing to report
        # Line by line: after a 1M run a log can be too big to hold at once.
        with contextlib.suppress(FileNotFoundError), logs[name].open("rb") as log:
            log.seek(offset)
            for raw in log:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if _PROBLEM.search(line):
                    hits.append(line)
                if len(hits) == _PROBLEMS_SHOWN:
                    break
        if hits:
            found[name] = hits
    return found
