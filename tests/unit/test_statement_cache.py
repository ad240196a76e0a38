"""An expired prepared statement frees what its expiry timer's context held at once, without
waiting for the cyclic garbage collector (shared/db.py, bench/README.md "Dispatcher memory")."""

import asyncio
import contextvars
import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import _StatementCache  # type: ignore[attr-defined]

from shared import db
from tests.unit.test_pool_reset import pool_options

# What FastStream keeps in the context while a handler runs: the batch in hand.
in_hand: contextvars.ContextVar[object] = contextvars.ContextVar("in_hand")


class Batch:
    """Stands for a batch of records; a plain object cannot be weakly referenced."""


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def batch_alive_after_expiry(cache_class: Any) -> bool:
    cache = cache_class(
        loop=asyncio.get_running_loop(),
        max_size=10,
        on_remove=lambda statement: None,
        max_lifetime=0.01,
    )
    batch = Batch()
    held = weakref.ref(batch)

    def prepare_in_handler(batch: Batch) -> None:
        in_hand.set(batch)
        cache.put("SELECT 1", SimpleNamespace(closed=False))

    contextvars.copy_context().run(prepare_in_handler, batch)
    del batch
    await asyncio.sleep(0.05)
    assert cache.get("SELECT 1") is None  # expired
    return held() is not None


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_asyncpgs_cache_keeps_the_batch_until_a_full_collection() -> None:
    """The defect the subclass works around; if asyncpg fixes it, the subclass can go."""
    assert await batch_alive_after_expiry(_StatementCache)


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_an_expired_statement_frees_the_batch_at_once() -> None:
    assert not await batch_alive_after_expiry(db._ExpiringStatementCache)


def test_the_cache_class_can_be_swapped_on_asyncpgs_instance() -> None:
    cache = _StatementCache(loop=None, max_size=1, on_remove=print, max_lifetime=0)
    cache.__class__ = db._ExpiringStatementCache  # what _Connection does; same slots


async def test_every_pool_uses_the_connection_with_that_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (await pool_options(monkeypatch))["connection_class"] is db._Connection
    assert issubclass(db._Connection, asyncpg.Connection)
