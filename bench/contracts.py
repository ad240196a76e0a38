"""The bench's audience: N contracts COPYed straight into targeting's read model.

This bypasses `audience.contracts` on purpose: how fast the read model is fed is not what is
measured, and 100,000 rows load in under a second.
"""

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import asyncpg

# What the bench's broadcast targets; every row of contract_rows matches it.
CRITERIA = [
    {"field": "status", "values": ["active", "to_renew"]},
    {"field": "building_type", "values": ["residential"]},
]

CONTRACT_COLUMNS = (
    "tenant_id",
    "contract_id",
    "version",
    "deleted",
    "number",
    "status",
    "building_type",
    "zone",
    "season",
    "client_name",
    "service_address",
    "language",
    "emails",
    "phones",
    "balance",
    "amount_paid",
    "attributes",
)


def contract_rows(tenant: str, count: int) -> Iterator[tuple[object, ...]]:
    """`count` contracts that all match CRITERIA, one French-speaking mailbox each."""
    for n in range(1, count + 1):
        number = f"B-{n:07d}"
        yield (
            tenant,
            number,
            1,
            False,
            number,
            "active" if n % 5 else "to_renew",
            "residential",
            f"Zone {n % 12 + 1}",
            "2026-2027",
            f"Client Bench {n}",
            f"{n % 9999 + 1} rue des Érables, Québec (Québec)",
            "fr",
            json.dumps([{"address": f"client{n}@bench.example", "opted_out": False}]),
            "[]",
            Decimal(n % 90_000) / 100,
            Decimal(0),
            "{}",
        )


def rows_timeout(count: int) -> float:
    """How long loading or deleting `count` contracts may take: 100,000 loaded in 2.2 s on
    2026-11-23, so this leaves a margin of over 20x at any size (1M: 560 s)."""
    return 60.0 + count / 2_000


async def load_contracts(conn: asyncpg.Connection, tenant: str, count: int) -> float:
    """COPY the contracts straight into targeting's read model; returns the seconds it took."""
    began = time.monotonic()
    await conn.copy_records_to_table(
        "contracts",
        schema_name="targeting",
        columns=list(CONTRACT_COLUMNS),
        records=contract_rows(tenant, count),
        timeout=rows_timeout(count),
    )
    return time.monotonic() - began


async def delete_contracts(conn: asyncpg.Connection, tenant: str, timeout: float = 120.0) -> None:
    # Only the rows this bench loaded: the run's records in other schemas stay as its history.
    await conn.execute(
        "DELETE FROM targeting.contracts WHERE tenant_id = $1", tenant, timeout=timeout
    )
