"""One PostgreSQL role per service and a read-only role for dashboards, provisioned as code.

An administrator runs it once per database, and again at will (it is idempotent):

    POSTGRES_ADMIN_URL=postgresql://<superuser>:...@host:port/broadcast \\
    POSTGRES_TARGETING_PASSWORD=... POSTGRES_COMPOSER_PASSWORD=... \\
    POSTGRES_DISPATCHER_PASSWORD=... POSTGRES_TRACKER_PASSWORD=... \\
    POSTGRES_READER_PASSWORD=... python -m deploy.postgres.roles

What the database holds afterwards, whatever it held before:
- `targeting`, `composer`, `dispatcher`, `tracker`: login roles without any other attribute. Each
  owns the schema of its name and everything in it; objects another role owned there (all of
  them, in a database from before the roles, where `broadcast` owned everything) are handed
  over. No role has any right on another's schema.
- `broadcast_reader`: a login role with USAGE on the four schemas. Each service's migrations
  grant it SELECT on the views they create (the views do not exist yet when a database is
  provisioned before its services first start).
- `public.schema_migrations`: owned by the database's owner; a service's role reads and adds
  only the rows of the service named like it (row level security), and changes none.
- The database's owner (`broadcast` locally: the tests, the CLI and the bench connect as it) is
  a member of the four service roles, so it still reads and writes every schema.

The local runner (deploy/local/stack/postgres.py) and docker-compose.yml's `postgres-roles`
run it at every start, with the password `broadcast` for every role.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import asyncpg

from deploy.postgres.credentials import (
    ADMIN_URL_VARIABLE,
    READER_ROLE,
    ROLES,
    SERVICE_ROLES,
    ProvisioningError,
    passwords_from,
)
from shared.db import Connection, create_migrations_table

# Relations are handed over tables first: a table takes its indexes and the sequences it owns
# with it, and PostgreSQL refuses to give such a sequence away on its own.
_TABLES = {"r": "TABLE", "p": "TABLE"}
_OTHER_RELATIONS = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def provision(connection: Connection, passwords: Mapping[str, str]) -> None:
    """Create or repair the roles, the schemas' ownership and the migrations table, in one
    transaction; `connection` is a superuser's, to the application database."""
    unknown = [role for role in ROLES if role not in passwords]
    if unknown:
        raise ProvisioningError(f"no password given for the roles {', '.join(unknown)}")
    async with connection.transaction():
        for role in ROLES:
            await _ensure_role(connection, role, passwords[role])
        owner = await connection.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        for role in SERVICE_ROLES:
            await _hand_over_schema(connection, role)
            await connection.execute(f"GRANT {role} TO {_quoted(owner)}")
        # PostgreSQL before 15 let every role create tables in `public`.
        await connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await _share_migrations_table(connection, owner)


async def _ensure_role(connection: Connection, role: str, password: str) -> None:
    if not await connection.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
        await connection.execute(f"CREATE ROLE {role}")
    # Every attribute spelled out: a role found with more (by hand, earlier) loses them.
    # ALTER ROLE takes no parameters: the server quotes the password.
    statement = await connection.fetchval(
        "SELECT format('ALTER ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
        "NOREPLICATION NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
        role,
        password,
    )
    await connection.execute(statement)


async def _hand_over_schema(connection: Connection, role: str) -> None:
    """The schema named `role`, created when missing, owned by `role` with all it holds."""
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}")
    await connection.execute(f"ALTER SCHEMA {role} OWNER TO {role}")
    for kinds in (_TABLES, _OTHER_RELATIONS):
        for relation in await connection.fetch(
            "SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relowner <> to_regrole($1) "
            "AND c.relkind::text = ANY($2::text[])",
            role,
            list(kinds),
        ):
            await connection.execute(
                f"ALTER {kinds[relation['kind']]} {relation['name']} OWNER TO {role}"
            )
    await connection.execute(f"REVOKE ALL ON SCHEMA {role} FROM PUBLIC")
    await connection.execute(f"GRANT USAGE ON SCHEMA {role} TO {READER_ROLE}")


async def _share_migrations_table(connection: Connection, owner: str) -> None:
    await create_migrations_table(connection)
    table = "public.schema_migrations"
    # The owner is not subject to row level security: the administrator's migrations (tests
    # in throwaway databases, probe schemas) record any service's rows as before.
    await connection.execute(f"ALTER TABLE {table} OWNER TO {_quoted(owner)}")
    await connection.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    await connection.execute(f"DROP POLICY IF EXISTS own_service ON {table}")
    await connection.execute(
        f"CREATE POLICY own_service ON {table} "
        "USING (service = current_user) WITH CHECK (service = current_user)"
    )
    await connection.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
    await connection.execute(f"GRANT SELECT, INSERT ON {table} TO {', '.join(SERVICE_ROLES)}")


async def _provision_at(url: str, passwords: Mapping[str, str]) -> None:
    connection = await asyncpg.connect(url)
    try:
        await provision(connection, passwords)
    finally:
        await connection.close()


def main() -> None:
    try:
        url = os.environ.get(ADMIN_URL_VARIABLE)
        if not url:
            raise ProvisioningError(f"{ADMIN_URL_VARIABLE}: not set (a superuser's database URL)")
        asyncio.run(_provision_at(url, passwords_from(os.environ)))
    except ProvisioningError as error:
        sys.exit(f"deploy.postgres.roles: {error}")
    print(f"deploy.postgres.roles: {', '.join(ROLES)} provisioned")


if __name__ == "__main__":
    main()
