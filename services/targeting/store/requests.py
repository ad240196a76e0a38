"""Requests applied (`targeting.requests`): a replay is answered as the first time."""

from dataclasses import dataclass
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Applied:
    """A state-changing request applied before: its command and what it answered."""

    command: str
    broadcast_id: UUID | None
    run_id: UUID | None


async def applied_request(pool: asyncpg.Pool, tenant_id: str, request_id: str) -> Applied | None:
    row = await pool.fetchrow(
        "SELECT command, broadcast_id, run_id FROM targeting.requests "
        "WHERE tenant_id = $1 AND request_id = $2",
        tenant_id,
        request_id,
    )
    return Applied(**dict(row)) if row else None


async def remember_request(
    pool: asyncpg.Pool,
    tenant_id: str,
    request_id: str,
    command: str,
    broadcast_id: UUID | None,
    run_id: UUID | None,
) -> None:
    await pool.execute(
        """INSERT INTO targeting.requests (tenant_id, request_id, command, broadcast_id, run_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        tenant_id,
        request_id,
        command,
        broadcast_id,
        run_id,
    )
