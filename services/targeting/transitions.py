"""Moving broadcasts through their lifecycle in PostgreSQL.

Each change locks the broadcast's row, asks `lifecycle.after` whether the command applies to
its current state (a Rejection rolls the transaction back), and writes the new state together
with the run it starts, so that two commands racing on one broadcast are applied one after the
other.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import CreateBroadcast
from shared.ids import run_id_for

from . import lifecycle, store
from .broadcasts import Rejection, no_broadcast
from .lifecycle import Action, State


@dataclass(frozen=True)
class _Locked:
    state: State
    definition: CreateBroadcast


async def _lock(connection: Connection, tenant_id: str, broadcast_id: UUID) -> _Locked:
    """The broadcast, locked until the transaction ends; Rejection when the tenant has none."""
    row = await connection.fetchrow(
        "SELECT state, definition FROM targeting.broadcasts "
        "WHERE broadcast_id = $1 AND tenant_id = $2 FOR UPDATE",
        broadcast_id,
        tenant_id,
    )
    if row is None:
        raise no_broadcast(tenant_id, broadcast_id)
    return _Locked(row["state"], CreateBroadcast.model_validate(row["definition"]))


async def _move(connection: Connection, broadcast_id: UUID, state: State) -> None:
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


@dataclass(frozen=True)
class LatestRun:
    run_id: UUID
    run_number: int
    requested_by: str


async def _latest_run(connection: Connection, broadcast_id: UUID) -> LatestRun | None:
    row = await connection.fetchrow(
        "SELECT run_id, run_number, requested_by FROM targeting.runs WHERE broadcast_id = $1 "
        "ORDER BY run_number DESC LIMIT 1",
        broadcast_id,
    )
    return LatestRun(**dict(row)) if row else None


async def _new_run(
    connection: Connection,
    tenant_id: str,
    broadcast_id: UUID,
    definition: CreateBroadcast,
    number: int,
    request_id: str,
    requested_by: str,
    only_failed_of: UUID | None = None,
    include_unknown: bool = False,
) -> UUID:
    """Insert run `number`, keeping the content it starts with (a template's latest version
    at this moment) and the tenant's settings, so later edits never change a running run."""
    resolved = await store.resolve_content(connection, definition)
    if resolved is None:
        raise Rejection(
            "template_not_found", "template_id", f"no template '{definition.template_id}'"
        )
    content, template = resolved
    settings = await store.tenant_settings(connection, tenant_id)
    run_id = run_id_for(broadcast_id, number)
    await connection.execute(
        """INSERT INTO targeting.runs
               (run_id, broadcast_id, tenant_id, run_number, request_id, requested_by, state,
                content, template_id, template_version, settings, not_before, only_failed_of,
                include_unknown)
           VALUES ($1, $2, $3, $4, $5, $6, 'streaming', $7, $8, $9, $10,
                   now() + make_interval(secs => $11), $12, $13)""",
        run_id,
        broadcast_id,
        tenant_id,
        number,
        request_id,
        requested_by,
        content.model_dump(mode="json"),
        template.template_id if template else None,
        template.version if template else None,
        settings.model_dump(mode="json"),
        float(settings.grace_seconds),
        only_failed_of,
        include_unknown,
    )
    return run_id


