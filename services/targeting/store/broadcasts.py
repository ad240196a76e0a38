"""Broadcasts (`targeting.broadcasts`): their definition, and their state under a row lock."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from shared.db import Connection
from shared.events import CreateBroadcast

from ..lifecycle import State

_INSERT = """
    INSERT INTO targeting.broadcasts
        (broadcast_id, tenant_id, request_id, requested_by, name, definition, state, by_request)
    VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7)
"""
# A replay rewrites the request id it already has: ON CONFLICT DO UPDATE returns the row it
# found, committed or not, in the same statement (DO NOTHING would return nothing, and a
# second query may not see a row a concurrent replay is committing).
_BY_REQUEST = f"""{_INSERT}
    ON CONFLICT (tenant_id, request_id) WHERE by_request
    DO UPDATE SET request_id = excluded.request_id
    RETURNING broadcast_id
"""
# The row found is returned only when it is this create replayed: never another tenant's,
# nor one another request of this tenant created under the same id.
_BY_ID = f"""{_INSERT}
    ON CONFLICT (broadcast_id)
    DO UPDATE SET request_id = excluded.request_id
    WHERE broadcasts.tenant_id = excluded.tenant_id AND broadcasts.request_id = excluded.request_id
    RETURNING broadcast_id
"""


async def create_broadcast(pool: asyncpg.Pool, command: CreateBroadcast) -> UUID | None:
    """Insert the draft; return its id: `command.broadcast_id` when given, else a random one.

    A replay (same tenant, same request) returns the id the first create got, and changes
    nothing. None when the given id is taken by any other create, of this tenant or another:
    the caller cannot tell which."""
    by_request = command.broadcast_id is None
    # uuid4: 122 bits from the OS's CSPRNG, so nobody can compute the id this create gets.
    found: UUID | None = await pool.fetchval(
        _BY_REQUEST if by_request else _BY_ID,
        command.broadcast_id or uuid4(),
        command.tenant_id,
        command.request_id,
        command.requested_by,
        command.name,
        command.model_dump(mode="json"),
        by_request,
    )
    return found


async def load_broadcast(
    connection: Connection, tenant_id: str, broadcast_id: UUID
) -> CreateBroadcast | None:
    definition = await connection.fetchval(
        "SELECT definition FROM targeting.broadcasts WHERE broadcast_id = $1 AND tenant_id = $2",
        broadcast_id,
        tenant_id,
    )
    return None if definition is None else CreateBroadcast.model_validate(definition)


async def rename_broadcast(
    pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID, name: str
) -> bool:
    """False when the tenant has no such broadcast."""
    status = await pool.execute(
        """UPDATE targeting.broadcasts
           SET name = $3, definition = jsonb_set(definition, '{name}', to_jsonb($3::text))
           WHERE broadcast_id = $1 AND tenant_id = $2""",
        broadcast_id,
        tenant_id,
        name,
    )
    return status != "UPDATE 0"


@dataclass(frozen=True)
class Locked:
    state: State
    definition: CreateBroadcast


async def lock(connection: Connection, tenant_id: str, broadcast_id: UUID) -> Locked | None:
    """The broadcast, locked until the transaction ends; None when the tenant has none."""
    row = await connection.fetchrow(
        "SELECT state, definition FROM targeting.broadcasts "
        "WHERE broadcast_id = $1 AND tenant_id = $2 FOR UPDATE",
        broadcast_id,
        tenant_id,
    )
    if row is None:
        return None
    return Locked(row["state"], CreateBroadcast.model_validate(row["definition"]))


async def move(connection: Connection, broadcast_id: UUID, state: State) -> None:
    """Write the state the lifecycle moved the broadcast to, with the times it keeps."""
    await connection.execute(
        """UPDATE targeting.broadcasts
           SET state = $2,
               started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now())
                                 ELSE started_at END,
               paused_at = CASE WHEN $2 = 'paused' THEN now() END,
               completed_at = CASE WHEN $2 = 'completed' THEN now() END
           WHERE broadcast_id = $1""",
        broadcast_id,
        state,
    )


async def replace_definition(
    connection: Connection, broadcast_id: UUID, definition: CreateBroadcast
) -> None:
    await connection.execute(
        "UPDATE targeting.broadcasts SET name = $2, definition = $3 WHERE broadcast_id = $1",
        broadcast_id,
        definition.name,
        definition.model_dump(mode="json"),
    )


@dataclass(frozen=True)
class Schedule:
    """When a scheduled broadcast starts, and the request that scheduled it."""

    at: datetime
    request_id: str


async def set_schedule(
    connection: Connection,
    broadcast_id: UUID,
    schedule: Schedule,
    requested_by: str,
) -> None:
    await connection.execute(
        """UPDATE targeting.broadcasts
           SET scheduled_at = $2, schedule_request = $3, scheduled_by = $4
           WHERE broadcast_id = $1""",
        broadcast_id,
        schedule.at,
        schedule.request_id,
        requested_by,
    )


async def schedule_of(connection: Connection, broadcast_id: UUID) -> Schedule | None:
    row = await connection.fetchrow(
        "SELECT scheduled_at, schedule_request FROM targeting.broadcasts WHERE broadcast_id = $1",
        broadcast_id,
    )
    if row is None or row["scheduled_at"] is None:
        return None
    return Schedule(row["scheduled_at"], row["schedule_request"])


@dataclass(frozen=True)
class Due:
    broadcast_id: UUID
    tenant_id: str
    request_id: str
    requested_by: str


async def due_schedules(
    pool: asyncpg.Pool, now: datetime, limit: int, tenant_id: str | None = None
) -> list[Due]:
    """The `limit` earliest schedules whose time has come; only `tenant_id`'s when given."""
    rows = await pool.fetch(
        """SELECT broadcast_id, tenant_id, schedule_request AS request_id,
                  scheduled_by AS requested_by
           FROM targeting.broadcasts WHERE state = 'scheduled' AND scheduled_at <= $1
             AND ($2::text IS NULL OR tenant_id = $2)
           ORDER BY scheduled_at LIMIT $3""",
        now,
        tenant_id,
        limit,
    )
    return [Due(**dict(r)) for r in rows]
