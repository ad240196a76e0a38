"""Runs (`targeting.runs`): what each sends, pinned when it starts, and how far its streaming
went."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import Content, CreateBroadcast, TemplateVersion, TenantSettings


@dataclass(frozen=True)
class Run:
    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    request_id: str
    requested_by: str
    # Who created the broadcast: its runs' completions are addressed to them too.
    created_by: str
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
        """SELECT r.run_id, r.broadcast_id, r.tenant_id, r.request_id, r.requested_by,
                  b.requested_by AS created_by, r.state, r.announced,
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


async def run_cancelled(connection: Connection, run_id: UUID) -> bool:
    cancelled: bool = await connection.fetchval(
        "SELECT cancelled FROM targeting.runs WHERE run_id = $1", run_id
    )
    return cancelled


@dataclass(frozen=True)
class NewRun:
    """A run about to start: `content`, `template` and `settings` are pinned for its life."""

    run_id: UUID
    broadcast_id: UUID
    tenant_id: str
    number: int
    request_id: str
    requested_by: str
    content: Content
    template: TemplateVersion | None
    settings: TenantSettings
    only_failed_of: UUID | None
    include_unknown: bool


async def insert_run(connection: Connection, run: NewRun) -> None:
    """Insert the run to be streamed; nothing is targeted before the tenant's grace delay."""
    await connection.execute(
        """INSERT INTO targeting.runs
               (run_id, broadcast_id, tenant_id, run_number, request_id, requested_by, state,
                content, template_id, template_version, settings, not_before, only_failed_of,
                include_unknown)
           VALUES ($1, $2, $3, $4, $5, $6, 'streaming', $7, $8, $9, $10,
                   now() + make_interval(secs => $11), $12, $13)""",
        run.run_id,
        run.broadcast_id,
        run.tenant_id,
        run.number,
        run.request_id,
        run.requested_by,
        run.content.model_dump(mode="json"),
        run.template.template_id if run.template else None,
        run.template.version if run.template else None,
        run.settings.model_dump(mode="json"),
        float(run.settings.grace_seconds),
        run.only_failed_of,
        run.include_unknown,
    )


@dataclass(frozen=True)
class LatestRun:
    run_id: UUID
    run_number: int
    requested_by: str


async def latest_run(connection: Connection, broadcast_id: UUID) -> LatestRun | None:
    row = await connection.fetchrow(
        "SELECT run_id, run_number, requested_by FROM targeting.runs WHERE broadcast_id = $1 "
        "ORDER BY run_number DESC LIMIT 1",
        broadcast_id,
    )
    return LatestRun(**dict(row)) if row else None


async def run_of_request(
    connection: Connection, broadcast_id: UUID, request_id: str, number: int | None = None
) -> UUID | None:
    """The run of the broadcast this request started (run `number` only, when given)."""
    run_id: UUID | None = await connection.fetchval(
        "SELECT run_id FROM targeting.runs WHERE broadcast_id = $1 AND request_id = $2 "
        "AND ($3::int IS NULL OR run_number = $3)",
        broadcast_id,
        request_id,
        number,
    )
    return run_id


async def failed_count(connection: Connection, run_id: UUID) -> int | None:
    """How many messages of the run failed, as the tracker counted; None until it completed."""
    failed: int | None = await connection.fetchval(
        "SELECT failed FROM targeting.runs WHERE run_id = $1", run_id
    )
    return failed


async def cancel_runs(connection: Connection, broadcast_id: UUID) -> list[LatestRun]:
    """Mark cancelled every run of the broadcast not completed; every cancelled run."""
    rows = await connection.fetch(
        """UPDATE targeting.runs SET cancelled = true
           WHERE broadcast_id = $1 AND (completed_at IS NULL OR cancelled)
           RETURNING run_id, run_number, requested_by""",
        broadcast_id,
    )
    return [LatestRun(**dict(r)) for r in rows]


async def run_owner(connection: Connection, run_id: UUID) -> tuple[str, UUID] | None:
    """(tenant, broadcast) of one of targeting's runs; None for a preview or a follow-up."""
    row = await connection.fetchrow(
        "SELECT tenant_id, broadcast_id FROM targeting.runs WHERE run_id = $1", run_id
    )
    return None if row is None else (row["tenant_id"], row["broadcast_id"])


async def finish_run(connection: Connection, run_id: UUID, outcome: str, failed: int) -> bool:
    """Record the tracker's completion of the run; False when it was recorded before."""
    finished: bool | None = await connection.fetchval(
        """UPDATE targeting.runs SET completed_at = now(), outcome = $2, failed = $3
           WHERE run_id = $1 AND completed_at IS NULL RETURNING true""",
        run_id,
        outcome,
        failed,
    )
    return bool(finished)