async def start(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID,
    request_id: str,
    requested_by: str,
    due_by: datetime | None = None,
) -> UUID:
    """The first run's id. Replaying the request that started it returns that run again.

    `due_by`: the scheduler's start, checked under the lock against the schedule as it is now
    (it may have been moved since the scheduler read it)."""
    async with pool.acquire() as connection, connection.transaction():
        found = await _lock(connection, tenant_id, broadcast_id)
        if due_by is not None:
            schedule = await connection.fetchrow(
                "SELECT scheduled_at, schedule_request FROM targeting.broadcasts "
                "WHERE broadcast_id = $1",
                broadcast_id,
            )
            assert schedule is not None, "locked above"
            if (
                found.state != "scheduled"
                or schedule["scheduled_at"] > due_by
                or schedule["schedule_request"] != request_id
            ):
                raise Rejection("not_started", "at", "the schedule changed meanwhile")
        if found.state not in ("draft", "scheduled"):
            first = await connection.fetchrow(
                "SELECT run_id, request_id FROM targeting.runs WHERE broadcast_id = $1 "
                "AND run_number = 1",
                broadcast_id,
            )
            if first and first["request_id"] == request_id and found.state != "cancelled":
                run_id: UUID = first["run_id"]
                return run_id
        target = lifecycle.after(found.state, "start")
        assert target is not None
        run_id = await _new_run(
            connection, tenant_id, broadcast_id, found.definition, 1, request_id, requested_by
        )
        await _move(connection, broadcast_id, target)
        return run_id


async def resend(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID,
    request_id: str,
    requested_by: str,
    only_failed: bool,
    include_unknown: bool,
) -> UUID:
    """A new run of a finished broadcast, to its whole audience or to last run's failures
    (`include_unknown`: those whose outcome is unknown too).

    Replaying the request returns the run it started, even if its answer was lost."""
    async with pool.acquire() as connection, connection.transaction():
        found = await _lock(connection, tenant_id, broadcast_id)
        earlier: UUID | None = await connection.fetchval(
            "SELECT run_id FROM targeting.runs WHERE broadcast_id = $1 AND request_id = $2",
            broadcast_id,
            request_id,
        )
        if earlier is not None:
            return earlier
        target = lifecycle.after(found.state, "resend")
        assert target is not None
        last = await _latest_run(connection, broadcast_id)
        if last is None:
            raise Rejection("not_started", "broadcast_id", "this broadcast was never sent")
        if only_failed:
            await _check_failures_known(connection, last.run_id, include_unknown)
        run_id = await _new_run(
            connection,
            tenant_id,
            broadcast_id,
            found.definition,
            last.run_number + 1,
            request_id,
            requested_by,
            last.run_id if only_failed else None,
            only_failed and include_unknown,
        )
        await _move(connection, broadcast_id, target)
        return run_id


async def _check_failures_known(
    connection: Connection, run_id: UUID, include_unknown: bool
) -> None:
    """The run's failures come from broadcast.deliveries, its total from the tracker's
    completion: resend to them only once every one of them is recorded here, and only when
    one of them is still to be sent again."""
    failed: int | None = await connection.fetchval(
        "SELECT failed FROM targeting.runs WHERE run_id = $1", run_id
    )
    if failed == 0:
        raise Rejection("nothing_to_resend", "only_failed", "no message of the last run failed")
    failures = await store.failures_of(connection, run_id, include_unknown)
    if failed is None or failures.recorded < failed:
        raise Rejection(
            "not_finished",
            "only_failed",
            "the last run's failures are still being recorded; try again in a few seconds",
        )
    if failures.resendable == 0:
        unknown = "" if include_unknown else " or has an unknown outcome (see include_unknown)"
        raise Rejection(
            "nothing_to_resend",
            "only_failed",
            f"every failure of the last run had its action resolved{unknown}",
        )


async def _apply(
    connection: Connection, tenant_id: str, broadcast_id: UUID, action: Action
) -> bool:
    """Apply a change of state that starts no run, in the caller's transaction; True when
    the state changed (False: it was already there)."""
    found = await _lock(connection, tenant_id, broadcast_id)
    target = lifecycle.after(found.state, action)
    if target is not None:
        await _move(connection, broadcast_id, target)
    return target is not None


async def _change(
    pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID, action: Action
) -> tuple[bool, LatestRun | None]:
    """(changed now?, the latest run)."""
    async with pool.acquire() as connection, connection.transaction():
        changed = await _apply(connection, tenant_id, broadcast_id, action)
        return changed, await _latest_run(connection, broadcast_id)


async def pause(pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID) -> tuple[bool, LatestRun]:
    changed, run = await _change(pool, tenant_id, broadcast_id, "pause")
    assert run is not None, "a running broadcast has a run"
    return changed, run


