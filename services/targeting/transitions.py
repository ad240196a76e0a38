"""Moving broadcasts through their lifecycle in PostgreSQL.

Each change locks the broadcast's row, asks `lifecycle.after` whether the command applies to
its current state (a Rejection rolls the transaction back), and writes the state it answers
together with the run it starts, so that two commands racing on one broadcast are applied one
after the other. No state is written any other way.
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
from .audience import reachable
from .broadcasts import Rejection, no_broadcast, no_template
from .lifecycle import Action
from .store import LatestRun


async def _lock(connection: Connection, tenant_id: str, broadcast_id: UUID) -> store.Locked:
    """The broadcast, locked until the transaction ends; Rejection when the tenant has none."""
    found = await store.lock(connection, tenant_id, broadcast_id)
    if found is None:
        raise no_broadcast(tenant_id, broadcast_id)
    return found


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
        raise no_template(definition.template_id or "")
    content, template = resolved
    run_id = run_id_for(broadcast_id, number)
    await store.insert_run(
        connection,
        store.NewRun(
            run_id=run_id,
            broadcast_id=broadcast_id,
            tenant_id=tenant_id,
            number=number,
            request_id=request_id,
            requested_by=requested_by,
            content=content,
            template=template,
            settings=await store.tenant_settings(connection, tenant_id),
            only_failed_of=only_failed_of,
            include_unknown=include_unknown,
        ),
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
            due = await store.schedule_of(connection, broadcast_id)
            if (
                found.state != "scheduled"
                or due is None
                or due.at > due_by
                or due.request_id != request_id
            ):
                raise Rejection("not_started", "at", "the schedule changed meanwhile")
        if found.state not in ("draft", "scheduled", "cancelled"):
            first = await store.run_of_request(connection, broadcast_id, request_id, number=1)
            if first is not None:
                return first
        target = lifecycle.after(found.state, "start")
        assert target is not None
        run_id = await _new_run(
            connection, tenant_id, broadcast_id, found.definition, 1, request_id, requested_by
        )
        await store.move(connection, broadcast_id, target)
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
        earlier = await store.run_of_request(connection, broadcast_id, request_id)
        if earlier is not None:
            return earlier
        target = lifecycle.after(found.state, "resend")
        assert target is not None
        last = await store.latest_run(connection, broadcast_id)
        if last is None:
            raise Rejection("not_started", "broadcast_id", "this broadcast was never sent")
        if only_failed:
            await _check_failures_known(connection, last.run_id, include_unknown)
            await _check_reachable_again(
                connection, tenant_id, found.definition, last.run_id, include_unknown
            )
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
        await store.move(connection, broadcast_id, target)
        return run_id


async def _check_failures_known(
    connection: Connection, run_id: UUID, include_unknown: bool
) -> None:
    """The run's failures come from broadcast.deliveries, its total from the tracker's
    completion: resend to them only once every one of them is recorded here, and only when
    one of them is still to be sent again."""
    failed = await store.failed_count(connection, run_id)
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


async def _check_reachable_again(
    connection: Connection,
    tenant_id: str,
    definition: CreateBroadcast,
    run_id: UUID,
    include_unknown: bool,
) -> None:
    """A resend to the failures sends a `no_contact` failure again only once its contract has
    an address: when no other failure is left, one of those contracts must have one now."""
    keys = await store.failed_recipients(connection, run_id, include_unknown)
    without = {contract for contract, _, address in keys if not address}
    if not without or len(without) < len(keys):
        return
    rows = await store.live_contracts(connection, tenant_id, without)
    if not any(reachable(row, definition.channels) for row in rows):
        raise Rejection(
            "nothing_to_resend",
            "only_failed",
            "the customers of the last run's failures still have no address",
        )


async def _apply(
    connection: Connection, tenant_id: str, broadcast_id: UUID, action: Action
) -> bool:
    """Apply a change of state that starts no run, in the caller's transaction; True when
    the state changed (False: it was already there, or the action keeps it)."""
    found = await _lock(connection, tenant_id, broadcast_id)
    target = lifecycle.after(found.state, action)
    if target is not None:
        await store.move(connection, broadcast_id, target)
    return target is not None


async def _change(
    pool: asyncpg.Pool, tenant_id: str, broadcast_id: UUID, action: Action
) -> tuple[bool, LatestRun | None]:
    """(changed now?, the latest run)."""
    async with pool.acquire() as connection, connection.transaction():
        changed = await _apply(connection, tenant_id, broadcast_id, action)
        return changed, await store.latest_run(connection, broadcast_id)


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
        return await store.cancel_runs(connection, broadcast_id)


async def schedule(
    pool: asyncpg.Pool,
    tenant_id: str,
    broadcast_id: UUID,
    at: datetime,
    request_id: str,
    requested_by: str,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await _apply(connection, tenant_id, broadcast_id, "schedule")
        await store.set_schedule(
            connection, broadcast_id, store.Schedule(at, request_id), requested_by
        )


async def update(pool: asyncpg.Pool, definition: CreateBroadcast, broadcast_id: UUID) -> None:
    """Replace the definition of a broadcast that has not started."""
    async with pool.acquire() as connection, connection.transaction():
        await _apply(connection, definition.tenant_id, broadcast_id, "update")
        await store.replace_definition(connection, broadcast_id, definition)


@dataclass(frozen=True)
class Completion:
    run_id: UUID
    outcome: str
    failed: int


async def complete(pool: asyncpg.Pool, completions: Sequence[Completion]) -> None:
    """Runs the tracker completed; their broadcast is completed when it was its latest run
    and the lifecycle allows it (a cancelled broadcast stays cancelled)."""
    for completion in completions:
        async with pool.acquire() as connection, connection.transaction():
            owner = await store.run_owner(connection, completion.run_id)
            if owner is None:  # a preview or a follow-up: not one of targeting's runs
                continue
            tenant_id, broadcast_id = owner
            # The broadcast first, as every other change does, so that none waits on another.
            found = await _lock(connection, tenant_id, broadcast_id)
            finished = await store.finish_run(
                connection, completion.run_id, completion.outcome, completion.failed
            )
            latest = await store.latest_run(connection, broadcast_id)
            if not finished or latest is None or latest.run_id != completion.run_id:
                continue  # a replayed completion, or an earlier run's
            try:
                target = lifecycle.after(found.state, "complete")
            except Rejection:
                continue  # cancelled or completed already: the run's end changes nothing
            assert target is not None
            await store.move(connection, broadcast_id, target)
