"""One role per service and a read-only role, in throwaway databases of the real PostgreSQL.

The stack's cluster by default, reached as its superuser over the unix socket in the run dir
(roles are the cluster's: provisioning sets the stack's own password on them);
BROADCAST_TEST_POSTGRES_PORT points these tests at another cluster whose socket is in
`$BROADCAST_RUN_DIR/postgres` and which has the `broadcast` role.
"""

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from deploy.local.stack import HOST, POSTGRES_PASSWORD, POSTGRES_PORT, POSTGRES_USER, run_dir
from deploy.postgres.credentials import READER_ROLE, ROLES, SERVICE_ROLES
from deploy.postgres.roles import provision
from shared.db import Connection, create_pool, migrate

pytestmark = pytest.mark.stack

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
PORT = int(os.environ.get("BROADCAST_TEST_POSTGRES_PORT") or POSTGRES_PORT)
PASSWORDS = dict.fromkeys(ROLES, POSTGRES_PASSWORD)
# A message row of the tracker: what targeting's role must neither read nor write.
_TRACKER_ROW = (
    "INSERT INTO tracker.messages (recipient_id, run_id, tenant_id, contract_id, channel, "
    "address, state) VALUES (gen_random_uuid(), gen_random_uuid(), 't', 'C-1', 'email', "
    "'a@x.example', 'delivered')"
)


def _superuser_url(database: str) -> str:
    return f"postgresql://postgres@/{database}?host={run_dir() / 'postgres'}&port={PORT}"


def _url(role: str, database: str) -> str:
    return f"postgresql://{role}:{PASSWORDS.get(role, POSTGRES_PASSWORD)}@{HOST}:{PORT}/{database}"


