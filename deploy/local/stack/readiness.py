"""Is it up yet: ports that answer, free ports, HTTP health routes."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

from .config import HOST, POLL_INTERVAL

ReadyCheck = Callable[[], bool]


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
