"""The four services as stack components."""

from __future__ import annotations

from dataclasses import replace

from shared.local_mode import LOCAL_MODE_VARIABLE

from .component import Component, python_module
from .config import HOST, INSTANCE_PORT_STEP, REQUEST_CLIENTS, SERVICE_PORTS, kafka_dir
from .kafka import bootstrap, stack_nodes
from .kafka_secure import Secrets, principals, secure
from .readiness import http_ok


def service(name: str, instance: int = 1, port: int | None = None) -> Component:
    """Instance `instance` of one of the four services (`name`, then `name-2`, ... on the
    next ports, unless `port` is given), as `faststream run` starts it in every deployment,
    with the stack's request clients, in local mode: the stack runs on the development secrets,
    and every node of a cluster (BROADCAST_KAFKA_BROKERS=3) as its bootstrap servers. With
    BROADCAST_KAFKA_SECURE=1, it speaks to Kafka as its own principal."""
    if port is None:
        port = SERVICE_PORTS[name] + (instance - 1) * INSTANCE_PORT_STEP
    started = python_module(
        name if instance == 1 else f"{name}-{instance}",
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
        ports=(port,),
        ready=http_ok(port, "/health"),
        start_timeout=60.0,
    )
    local = {"BROADCAST_REQUEST_CLIENTS": REQUEST_CLIENTS, LOCAL_MODE_VARIABLE: "1"}
    cluster = stack_nodes()
    if len(cluster) > 1:
        # Every node, so that the service finds the cluster whichever node is down.
        local[f"{name.upper()}_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap(cluster)
    if name == "dispatcher" and instance > 1:
        # Its own claims in the ledger: the host's name, the default, is the first one's.
        local["DISPATCHER_INSTANCE_ID"] = f"dispatcher-{instance}"
    if secure():
        # Made here if the broker has not made them yet: the services' table is built first.
        files = Secrets(kafka_dir())
        files.ensure(principals())
        local |= files.client_env(f"{name.upper()}_", name)
    return replace(started, env={**started.env, **local})
