"""Follow a broadcast and wait for what commands cause, through events and the services'
versioned views (docs/ARCHITECTURE.md, "Versioned views"), never their tables."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from shared.client.log import TopicLog
from shared.db import Connection
from shared.events import BROADCAST_EVENT_ADAPTER, AnyBroadcastEvent

# A pool or one connection: every wait below runs a single statement at a time.
Database = asyncpg.Pool | Connection


class WatchTimeout(TimeoutError):
    """What was awaited did not happen in time; the message says what."""


class BroadcastWatch:
    """One broadcast's events on broadcast.events (a log opened before the broadcast's commands
    were sent), typed, in order; with a deadline and a limit on silence."""

    def __init__(
        self,
        events: TopicLog,
        broadcast_id: UUID | str,
        *,
        stall_s: float = 120.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events = events
        self._broadcast_id = UUID(str(broadcast_id))
        self._stall_s = stall_s
        self._monotonic = monotonic
        self._read = 0  # records of the log already looked at
        self._pending: list[AnyBroadcastEvent] = []
        self.last_event_at = monotonic()

    async def next(self, deadline: float) -> AnyBroadcastEvent:
        """The broadcast's next event. WatchTimeout at `deadline` (on the monotonic clock) or
        when the broadcast has been silent for `stall_s`: it is stuck, not slow."""
        while not self._take():
            now = self._monotonic()
            if now >= deadline:
                raise WatchTimeout(f"broadcast {self._broadcast_id}: the deadline passed")
            if now - self.last_event_at >= self._stall_s:
                raise WatchTimeout(
                    f"broadcast {self._broadcast_id}: no event for {self._stall_s:.0f} s"
                )
            await self._events.poll(timeout_ms=1000)
        return self._pending.pop(0)

    def _take(self) -> bool:
        for record in self._events.records[self._read :]:
            self._read += 1
            try:
                event = BROADCAST_EVENT_ADAPTER.validate_python(record)
            except ValidationError:
                continue  # another producer's record, or a newer schema: not this watch's
            if getattr(event, "broadcast_id", None) == self._broadcast_id:
                self.last_event_at = self._monotonic()
                self._pending.append(event)
        return bool(self._pending)


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll `check` every `interval` seconds until it holds; WatchTimeout naming `what`."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(interval)
    except TimeoutError:
        raise WatchTimeout(f"{what}: not after {timeout:g} s") from None


async def contracts_held(db: Database, tenant: str, min_version: int = 0) -> int:
    """How many of the tenant's contracts targeting's read model holds at `min_version` or
    later (tombstones of deleted contracts included)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM targeting.contract_versions_v1 "
        "WHERE tenant_id = $1 AND version >= $2",
        tenant,
        min_version,
    )
    return count


async def until_contracts(
    db: Database, tenant: str, count: int, *, min_version: int = 0, timeout: float = 60.0
) -> int:
    """Returns, with the number held, once targeting holds `count` contracts of the tenant at
    `min_version` or later: the next estimate or start counts them."""
    held = 0

    async def enough() -> bool:
        nonlocal held
        held = await contracts_held(db, tenant, min_version)
        return held >= count

    await until(enough, timeout, f"targeting holding {count} contracts of {tenant}")
    return held


async def broadcast_state(db: Database, broadcast_id: UUID | str) -> str | None:
    """The broadcast's lifecycle state as targeting knows it; None for an unknown broadcast."""
    state: str | None = await db.fetchval(
        "SELECT state FROM targeting.broadcasts_v1 WHERE broadcast_id = $1::uuid", str(broadcast_id)
    )
    return state


async def until_state(
    db: Database, broadcast_id: UUID | str, states: Collection[str], timeout: float = 60.0
) -> str:
    """Returns the state once the broadcast is in one of `states`."""
    found: str | None = None

    async def reached() -> bool:
        nonlocal found
        found = await broadcast_state(db, broadcast_id)
        return found in states

    await until(reached, timeout, f"broadcast {broadcast_id} in {'/'.join(states)}", 0.1)
    assert found is not None
    return found


async def tenant_settings(db: Database, tenant: str) -> dict[str, Any] | None:
    """The settings the dispatcher applies to the tenant; None before any configure_tenant."""
    value = await db.fetchval(
        "SELECT settings FROM dispatcher.tenant_settings_v1 WHERE tenant_id = $1", tenant
    )
    # A connection without the JSON codec (shared.db.create_pool sets one) returns the text.
    settings: dict[str, Any] | None = json.loads(value) if isinstance(value, str) else value
    return settings


async def until_settings(
    db: Database, tenant: str, applied: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> None:
    """Returns once the dispatcher applies settings of the tenant for which `applied` holds."""

    async def done() -> bool:
        settings = await tenant_settings(db, tenant)
        return settings is not None and applied(settings)

    await until(done, timeout, f"the dispatcher applying {tenant}'s settings", 0.1)
