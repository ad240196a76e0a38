"""The dispatcher alone against the raw aiosmtplib ceiling: `python -m bench.dispatcher`.

1. The tenant is set to send every day (through the stack's dispatcher, which applies it).
2. The stack's dispatcher is stopped and N rendered messages (the e2e bench's French invoice,
   3.9 KB, one recipient each) are published on `broadcast.messages`: a backlog.
3. The bench dispatcher (the stack's command, relaying to Postfix's smtp-sink on port 10125)
   starts, in the same consumer group, and drains the backlog. Its rate is the ledger's:
   N / (last outcome recorded - first claim), so only its own work is timed.
4. The ceiling, measured before and after step 3: one asyncio process with the same number of
   persistent aiosmtplib connections sending the same message in a loop (`bench.ceiling`).
5. The stack's dispatcher is started again; smtp-sink is stopped.

Prints one JSON document and writes bench/results/dispatcher-latest.json.
"""

import argparse
import asyncio
import json
import sys
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.ceiling import CEILING_CONNECTIONS, ceiling_message, smtp_ceiling
from bench.probes import cpu_seconds, cpu_snapshot, machine, settled_sink_count, sink_count
from bench.processes import (
    smtp_sink_running,
    stack_dispatcher_stopped,
    start_bench_dispatchers,
    stop_bench_dispatchers,
)
from bench.report import write_json
from bench.stages import table_window
from bench.watch import drained
from deploy.local.every_day import send_every_day
from shared import topics
from shared.client import endpoints
from shared.client.commands import Commands
from shared.clock import utc_now
from shared.events import MessageRendered
from shared.ids import recipient_id_for


def bench_message(tenant: str, run_id: UUID, i: int, body: str) -> MessageRendered:
    """The i-th message of a bench run: one email recipient each, ids stable per run."""
    address = f"client{i}@bench.example"
    return MessageRendered(
        tenant_id=tenant,
        broadcast_id=run_id,
        run_id=run_id,
        recipient_id=recipient_id_for(run_id, f"B-{i}", "email", address),
        contract_id=f"B-{i}",
        channel="email",
        address=address,
        sender="factures@bench.example",
        body=body,
    )


async def backlog(producer: AIOKafkaProducer, tenant: str, run_id: UUID, count: int) -> None:
    body = ceiling_message().decode()
    pending = []
    for i in range(count):
        message = bench_message(tenant, run_id, i, body)
        pending.append(
            await producer.send(
                topics.MESSAGES.name,
                message.model_dump_json().encode(),
                key=str(message.recipient_id).encode(),
            )
        )
    await asyncio.gather(*pending)


async def measure(count: int, ceiling_messages: int) -> dict[str, Any]:
    tenant, run_id = f"bench-dispatch-{int(utc_now().timestamp())}", uuid4()
    db = await asyncpg.connect(endpoints.local().database_url)
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.local().kafka, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        async with Commands(endpoints.local().kafka, requested_by="bench") as commands:
            await send_every_day(commands, db, tenant)
        with stack_dispatcher_stopped():
            await backlog(producer, tenant, run_id, count)
            # The machine's speed drifts (it is shared): the ceiling is measured before and
            # after the dispatcher, and the dispatcher compared with their mean.
            ceiling_before = ceiling_messages / await smtp_ceiling(
                ceiling_messages, ceiling_message()
            )
            sink_before = sink_count()
            cpu_before = cpu_snapshot()
            start_bench_dispatchers()
            await drained(db, run_id, count, timeout=120 + count / 100)
            cpu = cpu_seconds(cpu_before)
            window = await table_window(db, "dispatcher", run_id)
            assert window is not None
            states = {
                r["state"]: r["n"]
                for r in await db.fetch(
                    "SELECT state, count(*) AS n FROM dispatcher.deliveries_v1 "
                    "WHERE run_id = $1 GROUP BY 1",
                    run_id,
                )
            }
            received = settled_sink_count() - sink_before
            stop_bench_dispatchers()
            ceiling_after = ceiling_messages / await smtp_ceiling(
                ceiling_messages, ceiling_message()
            )
    finally:
        await producer.stop()
        await db.close()
    ceiling = (ceiling_before + ceiling_after) / 2
    rate = window.count / (window.last - window.first)
    return {
        "messages": count,
        "states": states,
        "smtp_sink_received": received,
        "dispatcher_per_s": round(rate, 1),
        "dispatcher_window_s": round(window.last - window.first, 2),
        "ceiling_per_s": round(ceiling, 1),
        "ceiling_before_after_per_s": [round(ceiling_before, 1), round(ceiling_after, 1)],
        "ceiling_messages": ceiling_messages,
        "connections": CEILING_CONNECTIONS,
        "ratio_to_ceiling": round(rate / ceiling, 3),
        "cpu_seconds": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    args = parser.parse_args(argv)
    with smtp_sink_running():
        figures = asyncio.run(measure(args.messages, args.ceiling_messages))
    result = {
        "command": " ".join(["python -m bench.dispatcher", *(argv or sys.argv[1:])]),
        "at": utc_now().isoformat(timespec="seconds"),
        "machine": machine(),
        **figures,
    }
    write_json(result, "dispatcher-latest.json")
    print(json.dumps(result, indent=2))
    ok = figures["states"] == {"delivered": args.messages}
    return 0 if ok and figures["smtp_sink_received"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
