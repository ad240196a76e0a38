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
from uuid import UUID, uuid4

import asyncpg
import httpx

from deploy.local.every_day import send_every_day
from shared import topics
from shared.client import endpoints, progress
from shared.client.commands import Commands, publish
from shared.client.watch import BroadcastWatch, WatchTimeout, until_contracts
from shared.events import (
    BroadcastCompleted,
    BroadcastProgressed,
    BroadcastRejected,
    ContactPoint,
    ContractFields,
    ContractUpserted,
    CreateBroadcast,
    StartBroadcast,
)

TENANT = "demo-deneigement"
CONTRACTS = 5_000
# A broadcast of the demo's size that shows no event for this long is stuck.
STALL_S = 120.0
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


def broadcast(request_id: str, broadcast_id: UUID) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": TENANT,
            "request_id": request_id,
            "broadcast_id": broadcast_id,
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


async def refuse_bouncing(smtp_control: str) -> None:
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
        (await http.put(f"{smtp_control}/_sink/rules", json=rules)).raise_for_status()


async def follow(watch: BroadcastWatch) -> BroadcastCompleted | BroadcastRejected:
    """Draw the progress bar until the broadcast completes or a command of it is rejected."""
    while True:
        event = await watch.next(deadline=float("inf"))
        if isinstance(event, BroadcastRejected):
            return event
        if isinstance(event, BroadcastProgressed | BroadcastCompleted):
            c = event.counters
            line = progress.bar(c.delivered + c.failed, c.messages_targeted, width=40)
            progress.redraw(line, sys.stdout)
        if isinstance(event, BroadcastCompleted):
            return event


async def main() -> int:
    local = endpoints.local()
    await refuse_bouncing(local.smtp_control)
    db = await asyncpg.connect(local.database_url)
    try:
        print(f"loading {CONTRACTS} demo contracts for tenant {TENANT} ...")
        await publish(
            local.kafka,
            topics.CONTRACTS.name,
            (
                (f"{TENANT}:{c.contract_id}".encode(), c.model_dump_json().encode())
                for c in audience()
            ),
            local.kafka_security,
            linger_ms=5,
        )
        await until_contracts(db, TENANT, CONTRACTS, timeout=600)
        # Opened before anything is sent, so no event of the broadcast is missed.
        async with Commands(
            local.kafka, requested_by="demo-operator", security=local.kafka_security
        ) as commands:
            await send_every_day(commands, db, TENANT)
            request_id = f"demo-{int(time.time())}"
            # Chosen here, random, so the events can be followed before the answer comes.
            broadcast_id = uuid4()
            started_at = time.monotonic()
            await commands.send(broadcast(request_id, broadcast_id))
            await commands.send(
                StartBroadcast(
                    tenant_id=TENANT,
                    request_id=f"{request_id}-start",
                    requested_by="demo-operator",
                    broadcast_id=broadcast_id,
                )
            )
            print(f'broadcast {broadcast_id} started: "Surcharge pour excédent de neige"')
            try:
                outcome = await follow(
                    BroadcastWatch(commands.events, broadcast_id, stall_s=STALL_S)
                )
            except WatchTimeout as stuck:
                print(f"\n{stuck}", file=sys.stderr)
                return 1
        if isinstance(outcome, BroadcastRejected):
            print(f"\nrejected: {outcome.field}: {outcome.message}", file=sys.stderr)
            return 1
        actions = await db.fetchval(
            "SELECT count(*) FROM tracker.actions_v1 WHERE run_id = $1", outcome.run_id
        )
        c = outcome.counters
        print(f"\n\nfinished in {time.monotonic() - started_at:.1f}s: {outcome.outcome}")
        print(f"  contracts targeted  {c.contracts_targeted}")
        print(f"    reached           {c.contracts_reached}")
        print(f"    not reached       {c.contracts_not_reached}")
        print(f"  messages targeted   {c.messages_targeted}")
        print(f"  delivered           {c.delivered}")
        print(f"  failed              {c.failed}")
        print(f"  manual actions      {actions}")
        print(f"\nmessages are in the SMTP sink: curl -s {local.smtp_control}/_sink/count")
        return 0
    finally:
        await db.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
