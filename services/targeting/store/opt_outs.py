"""Unsubscribed addresses (`targeting.opt_outs`), applied to the tenant's contracts, and their
announcement outbox."""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.events import Channel, ContractUpserted


async def opted_out_among(
    pool: asyncpg.Pool, upserts: Sequence[ContractUpserted]
) -> dict[str, set[tuple[Channel, str]]]:
    """The unsubscribed addresses among these contracts', by tenant."""
    pairs = {
        (u.tenant_id, p.address.strip().lower())
        for u in upserts
        for p in (*u.contract.emails, *u.contract.phones)
    }
    if not pairs:
        return {}
    tenants, addresses = zip(*pairs, strict=True)
    rows = await pool.fetch(
        """SELECT o.tenant_id, o.channel, o.address FROM targeting.opt_outs o
           JOIN unnest($1::text[], $2::text[]) AS t(tenant_id, address)
                USING (tenant_id, address)""",
        list(tenants),
        list(addresses),
    )
    found: dict[str, set[tuple[Channel, str]]] = {}
    for row in rows:
        found.setdefault(row["tenant_id"], set()).add((row["channel"], row["address"]))
    return found


@dataclass(frozen=True)
class OptOut:
    tenant_id: str
    channel: Channel
    address: str  # lower-cased
    contract_id: str


async def record_opt_out(
    pool: asyncpg.Pool, tenant_id: str, channel: Channel, address: str, contract_id: str
) -> OptOut | None:
    """Remember the opt-out, not announced yet, and apply it to every contract of the tenant
    with that address.

    The opt-out when it is new; None for a second click, which changes nothing."""
    address = address.strip().lower()
    column = "emails" if channel == "email" else "phones"
    async with pool.acquire() as connection, connection.transaction():
        inserted = await connection.fetchval(
            """INSERT INTO targeting.opt_outs (tenant_id, channel, address, contract_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            tenant_id,
            channel,
            address,
            contract_id,
        )
        # `column` is one of two literals, never input.
        await connection.execute(
            f"""UPDATE targeting.contracts SET {column} = (
                    SELECT jsonb_agg(CASE WHEN lower(trim(p->>'address')) = $2
                                          THEN p || '{{"opted_out": true}}' ELSE p END
                                     ORDER BY n)
                    FROM jsonb_array_elements({column}) WITH ORDINALITY AS x(p, n))
                WHERE tenant_id = $1 AND EXISTS (
                    SELECT 1 FROM jsonb_array_elements({column}) p
                    WHERE lower(trim(p->>'address')) = $2
                      AND NOT coalesce((p->>'opted_out')::boolean, false))""",  # noqa: S608
            tenant_id,
            address,
        )
    return OptOut(tenant_id, channel, address, contract_id) if inserted else None


async def unannounced_opt_outs(pool: asyncpg.Pool, older_than: float, limit: int) -> list[OptOut]:
    """The `limit` oldest opt-outs recorded more than `older_than` seconds ago and still not
    announced."""
    rows = await pool.fetch(
        """SELECT tenant_id, channel, address, contract_id FROM targeting.opt_outs
           WHERE NOT announced AND opted_out_at < now() - make_interval(secs => $1)
           ORDER BY opted_out_at LIMIT $2""",
        older_than,
        limit,
    )
    return [OptOut(**dict(r)) for r in rows]


async def mark_opt_out_announced(pool: asyncpg.Pool, opt_out: OptOut) -> None:
    await pool.execute(
        """UPDATE targeting.opt_outs SET announced = true
           WHERE tenant_id = $1 AND channel = $2 AND address = $3""",
        opt_out.tenant_id,
        opt_out.channel,
        opt_out.address,
    )
