"""End-to-end benchmark: one email broadcast to N contracts through the four services.

    .venv/bin/python -m bench.e2e [--contracts N] [--ceiling-messages M] [--idle-seconds S]
                                  [--compare RUN_JSON]

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
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import asyncpg

from bench.ceiling import CEILING_CONNECTIONS, ceiling_message, smtp_ceiling
from bench.compare import print_comparison, read_run
from bench.contracts import delete_contracts, rows_timeout

# Re-exported: tests/faults/test_targeting_restart.py imports it from here.
from bench.contracts import load_contracts as load_contracts
from bench.errors import BenchError
from bench.probes import (
    RssSampler,
    bytes_written,
    cpu_seconds,
    cpu_snapshot,
    idle_cpu,
    log_problems,
    log_sizes,
    machine,
    service_trees,
    settled_sink_count,
    topology,
)
from bench.processes import dispatcher_swapped, smtp_sink_running
from bench.report import RESULTS, Report, cpu_per_message, print_table, write_results
from bench.stages import measure_stages
from bench.watch import run_broadcast
from deploy.local import stack
from shared.client import endpoints
from shared.clock import Clock, utc_now


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # `timeout` and CI runners send SIGTERM: turn it into an exception so that every `finally`
    # runs and the stack's dispatcher is restored.
    raise SystemExit(128 + signum)


def broadcast_timeout(contracts: int) -> float:
    """StartBroadcast -> broadcast.completed may take this long: 2 minutes and 100 messages/s
    (1M: 2.8 h), a tenth of the slowest rate measured since issue 4 (990/s). A stuck run fails
    sooner, after 120 s without an event of the broadcast (bench.watch.STALL_TIMEOUT_S)."""
    return 120 + contracts / 100


async def e2e_phase(tenant: str, contracts: int, idle_s: float, report: Report) -> None:
    """Swap the dispatchers, measure the idle stack, run the broadcast while sampling RSS,
    measure the stages."""
    with dispatcher_swapped():
        if idle_s > 0:
            print(f"idle for {idle_s:.0f} s: each component's fixed CPU cost", flush=True)
            report.data["idle_cpu_ms_per_s"] = await idle_cpu(idle_s)
        sampler = RssSampler(service_trees())
        written_before = await bytes_written()
        cpu_before = cpu_snapshot()
        async with sampler.sampling():
            run = await run_broadcast(tenant, contracts, timeout_s=broadcast_timeout(contracts))
        cpu = cpu_seconds(cpu_before)
        written = {k: v - written_before[k] for k, v in (await bytes_written()).items()}
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
            **cpu_per_message(cpu, c.delivered),
            # A count, not the samples: the JSON stays the same size at any N.
            "rss_samples": sampler.samples,
            "bytes_per_message": {k: round(v / max(c.delivered, 1)) for k, v in written.items()},
        }
    )
    report.data.update(
        await measure_stages(
            run.run_id,
            contracts,
            run.messages_start,
            run.started_epoch,
            run.server_first,
            run.server_last,
        )
    )
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
    conn = await asyncpg.connect(endpoints.local().database_url, timeout=10)
    try:
        seconds = await load_contracts(conn, tenant, contracts)
    finally:
        await conn.close()
    report.data["load"] = {"rows": contracts, "seconds": round(seconds, 2)}


async def cleanup_phase(tenant: str, contracts: int) -> None:
    conn = await asyncpg.connect(endpoints.local().database_url, timeout=10)
    try:
        await delete_contracts(conn, tenant, timeout=rows_timeout(contracts))
    finally:
        await conn.close()


def run_bench(
    contracts: int, ceiling_messages: int, idle_s: float, command: str, clock: Clock = utc_now
) -> Report:
    started = clock()
    tenant = f"bench-{int(started.timestamp())}"
    report = Report()
    report.data.update(
        {
            "command": command,
            "started_at": started.isoformat(timespec="seconds"),
            "tenant": tenant,
            "recipients": contracts,
            "machine": machine(),
            "topology": topology(),
        }
    )
    logs_before = log_sizes()
    with smtp_sink_running():
        try:
            print(f"loading {contracts} contracts for {tenant} (COPY)", flush=True)
            asyncio.run(load_phase(tenant, contracts, report))
            print("broadcasting through the bench dispatcher -> smtp-sink", flush=True)
            asyncio.run(e2e_phase(tenant, contracts, idle_s, report))
            print(f"SMTP ceiling: {ceiling_messages} messages, 8 connections", flush=True)
            asyncio.run(ceiling_phase(ceiling_messages, report))
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(cleanup_phase(tenant, contracts))
    report.data["service_log_problems"] = log_problems(logs_before)
    return report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="measure each component's CPU with nothing to do for this long first (0: skip)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="RUN_JSON",
        help="an earlier run's JSON: print it beside this run, with the ratios",
    )
    args = parser.parse_args(argv)
    if args.contracts < 1 or args.ceiling_messages < 1:
        parser.error("counts must be positive")
    if args.idle_seconds < 0:
        parser.error("--idle-seconds must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    command = " ".join([".venv/bin/python", "-m", "bench.e2e", *argv])
    # Read first: a wrong path must fail before a run of an hour, not after it.
    before = read_run(args.compare) if args.compare else None
    try:
        report = run_bench(args.contracts, args.ceiling_messages, args.idle_seconds, command)
    except (BenchError, stack.StackError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    path = write_results(report)
    print_table(report.data)
    if before is not None:
        print()
        print_comparison(before, report.data)
    print(f"\nwritten to {path} and {RESULTS / 'latest.json'}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
