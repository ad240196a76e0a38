"""Every query of the targeting service. Tenant isolation: every read names its tenant."""

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import ContractDeleted, ContractUpserted, CreateBroadcast

from .criteria import CompiledCriteria


async def apply_contract_changes(
    pool: asyncpg.Pool, changes: Sequence[ContractUpserted | ContractDeleted]
) -> None:
    """Apply upserts and deletions; a change older than the stored version is ignored."""
    latest: dict[tuple[str, str], ContractUpserted | ContractDeleted] = {}
    for change in changes:
        key = (change.tenant_id, change.contract_id)
        if key not in latest or change.version >= latest[key].version:
            latest[key] = change
    rows: list[tuple[object, ...]] = []
    for change in latest.values():
        if isinstance(change, ContractUpserted):
            c = change.contract
            rows.append(
                (
                    change.tenant_id,
                    change.contract_id,
                    change.version,
                    False,
                    c.number,
                    c.status,
                    c.building_type,
                    c.zone,
                    c.season,
                    c.client_name,
                    c.service_address,
                    c.language,
                    json.dumps([p.model_dump() for p in c.emails]),
                    json.dumps([p.model_dump() for p in c.phones]),
                    c.balance,
                    c.amount_paid,
                    json.dumps(c.attributes),
                )
            )
        else:
            rows.append(
                (
                    change.tenant_id,
                    change.contract_id,
                    change.version,
                    True,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "fr",
                    "[]",
                    "[]",
                    0,
                    0,
                    "{}",
                )
            )
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await pool.execute(
        """
        INSERT INTO targeting.contracts AS c (
            tenant_id, contract_id, version, deleted, number, status, building_type, zone, season,
            client_name, service_address, language, emails, phones, balance, amount_paid,
            attributes)
        SELECT t.tenant_id, t.contract_id, t.version, t.deleted, t.number, t.status,
               t.building_type, t.zone, t.season, t.client_name, t.service_address, t.language,
               t.emails::jsonb, t.phones::jsonb, t.balance, t.amount_paid, t.attributes::jsonb
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::text[], $14::text[], $15::numeric[], $16::numeric[], $17::text[])
             AS t(tenant_id, contract_id, version, deleted, number, status, building_type, zone,
                  season, client_name, service_address, language, emails, phones, balance,
                  amount_paid, attributes)
        ON CONFLICT (tenant_id, contract_id) DO UPDATE SET
            version = excluded.version, deleted = excluded.deleted, number = excluded.number,
            status = excluded.status, building_type = excluded.building_type,
            zone = excluded.zone, season = excluded.season, client_name = excluded.client_name,
            service_address = excluded.service_address, language = excluded.language,
            emails = excluded.emails, phones = excluded.phones, balance = excluded.balance,
            amount_paid = excluded.amount_paid, attributes = excluded.attributes,
            -- A newer version with the same content (a file imported twice) changes nothing
            -- but the version: updated_at tells when the contract last really changed.
            updated_at = CASE
                WHEN (c.deleted, c.number, c.status, c.building_type, c.zone, c.season,
                      c.client_name, c.service_address, c.language, c.emails, c.phones,
                      c.balance, c.amount_paid, c.attributes)
                     IS DISTINCT FROM
                     (excluded.deleted, excluded.number, excluded.status, excluded.building_type,
                      excluded.zone, excluded.season, excluded.client_name,
                      excluded.service_address, excluded.language, excluded.emails,
                      excluded.phones, excluded.balance, excluded.amount_paid,
                      excluded.attributes)
                THEN now() ELSE c.updated_at END
        WHERE excluded.version > c.version
        """,
        *columns,
    )


async def create_broadcast(
    pool: asyncpg.Pool, broadcast_id: UUID, command: CreateBroadcast
) -> str | None:
    """Insert the draft. None when created now; else the request id that created it before."""
    existing: str | None = await pool.fetchval(
        """
        WITH inserted AS (
            INSERT INTO targeting.broadcasts
                (broadcast_id, tenant_id, request_id, requested_by, name, definition, state)
            VALUES ($1, $2, $3, $4, $5, $6, 'draft')
            ON CONFLICT (broadcast_id) DO NOTHING
            RETURNING broadcast_id)
        SELECT request_id FROM targeting.broadcasts
        WHERE broadcast_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
        """,
        broadcast_id,
        command.tenant_id,
        command.request_id,
        command.requested_by,
        command.name,
        command.model_dump(mode="json"),
    )
    return existing


@dataclass(frozen=True)
class StartOutcome:
    """`run_id` of the run this request started; `earlier_request` set when it was a replay."""

    run_id: UUID | None
    state: str | None
    earlier_request: str | None


