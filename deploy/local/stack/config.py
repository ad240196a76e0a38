"""Where the local stack listens and keeps its state.

Runtime state lives in $BROADCAST_RUN_DIR (default /tmp/broadcast-engine), not in the repo: the
repo may sit in a root-owned 0700 directory that the `postgres` OS user cannot traverse. Kafka's
jars are cached in $BROADCAST_CACHE_DIR (default ~/.cache/broadcast-engine) so that later runs
and fresh clones on the same machine do not download them again. Both are read when used, not
at import, so that a caller may set them first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"

POSTGRES_PORT = 15432
KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
SMTP_PORT = 10025
SMTP_HTTP_PORT = 10026
SMS_PORT = 10080
SERVICE_PORTS = {"targeting": 9101, "composer": 9102, "dispatcher": 9103, "tracker": 9104}
# Instance k of a service (BROADCAST_INSTANCES) listens on its port + (k - 1) * this step.
INSTANCE_PORT_STEP = 10

POSTGRES_USER = "broadcast"
POSTGRES_PASSWORD = "broadcast"  # noqa: S105 - loopback-only dev/test cluster
POSTGRES_DB = "broadcast"
KAFKA_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
SMTP_CONTROL_URL = f"http://{HOST}:{SMTP_HTTP_PORT}"
SMS_URL = f"http://{HOST}:{SMS_PORT}"

POLL_INTERVAL = 0.2

# The services' request clients (shared/requesters.py): one, for the suite to prove that a
# client acts for its tenants only (tests/e2e/test_request_clients.py).
REQUEST_CLIENTS = '{"test-client": ["tenant-bound"]}'


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` set in this process's environment for the body, then as they were: the
    components are built from the BROADCAST_* and service variables when used."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_dir() -> Path:
    # /tmp on purpose: the `postgres` OS user must be able to traverse it (see module doc).
    return Path(os.environ.get("BROADCAST_RUN_DIR") or "/tmp/broadcast-engine")  # noqa: S108


def instances() -> int:
    """How many instances of each service the stack runs (BROADCAST_INSTANCES, default 1):
    the same consumer groups, each on its own port."""
    given = os.environ.get("BROADCAST_INSTANCES") or "1"
    if not given.isdigit() or not 1 <= int(given) <= 9:
        raise ValueError(f"BROADCAST_INSTANCES must be a whole number from 1 to 9, not {given!r}")
    return int(given)


def instance_number(component: str, group: str) -> int | None:
    """Which of `group`'s instances a component is, by the names the table gives them: 1 for
    `group` itself, n for `group-n` (`dispatcher-2`, the cluster's `kafka-3`); None for a
    component of another group."""
    found = re.fullmatch(rf"{re.escape(group)}(?:-(\d+))?", component)
    return None if found is None else int(found[1] or 1)


def kafka_dir() -> Path:
    """The stack's broker's state: config, cluster id, a secure broker's secrets, log.dirs."""
    return run_dir() / "kafka"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "broadcast-engine"
    return Path(os.environ.get("BROADCAST_CACHE_DIR") or default)


def log_file(name: str) -> Path:
    return run_dir() / "logs" / f"{name}.log"


def pid_file(name: str) -> Path:
    return run_dir() / "pids" / f"{name}.pid"


def venv_python() -> str:
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable
