"""PostgreSQL's share of a run, without Kafka or SMTP: `python -m bench.database --dsn DSN`.

Against a scratch database of your own (it drops and recreates the dispatcher's and the
tracker's schemas): migrates both, preloads `--preload` finished rows of an earlier run into
dispatcher.deliveries and tracker.messages (the ledger a long-lived deployment has), then plays
the database side of `--messages` recipients as the services do it: the dispatcher claims and
records per wave (`--wave`, 16 by default: 2 x 8 SMTP connections), the tracker records the
final outcomes per batch (`--batch`) and settles them as `Progress.settle` does (the run's
progress once a second), and a sweeper runs the dispatcher's sweep statements once a second,
as `handover.expire`, `repair` and `due` do. Reports the CPU of the three backends
and of the whole cluster (autovacuum, WAL writer and checkpointer included) per message,
commits per message, and pg_stat_statements' busiest statements. The server must run on this
machine (its CPU is read from /proc) with pg_stat_statements in shared_preload_libraries.
"""

import argparse
import asyncio
import functools
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from deploy.local.stack import POSTGRES_PASSWORD
from deploy.postgres.credentials import ROLES
from deploy.postgres.roles import provision
from services.dispatcher import ledger
from services.dispatcher.policy import Attempt
from services.tracker import store
from services.tracker.progress import Recounts
from services.tracker.settings import Settings as TrackerSettings
from shared.db import create_pool, migrate
from shared.events import MessageDelivered, MessageRendered

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int, children: bool = False) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime (and cutime, cstime: reaped children) from field 14 on (1-based).
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def _cluster_ticks(postmaster: int) -> int:
    """The postmaster, its reaped children and its live ones."""
    total = _ticks(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                total += sum(int(f) for f in stat[11:13])
    return total


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def prepare(dsn: str, preload: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "DROP SCHEMA IF EXISTS dispatcher CASCADE; DROP SCHEMA IF EXISTS tracker CASCADE;"
            "DROP TABLE IF EXISTS public.schema_migrations;"
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
        )
        # The migrations grant their views to broadcast_reader: the cluster needs the roles.
        await provision(connection, dict.fromkeys(ROLES, POSTGRES_PASSWORD))
    finally:
        await connection.close()
    pool = await create_pool(dsn, size=1)
    try:
        await migrate(pool, "dispatcher", ROOT / "services/dispatcher/migrations")
        await migrate(pool, "tracker", ROOT / "services/tracker/migrations")
        # An earlier run's finished messages, as a real ledger holds them.
        await pool.execute(
            """INSERT INTO dispatcher.deliveries
                   (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id, address,
                    state, provider_code, provider_message, finished_at, claimed_by, claim_life,
                    claim_token)
               SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'old',
                      'email', '00000000-0000-0000-0000-000000000002', 'c' || i,
                      'c' || i || '@example.com', 'delivered', 250, '2.0.0 Ok', now(), 'old', 1,
                      nextval('dispatcher.claim_tokens')
               FROM generate_series(1, $1) AS i""",
            preload,
        )
        await pool.execute(
            """INSERT INTO tracker.messages (recipient_id, run_id, tenant_id, contract_id,
                                             channel, address, state)
               SELECT recipient_id, run_id, tenant_id, contract_id, channel, address, state
               FROM dispatcher.deliveries"""
        )
        await pool.execute("VACUUM ANALYZE dispatcher.deliveries")
        await pool.execute("VACUUM ANALYZE tracker.messages")
    finally:
        await pool.close()


def _messages(count: int) -> list[MessageRendered]:
    run_id, broadcast_id = uuid.uuid4(), uuid.uuid4()
    return [
        MessageRendered(
            tenant_id="acme",
            broadcast_id=broadcast_id,
            run_id=run_id,
            recipient_id=uuid.uuid4(),
            contract_id=f"c{i}",
            channel="email",
            address=f"c{i}@example.com",
            sender="news@example.com",
            body="",
        )
        for i in range(count)
    ]


async def sweep(pool: asyncpg.Pool, me: ledger.Claimant) -> None:
    """The statements of one sweep (services/dispatcher/sweeper.py), once a second."""
    while True:
        now = datetime.now(UTC)
        await ledger.settle_abandoned(pool, me, timedelta(seconds=15))
        await ledger.cancel_waiting(pool)
        await ledger.unannounced(pool, now - timedelta(seconds=30))
        await ledger.abandon_refreshes(pool, now - timedelta(hours=1))
        await ledger.overdue_refreshes(pool, now, now + timedelta(seconds=30), 200)
        await ledger.take_due(pool, now, me, 200)
        await asyncio.sleep(1.0)


async def settle(
    pool: asyncpg.Pool, run_ids: set[UUID], progressed: list[float], recounts: Recounts
) -> None:
    """What the tracker's `Progress.settle` reads and writes after each batch; the run's
    progress (its counters and breakdown: `store.running`) at most once a second, its contracts
    counted as the tracker's `Recounts` decides."""
    await store.complete_finished(pool, run_ids)
    await store.settle_follow_ups(pool, run_ids)
    await store.unpublished_completions(pool)
    if time.monotonic() - progressed[0] >= 1.0:
        progressed[0] = time.monotonic()
        await recounts.counting(run_ids, functools.partial(store.running, pool, run_ids))


async def play(dsn: str, count: int, wave: int, batch: int) -> dict[str, Any]:
    messages = _messages(count)
    me = ledger.Claimant("bench", 1)
    accepted = Attempt("accepted", 250, "2.0.0 Ok: queued", None)
    dispatcher = await create_pool(dsn, size=1)
    tracker = await create_pool(dsn, size=1)
    sweeper = await create_pool(dsn, size=1)
    try:
        pids = [await p.fetchval("SELECT pg_backend_pid()") for p in (dispatcher, tracker, sweeper)]
        postmaster = _ppid(pids[0])
        await dispatcher.execute("SELECT pg_stat_statements_reset()")
        commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        commits_before = await dispatcher.fetchval(commits)
        backends_before = [_ticks(p) for p in pids]
        cluster_before = _cluster_ticks(postmaster)
        started = time.perf_counter()
        progressed = [0.0]
        recounts = Recounts(TrackerSettings.model_fields["contract_count_seconds"].default)
        sweeping = asyncio.create_task(sweep(sweeper, me))
        for first in range(0, count, batch):
            part = messages[first : first + batch]
            for at in range(0, len(part), wave):
                claims = await ledger.claim(dispatcher, part[at : at + wave], me)
                await ledger.record(
                    dispatcher, dict.fromkeys(claims.claimed, accepted), claims.claimed
                )
            runs, _ = await store.record_deliveries(
                tracker, [MessageDelivered(**m.ref(), provider_code=250) for m in part]
            )
            await settle(tracker, runs, progressed, recounts)
        seconds = time.perf_counter() - started
        sweeping.cancel()
        # Statistics reach pg_stat_database when a backend goes idle; this read ends no wait.
        await asyncio.sleep(1.0)
        backends = [_ticks(p) - b for p, b in zip(pids, backends_before, strict=True)]
        cluster = _cluster_ticks(postmaster) - cluster_before
        xacts = await dispatcher.fetchval(commits) - commits_before
        top = await dispatcher.fetch(
            """SELECT calls, round(total_exec_time::numeric, 1) AS ms, rows,
                      shared_blks_hit + shared_blks_read AS blocks,
                      left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query
               FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database
                                                     WHERE datname = current_database())
               ORDER BY total_exec_time DESC LIMIT 8"""
        )
        scans = await dispatcher.fetch(
            """SELECT schemaname || '.' || relname AS "table", seq_scan, seq_tup_read,
                      idx_scan, n_tup_upd, n_tup_hot_upd
               FROM pg_stat_user_tables WHERE relname IN ('deliveries', 'messages')"""
        )
    finally:
        for pool in (dispatcher, tracker, sweeper):
            await pool.close()
    micro = 1e6 / _TICK / count
    return {
        "messages": count,
        "wave": wave,
        "batch": batch,
        "seconds": round(seconds, 2),
        "cpu_us_per_message": {
            "dispatcher_backend": round(backends[0] * micro, 1),
            "tracker_backend": round(backends[1] * micro, 1),
            "sweeper_backend": round(backends[2] * micro, 1),
            "cluster": round(cluster * micro, 1),
        },
        # Includes pg_stat_statements' reset and this script's reads: a handful.
        "commits_per_message": round(xacts / count, 3),
        "statements": [dict(r) for r in top],
        "tables": [dict(r) for r in scans],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:25432/h4")
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--wave", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-prepare", action="store_true", help="keep the schemas as they are")
    args = parser.parse_args()
    if not args.no_prepare:
        asyncio.run(prepare(args.dsn, args.preload))
    result = asyncio.run(play(args.dsn, args.messages, args.wave, args.batch))
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
