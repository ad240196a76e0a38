"""Local infrastructure without Docker: PostgreSQL, a KRaft Kafka broker, the SMTP/SMS sinks and
the four services, each a detached process group recorded in a pid file.

    python -m deploy.local.stack up [COMPONENT...]     # default: all, in table order
    python -m deploy.local.stack down [COMPONENT...]   # default: all, in reverse order
    python -m deploy.local.stack status

Linux only. Tests, the bench and the CLI use the names below; the modules are:
config (ports, credentials, run and cache dirs), component (what a component is), readiness,
processes (start, find and stop process groups, with psutil), postgres, kafka, sinks, services,
table (the components in start order) and control (up, down, status).

`down` with no pid file recorded needs only the standard library, so that `make down` works
with the system python before the venv exists.
"""

from .component import Component, StackError
from .config import (
    HOST,
    KAFKA_BOOTSTRAP,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    POSTGRES_DB,
    POSTGRES_PASSWORD,
    POSTGRES_PORT,
    POSTGRES_USER,
    REPO,
    SERVICE_PORTS,
    SMS_PORT,
    SMS_URL,
    SMTP_CONTROL_URL,
    SMTP_HTTP_PORT,
    SMTP_PORT,
    cache_dir,
    environment,
    instance_number,
    log_file,
    run_dir,
    venv_python,
)
from .control import down, start_component, status, stop_component, up
from .kafka import ensure_kafka_jars, kafka_answers, kafka_libs, kafka_version
from .postgres import create_database, drop_database, postgres_url, psql
from .processes import process_tree, running_pid, start_process, stop_process
from .readiness import ReadyCheck, all_of, http_ok, port_in_use, tcp_answers, wait_tcp
from .services import service
from .table import components

__all__ = [
    "HOST",
    "KAFKA_BOOTSTRAP",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_PORT",
    "POSTGRES_DB",
    "POSTGRES_PASSWORD",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "REPO",
    "SERVICE_PORTS",
    "SMS_PORT",
    "SMS_URL",
    "SMTP_CONTROL_URL",
    "SMTP_HTTP_PORT",
    "SMTP_PORT",
    "Component",
    "ReadyCheck",
    "StackError",
    "all_of",
    "cache_dir",
    "components",
    "create_database",
    "down",
    "drop_database",
    "ensure_kafka_jars",
    "environment",
    "http_ok",
    "instance_number",
    "kafka_answers",
    "kafka_libs",
    "kafka_version",
    "log_file",
    "port_in_use",
    "postgres_url",
    "process_tree",
    "psql",
    "run_dir",
    "running_pid",
    "service",
    "start_component",
    "start_process",
    "status",
    "stop_component",
    "stop_process",
    "tcp_answers",
    "up",
    "venv_python",
    "wait_tcp",
]
