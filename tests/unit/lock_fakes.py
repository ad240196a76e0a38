"""A pool whose connections take PostgreSQL advisory locks, as several instances' pools over
one database would: locks taken in a transaction are released when it ends."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class Locks:
    """The database's advisory locks: one `LockPool` per instance shares them."""

    def __init__(self) -> None:
        self.held: dict[Any, asyncio.Lock] = {}

    def of(self, key: Any) -> asyncio.Lock:
        return self.held.setdefault(key, asyncio.Lock())


class _Connection:
    def __init__(self, locks: Locks) -> None:
        self._locks = locks
        self._taken: list[asyncio.Lock] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for lock in self._taken:
                lock.release()
            self._taken.clear()

    async def execute(self, query: str, *args: Any) -> str:
        assert "pg_advisory_xact_lock" in query
        lock = self._locks.of(args)
        await lock.acquire()
        self._taken.append(lock)
        return "SELECT 1"

    async def fetchval(self, query: str, *args: Any) -> bool:
        assert "pg_try_advisory_xact_lock" in query
        lock = self._locks.of(args)
        if lock.locked():
            return False
        await lock.acquire()
        self._taken.append(lock)
        return True


class LockPool:
    def __init__(self, locks: Locks, size: int = 5) -> None:
        self._locks = locks
        self._size = size

    def get_max_size(self) -> int:
        return self._size

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Connection]:
        yield _Connection(self._locks)
