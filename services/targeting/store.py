"""Every query of the targeting service. Tenant isolation: every read names its tenant."""

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import (
    Channel,
    Content,
    ContractDeleted,
    ContractUpserted,
    CreateBroadcast,
    DeliveryFailed,
    SaveTemplate,
    TemplateSummary,
    TemplateVersion,
    TenantSettings,
)

from .audience import with_opt_outs
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
    opted_out = await _opted_out(
        pool, [c for c in latest.values() if isinstance(c, ContractUpserted)]
    )
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
                    json.dumps([p.model_dump() for p in c.emails]),
                    json.dumps([p.model_dump() for p in c.phones]),
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


async def _opted_out(
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


async def unannounced_opt_outs(pool: asyncpg.Pool, older_than: float) -> list[OptOut]:
    """Opt-outs recorded more than `older_than` seconds ago and still not announced."""
    rows = await pool.fetch(
        """SELECT tenant_id, channel, address, contract_id FROM targeting.opt_outs
           WHERE NOT announced AND opted_out_at < now() - make_interval(secs => $1)
           ORDER BY opted_out_at LIMIT 1000""",
        older_than,
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


async def load_broadcast(
    connection: Connection, tenant_id: str, broadcast_id: UUID
) -> CreateBroadcast | None:
    definition = await connection.fetchval(
        "SELECT definition FROM targeting.broadcasts WHERE broadcast_id = $1 AND tenant_id = $2",
        broadcast_id,
        tenant_id,
    )
    return None if definition is None else CreateBroadcast.model_validate(definition)


async def resolve_content(
    connection: Connection, definition: CreateBroadcast
) -> tuple[Content, TemplateVersion | None] | None:
    """The content a run of this broadcast would send now; None when its template is gone."""
    if definition.template_id is None:
        assert definition.content is not None, "a definition has content or a template"
        return definition.content, None
    template = await latest_template(connection, definition.tenant_id, definition.template_id)
    if template is None:
        return None
    version, content = template
    return content, TemplateVersion(template_id=definition.template_id, version=version)


@dataclass(frozen=True)
class Run:
    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    request_id: str
    requested_by: str
    # 'streaming' until every recipient was published, then 'targeted'.
    state: str
    announced: bool
    cursor: int
    contracts: int
    messages: int
    unreachable: int
    definition: CreateBroadcast
    content: Content
    template: TemplateVersion | None
    settings: TenantSettings
    # Nothing is targeted before (the tenant's grace delay).
    not_before: datetime | None
    # A resend to that run's failures only; `include_unknown`: unknown outcomes too.
    only_failed_of: UUID | None
    include_unknown: bool


async def load_run(connection: Connection, run_id: UUID) -> Run:
    run = await find_run(connection, run_id)
    assert run is not None, f"run {run_id} vanished"
    return run


async def find_run(connection: Connection, run_id: UUID) -> Run | None:
    row = await connection.fetchrow(
        """SELECT r.run_id, r.broadcast_id, r.tenant_id, r.request_id, r.requested_by, r.state,
                  r.announced,
                  r.cursor, r.contracts, r.messages, r.unreachable, b.definition, r.content,
                  r.template_id, r.template_version, r.settings,
                  r.not_before, r.only_failed_of, r.include_unknown
           FROM targeting.runs r JOIN targeting.broadcasts b USING (broadcast_id)
           WHERE r.run_id = $1""",
        run_id,
    )
    if row is None:
        return None
    fields = dict(row)
    definition = CreateBroadcast.model_validate(fields["definition"])
    template_id, version = fields.pop("template_id"), fields.pop("template_version")
    fields["definition"] = definition
    # Runs started before content was pinned per run (migration 002) carry none: the
    # definition's own content is what they started with.
    fields["content"] = Content.model_validate(fields["content"] or definition.content)
    fields["template"] = (
        TemplateVersion(template_id=template_id, version=version) if template_id else None
    )
    fields["settings"] = TenantSettings.model_validate(fields["settings"])
    return Run(**fields)


async def configure_tenant(
    pool: asyncpg.Pool, tenant_id: str, settings: TenantSettings, request_id: str
) -> None:
    await pool.execute(
        """INSERT INTO targeting.tenants (tenant_id, settings, request_id) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings,
               request_id = excluded.request_id, configured_at = now()""",
        tenant_id,
        settings.model_dump(mode="json"),
        request_id,
    )


async def tenant_settings(connection: Connection, tenant_id: str) -> TenantSettings:
    """The tenant's settings; the defaults for a tenant that never configured any."""
    settings = await connection.fetchval(
        "SELECT settings FROM targeting.tenants WHERE tenant_id = $1", tenant_id
    )
    return TenantSettings.model_validate(settings or {})


async def save_template(pool: asyncpg.Pool, command: SaveTemplate) -> int:
    """The version this request saved: a new one, or the one it saved before (a replay)."""
    async with pool.acquire() as connection, connection.transaction():
        # Versions of one template are numbered one after the other, even under concurrency.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext('targeting-template'), hashtext($1))",
            f"{command.tenant_id}|{command.template_id}",
        )
        earlier: int | None = await connection.fetchval(
            "SELECT version FROM targeting.templates WHERE tenant_id = $1 AND request_id = $2",
            command.tenant_id,
            command.request_id,
        )
        if earlier is not None:
            return earlier
        version: int = await connection.fetchval(
            """INSERT INTO targeting.templates
                   (tenant_id, template_id, version, name, content, request_id)
               SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5
               FROM targeting.templates WHERE tenant_id = $1 AND template_id = $2
               RETURNING version""",
            command.tenant_id,
            command.template_id,
            command.name,
            command.content.model_dump(mode="json"),
            command.request_id,
        )
        return version


async def delete_template(pool: asyncpg.Pool, tenant_id: str, template_id: str) -> bool:
    """False when the tenant has no such template (never saved, or deleted before)."""
    status = await pool.execute(
        "UPDATE targeting.templates SET deleted = true "
        "WHERE tenant_id = $1 AND template_id = $2 AND NOT deleted",
        tenant_id,
        template_id,
    )
    return status != "UPDATE 0"


async def template_deleted(pool: asyncpg.Pool, tenant_id: str, template_id: str) -> bool:
    """True when the template was saved once and is deleted now."""
    deleted: bool | None = await pool.fetchval(
        "SELECT bool_and(deleted) FROM targeting.templates WHERE tenant_id = $1 "
        "AND template_id = $2",
        tenant_id,
        template_id,
    )
    return bool(deleted)


async def latest_template(
    connection: Connection, tenant_id: str, template_id: str
) -> tuple[int, Content] | None:
    row = await connection.fetchrow(
        """SELECT version, content FROM targeting.templates
           WHERE tenant_id = $1 AND template_id = $2 AND NOT deleted
           ORDER BY version DESC LIMIT 1""",
        tenant_id,
        template_id,
    )
    return None if row is None else (row["version"], Content.model_validate(row["content"]))


# An answer must fit in one record: the first TEMPLATES_LIMIT templates by id.
TEMPLATES_LIMIT = 1000


async def list_templates(pool: asyncpg.Pool, tenant_id: str) -> list[TemplateSummary]:
    rows = await pool.fetch(
        """SELECT DISTINCT ON (template_id) template_id, name, version, content, saved_at
           FROM targeting.templates WHERE tenant_id = $1 AND NOT deleted
           ORDER BY template_id, version DESC LIMIT $2""",
        tenant_id,
        TEMPLATES_LIMIT,
    )
    summaries = []
    for row in rows:
        content = Content.model_validate(row["content"])
        channels: list[Channel] = [c for c in ("email", "sms") if getattr(content, c)]
        languages = sorted({*content.email, *content.sms})
        summaries.append(
            TemplateSummary(
                template_id=row["template_id"],
                name=row["name"],
                version=row["version"],
                channels=channels,
                languages=languages,
                saved_at=row["saved_at"],
            )
        )
    return summaries


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
                   service_address, language, emails, phones, balance, amount_paid, attributes,
                   details
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
) -> bool:
    """Record a page as published; True when the run was cancelled meanwhile (stop there)."""
    cancelled: bool = await connection.fetchval(
        """UPDATE targeting.runs SET cursor = $2, contracts = contracts + $3,
               messages = messages + $4, unreachable = unreachable + $5
           WHERE run_id = $1 RETURNING cancelled""",
        run_id,
        cursor,
        contracts,
        messages,
        unreachable,
    )
    return cancelled


