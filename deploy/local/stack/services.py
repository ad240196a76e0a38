"""The four services as stack components."""

from __future__ import annotations

from dataclasses import replace

from .component import Component, python_module
from .config import HOST, REQUEST_CLIENTS
from .readiness import http_ok


def service(name: str, port: int) -> Component:
    """One of the four services, as `faststream run` starts it in every deployment, with the
    stack's request clients."""
    started = python_module(
        name,
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
    return replace(started, env={**started.env, "BROADCAST_REQUEST_CLIENTS": REQUEST_CLIENTS})
