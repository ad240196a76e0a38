"""The audience read model (`targeting.contracts`): the platform's contracts, and pages of
those a broadcast's criteria match."""

import json
from collections.abc import AsyncIterator, Iterable, Sequence

import asyncpg

from shared.db import Connection
from shared.events import ContractDeleted, ContractUpserted

from ..audience import points_json, with_opt_outs
from ..criteria import CompiledCriteria
from .contact_marks import marked_among


async def apply_contract_changes(
    pool: asyncpg.Pool, changes: Sequence[ContractUpserted | ContractDeleted]
) -> None:
    """Apply upserts and deletions; a change older than the stored version is ignored."""
    latest: dict[tuple[str, str], ContractUpserted | ContractDeleted] = {}
    for change in changes:
        key = (change.tenant_id, change.contract_id)
        if key not in latest or change.version >= latest[key].version:
            latest[key] = change
    upserts = [c for c in latest.values() if isinstance(c, ContractUpserted)]
    opted_out = await marked_among(pool, "opt_outs", upserts)
    suppressed = await marked_among(pool, "suppressions", upserts)
    rows: list[tuple[object, ...]] = []
    for change in latest.values():
        if isinstance(change, ContractUpserted):
            c = with_opt_outs(change.contract, opted_out.get(change.tenant_id, set()))
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
                    points_json("email", c.emails, suppressed.get(change.tenant_id, set())),
                    points_json("sms", c.phones, suppressed.get(change.tenant_id, set())),
                    c.balance,
                    c.amount_paid,
                    json.dumps(c.attributes),
                    c.details.model_dump_json(exclude_none=True),
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
            attributes, details)
        SELECT t.tenant_id, t.contract_id, t.version, t.deleted, t.number, t.status,
               t.building_type, t.zone, t.season, t.client_name, t.service_address, t.language,
               t.emails::jsonb, t.phones::jsonb, t.balance, t.amount_paid, t.attributes::jsonb,
               t.details::jsonb
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::text[], $14::text[], $15::numeric[], $16::numeric[], $17::text[],
                    $18::text[])
             AS t(tenant_id, contract_id, version, deleted, number, status, building_type, zone,
                  season, client_name, service_address, language, emails, phones, balance,
                  amount_paid, attributes, details)
        ON CONFLICT (tenant_id, contract_id) DO UPDATE SET
            version = excluded.version, deleted = excluded.deleted, number = excluded.number,
            status = excluded.status, building_type = excluded.building_type,
            zone = excluded.zone, season = excluded.season, client_name = excluded.client_name,
            service_address = excluded.service_address, language = excluded.language,
            emails = excluded.emails, phones = excluded.phones, balance = excluded.balance,
            amount_paid = excluded.amount_paid, attributes = excluded.attributes,
            details = excluded.details,
            -- A newer version with the same content (a file imported twice) changes nothing
            -- but the version: updated_at tells when the contract last really changed.
            updated_at = CASE
                WHEN (c.deleted, c.number, c.status, c.building_type, c.zone, c.season,
                      c.client_name, c.service_address, c.language, c.emails, c.phones,
                      c.balance, c.amount_paid, c.attributes, c.details)
                     IS DISTINCT FROM
                     (excluded.deleted, excluded.number, excluded.status, excluded.building_type,
                      excluded.zone, excluded.season, excluded.client_name,
                      excluded.service_address, excluded.language, excluded.emails,
                      excluded.phones, excluded.balance, excluded.amount_paid,
                      excluded.attributes, excluded.details)
                THEN now() ELSE c.updated_at END
        WHERE excluded.version > c.version
        """,
        *columns,
    )


# The audience of a run, a page at a time; the criteria's own parameters come after these.
_AUDIENCE = """SELECT pk, contract_id, number, status, building_type, zone, season, client_name,
                      service_address, language, emails, phones, balance, amount_paid,
                      attributes, details
               FROM targeting.contracts
               WHERE tenant_id = $1 AND NOT deleted AND pk > $2 AND ({where})
               ORDER BY pk LIMIT $3"""


def audience_query(
    tenant_id: str, where: CompiledCriteria, after: int, limit: int
) -> tuple[str, tuple[object, ...]]:
    """The page query and its parameters: the criteria numbered after the query's own."""
    own = (tenant_id, after, limit)
    return _AUDIENCE.format(where=where.numbered_from(len(own) + 1)), (*own, *where.params)


async def next_contracts(
    connection: Connection,
    tenant_id: str,
    where: CompiledCriteria,
    after: int,
    limit: int,
) -> list[asyncpg.Record]:
    """The next page of matching contracts after pk `after`, in pk order (keyset pagination)."""
    sql, params = audience_query(tenant_id, where, after, limit)
    return await connection.fetch(sql, *params)


async def pages(
    connection: Connection, tenant_id: str, where: CompiledCriteria, after: int, size: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every matching contract after pk `after`, a page of at most `size` at a time."""
    while rows := await next_contracts(connection, tenant_id, where, after, size):
        yield rows
        after = rows[-1]["pk"]


_LIVE = """SELECT pk, contract_id, number, status, building_type, zone, season, client_name,
                  service_address, language, emails, phones, balance, amount_paid, attributes,
                  details
           FROM targeting.contracts
           WHERE tenant_id = $1 AND contract_id = ANY($2::text[]) AND NOT deleted"""


async def live_contract(
    connection: Connection, tenant_id: str, contract_id: str
) -> asyncpg.Record | None:
    return await connection.fetchrow(_LIVE, tenant_id, [contract_id])


async def live_contracts(
    connection: Connection, tenant_id: str, contract_ids: Iterable[str]
) -> list[asyncpg.Record]:
    """The contracts of these ids that exist (not deleted), in no particular order."""
    return await connection.fetch(_LIVE, tenant_id, list(contract_ids))
