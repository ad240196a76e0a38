"""The migration runner against the real PostgreSQL."""

from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from shared.db import DatabaseTooNew, migrate

pytestmark = pytest.mark.stack


async def test_applies_each_file_once_and_refuses_a_newer_database(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    service = f"probe_{uuid4().hex[:8]}"
    (tmp_path / "001_create.sql").write_text(
        f"CREATE SCHEMA {service}; CREATE TABLE {service}.t (n int);"
    )
    (tmp_path / "002_seed.sql").write_text(f"INSERT INTO {service}.t VALUES (1);")
    try:
        assert await migrate(db, service, tmp_path) == 2
        assert await migrate(db, service, tmp_path) == 2  # nothing applied twice
        assert await db.fetchval(f"SELECT count(*) FROM {service}.t") == 1
        recorded = await db.fetch(
            "SELECT version, name FROM public.schema_migrations WHERE service = $1 "
            "ORDER BY version",
            service,
        )
        assert [(r["version"], r["name"]) for r in recorded] == [
            (1, "001_create.sql"),
            (2, "002_seed.sql"),
        ]

        (tmp_path / "002_seed.sql").unlink()
        with pytest.raises(DatabaseTooNew, match="version 2"):
            await migrate(db, service, tmp_path)
    finally:
        await db.execute(f"DROP SCHEMA IF EXISTS {service} CASCADE")
        await db.execute("DELETE FROM public.schema_migrations WHERE service = $1", service)


async def test_a_failing_migration_leaves_nothing_behind(db: asyncpg.Pool, tmp_path: Path) -> None:
    service = f"probe_{uuid4().hex[:8]}"
    (tmp_path / "001_broken.sql").write_text(
        f"CREATE SCHEMA {service}; CREATE TABLE {service}.t (n int); SELECT 1/0;"
    )
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(db, service, tmp_path)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", service
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM public.schema_migrations WHERE service = $1", service
        )
        == 0
    )
