"""The tracker's counters of each run (`targeting.run_counters`), a read model fed by its
progress and completion events, and the pages of broadcasts and runs the queries answer."""

from collections.abc import Sequence
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from shared.db import Connection

from ..counters import RunCounters


async def record_counters(pool: asyncpg.Pool, rows: Sequence[RunCounters]) -> None:
    """Keep each row unless the stored one is as new or newer (see `counters.py`): a copy or
    an older announcement arriving late changes nothing."""
    await pool.executemany(
        """INSERT INTO targeting.run_counters AS c
               (run_id, tenant_id, broadcast_id, counters, completed, outcome, finals,
                occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (run_id) DO UPDATE
           SET counters = excluded.counters, completed = excluded.completed,
               outcome = excluded.outcome, finals = excluded.finals,
               occurred_at = excluded.occurred_at
           WHERE (excluded.completed, excluded.finals, excluded.occurred_at)
               > (c.completed, c.finals, c.occurred_at)""",
        [
            (
                r.run_id,
                r.tenant_id,
                r.broadcast_id,
                r.counters.model_dump(mode="json"),
                r.completed,
                r.outcome,
                r.finals,
                r.occurred_at,
            )
            for r in rows
        ],
    )


# A run with its counters: the columns RunSummary is built from, prefixed so that they do not
# collide with a broadcast's own dates.
_RUN = """r.run_id, r.run_number, r.started_at AS run_started_at, r.targeted_at,
          r.completed_at AS run_completed_at, c.counters, c.outcome,
          coalesce(c.completed, false) AS run_completed"""
_BROADCAST = """b.broadcast_id, b.name, b.state, b.created_at, b.scheduled_at, b.started_at,
                b.completed_at"""


async def broadcasts_page(
    pool: asyncpg.Pool,
    tenant_id: str,
    state: Literal["sent", "pending"] | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` of the tenant's broadcasts, newest first, after the position `after`,
    each with its latest run (run columns NULL when it never started)."""
    created, broadcast_id = after or (None, None)
    return await pool.fetch(
        f"""SELECT {_BROADCAST}, latest.*
            FROM targeting.broadcasts b
            LEFT JOIN LATERAL (
                SELECT {_RUN}
                FROM targeting.runs r LEFT JOIN targeting.run_counters c USING (run_id)
                WHERE r.broadcast_id = b.broadcast_id
                ORDER BY r.run_number DESC LIMIT 1) latest ON true
            WHERE b.tenant_id = $1
              AND ($2::text IS NULL
                   OR $2 = 'pending' AND b.state IN ('draft', 'scheduled')
                   OR $2 = 'sent' AND b.started_at IS NOT NULL)
              AND ($3::timestamptz IS NULL OR (b.created_at, b.broadcast_id) < ($3, $4::uuid))
            ORDER BY b.created_at DESC, b.broadcast_id DESC
            LIMIT $5""",  # noqa: S608 -- constant column lists
        tenant_id,
        state,
        created,
        broadcast_id,
        limit,
    )


async def broadcast_with_definition(
    connection: Connection, tenant_id: str, broadcast_id: UUID
) -> asyncpg.Record | None:
    """The broadcast, its creator and definition; None when the tenant has no such one."""
    return await connection.fetchrow(
        f"""SELECT {_BROADCAST}, b.requested_by, b.definition
            FROM targeting.broadcasts b WHERE b.broadcast_id = $1 AND b.tenant_id = $2""",  # noqa: S608
        broadcast_id,
        tenant_id,
    )


async def runs_page(
    connection: Connection, broadcast_id: UUID, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` runs of the broadcast, newest first, numbered below `before`."""
    return await connection.fetch(
        f"""SELECT {_RUN}
            FROM targeting.runs r LEFT JOIN targeting.run_counters c USING (run_id)
            WHERE r.broadcast_id = $1 AND ($2::int IS NULL OR r.run_number < $2)
            ORDER BY r.run_number DESC LIMIT $3""",  # noqa: S608
        broadcast_id,
        before,
        limit,
    )
