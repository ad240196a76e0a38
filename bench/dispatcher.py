"""The dispatcher alone against the raw aiosmtplib ceiling: `python -m bench.dispatcher`.

1. The tenant is set to send every day (through the stack's dispatcher, which applies it).
2. The stack's dispatcher is stopped and N rendered messages (the e2e bench's French invoice,
   3.9 KB, one recipient each) are published on `broadcast.messages`: a backlog.
3. The bench dispatcher (the stack's command, relaying to Postfix's smtp-sink on port 10125)
   starts, in the same consumer group, and drains the backlog. Its rate is the ledger's:
   N / (last outcome recorded - first claim), so only its own work is timed.
4. The ceiling, measured before and after step 3: one asyncio process with the same number of
   persistent aiosmtplib connections sending the same message in a loop
   (`bench.e2e.smtp_ceiling`).
5. The stack's dispatcher is started again; smtp-sink is stopped.

Prints one JSON document and writes bench/results/dispatcher-latest.json.
"""

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.e2e import (
    CEILING_CONNECTIONS,
    DISPATCHER,
    DISPATCHER_PID,
    ceiling_message,
    cpu_seconds,
    cpu_snapshot,
    dispatcher_window,
    machine,
    settled_sink_count,
    sink_count,
    smtp_ceiling,
    smtp_sink_running,
    start_bench_dispatcher,
)
from deploy.local import stack
from deploy.local.every_day import send_every_day
from shared import topics
from shared.events import MessageRendered
from shared.ids import recipient_id_for

RESULTS = Path(__file__).resolve().parent / "results"


async def backlog(producer: AIOKafkaProducer, tenant: str, run_id: UUID, count: int) -> None:
    body = ceiling_message().decode()
    pending = []
    for i in range(count):
        address = f"client{i}@bench.example"
        message = MessageRendered(
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
        pending.append(
            await producer.send(
                topics.MESSAGES.name,
                message.model_dump_json().encode(),
                key=str(message.recipient_id).encode(),
            )
        )
    await asyncio.gather(*pending)


async def drained(db: asyncpg.Connection, run_id: UUID, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (
        await db.fetchval(
            "SELECT count(*) FROM dispatcher.deliveries "
            "WHERE run_id = $1 AND finished_at IS NOT NULL",
            run_id,
        )
        < count
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dispatcher did not drain {count} messages in {timeout} s")
        await asyncio.sleep(0.5)


async def measure(count: int, ceiling_messages: int) -> dict[str, Any]:
    tenant, run_id = f"bench-dispatch-{int(time.time())}", uuid4()
    db = await asyncpg.connect(stack.postgres_url())
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.KAFKA_BOOTSTRAP, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    was_running = stack.running_pid(stack.components()[DISPATCHER].pid_file) is not None
    try:
        await send_every_day(producer, db, tenant)
        stack.down([DISPATCHER])
        await backlog(producer, tenant, run_id, count)
        # The machine's speed drifts (it is shared): the ceiling is measured before and after
        # the dispatcher, and the dispatcher compared with their mean.
        ceiling_before = ceiling_messages / await smtp_ceiling(ceiling_messages, ceiling_message())
        sink_before = sink_count()
        cpu_before = cpu_snapshot()
        start_bench_dispatcher()
        await drained(db, run_id, count, timeout=120 + count / 100)
        cpu = cpu_seconds(cpu_before)
        window = await dispatcher_window(db, run_id)
        assert window is not None
        states = {
            r["state"]: r["n"]
            for r in await db.fetch(
                "SELECT state, count(*) AS n FROM dispatcher.deliveries "
                "WHERE run_id = $1 GROUP BY 1",
                run_id,
            )
        }
        received = settled_sink_count() - sink_before
        stack.stop_process(DISPATCHER_PID, timeout=20.0)
        ceiling_after = ceiling_messages / await smtp_ceiling(ceiling_messages, ceiling_message())
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
    finally:
        await producer.stop()
        await db.close()
        stack.stop_process(DISPATCHER_PID, timeout=20.0)
        if was_running:
            stack.up([DISPATCHER])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    args = parser.parse_args(argv)
    with smtp_sink_running():
        figures = asyncio.run(measure(args.messages, args.ceiling_messages))
    result = {
        "command": " ".join(["python -m bench.dispatcher", *(argv or sys.argv[1:])]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **figures,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dispatcher-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = figures["states"] == {"delivered": args.messages}
    return 0 if ok and figures["smtp_sink_received"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
