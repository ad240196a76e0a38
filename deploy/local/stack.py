"""Local infrastructure without Docker: PostgreSQL, a KRaft Kafka broker and the SMTP/SMS sinks.

    python deploy/local/stack.py up [COMPONENT...]     # default: all, in table order
    python deploy/local/stack.py down [COMPONENT...]   # default: all, in reverse order
    python deploy/local/stack.py status

Standard library only, because it runs before the project's dependencies are installed (the
sinks themselves run with the venv's python). Linux only: process groups are inspected in /proc.

Runtime state lives in $BROADCAST_RUN_DIR (default /tmp/broadcast-engine), not in the repo: the
repo may sit in a root-owned 0700 directory that the `postgres` OS user cannot traverse. Kafka's
jars are cached in $BROADCAST_CACHE_DIR (default ~/.cache/broadcast-engine) so that later runs
and fresh clones on the same machine do not download them again.

To add a component, add one Component to the tuple in `components()`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypedDict

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

POSTGRES_PORT = 15432
KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
SMTP_PORT = 10025
SMTP_HTTP_PORT = 10026
SMS_PORT = 10080
SERVICE_PORTS = {"targeting": 9101, "composer": 9102, "dispatcher": 9103, "tracker": 9104}

POSTGRES_USER = "broadcast"
POSTGRES_PASSWORD = "broadcast"  # noqa: S105 - loopback-only dev/test cluster
POSTGRES_DB = "broadcast"
KAFKA_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
SMTP_CONTROL_URL = f"http://{HOST}:{SMTP_HTTP_PORT}"
SMS_URL = f"http://{HOST}:{SMS_PORT}"

KAFKA_HEAP = ("-Xms512m", "-Xmx512m")
POLL_INTERVAL = 0.2


class StackError(Exception):
    """A one-line, user-facing failure: names the component and where to look."""


ReadyCheck = Callable[[], bool]


@dataclass(frozen=True)
class Component:
    name: str
    command: Sequence[str]
    # Ports the component listens on: checked free before start, and by the default readiness.
    ports: Sequence[int]
    env: Mapping[str, str] = field(default_factory=dict)
    # None: every port in `ports` accepts a TCP connection.
    ready: ReadyCheck | None = None
    # One-time or per-start preparation (downloads, initdb, formatting), run before `command`.
    prepare: Callable[[], None] | None = None
    # Run once after the component first answers (e.g. create roles); not on a no-op `up`.
    after_start: Callable[[], None] | None = None
    cwd: Path | None = None
    # OS user to run as (only possible when we are root).
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    @property
    def log_file(self) -> Path:
        return log_file(self.name)

    @property
    def pid_file(self) -> Path:
        return run_dir() / "pids" / f"{self.name}.pid"

    def is_ready(self) -> bool:
        if self.ready is not None:
            return self.ready()
        return all(tcp_answers(port) for port in self.ports)


# --- locations -------------------------------------------------------------------------------


def run_dir() -> Path:
    # /tmp on purpose: the `postgres` OS user must be able to traverse it (see module doc).
    return Path(os.environ.get("BROADCAST_RUN_DIR") or "/tmp/broadcast-engine")  # noqa: S108


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "broadcast-engine"
    return Path(os.environ.get("BROADCAST_CACHE_DIR") or default)


def log_file(name: str) -> Path:
    return run_dir() / "logs" / f"{name}.log"


def venv_python() -> str:
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


# --- process management ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    pid: int
    state: str
    ppid: int
    pgid: int
    start_time: str  # clock ticks since boot: tells a recycled pid from the original


def _proc(pid: int) -> _Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return _Proc(pid, fields[0], int(fields[1]), int(fields[2]), fields[19])


def _processes() -> list[_Proc]:
    """Every live (non-zombie) process."""
    found = (_proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in found if p is not None and p.state != "Z"]


def process_tree(pgid: int) -> dict[int, str]:
    """pid -> start time of the members of process group `pgid` and all their descendants.

    Descendants matter because some children leave the group: PostgreSQL's backends call
    setsid(), so killing the postmaster's group alone would orphan them.
    """
    procs = _processes()
    children: dict[int, list[_Proc]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    pending = [p for p in procs if p.pgid == pgid]
    tree: dict[int, str] = {}
    while pending:
        p = pending.pop()
        if p.pid not in tree:
            tree[p.pid] = p.start_time
            pending.extend(children.get(p.pid, []))
    return tree


def _still_running(tree: Mapping[int, str]) -> list[int]:
    alive = []
    for pid, started in tree.items():
        _reap(pid)
        p = _proc(pid)
        if p is not None and p.state != "Z" and p.start_time == started:
            alive.append(pid)
    return alive


# Processes started by this interpreter (library use from a test run). Holding them keeps
# Popen from warning "still running" when garbage-collected, and lets us reap them on exit.
_started: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    proc = _started.get(pid)
    if proc is not None and proc.poll() is not None:
        del _started[pid]


def running_pid(pid_file: Path) -> int | None:
    """The process group recorded in `pid_file` if any member still runs; else clean up."""
    try:
        record = json.loads(pid_file.read_text())
        pid, started = int(record["pid"]), str(record["start_time"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return None
    _reap(pid)
    leader = _proc(pid)
    # A live pid with another start time is a recycled pid: our group is long gone.
    if (leader is None or leader.start_time == started) and process_tree(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def start_process(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached in its own session (so its whole group can be stopped), with
    stdout and stderr appended to `log_file`, and record it in `pid_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(
            f"\n----- {datetime.now().isoformat(timespec='seconds')} start: "
            f"{' '.join(argv)}\n".encode()
        )
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            **_as_user(user),
        )
    started = _proc(proc.pid)  # a child that already died is an unreaped zombie: still there
    record = {"pid": proc.pid, "start_time": started and started.start_time, "argv": list(argv)}
    pid_file.write_text(json.dumps(record))
    _started[proc.pid] = proc
    return proc


class _UserArgs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _as_user(user: str | None) -> _UserArgs:
    """subprocess arguments to run as `user`, without root's supplementary groups."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _wait_gone(tree: Mapping[int, str], timeout: float) -> list[int]:
    """Wait for every process of `tree` to exit; returns those still running at the timeout."""
    deadline = time.monotonic() + timeout
    while (alive := _still_running(tree)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def stop_process(pid_file: Path, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Stop the process group recorded in `pid_file` and every descendant: `sig` to the group,
    then SIGKILL to whatever is left after `timeout`.

    Returns False when nothing was running. Safe to call repeatedly.
    """
    pgid = running_pid(pid_file)
    if pgid is None:
        return False
    tree = process_tree(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    for pid in _wait_gone(tree, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(tree, 10.0)
    pid_file.unlink(missing_ok=True)
    return True


# --- readiness -------------------------------------------------------------------------------


def tcp_answers(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_tcp(port: int, host: str = HOST, timeout: float = 30.0) -> None:
    """Block until `host:port` accepts a TCP connection; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while not tcp_answers(port, host):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept a connection within {timeout}s")
        time.sleep(POLL_INTERVAL)


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when `host:port` cannot be bound, i.e. something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so lingering TIME_WAIT sockets do not count as in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(port: int, path: str) -> ReadyCheck:
    def check() -> bool:
        # http.client rather than urllib: urllib would honour *_proxy variables.
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            conn.request("GET", path)
            return 200 <= conn.getresponse().status < 300
        except OSError:
            return False
        finally:
            conn.close()

    return check


def all_of(*checks: ReadyCheck) -> ReadyCheck:
    return lambda: all(check() for check in checks)


# --- PostgreSQL ------------------------------------------------------------------------------


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
        **_as_user(user),
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


def _postgres() -> Component:
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


# --- Kafka -----------------------------------------------------------------------------------

KAFKA_DEPLOY = REPO / "deploy" / "kafka"


def kafka_version() -> str:
    match = re.search(
        r"<kafka\.version>([^<]+)</kafka\.version>", (KAFKA_DEPLOY / "pom.xml").read_text()
    )
    if match is None:
        raise StackError(f"kafka: no <kafka.version> in {KAFKA_DEPLOY / 'pom.xml'}")
    return match.group(1).strip()


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "libs"


def _kafka_jars_complete(libs: Path) -> bool:
    marker = libs.parent / "libs.complete"
    try:
        names = marker.read_text().split()
    except FileNotFoundError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


def ensure_kafka_jars() -> Path:
    """Download Kafka's runtime classpath with Maven unless the cache already holds it."""
    libs = kafka_libs()
    if _kafka_jars_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("kafka: `mvn` is not on PATH; it is needed once to fetch the jars")
    partial = libs.parent / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log = log_file("kafka-download")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"kafka: downloading jars with Maven into {libs} (once)", flush=True)
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-f",
                    str(KAFKA_DEPLOY / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={partial}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"kafka: jar download timed out; see {log}") from None
    jars = sorted(p.name for p in partial.glob("*.jar"))
    if result.returncode != 0 or not jars:
        raise StackError(f"kafka: jar download failed (mvn exit {result.returncode}); see {log}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    # Written last, so an interrupted download is retried rather than trusted.
    (libs.parent / "libs.complete").write_text("\n".join(jars) + "\n")
    return libs


def _kafka_dirs() -> tuple[Path, Path]:
    """(state dir holding config and cluster id; log.dirs)."""
    base = run_dir() / "kafka"
    return base, base / "data"


def _java_command(libs: Path) -> list[str]:
    return [
        "java",
        *KAFKA_HEAP,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
    ]


def _new_cluster_id() -> str:
    # Same format as `kafka-storage random-uuid` (url-safe base64 of a UUID), without paying a
    # JVM start; Kafka also avoids a leading '-' so the id is not read as a CLI flag.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _prepare_kafka() -> None:
    libs = ensure_kafka_jars()
    base, data = _kafka_dirs()
    base.mkdir(parents=True, exist_ok=True)
    template = string.Template((KAFKA_DEPLOY / "server.properties.template").read_text())
    props = base / "server.properties"
    props.write_text(
        template.substitute(
            node_id=1, broker_port=KAFKA_PORT, controller_port=KAFKA_CONTROLLER_PORT, log_dirs=data
        )
    )
    id_file = base / "cluster.id"
    if not id_file.exists():
        id_file.write_text(_new_cluster_id() + "\n")
    if (data / "meta.properties").exists():
        return
    log = log_file("kafka")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                [
                    *_java_command(libs),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    id_file.read_text().strip(),
                    "-c",
                    str(props),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        except FileNotFoundError:
            raise StackError("kafka: `java` is not on PATH (Java 17+ is needed)") from None
    if result.returncode != 0:
        raise StackError(f"kafka: formatting storage failed; see {log}")


def kafka_answers(port: int = KAFKA_PORT, timeout: float = 2.0) -> bool:
    """True when a broker on `port` answers an ApiVersions request without error.

    Stronger than a TCP connect: the broker only serves requests once it has joined the
    KRaft quorum and is unfenced.
    """
    client_id = b"stack.py"
    correlation_id = 7
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation id, client id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 10)  # size, correlation id, error code
    except OSError:
        return False
    _, got_correlation, error_code = struct.unpack(">iih", header)
    return bool(got_correlation == correlation_id and error_code == 0)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _kafka() -> Component:
    base, _ = _kafka_dirs()
    return Component(
        name="kafka",
        command=[*_java_command(kafka_libs()), "kafka.Kafka", str(base / "server.properties")],
        ports=(KAFKA_PORT, KAFKA_CONTROLLER_PORT),
        ready=kafka_answers,
        prepare=_prepare_kafka,
        cwd=base,
        start_timeout=120.0,
        stop_timeout=30.0,
    )


# --- the component table ---------------------------------------------------------------------


def _python_module(module: str, *args: str) -> list[str]:
    return [venv_python(), "-m", module, *args]


def components() -> dict[str, Component]:
    """All components, in start order. Built on each call so that the BROADCAST_* variables
    are read when used."""
    python_env = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    table = (
        _postgres(),
        _kafka(),
        Component(
            name="smtp-sink",
            command=_python_module(
                "deploy.local.smtp_sink",
                "--smtp-port",
                str(SMTP_PORT),
                "--http-port",
                str(SMTP_HTTP_PORT),
            ),
            ports=(SMTP_PORT, SMTP_HTTP_PORT),
            env=python_env,
            ready=all_of(lambda: tcp_answers(SMTP_PORT), http_ok(SMTP_HTTP_PORT, "/_sink/health")),
            cwd=REPO,
            start_timeout=20.0,
        ),
        Component(
            name="sms-sink",
            command=_python_module("deploy.local.sms_sink", "--port", str(SMS_PORT)),
            ports=(SMS_PORT,),
            env=python_env,
            ready=http_ok(SMS_PORT, "/_sink/health"),
            cwd=REPO,
            start_timeout=20.0,
        ),
        *(_service(name, port) for name, port in SERVICE_PORTS.items()),
    )
    return {component.name: component for component in table}


def _service(name: str, port: int) -> Component:
    """One of the four services, as `faststream run` starts it in every deployment."""
    return Component(
        name=name,
        command=_python_module(
            "faststream",
            "run",
            "--factory",
            f"services.{name}.app:create_app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--access-log",
            "false",
        ),
        ports=(port,),
        env={"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        ready=http_ok(port, "/health"),
        cwd=REPO,
        start_timeout=60.0,
    )


# --- up / down / status ----------------------------------------------------------------------


@contextlib.contextmanager
def _stack_lock() -> Iterator[None]:
    """Serialise concurrent up/down calls (e.g. parallel test workers)."""
    run_dir().mkdir(parents=True, exist_ok=True)
    with (run_dir() / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _wait_ready(component: Component, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + component.start_timeout
    while not component.is_ready():
        if proc is not None and proc.poll() is not None:
            stop_process(component.pid_file, timeout=5.0)  # leftovers of its group
            raise StackError(
                f"{component.name}: exited with code {proc.returncode} during "
                f"startup; see {component.log_file}"
            )
        if time.monotonic() >= deadline:
            stop_process(component.pid_file, sig=component.stop_signal, timeout=10.0)
            raise StackError(
                f"{component.name}: not answering after "
                f"{component.start_timeout:.0f}s; see {component.log_file}"
            )
        time.sleep(POLL_INTERVAL)


def start_component(component: Component) -> str:
    """Start one component unless it already runs and answers; returns a status line."""
    pid = running_pid(component.pid_file)
    if pid is not None:
        _wait_ready(component, None)  # may be another `up` still starting it
        return f"{component.name}: already running (pid {pid})"
    for port in component.ports:
        # A process killed a moment ago may still be releasing its sockets.
        deadline = time.monotonic() + 5.0
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        if port_in_use(port):
            raise StackError(
                f"{component.name}: port {port} is taken by a process stack.py "
                f"did not start (see `ss -ltnp 'sport = :{port}'`)"
            )
    began = time.monotonic()
    if component.prepare is not None:
        component.prepare()
    try:
        proc = start_process(
            component.command,
            log_file=component.log_file,
            pid_file=component.pid_file,
            env=component.env,
            cwd=component.cwd,
            user=component.user,
        )
    except FileNotFoundError:
        raise StackError(
            f"{component.name}: cannot run {component.command[0]!r}: not found"
        ) from None
    _wait_ready(component, proc)
    if component.after_start is not None:
        component.after_start()
    return f"{component.name}: started (pid {proc.pid}) in {time.monotonic() - began:.1f}s"


def stop_component(component: Component) -> str:
    if stop_process(component.pid_file, sig=component.stop_signal, timeout=component.stop_timeout):
        return f"{component.name}: stopped"
    return f"{component.name}: not running"


def _select(names: Sequence[str]) -> list[Component]:
    table = components()
    unknown = [name for name in names if name not in table]
    if unknown:
        raise StackError(
            f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(table)}"
        )
    return [c for c in table.values() if not names or c.name in names]


def up(names: Sequence[str] = ()) -> None:
    """Start the named components (default: all) in table order; idempotent."""
    with _stack_lock():
        for component in _select(names):
            print(start_component(component), flush=True)


def down(names: Sequence[str] = ()) -> None:
    """Stop the named components (default: all) in reverse table order; idempotent."""
    with _stack_lock():
        for component in reversed(_select(names)):
            print(stop_component(component), flush=True)


def status() -> bool:
    """Print one line per component; True when all run and answer."""
    healthy = True
    for component in components().values():
        pid = running_pid(component.pid_file)
        if pid is None:
            taken = [str(p) for p in component.ports if port_in_use(p)]
            state = "stopped" + (
                f" (port {','.join(taken)} taken by another process)" if taken else ""
            )
            healthy = False
        elif component.is_ready():
            state = f"running (pid {pid})"
        else:
            state = f"running (pid {pid}) but NOT answering"
            healthy = False
        print(f"{component.name:<10} {state:<26} log: {component.log_file}")
    return healthy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description="Local infrastructure runner")
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("up", "down"):
        sub.add_parser(action).add_argument("components", nargs="*", metavar="COMPONENT")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            up(args.components)
        elif args.action == "down":
            down(args.components)
        else:
            return 0 if status() else 1
    except StackError as exc:
        print(f"stack.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
