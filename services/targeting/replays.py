"""Replayed requests change nothing and get the answer the first one got.

Create, start and resend are idempotent by construction: a create finds the broadcast its
request made (by its id, or by tenant and request id), start and resend find the run theirs
made. The commands in REMEMBERED are not, once later commands changed the broadcast or the
tenant (a pause replayed after a resume, an old configure replayed after a new one): their
request ids are remembered once applied (`targeting.requests`), and a replay is answered from
there (a cancel replayed after a resend must not cancel the new run).

A replay is answered like any request, on the answers topic of the topic it arrived on: the
sender's, where the first answer went when the same sender sends it again.
"""

from collections.abc import Awaitable, Callable

import asyncpg

from shared.events import AnyCommand, BroadcastAccepted, ConfigureTenant, TenantConfigured

from . import store
from .answers import Answer, accepted
from .broadcasts import Rejection

REMEMBERED = frozenset(
    {
        "update_broadcast",
        "schedule_broadcast",
        "rename_broadcast",
        "pause_broadcast",
        "resume_broadcast",
        "resend_broadcast",
        "configure_tenant",
        "cancel_broadcast",
    }
)


async def applied_once(
    pool: asyncpg.Pool,
    command: AnyCommand,
    apply: Callable[[AnyCommand], Awaitable[Answer | None]],
) -> Answer | None:
    """`apply(command)`'s answer (None: another service answers it); for a remembered command
    applied before, the answer it got then, without applying it again. Raises Rejection (a
    request id reused for another command) as `apply` does."""
    if command.type not in REMEMBERED:
        return await apply(command)
    answer = await _replayed(pool, command) or await apply(command)
    if isinstance(answer, BroadcastAccepted | TenantConfigured):
        await store.remember_request(
            pool,
            command.tenant_id,
            command.request_id,
            command.type,
            getattr(answer, "broadcast_id", None),
            getattr(answer, "run_id", None),
        )
    return answer


async def _replayed(pool: asyncpg.Pool, command: AnyCommand) -> Answer | None:
    """The answer a request already applied gave, without applying it again."""
    applied = await store.applied_request(pool, command.tenant_id, command.request_id)
    if applied is None:
        return None
    if applied.command != command.type or applied.broadcast_id != getattr(
        command, "broadcast_id", None
    ):
        raise Rejection(
            "request_reused",
            "request_id",
            f"request '{command.request_id}' was already used for another command "
            f"({applied.command})",
        )
    if isinstance(command, ConfigureTenant):  # the settings as they are now
        async with pool.acquire() as connection:
            settings = await store.tenant_settings(connection, command.tenant_id)
        return TenantConfigured(
            tenant_id=command.tenant_id, request_id=command.request_id, settings=settings
        )
    assert applied.broadcast_id is not None
    return accepted(command, applied.broadcast_id, applied.run_id)
