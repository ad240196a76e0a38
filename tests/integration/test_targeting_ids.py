"""Broadcast ids against the real database: a create without an id gets one nobody can compute,
its replay lands on it, and a taken id is refused the same whoever holds it."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.targeting import store
from shared.db import create_pool, migrate
from shared.events import CreateBroadcast
from tests.stack import DATABASE_URL

pytestmark = pytest.mark.stack

MIGRATIONS = Path(__file__).parents[2] / "services" / "targeting" / "migrations"
# What broadcast ids were before migration 010: public, so anyone could compute them.
OLD_NAMESPACE = uuid.UUID("6f1c2b1e-8f3a-4c52-9a57-2f0d8c3e4b10")


def old_id(tenant: str, request_id: str) -> uuid.UUID:
    return uuid.uuid5(OLD_NAMESPACE, f"broadcast|{tenant}|{request_id}")


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def create(tenant_id: str, request_id: str, **fields: Any) -> CreateBroadcast:
    return CreateBroadcast.model_validate(
        {
            "tenant_id": tenant_id,
            "request_id": request_id,
            "requested_by": "u",
            "name": f"{tenant_id}'s",
            "channels": ["email"],
            "languages": ["fr"],
            "content": {"email": {"fr": {"subject": "s", "html": "h"}}},
            "sender": {"address": "a@x.example"},
            **fields,
        }
    )


async def owner(db: asyncpg.Pool, broadcast_id: uuid.UUID) -> tuple[str, str, str] | None:
    row = await db.fetchrow(
        "SELECT tenant_id, request_id, name FROM targeting.broadcasts WHERE broadcast_id = $1",
        broadcast_id,
    )
    return None if row is None else (row["tenant_id"], row["request_id"], row["name"])


async def test_a_create_without_an_id_gets_a_random_one_and_its_replay_the_same(
    service_pool: asyncpg.Pool,
) -> None:
    a, b = tenant(), tenant()
    first = await store.create_broadcast(service_pool, create(a, "create-1"))
    again = await store.create_broadcast(service_pool, create(a, "create-1"))
    assert first is not None and first.version == 4
    assert again == first
    assert first != old_id(a, "create-1")
    # Another request of the same tenant, or the same request id in another tenant: new ones.
    other = await store.create_broadcast(service_pool, create(a, "create-2"))
    elsewhere = await store.create_broadcast(service_pool, create(b, "create-1"))
    assert elsewhere is not None and len({first, other, elsewhere}) == 3
    assert await owner(service_pool, first) == (a, "create-1", f"{a}'s")
    assert await owner(service_pool, elsewhere) == (b, "create-1", f"{b}'s")


async def test_the_id_a_create_would_have_got_before_can_be_taken_to_no_effect(
    service_pool: asyncpg.Pool,
) -> None:
    a, b = tenant(), tenant()
    squatted = old_id(a, "next")
    assert await store.create_broadcast(service_pool, create(b, "x", broadcast_id=squatted)) == (
        squatted
    )
    made = await store.create_broadcast(service_pool, create(a, "next"))
    assert made is not None and made != squatted
    assert await owner(service_pool, made) == (a, "next", f"{a}'s")
    assert await owner(service_pool, squatted) == (b, "x", f"{b}'s")


async def test_a_taken_id_is_refused_alike_whoever_holds_it_and_stays_its_owners(
    service_pool: asyncpg.Pool,
) -> None:
    a, b = tenant(), tenant()
    taken = uuid.uuid4()
    assert await store.create_broadcast(service_pool, create(a, "r1", broadcast_id=taken)) == taken
    refused = [
        create(b, "r1", broadcast_id=taken),  # A's id and A's request id
        create(b, "r2", broadcast_id=taken),
        create(a, "r2", broadcast_id=taken),  # A's own id, from another of A's requests
    ]
    for command in refused:
        assert await store.create_broadcast(service_pool, command) is None, command
    assert await store.create_broadcast(service_pool, create(a, "r1", broadcast_id=taken)) == taken
    assert await owner(service_pool, taken) == (a, "r1", f"{a}'s")
    # A request id that gave an explicit id does not capture a later create without one.
    fresh = await store.create_broadcast(service_pool, create(a, "r1"))
    assert fresh is not None and fresh != taken


@pytest.fixture
async def scratch(db: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A throwaway database on the stack's server, opened as the services open theirs,
    dropped after the test."""
    name = f"probe_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(DATABASE_URL)
    pool = await create_pool(urlunsplit(parts._replace(path=f"/{name}")), size=2)
    try:
        yield pool
    finally:
        await pool.close()
        await db.execute(f"DROP DATABASE {name}")


async def test_migration_010_keeps_old_replays_on_their_broadcast_and_cannot_fail(
    scratch: asyncpg.Pool, tmp_path: Path
) -> None:
    files = sorted(MIGRATIONS.glob("*.sql"))
    before = [f for f in files if f.name < "010"]
    for path in before:
        (tmp_path / path.name).write_text(path.read_text())
    assert await migrate(scratch, "targeting", tmp_path) == len(before)
    alone, shared_1, shared_2 = old_id("a", "old"), uuid.uuid4(), uuid.uuid4()
    await scratch.executemany(
        """INSERT INTO targeting.broadcasts
               (broadcast_id, tenant_id, request_id, requested_by, name, definition, state)
           VALUES ($1, $2, $3, 'u', 'n', '{}', 'draft')""",
        # Two explicit ids given by one request: a unique (tenant, request) index would fail.
        [(alone, "a", "old"), (shared_1, "a", "twice"), (shared_2, "a", "twice")],
    )
    assert await migrate(scratch, "targeting", MIGRATIONS) == len(files)
    rows = await scratch.fetch("SELECT broadcast_id, by_request FROM targeting.broadcasts")
    by_request = {r["broadcast_id"]: r["by_request"] for r in rows}
    assert by_request == {alone: True, shared_1: False, shared_2: False}
    # A create made before, replayed after: the same broadcast, not a second one.
    assert await store.create_broadcast(scratch, create("a", "old")) == alone
    assert await scratch.fetchval("SELECT count(*) FROM targeting.broadcasts") == 3