async def mark_targeted(connection: Connection, run_id: UUID) -> None:
    await connection.execute(
        "UPDATE targeting.runs SET state = 'targeted', targeted_at = now() WHERE run_id = $1",
        run_id,
    )


async def live_contract(
    connection: Connection, tenant_id: str, contract_id: str
) -> asyncpg.Record | None:
    return await connection.fetchrow(
        """SELECT pk, contract_id, number, status, building_type, zone, season, client_name,
                  service_address, language, emails, phones, balance, amount_paid, attributes,
                  details
           FROM targeting.contracts
           WHERE tenant_id = $1 AND contract_id = $2 AND NOT deleted""",
        tenant_id,
        contract_id,
    )


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


async def record_failures(pool: asyncpg.Pool, failures: Sequence[DeliveryFailed]) -> None:
    """Keep who failed in targeting's own runs (previews and follow-ups are not runs here)."""
    if not failures:
        return
    await pool.execute(
        """INSERT INTO targeting.failures (run_id, contract_id, channel, address, reason)
           SELECT t.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                AS t(run_id, contract_id, channel, address, reason)
           WHERE EXISTS (SELECT 1 FROM targeting.runs r WHERE r.run_id = t.run_id)
           ON CONFLICT DO NOTHING""",
        [f.run_id for f in failures],
        [f.contract_id for f in failures],
        [f.channel for f in failures],
        [f.address for f in failures],
        [f.reason for f in failures],
    )