async def resume(pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID) -> tuple[bool, LatestRun]:
    changed, run = await _change(pool, tenant_id, broadcast_id, "resume")
    assert run is not None, "a paused broadcast has a run"
    return changed, run


async def cancel(pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID) -> list[LatestRun]:
    """Every cancelled run of the broadcast, not only the ones cancelled now, so that a
    replayed command announces them again (the announcement may have been lost in a crash)."""
    async with pool.acquire() as connection, connection.transaction():
        await _apply(connection, tenant_id, broadcast_id, "cancel")
        rows = await connection.fetch(
            """UPDATE targeting.runs SET cancelled = true
               WHERE broadcast_id = $1 AND (completed_at IS NULL OR cancelled)
               RETURNING run_id, run_number, requested_by""",
            broadcast_id,
        )
    return [LatestRun(**dict(r)) for r in rows]


async def schedule(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID,
    at: datetime,
    request_id: str,
    requested_by: str,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        found = await _lock(connection, tenant_id, broadcast_id)
        lifecycle.after(found.state, "schedule")
        await connection.execute(
            """UPDATE targeting.broadcasts
               SET state = 'scheduled', scheduled_at = $2, schedule_request = $3,
                   scheduled_by = $4
               WHERE broadcast_id = $1""",
            broadcast_id,
            at,
            request_id,
            requested_by,
        )


async def update(pool: asyncpg.Pool, definition: CreateBroadcast, broadcast_id: UUID) -> None:
    """Replace the definition of a broadcast that has not started."""
    async with pool.acquire() as connection, connection.transaction():
        found = await _lock(connection, definition.tenant_id, broadcast_id)
        lifecycle.after(found.state, "update")
        await connection.execute(
            "UPDATE targeting.broadcasts SET name = $2, definition = $3 WHERE broadcast_id = $1",
            broadcast_id,
            definition.name,
            definition.model_dump(mode="json"),
        )


@dataclass(frozen=True)
class Completion:
    run_id: UUID
    outcome: str
    failed: int


async def complete(pool: asyncpg.Pool, completions: Sequence[Completion]) -> None:
    """Runs the tracker completed; their broadcast is completed when it was its latest run."""
    if not completions:
        return
    await pool.execute(
        """WITH done AS (
               UPDATE targeting.runs r
               SET completed_at = now(), outcome = t.outcome, failed = t.failed
               FROM unnest($1::uuid[], $2::text[], $3::int[]) AS t(run_id, outcome, failed)
               WHERE r.run_id = t.run_id AND r.completed_at IS NULL
               RETURNING r.broadcast_id, r.run_number)
           UPDATE targeting.broadcasts b SET state = 'completed', completed_at = now(),
                  paused_at = NULL
           FROM done
           WHERE b.broadcast_id = done.broadcast_id AND b.state IN ('running', 'paused')
             AND done.run_number = (SELECT max(run_number) FROM targeting.runs x
                                    WHERE x.broadcast_id = done.broadcast_id)""",
        [c.run_id for c in completions],
        [c.outcome for c in completions],
        [c.failed for c in completions],
    )


@dataclass(frozen=True)
class Due:
    broadcast_id: UUID
    tenant_id: str
    request_id: str
    requested_by: str


async def due_schedules(
    pool: asyncpg.Pool, now: datetime, tenant_id: str | None = None
) -> list[Due]:
    """Schedules whose time has come; only `tenant_id`'s when given."""
    rows = await pool.fetch(
        """SELECT broadcast_id, tenant_id, schedule_request AS request_id,
                  scheduled_by AS requested_by
           FROM targeting.broadcasts WHERE state = 'scheduled' AND scheduled_at <= $1
             AND ($2::text IS NULL OR tenant_id = $2)
           ORDER BY scheduled_at LIMIT 100""",
        now,
        tenant_id,
    )
    return [Due(**dict(r)) for r in rows]
