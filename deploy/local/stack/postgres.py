"""PostgreSQL: a throwaway cluster on Debian's binaries, its app role and database, psql."""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from deploy.postgres.credentials import ROLES, password_variable

from .component import Component, StackError
from .config import (
    HOST,
    POSTGRES_DB,
    POSTGRES_PASSWORD,
    POSTGRES_PORT,
    POSTGRES_USER,
    REPO,
    log_file,
    run_dir,
    venv_python,
)
from .processes import as_user


def postgres_url(database: str = POSTGRES_DB) -> str:
    return f"postgresql://{POSTGRES_USER}:{POSTGRES_PASSWORD}@{HOST}:{POSTGRES_PORT}/{database}"


@functools.cache
def _pg_bin() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise StackError(
            "postgres: no PostgreSQL server binaries found (apt-get install postgresql)"
        )
    return versions[-1].parent


def _pg_user() -> str | None:
    # initdb and postgres refuse to run as root.
    return "postgres" if os.geteuid() == 0 else None


def _pg_dirs() -> tuple[Path, Path]:
    """(base dir, also the unix socket dir; data dir)."""
    base = run_dir() / "postgres"
    return base, base / "data"


def _run_quiet(
    argv: Sequence[str], *, user: str | None, cwd: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        **as_user(user),
    )


def _prepare_postgres() -> None:
    base, data = _pg_dirs()
    user = _pg_user()
    base.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        base.chmod(0o700)
        if _run_quiet(["test", "-w", str(base)], user=user, cwd=Path("/")).returncode != 0:
            raise StackError(
                f"postgres: the {user} OS user cannot reach {base}; set "
                "BROADCAST_RUN_DIR to a directory outside any 0700 parent"
            )
    if (data / "PG_VERSION").exists():
        return
    shutil.rmtree(data, ignore_errors=True)  # a half-done initdb leaves a non-empty dir
    log = log_file("postgres")
    log.parent.mkdir(parents=True, exist_ok=True)
    # --no-sync: a throwaway cluster does not need initdb's final fsync.
    result = _run_quiet(
        [
            str(_pg_bin() / "initdb"),
            "-D",
            str(data),
            "-E",
            "UTF8",
            "--locale=C",
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ],
        user=user,
        cwd=base,
    )
    with log.open("a") as out:
        out.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"postgres: initdb failed (exit {result.returncode}); see {log}")


def psql(sql: str, *, database: str = "postgres") -> str:
    """Run SQL as the cluster superuser over the unix socket; returns unaligned tuples output."""
    base, _ = _pg_dirs()
    result = _run_quiet(
        [
            str(_pg_bin() / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(base),
            "-p",
            str(POSTGRES_PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ],
        user=_pg_user(),
        cwd=base,
        timeout=60.0,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"postgres: psql failed: {detail}")
    return result.stdout.strip()


def _ensure_app_database() -> None:
    psql(
        "DO $$ BEGIN "
        f"IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{POSTGRES_USER}') THEN "
        f"ALTER ROLE {POSTGRES_USER} LOGIN CREATEDB PASSWORD '{POSTGRES_PASSWORD}'; "
        f"ELSE CREATE ROLE {POSTGRES_USER} LOGIN CREATEDB PASSWORD '{POSTGRES_PASSWORD}'; "
        "END IF; END $$"
    )
    if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DB}'"):  # noqa: S608
        psql(f"CREATE DATABASE {POSTGRES_DB} OWNER {POSTGRES_USER}")
    provision_roles(POSTGRES_DB)


def provision_roles(database: str) -> None:
    """The services' roles and the reader in `database`, by the administrator's command
    (deploy/postgres/roles.py) as the cluster's superuser over the unix socket. At every start,
    so that a run dir from before the roles has its schemas handed over."""
    base, _ = _pg_dirs()
    environment = {
        **os.environ,
        "POSTGRES_ADMIN_URL": f"postgresql://postgres@/{database}?host={base}&port={POSTGRES_PORT}",
        **{password_variable(role): POSTGRES_PASSWORD for role in ROLES},
    }
    # A subprocess of the venv's Python: the runner itself needs nothing but the standard
    # library (`make down` runs it without the venv).
    result = subprocess.run(
        [venv_python(), "-m", "deploy.postgres.roles"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"postgres: provisioning the roles failed: {detail}")


_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def create_database(name: str, *, owner: str = POSTGRES_USER) -> str:
    """(Re)create an empty database `name` owned by `owner`; returns its connection URL.

    Any existing database of that name is dropped first, disconnecting its sessions.
    """
    if not _DB_NAME.fullmatch(name):
        raise StackError(f"postgres: invalid database name {name!r} (use [a-z_][a-z0-9_]*)")
    drop_database(name)
    psql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    return postgres_url(name)


def drop_database(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise StackError(f"postgres: invalid database name {name!r} (use [a-z_][a-z0-9_]*)")
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_ready() -> bool:
    try:
        result = subprocess.run(
            [str(_pg_bin() / "pg_isready"), "-q", "-h", HOST, "-p", str(POSTGRES_PORT), "-t", "1"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def postgres() -> Component:
    base, data = _pg_dirs()
    settings = {
        "listen_addresses": HOST,
        "unix_socket_directories": str(base),
        "max_connections": "200",
        # A disposable dev/test cluster: durability against a crash of the machine is traded
        # for speed. Never copy these two settings to a real deployment. Commits stay
        # synchronous: a killed PostgreSQL keeps every commit it acknowledged (written to the
        # OS, not flushed), as a real one does, so the database-kill fault test is honest.
        "fsync": "off",
        "full_page_writes": "off",
    }
    try:
        server = str(_pg_bin() / "postgres")
    except StackError:
        server = "postgres"  # reported clearly by initdb in prepare, if PostgreSQL is missing
    command = [server, "-D", str(data), "-p", str(POSTGRES_PORT)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return Component(
        name="postgres",
        command=command,
        ports=(POSTGRES_PORT,),
        ready=_postgres_ready,
        prepare=_prepare_postgres,
        after_start=_ensure_app_database,
        cwd=base,
        user=_pg_user(),
        # SIGTERM is a "smart" shutdown that waits for every client to disconnect; SIGINT
        # is the "fast" one that ends sessions.
        stop_signal=signal.SIGINT,
        start_timeout=60.0,
    )
