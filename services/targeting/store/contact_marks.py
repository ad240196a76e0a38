"""Addresses kept out of targeting (opted out: `targeting.opt_outs`; suppressed by a delivery
report: `targeting.suppressions`), and the marks they put on the contracts' points, which
`audience.usable_addresses` reads."""

from collections.abc import Sequence
from typing import Literal

import asyncpg

from shared.db import Connection
from shared.events import Channel, ContractUpserted

from ..suppression import normalised

Marks = Literal["opt_outs", "suppressions"]
# The point's flag each table sets.
FLAG: dict[Marks, str] = {"opt_outs": "opted_out", "suppressions": "suppressed"}


async def marked_among(
    pool: asyncpg.Pool, table: Marks, upserts: Sequence[ContractUpserted]
) -> dict[str, set[tuple[Channel, str]]]:
    """The addresses of these contracts that `table` holds, by tenant."""
    pairs = {
        (u.tenant_id, normalised(p.address))
        for u in upserts
        for p in (*u.contract.emails, *u.contract.phones)
    }
    if not pairs:
        return {}
    tenants, addresses = zip(*pairs, strict=True)
    # `table` is one of two literals, never input.
    rows = await pool.fetch(
        f"""SELECT o.tenant_id, o.channel, o.address FROM targeting.{table} o
            JOIN unnest($1::text[], $2::text[]) AS t(tenant_id, address)
                 USING (tenant_id, address)""",  # noqa: S608
        list(tenants),
        list(addresses),
    )
    found: dict[str, set[tuple[Channel, str]]] = {}
    for row in rows:
        found.setdefault(row["tenant_id"], set()).add((row["channel"], row["address"]))
    return found


async def mark_points(
    connection: Connection,
    table: Marks,
    tenant_id: str,
    channel: Channel,
    address: str,
    value: bool,
) -> None:
    """Set (or clear) `table`'s flag on every point of the tenant's contracts with this
    normalised address."""
    column = "emails" if channel == "email" else "phones"
    flag = FLAG[table]
    # `column` and `flag` are literals, never input.
    await connection.execute(
        f"""UPDATE targeting.contracts SET {column} = (
                SELECT jsonb_agg(CASE WHEN lower(trim(p->>'address')) = $2
                                      THEN p || jsonb_build_object('{flag}', $3::boolean)
                                      ELSE p END
                                 ORDER BY n)
                FROM jsonb_array_elements({column}) WITH ORDINALITY AS x(p, n))
            WHERE tenant_id = $1 AND EXISTS (
                SELECT 1 FROM jsonb_array_elements({column}) p
                WHERE lower(trim(p->>'address')) = $2
                  AND coalesce((p->>'{flag}')::boolean, false) <> $3)""",  # noqa: S608
        tenant_id,
        address,
        value,
    )
