"""Unsubscribed addresses (`targeting.opt_outs`), applied to the tenant's contracts, and their
announcement outbox."""

from dataclasses import dataclass

import asyncpg

from shared.events import Channel

from ..suppression import normalised
from .contact_marks import mark_points


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
    address = normalised(address)
    async with pool.acquire() as connection, connection.transaction():
        inserted = await connection.fetchval(
            """INSERT INTO targeting.opt_outs (tenant_id, channel, address, contract_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            tenant_id,
            channel,
            address,
            contract_id,
        )
        await mark_points(connection, "opt_outs", tenant_id, channel, address, True)
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
