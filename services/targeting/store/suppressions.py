"""Addresses suppressed by delivery reports (`targeting.suppressions`), the soft-bounce streaks
that may suppress them (`targeting.soft_bounces`), and their re-enables (`targeting.reenables`).

Every statement names its tenant: one tenant's report never touches another's addresses."""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.events import DeliveryBounced, MessageDelivered, MessageRef, ReenableContact

from ..suppression import Sent, Suppression, normalised
from .contact_marks import mark_points

# (tenant_id, channel, normalised address)
AddressKey = tuple[str, str, str]


async def note_deliveries(pool: asyncpg.Pool, delivered: Sequence[MessageDelivered]) -> None:
    """Note the messages delivered to addresses with a streak under way (the others, nearly
    all, cost one probe of a small table and are not kept)."""
    if not delivered:
        return
    await pool.execute(
        """INSERT INTO targeting.soft_bounces (tenant_id, channel, address, recipient_id,
                                              sent_at, bounced)
           SELECT t.tenant_id, t.channel, t.address, t.recipient_id, t.at, false
           FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[])
                AS t(tenant_id, channel, address, recipient_id, at)
           WHERE EXISTS (SELECT 1 FROM targeting.soft_bounces s
                         WHERE (s.tenant_id, s.channel, s.address)
                             = (t.tenant_id, t.channel, t.address))
           ON CONFLICT DO NOTHING""",
        *_columns(delivered, [d.occurred_at for d in delivered]),
    )


async def note_soft_bounces(
    pool: asyncpg.Pool, bounces: Sequence[DeliveryBounced]
) -> dict[AddressKey, list[Sent]]:
    """Record the bounces that count in streaks (soft ones, and hard ones with a transient
    status: `in_streak`; a message whose delivery was noted is now bounced) and return every
    message noted for their addresses, to count each streak. A bounce reported before its
    address's latest re-enable is left out: it belongs to the streak that was undone."""
    if not bounces:
        return {}
    columns = _columns(bounces, [b.reported_at for b in bounces])
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """INSERT INTO targeting.soft_bounces AS s (tenant_id, channel, address,
                                                       recipient_id, sent_at, bounced)
               SELECT t.tenant_id, t.channel, t.address, t.recipient_id, t.at, true
               FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[])
                    AS t(tenant_id, channel, address, recipient_id, at)
               WHERE NOT EXISTS (
                   SELECT 1 FROM targeting.reenables r
                   WHERE (r.tenant_id, r.channel, r.address)
                       = (t.tenant_id, t.channel, t.address)
                     AND r.reenabled_at > t.at)
               ON CONFLICT (tenant_id, channel, address, recipient_id)
               DO UPDATE SET bounced = true""",
            *columns,
        )
        rows = await connection.fetch(
            """SELECT s.tenant_id, s.channel, s.address, s.recipient_id, s.sent_at, s.bounced
               FROM targeting.soft_bounces s
               JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::text[]))
                    AS t(tenant_id, channel, address) USING (tenant_id, channel, address)""",
            *columns[:3],
        )
    found: dict[AddressKey, list[Sent]] = {}
    for r in rows:
        found.setdefault((r["tenant_id"], r["channel"], r["address"]), []).append(
            Sent(r["recipient_id"], r["sent_at"], r["bounced"])
        )
    return found


def _columns(
    messages: Sequence[MessageRef], at: list[datetime]
) -> tuple[list[str], list[str], list[str], list[UUID], list[datetime]]:
    return (
        [m.tenant_id for m in messages],
        [m.channel for m in messages],
        [normalised(m.address) for m in messages],
        [m.recipient_id for m in messages],
        at,
    )


