"""A job that one instance of a service runs at a time, whichever instance that is.

Several instances of a service share its database, and some jobs must not run in two of them
at once (two would publish the same outbox rows twice). The holder takes a transaction-level
advisory lock, named after the job, on a connection it keeps for the job's duration: the lock
goes when the job ends, and with the connection when the instance dies, so no instance is ever
elected for good and no work is lost with one. The job itself uses the pool's other
connections, hence a pool of two at least.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg


class PoolTooSmall(RuntimeError):
    pass


class Exclusive:
    """`held` waits its turn (nothing the caller asks is skipped); `skipping` makes a periodic
    step that does nothing while another instance runs it (its next pass does the work)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], name: str) -> None:
        self._pool = pool
        self._name = name
        # Callers of one process queue here, not each on a pooled connection: a pool whose
        # every connection waits for the lock would leave none for the holder's job.
        self._here = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._here, self._locked(wait=True) as mine:
            assert mine
            yield

    def skipping(
        self, step: Callable[[], Awaitable[bool | None]]
    ) -> Callable[[], Awaitable[bool | None]]:
        async def exclusive_step() -> bool | None:
            if self._here.locked():
                return None
            async with self._here, self._locked(wait=False) as mine:
                return await step() if mine else None

        return exclusive_step

    @asynccontextmanager
    async def _locked(self, *, wait: bool) -> AsyncIterator[bool]:
        pool = self._pool()
        if pool.get_max_size() < 2:
            raise PoolTooSmall(
                f"{self._name}: DATABASE_POOL_SIZE must be 2 at least (one connection holds "
                "the job's lock while the job uses another)"
            )
        async with pool.acquire() as connection, connection.transaction():
            if wait:
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('exclusive'), hashtext($1))", self._name
                )
                yield True
                return
            got: bool = await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext('exclusive'), hashtext($1))", self._name
            )
            yield got
