"""PostgreSQL: the connection pool and the migration runner every service uses.

Each service owns one schema and migrates it from its own `migrations/NNN_name.sql` files. The
files are applied once each, in order, each in its own transaction, and recorded in
`public.schema_migrations`. A service refuses to start against a schema newer than the files it
ships, because it cannot know what the newer version changed.

Where the database was provisioned with one role per service (deploy/postgres/roles.py), each
service connects as the role named after it, which owns its schema, and row level security on
`public.schema_migrations` lets it read and add its own rows only.
"""

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import asyncpg.pool
from asyncpg.connection import _StatementCache  # type: ignore[attr-defined]  # private
from pydantic_core import from_json

# What `pool.acquire()` yields and what `asyncpg.connect()` returns: store functions take either.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class DatabaseTooNew(RuntimeError):
    """The database was migrated by a newer release of this service."""


# A prepared statement is planned again this often. PostgreSQL keeps the generic plan it made
# after a statement's fifth execution until the table is analyzed; made while a table was
# nearly empty (a fresh database, its first broadcast), it scans the table whole at every
# wave until autovacuum's next ANALYZE, which may be a minute and hundreds of thousands of
# rows later (bench/README.md, "PostgreSQL per message": 580 against 60 µs of backend CPU a
# message). Preparing again costs a parse and five custom plans a second per statement and
# connection: 2-5 µs a message where the plan was right anyway.
STATEMENT_LIFETIME_SECONDS = 1


class _ExpiringStatementCache(_StatementCache):  # type: ignore[misc]  # private, untyped
    """asyncpg's statement cache, but an expired entry is freed at once rather than by the
    cyclic garbage collector.

    asyncpg leaves a fired expiry timer on its entry (entry -> timer -> entry). The timer holds
    the context it was scheduled in, and a statement prepared inside a handler captures
    FastStream's context, with the batch in hand: 500 records and 500 decoded messages, about
    2.5 MiB in the dispatcher. With STATEMENT_LIFETIME_SECONDS at 1, a batch every few seconds
    became cyclic garbage that only a full collection frees, and full collections are rare in a
    process that holds a few hundred thousand long-lived objects: the dispatcher's RSS rose by
    20-40 MiB in steps (bench/README.md, "Dispatcher memory").
    """

    __slots__ = ()

    def _on_entry_expired(self, entry: Any) -> None:
        super()._on_entry_expired(entry)
        entry._cleanup_cb = None


class _Connection(asyncpg.Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same slots, so the class can be swapped without copying asyncpg's constructor.
        self._stmt_cache.__class__ = _ExpiringStatementCache  # type: ignore[attr-defined]


async def _init_connection(connection: asyncpg.Connection) -> None:
    # pydantic-core's parser reads a contract's JSON columns (contact points, details,
    # attributes) 4 to 11 times faster than json.loads, to the same values (bench/README.md,
    # "Kafka path"): targeting decodes four of them for every contract it streams.
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=json.dumps, decoder=from_json, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No reset query when a connection goes back to the pool (asyncpg still rolls back an
    open transaction)."""


async def create_pool(dsn: str, *, size: int, reset_sessions: bool = True) -> asyncpg.Pool:
    """`reset_sessions=False` for a service whose code leaves no session state on a connection
    it gives back (SET, LISTEN, cursors WITH HOLD, session advisory locks other than the
    migration's, which is released): asyncpg's reset query is one more round trip per pool
    call, about 150 µs of the client's CPU on the bench machine (bench/README.md, "Dispatcher
    hand-over")."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        max_cached_statement_lifetime=STATEMENT_LIFETIME_SECONDS,
        reset=None if reset_sessions else _keep_session,
        connection_class=_Connection,
    )
    assert pool is not None
    return pool


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    """The migrations of one service, ordered; a misnamed file is an error, not a silent skip."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNN_lower_snake.sql")
        found.append((int(match.group(1)), path))
    versions = [version for version, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{directory}: migrations must be numbered 001, 002, ... without gaps")
    return found


async def create_migrations_table(connection: Connection) -> None:
    """Create `public.schema_migrations` unless it exists.

    A service's role may not create anything in `public` (deploy/postgres/roles.py creates the
    table for it), and PostgreSQL checks that right before it looks for an existing table, so
    even `CREATE TABLE IF NOT EXISTS` would fail: look first.
    """
    if await connection.fetchval("SELECT to_regclass('public.schema_migrations')") is not None:
        return
    await connection.execute(
        """CREATE TABLE IF NOT EXISTS public.schema_migrations (
               service text NOT NULL,
               version integer NOT NULL,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (service, version))"""
    )


async def migrate(pool: asyncpg.Pool, service: str, directory: Path) -> int:
    """Apply the service's pending migrations; return the schema version now in force."""
    files = migration_files(directory)
    known = len(files)
    async with pool.acquire() as connection:
        await create_migrations_table(connection)
        # Several instances of a service may start together: one migrates, the others wait.
        await connection.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{service}")
        try:
            current = await connection.fetchval(
                "SELECT coalesce(max(version), 0) FROM public.schema_migrations WHERE service = $1",
                service,
            )
            if current > known:
                raise DatabaseTooNew(
                    f"{service}: database schema is at version {current}, this release knows "
                    f"only up to {known}; refusing to start"
                )
            for version, path in files[current:]:
                async with connection.transaction():
                    await connection.execute(path.read_text())
                    await connection.execute(
                        "INSERT INTO public.schema_migrations (service, version, name) "
                        "VALUES ($1, $2, $3)",
                        service,
                        version,
                        path.name,
                    )
        finally:
            await connection.execute(
                "SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{service}"
            )
    return known
