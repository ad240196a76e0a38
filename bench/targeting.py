"""Targeting alone at scale: `python -m bench.targeting [--sizes 100000 1000000]`.

For each size: a fresh targeting process, N matching contracts COPYed into its read model, one
broadcast started; measured from targeting's own checkpoints (`targeting.runs_v1` started_at ->
targeted_at), with the peak RSS of the targeting process sampled every 0.5 s. Then every record
the run published on `broadcast.recipients` is read back and counted: each recipient exactly
once. The composer is held stopped meanwhile and moved past the run afterwards (see
`bench.recipients`), so what is measured is targeting, and the stack is left idle.
"""

import argparse
import asyncio
import sys
from typing import Any
from uuid import uuid4

import asyncpg

from bench.contracts import delete_contracts, load_contracts
from bench.probes import RssSampler, machine
from bench.recipients import end_offsets, recipients_of_run, skip_for_composer
from bench.report import write_json
from bench.stages import table_window
from bench.watch import create_command, start_command, targeted
from deploy.local import stack
from shared.client import endpoints
from shared.client.commands import Commands
from shared.clock import Clock, utc_now
from shared.ids import run_id_for


async def measure(db: asyncpg.Connection, size: int, clock: Clock = utc_now) -> dict[str, Any]:
    tenant = f"bench-t{size}-{int(clock().timestamp())}"
    await asyncio.to_thread(stack.down, ["targeting"])
    await asyncio.to_thread(stack.up, ["targeting"])  # a fresh process: its own peak RSS
    load_s = await load_contracts(db, tenant, size)
    start = await end_offsets()
    pgid = stack.running_pid(stack.components()["targeting"].pid_file)
    assert pgid is not None
    sampler = RssSampler({"targeting": sorted(stack.process_tree(pgid))})
    broadcast_id = uuid4()
    run_id = run_id_for(broadcast_id, 1)
    async with (
        Commands(endpoints.local().kafka, requested_by="bench") as commands,
        sampler.sampling(),
    ):
        await commands.send(create_command(tenant, "bench", broadcast_id))
        await commands.send(start_command(tenant, "bench-start", broadcast_id))
        await targeted(db, run_id, timeout=120 + size / 1000)
    window = await table_window(db, "targeting", run_id)
    assert window is not None, f"run {run_id} has no row"
    published = await recipients_of_run(start, str(run_id))
    await skip_for_composer(await end_offsets())
    await delete_contracts(db, tenant)
    seconds = window.last - window.first
    return {
        "contracts": size,
        "load_s": round(load_s, 2),
        "messages": window.count,
        "stream_s": round(seconds, 2),
        "recipients_per_s": round(window.count / seconds),
        "published_records": len(published),
        "distinct_recipients": len(set(published)),
        "peak_rss_mb": sampler.peak_mb()["targeting"],
    }


async def run(sizes: list[int]) -> dict[str, Any]:
    started_at = utc_now().isoformat(timespec="seconds")
    db = await asyncpg.connect(endpoints.local().database_url)
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
    write_json(result, "targeting-latest.json")
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
