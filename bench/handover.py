"""The dispatcher's hand-over in process: `python -m bench.handover --dsn postgresql://...`.

The real `Handover` (waves, claims in the ledger, outcomes recorded, rate-limit keys, tenants'
settings, metrics), wired as `services.dispatcher.startup` wires it, against a PostgreSQL of
your own (the ledger is part of the path), with a provider that accepts every message at once:
no Kafka, no SMTP. Batches of `--batch` fresh `MessageRendered` go through
`Handover.fresh` and `DispatcherMetrics.observe`, as the dispatcher's handler does, minus
publishing. Prints the dispatcher process's CPU µs per message (the database's CPU is not
counted), and with `--trace` the allocations still held at the end, largest first.

Never point it at the stack's database: it migrates the `dispatcher` schema and fills
its ledger with `--messages` rows.
"""

import argparse
import asyncio
import json
import resource
import time
import tracemalloc
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
from prometheus_client import CollectorRegistry

from bench.dispatcher import bench_message
from services.dispatcher import instance, tenants
from services.dispatcher.handover import Handover, Limits
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.policy import Attempt
from services.dispatcher.providers import Providers
from services.dispatcher.refresh import Freshness
from services.dispatcher.retry import RetryPolicy
from services.dispatcher.settings import Settings
from services.tracker.metrics import TrackerMetrics
from services.tracker.pauses import FailureWatch
from services.tracker.store import Watched
from shared.clock import utc_now
from shared.db import create_pool, migrate
from shared.events import MessageDelivered, MessageRendered, RefreshRequested

MIGRATIONS = Path(__file__).parent.parent / "services" / "dispatcher" / "migrations"
ACCEPTED = Attempt("accepted", 250, "2.0.0 Ok: queued as 4ABCD")


class Accepting:
    """A provider that takes every message at once, yielding to the loop as a relay would."""

    async def send(self, message: MessageRendered) -> Attempt:
        await asyncio.sleep(0)
        return ACCEPTED

    async def close(self) -> None:
        return None


async def _no_refresh(requests: Sequence[RefreshRequested]) -> None:
    return None


def batch(tenant: str, run_id: UUID, start: int, size: int, body: str) -> list[MessageRendered]:
    return [bench_message(tenant, run_id, i, body) for i in range(start, start + size)]


async def measure(dsn: str, count: int, size: int, trace: bool) -> dict[str, object]:
    settings = Settings(instance_id=f"bench-handover-{uuid4()}")
    pool = await create_pool(dsn, size=settings.database_pool_size, reset_sessions=False)
    try:
        await migrate(pool, "dispatcher", MIGRATIONS)
        metrics = DispatcherMetrics(CollectorRegistry())
        me = await instance.register(pool, settings.instance_id)
        handover = Handover(
            pool,
            Providers({"email": Accepting()}, metrics.provider_seconds),
            tenants.Directory(pool),
            RetryPolicy(delays=settings.retry_delays_seconds),
            Limits.from_settings(settings),
            me,
            utc_now,
            Freshness(timedelta(minutes=5), timedelta(seconds=30), timedelta(hours=1)),
            _no_refresh,
        )
        tenant, run_id, body = f"bench-{uuid4()}", uuid4(), "x" * 3900
        # Warm-up: the pool's connections, prepared statements, the tenant's settings.
        metrics.observe(await handover.fresh(batch(tenant, run_id, -size, size, body)))
        if trace:
            tracemalloc.start(10)
            base = tracemalloc.take_snapshot()
        cpu = wall = 0.0
        # Resident memory after each tenth of the run: what grows with the run's size shows.
        rss: list[float] = []
        for start in range(0, count, size):
            messages = batch(tenant, run_id, start, min(size, count - start), body)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            events = await handover.fresh(messages)
            metrics.observe(events)
            cpu += time.process_time() - cpu0
            wall += time.perf_counter() - wall0
            assert len(events) == len(messages), "every message is delivered once"
            if (start // size + 1) % max(1, count // size // 10) == 0:
                rss.append(_rss_mib())
        result: dict[str, object] = {
            "messages": count,
            "batch": size,
            "cpu_us_per_message": round(cpu / count * 1e6, 1),
            "messages_per_wall_second": round(count / wall),
            "rss_mib_by_tenth": rss,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        if trace:
            top = tracemalloc.take_snapshot().compare_to(base, "lineno")[:15]
            result["held_after"] = [str(s) for s in top]
            tracemalloc.stop()
        return result
    finally:
        await pool.close()


async def tracker_handlers(count: int, size: int) -> dict[str, object]:
    """The tracker's handler side for delivered messages, without its database: counters and
    latency (`TrackerMetrics.observe`) and the failure window (`FailureWatch.watch`, which asks
    the database only about runs with failures)."""
    metrics = TrackerMetrics(CollectorRegistry())
    watch = FailureWatch(_no_pool, _no_pause)
    run_id, targeted = uuid4(), utc_now() - timedelta(seconds=2)
    delivered = [
        MessageDelivered(**{**message.ref(), "targeted_at": targeted}, provider_code=250)
        for message in batch("bench", run_id, 0, size, "")
    ]
    cpu = time.process_time()
    for _ in range(0, count, size):
        metrics.observe(delivered)
        await watch.watch([], delivered)
    return {
        "messages": count,
        "tracker_handler_cpu_us_per_message": round((time.process_time() - cpu) / count * 1e6, 2),
    }


def _no_pool() -> asyncpg.Pool:
    raise AssertionError("only runs with failures are looked up")


async def _no_pause(run: Watched, why: str) -> None:
    raise AssertionError("delivered messages never pause a run")


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return round(int(statm.read().split()[1]) * resource.getpagesize() / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", help="a PostgreSQL of your own (not the stack's)")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--trace", action="store_true", help="tracemalloc: what the run holds")
    parser.add_argument(
        "--tracker", action="store_true", help="the tracker's handler side instead (no --dsn)"
    )
    args = parser.parse_args()
    if args.tracker:
        result = asyncio.run(tracker_handlers(args.messages, args.batch))
    elif args.dsn:
        result = asyncio.run(measure(args.dsn, args.messages, args.batch, args.trace))
    else:
        parser.error("--dsn is needed for the hand-over")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