async def record_suppressions(
    pool: asyncpg.Pool, suppressions: Sequence[Suppression]
) -> list[Suppression]:
    """Suppress each address once (the first report that decides it is kept) and mark it on the
    tenant's contracts; a report about a message targeted before the address's latest re-enable
    decides nothing. Returns the given suppressions still to announce: the new ones, and those
    whose announcement a crash lost (a redelivered batch)."""
    unannounced: list[Suppression] = []
    async with pool.acquire() as connection, connection.transaction():
        for s in {(s.tenant_id, s.channel, s.address): s for s in suppressions}.values():
            row = await connection.fetchrow(
                """INSERT INTO targeting.suppressions AS x (tenant_id, channel, address,
                                                           reason, recipient_id, contract_id)
                   SELECT $1, $2, $3, $4, $5, $6
                   WHERE NOT EXISTS (
                       SELECT 1 FROM targeting.reenables r
                       WHERE (r.tenant_id, r.channel, r.address) = ($1, $2, $3)
                         AND r.reenabled_at > $7)
                   ON CONFLICT (tenant_id, channel, address)
                   DO UPDATE SET announced = x.announced  -- a no-op, to return the row
                   RETURNING reason, recipient_id, announced, xmax = 0 AS inserted""",
                s.tenant_id,
                s.channel,
                s.address,
                s.reason,
                s.recipient_id,
                s.contract_id,
                s.reported_at,
            )
            if row is None:  # undone by a re-enable since
                continue
            if row["inserted"]:
                await mark_points(
                    connection, "suppressions", s.tenant_id, s.channel, s.address, True
                )
                await connection.execute(
                    """DELETE FROM targeting.soft_bounces
                       WHERE (tenant_id, channel, address) = ($1, $2, $3)""",
                    s.tenant_id,
                    s.channel,
                    s.address,
                )
            if not row["announced"]:
                # Announced as it was recorded: the first decision, not this report's.
                unannounced.append(
                    Suppression(
                        s.tenant_id,
                        s.channel,
                        s.address,
                        s.contract_id,
                        row["reason"],
                        row["recipient_id"],
                        s.reported_at,
                    )
                )
    return unannounced


async def mark_suppression_announced(pool: asyncpg.Pool, s: Suppression) -> None:
    await pool.execute(
        """UPDATE targeting.suppressions SET announced = true
           WHERE (tenant_id, channel, address) = ($1, $2, $3)""",
        s.tenant_id,
        s.channel,
        s.address,
    )


async def reenable(pool: asyncpg.Pool, command: ReenableContact) -> bool:
    """Lift the address's suppression, keeping it in the history with who, when and why;
    whether it was suppressed. A replayed request changes nothing and gets the same answer.
    An opt-out (its owner's choice) stays."""
    address = normalised(command.address)
    async with pool.acquire() as connection, connection.transaction():
        # Serialises two re-enables of one request: the second waits, then finds the first.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1 || '|' || $2))",
            command.tenant_id,
            command.request_id,
        )
        replayed = await connection.fetchval(
            """SELECT reason IS NOT NULL FROM targeting.reenables
               WHERE tenant_id = $1 AND request_id = $2""",
            command.tenant_id,
            command.request_id,
        )
        if replayed is not None:
            return bool(replayed)
        lifted = await connection.fetchrow(
            """DELETE FROM targeting.suppressions
               WHERE (tenant_id, channel, address) = ($1, $2, $3)
               RETURNING reason, recipient_id, suppressed_at""",
            command.tenant_id,
            command.channel,
            address,
        )
        await connection.execute(
            """INSERT INTO targeting.reenables (tenant_id, request_id, channel, address,
                                               requested_by, note, reason, recipient_id,
                                               suppressed_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            command.tenant_id,
            command.request_id,
            command.channel,
            address,
            command.requested_by,
            command.reason,
            lifted and lifted["reason"],
            lifted and lifted["recipient_id"],
            lifted and lifted["suppressed_at"],
        )
        await connection.execute(
            """DELETE FROM targeting.soft_bounces
               WHERE (tenant_id, channel, address) = ($1, $2, $3)""",
            command.tenant_id,
            command.channel,
            address,
        )
        if lifted is not None:
            await mark_points(
                connection, "suppressions", command.tenant_id, command.channel, address, False
            )
    return lifted is not None
