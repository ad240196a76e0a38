"""Targeting alone at scale: `python -m bench.targeting [--sizes 100000 1000000]`.

For each size: a fresh targeting process, N matching contracts COPYed into its read model, one
broadcast started; measured from targeting's own checkpoints (`targeting.runs` started_at ->
targeted_at), with the peak RSS of the targeting process sampled every 0.5 s. Then every record
the run published on `broadcast.recipients` is read back and counted: each recipient exactly
once. The composer is held stopped meanwhile and moved past the run afterwards (see
`bench.recipients`), so what is measured is targeting, and the stack is left idle.
"""

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.e2e import RssSampler, create_command, load_contracts, machine
from bench.recipients import end_offsets, recipients_of_run, skip_for_composer
from deploy.local import stack
from shared.events import StartBroadcast
from shared.ids import broadcast_id_for, run_id_for
from shared.topics import REQUESTS

DATABASE_URL = stack.postgres_url()
RESULTS = Path(__file__).resolve().parent / "results"


async def publish(producer: AIOKafkaProducer, tenant: str, payload: bytes) -> None:
    await producer.send_and_wait(REQUESTS.name, payload, key=tenant.encode())


async def measure(db: asyncpg.Pool, size: int) -> dict[str, Any]:
    tenant = f"bench-t{size}-{int(time.time())}"
    await asyncio.to_thread(stack.down, ["targeting"])
    await asyncio.to_thread(stack.up, ["targeting"])  # a fresh process: its own peak RSS
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        load_s = await load_contracts(connection, tenant, size)
    finally:
        await connection.close()
    start = await end_offsets()
    pgid = stack.running_pid(stack.components()["targeting"].pid_file)
    assert pgid is not None
    sampler = RssSampler({"targeting": sorted(stack.process_tree(pgid))})
    sampling = asyncio.create_task(sampler.run())
    broadcast_id = broadcast_id_for(tenant, "bench")
    run_id = run_id_for(broadcast_id, 1)
    producer = AIOKafkaProducer(bootstrap_servers=stack.KAFKA_BOOTSTRAP, acks="all")
    await producer.start()
    try:
        await publish(producer, tenant, create_command(tenant, "bench").model_dump_json().encode())
        await publish(
            producer,
            tenant,
            StartBroadcast(
                tenant_id=tenant,
                request_id="bench-start",
                requested_by="bench",
                broadcast_id=broadcast_id,
            )
            .model_dump_json()
            .encode(),
        )
        async with asyncio.timeout(120 + size / 1000):
            while (
                await db.fetchval("SELECT state FROM targeting.runs WHERE run_id = $1", run_id)
                != "targeted"
            ):
                await asyncio.sleep(0.2)
    finally:
        sampling.cancel()
        await producer.stop()
    row = await db.fetchrow(
        "SELECT messages, extract(epoch FROM targeted_at - started_at) AS seconds "
        "FROM targeting.runs WHERE run_id = $1",
        run_id,
    )
    assert row is not None, f"run {run_id} has no row"
    published = await recipients_of_run(start, str(run_id))
    await skip_for_composer(await end_offsets())
    await db.execute("DELETE FROM targeting.contracts WHERE tenant_id = $1", tenant)
    seconds = float(row["seconds"])
    return {
        "contracts": size,
        "load_s": round(load_s, 2),
        "messages": row["messages"],
        "stream_s": round(seconds, 2),
        "recipients_per_s": round(row["messages"] / seconds),
        "published_records": len(published),
        "distinct_recipients": len(set(published)),
        "peak_rss_mb": sampler.peak_mb()["targeting"],
    }


async def run(sizes: list[int]) -> dict[str, Any]:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    db = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=2)
    assert db is not None
    await asyncio.to_thread(stack.down, ["composer"])
    try:
        runs = [await measure(db, size) for size in sizes]
    finally:
        await asyncio.to_thread(stack.up, ["composer"])
        await db.close()
    ratio = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"] if len(runs) > 1 else None
    return {
        "command": "python -m bench.targeting --sizes " + " ".join(map(str, sizes)),
        "started_at": started_at,
        "machine": machine(),
        "runs": runs,
        "rss_ratio_largest_to_smallest": round(ratio, 3) if ratio else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args(argv)
    stack.up()
    result = asyncio.run(run(args.sizes))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "targeting-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    for r in result["runs"]:
        print(
            f"{r['contracts']:>9} contracts: {r['recipients_per_s']:>7}/s over "
            f"{r['stream_s']}s, peak RSS {r['peak_rss_mb']} MB, "
            f"{r['distinct_recipients']} distinct of {r['published_records']} published"
        )
    print(f"peak RSS ratio largest/smallest: {result['rss_ratio_largest_to_smallest']}")
    exact = all(
        r["distinct_recipients"] == r["published_records"] == r["contracts"] for r in result["runs"]
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
