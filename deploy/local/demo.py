"""`make demo`: the seed's example broadcast to a demo audience of 5,000 contracts, end to end.

Loads the audience through `audience.contracts` (as the platform would; reloading it changes
nothing, since each contract keeps its id and version), then creates and starts "Surcharge pour
excédent de neige" for contracts Active OR To renew AND Residential, shows a progress bar from
`broadcast.events`, and prints the summary.
"""

import asyncio
import random
import sys
import time
from decimal import Decimal
from uuid import uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local.every_day import send_every_day
from shared import topics
from shared.events import (
    BROADCAST_EVENT_ADAPTER,
    BroadcastCompleted,
    BroadcastProgressed,
    ContactPoint,
    ContractFields,
    ContractUpserted,
    CreateBroadcast,
    StartBroadcast,
)
from shared.ids import broadcast_id_for

TENANT = "demo-deneigement"
CONTRACTS = 5_000
KAFKA = "127.0.0.1:19092"
DATABASE_URL = "postgresql://broadcast:broadcast@127.0.0.1:15432/broadcast"
SMTP_CONTROL = "http://127.0.0.1:10026"
# A few mailboxes the demo SMTP sink refuses, so the summary shows failures and actions.
BOUNCING = [f"inconnu{n}@demo.example" for n in range(1, 13)]


def audience() -> list[ContractUpserted]:
    rng = random.Random(2026)
    contracts = []
    for n in range(1, CONTRACTS + 1):
        number = f"D-{n:05d}"
        emails = [
            ContactPoint(address=f"client{n}.{k}@demo.example", opted_out=rng.random() < 0.02)
            for k in range(rng.choices([0, 1, 2, 3], weights=[6, 70, 20, 4])[0])
        ]
        if n <= len(BOUNCING):
            emails = [ContactPoint(address=BOUNCING[n - 1])]
        contracts.append(
            ContractUpserted(
                tenant_id=TENANT,
                contract_id=number,
                version=1,
                contract=ContractFields(
                    number=number,
                    status=rng.choices(
                        ["active", "to_renew", "cancelled", "prospect"], weights=[60, 20, 10, 10]
                    )[0],
                    building_type=rng.choices(
                        ["residential", "commercial", "industrial"], weights=[75, 20, 5]
                    )[0],
                    zone=f"Zone {rng.randint(1, 12)}",
                    season="2026-2027",
                    client_name=f"Client {n}",
                    service_address=f"{rng.randint(1, 9999)} rue des Érables, Québec",
                    language="en" if rng.random() < 0.25 else "fr",
                    emails=emails,
                    balance=Decimal(rng.randint(0, 90000)) / 100,
                ),
            )
        )
    return contracts


def broadcast(request_id: str) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": TENANT,
            "request_id": request_id,
            "requested_by": "demo-operator",
            "name": "Surcharge pour excédent de neige",
            "criteria": [
                {"field": "status", "values": ["active", "to_renew"]},
                {"field": "building_type", "values": ["residential"]},
            ],
            "channels": ["email"],
            "languages": ["fr", "en"],
            "content": {
                "email": {
                    "fr": {
                        "subject": "Surcharge pour excédent de neige — contrat "
                        "{{ contract.number }}",
                        "html": "<p>Bonjour {{ contract.client_name }},</p><p>Les précipitations "
                        "ont dépassé la limite prévue au contrat pour le "
                        "{{ contract.service_address }}. Une surcharge s'appliquera.</p>",
                    },
                    "en": {
                        "subject": "Excess snow surcharge — contract {{ contract.number }}",
                        "html": "<p>Hello {{ contract.client_name }},</p><p>Snowfall went over the "
                        "limit of your contract for {{ contract.service_address }}. A "
                        "surcharge will apply.</p>",
                    },
                }
            },
            "sender": {"address": "diffusions@deneigement.example", "name": "Déneigement Démo"},
        }
    )


def bar(done: int, total: int | None, width: int = 40) -> str:
    if total is None:
        return f"[{'.' * width}] {done} sent, still targeting"
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


async def main() -> int:
    async with httpx.AsyncClient() as http:
        rules = [
            {
                "address": a,
                "stage": "rcpt",
                "code": 550,
                "message": "5.1.1 User unknown",
                "times": None,
                "action": "reply",
            }
            for a in BOUNCING
        ]
        (await http.put(f"{SMTP_CONTROL}/_sink/rules", json=rules)).raise_for_status()

    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topics.EVENTS.name,
        bootstrap_servers=KAFKA,
        auto_offset_reset="latest",
        group_id=f"demo-{uuid4()}",
    )
    await producer.start()
    await consumer.start()
    db = await asyncpg.connect(DATABASE_URL)
    try:
        print(f"loading {CONTRACTS} demo contracts for tenant {TENANT} ...")
        sent = [
            await producer.send(
                topics.CONTRACTS.name,
                c.model_dump_json().encode(),
                key=f"{TENANT}:{c.contract_id}".encode(),
            )
            for c in audience()
        ]
        await asyncio.gather(*sent)
        while (
            await db.fetchval(
                "SELECT count(*) FROM targeting.contracts WHERE tenant_id = $1", TENANT
            )
            < CONTRACTS
        ):
            await asyncio.sleep(0.2)
        while not consumer.assignment():  # join before publishing, so no event is missed
            await asyncio.sleep(0.1)
        await send_every_day(producer, db, TENANT)

        request_id = f"demo-{int(time.time())}"
        broadcast_id = broadcast_id_for(TENANT, request_id)
        started_at = time.monotonic()
        for command in (
            broadcast(request_id),
            StartBroadcast(
                tenant_id=TENANT,
                request_id=f"{request_id}-start",
                requested_by="demo-operator",
                broadcast_id=broadcast_id,
            ),
        ):
            await producer.send_and_wait(
                topics.REQUESTS.name, command.model_dump_json().encode(), key=TENANT.encode()
            )
        print(f'broadcast {broadcast_id} started: "Surcharge pour excédent de neige"')
        completed: BroadcastCompleted | None = None
        async for record in consumer:
            event = BROADCAST_EVENT_ADAPTER.validate_json(record.value)
            if getattr(event, "broadcast_id", None) != broadcast_id:
                continue
            if event.type == "broadcast.rejected":
                print(f"\nrejected: {event.field}: {event.message}", file=sys.stderr)
                return 1
            if isinstance(event, BroadcastProgressed | BroadcastCompleted):
                c = event.counters
                print(
                    f"\r{bar(c.delivered + c.failed, c.messages_targeted)}\033[K",
                    end="",
                    flush=True,
                )
            if isinstance(event, BroadcastCompleted):
                completed = event
                break
        assert completed is not None
        actions = await db.fetchval(
            "SELECT count(*) FROM tracker.actions WHERE run_id = $1", completed.run_id
        )
        c = completed.counters
        print(f"\n\nfinished in {time.monotonic() - started_at:.1f}s: {completed.outcome}")
        print(f"  contracts targeted  {c.contracts_targeted}")
        print(f"  messages targeted   {c.messages_targeted}")
        print(f"  delivered           {c.delivered}")
        print(f"  failed              {c.failed}")
        print(f"  manual actions      {actions}")
        print("\nmessages are in the SMTP sink: curl -s http://127.0.0.1:10026/_sink/count")
        return 0
    finally:
        await db.close()
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