async def _connect(role: str, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(_url(role, database))


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """An empty database owned by `broadcast`, as the local runner creates the stack's."""
    name = f"roles_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(_superuser_url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE {name} OWNER "{POSTGRES_USER}"')
        yield name
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _provision(database: str) -> None:
    admin = await asyncpg.connect(_superuser_url(database))
    try:
        await provision(admin, PASSWORDS)
    finally:
        await admin.close()


async def _migrate(
    database: str, service: str, *, user: str | None = None, migrations: Path | None = None
) -> int:
    """Migrate `service` connected as `user` (default: the service's own role)."""
    pool = await create_pool(_url(user or service, database), size=1)
    try:
        return await migrate(pool, service, migrations or SERVICES_DIR / service / "migrations")
    finally:
        await pool.close()


@pytest.fixture
async def provisioned(database: str) -> str:
    """Provisioned first, then each service migrated by its own role, as in every deployment."""
    await _provision(database)
    for role in SERVICE_ROLES:
        assert await _migrate(database, role) > 0
    return database


async def _owners(connection: Connection) -> dict[str, set[str]]:
    """schema -> the roles owning it and the relations in it, for the four services' schemas."""
    rows = await connection.fetch(
        "SELECT n.nspname AS schema, pg_get_userbyid(n.nspowner) AS owner FROM pg_namespace n "
        "WHERE n.nspname = ANY($1::text[]) "
        "UNION SELECT n.nspname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY($1::text[])",
        list(SERVICE_ROLES),
    )
    owners: dict[str, set[str]] = {}
    for row in rows:
        owners.setdefault(row["schema"], set()).add(row["owner"])
    return owners


async def _refused(action: Callable[[], Awaitable[Any]]) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await action()


async def test_each_role_migrates_its_own_schema_from_scratch(provisioned: str) -> None:
    connection = await _connect(POSTGRES_USER, provisioned)
    try:
        assert await _owners(connection) == {role: {role} for role in SERVICE_ROLES}
        recorded = await connection.fetch(
            "SELECT service, max(version) AS version FROM public.schema_migrations GROUP BY service"
        )
    finally:
        await connection.close()
    latest = {
        role: len(list((SERVICES_DIR / role / "migrations").glob("*.sql")))
        for role in SERVICE_ROLES
    }
    assert {r["service"]: r["version"] for r in recorded} == latest


async def test_targeting_can_neither_read_nor_write_another_services_tables(
    provisioned: str,
) -> None:
    targeting = await _connect("targeting", provisioned)
    try:
        await _refused(lambda: targeting.fetch("SELECT * FROM tracker.messages"))
        await _refused(lambda: targeting.fetch("SELECT * FROM tracker.messages_v1"))
        await _refused(lambda: targeting.execute(_TRACKER_ROW))
        await _refused(
            lambda: targeting.execute("INSERT INTO dispatcher.rate_limits (key) VALUES ('x')")
        )
        await _refused(lambda: targeting.execute("DELETE FROM dispatcher.deliveries"))
        await _refused(lambda: targeting.execute("DROP TABLE composer.runs"))
        await _refused(lambda: targeting.execute("CREATE TABLE public.anything (n int)"))
        await _refused(lambda: targeting.execute("CREATE SCHEMA anything"))
        # Its own tables, it reads and writes.
        await targeting.execute(
            "INSERT INTO targeting.tenants (tenant_id, settings, request_id) VALUES ('t', '{}', 'r')"
        )
    finally:
        await targeting.close()


async def test_no_service_role_reads_any_relation_of_another_service(provisioned: str) -> None:
    """Every table, view and sequence of every other schema, not a sample: a grant added by a
    later migration to the wrong role shows here."""
    owner = await _connect(POSTGRES_USER, provisioned)
    try:
        relations = await owner.fetch(
            "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')",
            list(SERVICE_ROLES),
        )
    finally:
        await owner.close()
    assert {r["schema"] for r in relations} == set(SERVICE_ROLES)
    read: list[str] = []
    for role in SERVICE_ROLES:
        connection = await _connect(role, provisioned)
        try:
            for relation in relations:
                if relation["schema"] == role:
                    continue
                try:
                    await connection.fetch(
                        f'SELECT 1 FROM "{relation["schema"]}"."{relation["name"]}" LIMIT 0'
                    )
                except asyncpg.InsufficientPrivilegeError:
                    continue
                read.append(f"{role} reads {relation['schema']}.{relation['name']}")
        finally:
            await connection.close()
    assert read == []


async def test_a_service_role_touches_only_its_own_migration_rows(provisioned: str) -> None:
    targeting = await _connect("targeting", provisioned)
    try:
        seen = await targeting.fetch("SELECT DISTINCT service FROM public.schema_migrations")
        assert [r["service"] for r in seen] == ["targeting"]
        await _refused(
            lambda: targeting.execute(
                "INSERT INTO public.schema_migrations (service, version, name) "
                "VALUES ('tracker', 999, '999_forged.sql')"
            )
        )
        await _refused(
            lambda: targeting.execute(
                "UPDATE public.schema_migrations SET version = 999 WHERE service = 'tracker'"
            )
        )
        await _refused(lambda: targeting.execute("DELETE FROM public.schema_migrations WHERE true"))
    finally:
        await targeting.close()
    admin = await _connect(POSTGRES_USER, provisioned)
    try:
        assert await admin.fetchval(
            "SELECT max(version) FROM public.schema_migrations WHERE service = 'tracker'"
        ) == len(list((SERVICES_DIR / "tracker" / "migrations").glob("*.sql")))
    finally:
        await admin.close()


async def test_the_reader_reads_the_views_and_writes_nothing(provisioned: str) -> None:
    reader = await _connect(READER_ROLE, provisioned)
    try:
        views = await reader.fetch(
            "SELECT format('%I.%I', schemaname, viewname) AS name FROM pg_views "
            "WHERE schemaname = ANY($1::text[])",
            list(SERVICE_ROLES),
        )
        assert len(views) == 9
        for view in views:
            assert await reader.fetchval(f"SELECT count(*) FROM {view['name']}") == 0
        await _refused(lambda: reader.fetch("SELECT * FROM targeting.contracts"))
        await _refused(lambda: reader.fetch("SELECT * FROM dispatcher.deliveries"))
        await _refused(lambda: reader.fetch("SELECT * FROM composer.runs"))
        await _refused(lambda: reader.execute(_TRACKER_ROW))
        await _refused(lambda: reader.execute("UPDATE tracker.runs SET failed = 0"))
        await _refused(lambda: reader.execute("DELETE FROM public.schema_migrations"))
        await _refused(lambda: reader.execute("CREATE TABLE public.anything (n int)"))
    finally:
        await reader.close()


async def test_provisioning_again_changes_nothing(provisioned: str) -> None:
    tracker = await _connect("tracker", provisioned)
    try:
        await tracker.execute(_TRACKER_ROW)
    finally:
        await tracker.close()
    await _provision(provisioned)
    await _provision(provisioned)
    for role in SERVICE_ROLES:
        assert await _migrate(provisioned, role) > 0  # nothing pending, nothing refused
    reader = await _connect(READER_ROLE, provisioned)
    try:
        assert await reader.fetchval("SELECT count(*) FROM tracker.messages_v1") == 1
    finally:
        await reader.close()


async def test_a_database_that_broadcast_owned_is_handed_over(
    database: str, tmp_path: Path
) -> None:
    # As before the roles: `broadcast` migrated every service up to its last migration then,
    # the one before its reader grants (the composer has none: its views are not read).
    for role in SERVICE_ROLES:
        before = tmp_path / role
        shutil.copytree(SERVICES_DIR / role / "migrations", before)
        for grants in before.glob("*_reader_grants.sql"):
            for later in before.glob("*.sql"):
                if later.name >= grants.name:
                    later.unlink()
        await _migrate(database, role, user=POSTGRES_USER, migrations=before)
    admin = await _connect(POSTGRES_USER, database)
    try:
        await admin.execute(_TRACKER_ROW)
        assert await _owners(admin) == {role: {POSTGRES_USER} for role in SERVICE_ROLES}
    finally:
        await admin.close()

    await _provision(database)
    for role in SERVICE_ROLES:  # each role applies what was left: its grants to the reader
        assert await _migrate(database, role) > 0

    admin = await _connect(POSTGRES_USER, database)
    try:
        assert await _owners(admin) == {role: {role} for role in SERVICE_ROLES}
        # The administrator still reads and writes every schema, through its memberships.
        assert await admin.fetchval("SELECT count(*) FROM tracker.messages") == 1
        await admin.execute("UPDATE dispatcher.rate_limits SET tokens = 0")
    finally:
        await admin.close()
    tracker = await _connect("tracker", database)
    try:
        await tracker.execute(_TRACKER_ROW)
        await tracker.execute("SELECT nextval('tracker.actions_action_id_seq')")
    finally:
        await tracker.close()
    reader = await _connect(READER_ROLE, database)
    try:
        assert await reader.fetchval("SELECT count(*) FROM tracker.messages_v1") == 2
    finally:
        await reader.close()


async def test_the_stacks_services_connect_as_their_roles(db: asyncpg.Pool) -> None:
    """The running stack: its database was provisioned and each service uses its own role."""
    async with db.acquire() as connection:
        sessions = await connection.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
        )
        assert set(SERVICE_ROLES) <= {row["usename"] for row in sessions}
        assert await _owners(connection) == {role: {role} for role in SERVICE_ROLES}