# A message of a run: (run_id, contract_id, channel, address).
MessageKey = tuple[UUID, str, str, str]


async def close_failures(pool: asyncpg.Pool, closed: Iterable[MessageKey]) -> None:
    """Leave these messages out of a later resend to their run's failures: their action was
    resolved, or their unknown outcome turned out delivered. A close may arrive before the
    failure itself (another topic): it is recorded then, already closed."""
    keys = list(set(closed))
    if not keys:
        return
    await pool.execute(
        """INSERT INTO targeting.failures (run_id, contract_id, channel, address, closed)
           SELECT t.*, true FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                AS t(run_id, contract_id, channel, address)
           WHERE EXISTS (SELECT 1 FROM targeting.runs r WHERE r.run_id = t.run_id)
           ON CONFLICT (run_id, contract_id, channel, address) DO UPDATE SET closed = true""",
        *(list(column) for column in zip(*keys, strict=True)),
    )


# The failures a resend to them sends again; $2: unknown outcomes included.
_RESENDABLE = "NOT closed AND ($2::boolean OR reason IS DISTINCT FROM 'unknown_outcome')"


async def failed_recipients(
    connection: Connection, run_id: UUID, include_unknown: bool
) -> set[tuple[str, str, str]]:
    """(contract_id, channel, address) of every message of the run a resend to its failures
    sends again."""
    rows = await connection.fetch(
        f"""SELECT contract_id, channel, address FROM targeting.failures
            WHERE run_id = $1 AND {_RESENDABLE}""",  # noqa: S608 -- a constant
        run_id,
        include_unknown,
    )
    return {(r["contract_id"], r["channel"], r["address"]) for r in rows}


@dataclass(frozen=True)
class Failures:
    """A run's failures: `recorded` here so far, of them `resendable`."""

    recorded: int
    resendable: int


async def failures_of(connection: Connection, run_id: UUID, include_unknown: bool) -> Failures:
    row = await connection.fetchrow(
        f"""SELECT count(*) AS recorded, count(*) FILTER (WHERE {_RESENDABLE}) AS resendable
            FROM targeting.failures WHERE run_id = $1""",  # noqa: S608 -- a constant
        run_id,
        include_unknown,
    )
    assert row is not None, "an aggregate has a row"
    return Failures(row["recorded"], row["resendable"])


async def run_cancelled(connection: Connection, run_id: UUID) -> bool:
    cancelled: bool = await connection.fetchval(
        "SELECT cancelled FROM targeting.runs WHERE run_id = $1", run_id
    )
    return cancelled


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