async def start_broadcast(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID,
    request_id: str,
    requested_by: str,
    run_id: UUID,
) -> StartOutcome:
    """Move a draft to started and create its first run, in one transaction."""
    async with pool.acquire() as connection, connection.transaction():
        state = await connection.fetchval(
            "SELECT state FROM targeting.broadcasts WHERE broadcast_id = $1 AND tenant_id = $2 "
            "FOR UPDATE",
            broadcast_id,
            tenant_id,
        )
        if state is None:
            return StartOutcome(None, None, None)
        if state != "draft":
            earlier = await connection.fetchrow(
                "SELECT run_id, request_id FROM targeting.runs WHERE broadcast_id = $1 "
                "ORDER BY run_number LIMIT 1",
                broadcast_id,
            )
            assert earlier is not None, "a started broadcast always has a run"
            return StartOutcome(earlier["run_id"], state, earlier["request_id"])
        await connection.execute(
            "UPDATE targeting.broadcasts SET state = 'started', started_at = now() "
            "WHERE broadcast_id = $1",
            broadcast_id,
        )
        await connection.execute(
            """INSERT INTO targeting.runs
                   (run_id, broadcast_id, tenant_id, run_number, request_id, requested_by, state)
               VALUES ($1, $2, $3, 1, $4, $5, 'streaming')""",
            run_id,
            broadcast_id,
            tenant_id,
            request_id,
            requested_by,
        )
        return StartOutcome(run_id, "draft", None)


@dataclass(frozen=True)
class Run:
    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    request_id: str
    requested_by: str
    announced: bool
    cursor: int
    contracts: int
    messages: int
    unreachable: int
    definition: CreateBroadcast


async def load_run(connection: Connection, run_id: UUID) -> Run:
    row = await connection.fetchrow(
        """SELECT r.run_id, r.broadcast_id, r.tenant_id, r.request_id, r.requested_by, r.announced,
                  r.cursor, r.contracts, r.messages, r.unreachable, b.definition
           FROM targeting.runs r JOIN targeting.broadcasts b USING (broadcast_id)
           WHERE r.run_id = $1""",
        run_id,
    )
    assert row is not None, f"run {run_id} vanished"
    fields = dict(row)
    fields["definition"] = CreateBroadcast.model_validate(fields["definition"])
    return Run(**fields)


async def streaming_runs(pool: asyncpg.Pool) -> list[UUID]:
    return [
        r["run_id"]
        for r in await pool.fetch(
            "SELECT run_id FROM targeting.runs WHERE state = 'streaming' ORDER BY started_at"
        )
    ]


async def try_lock_run(connection: Connection, run_id: UUID) -> bool:
    """One instance streams a run at a time; the lock dies with its connection."""
    locked: bool = await connection.fetchval(
        "SELECT pg_try_advisory_lock(hashtext('targeting-run'), hashtext($1))", str(run_id)
    )
    return locked


async def unlock_run(connection: Connection, run_id: UUID) -> None:
    await connection.execute(
        "SELECT pg_advisory_unlock(hashtext('targeting-run'), hashtext($1))", str(run_id)
    )


async def mark_announced(connection: Connection, run_id: UUID) -> None:
    await connection.execute("UPDATE targeting.runs SET announced = true WHERE run_id = $1", run_id)


async def next_contracts(
    connection: Connection,
    tenant_id: str,
    where: CompiledCriteria,
    after: int,
    limit: int,
) -> list[asyncpg.Record]:
    """The next page of matching contracts after pk `after`, in pk order (keyset pagination)."""
    return await connection.fetch(
        f"""SELECT pk, contract_id, number, status, building_type, zone, season, client_name,
                   service_address, language, emails, phones, balance, amount_paid, attributes
            FROM targeting.contracts
            WHERE tenant_id = $1 AND NOT deleted AND pk > $2 AND ({where.sql})
            ORDER BY pk LIMIT $3""",  # noqa: S608 -- `where` is compiled from a whitelist
        tenant_id,
        after,
        limit,
        *where.params,
    )


async def pages(
    connection: Connection, tenant_id: str, where: CompiledCriteria, after: int, size: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every matching contract after pk `after`, a page of at most `size` at a time."""
    while rows := await next_contracts(connection, tenant_id, where, after, size):
        yield rows
        after = rows[-1]["pk"]


async def checkpoint(
    connection: Connection,
    run_id: UUID,
    cursor: int,
    contracts: int,
    messages: int,
    unreachable: int,
) -> None:
    await connection.execute(
        """UPDATE targeting.runs SET cursor = $2, contracts = contracts + $3,
               messages = messages + $4, unreachable = unreachable + $5
           WHERE run_id = $1""",
        run_id,
        cursor,
        contracts,
        messages,
        unreachable,
    )


async def mark_targeted(connection: Connection, run_id: UUID) -> None:
    await connection.execute(
        "UPDATE targeting.runs SET state = 'targeted', targeted_at = now() WHERE run_id = $1",
        run_id,
    )
