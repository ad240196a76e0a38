"""The processes the bench runs beside the stack: Postfix's smtp-sink and a bench dispatcher.

Both have their own log and pid files next to the stack's (`make down` does not know them),
and both are stopped on the way out of their context, whatever happened, so that the stack is
left as it was found.
"""

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from bench.errors import BenchError
from deploy.local import stack

HOST = "127.0.0.1"
SINK_PORT = 10125
SINK_BACKLOG = 1024
DISPATCHER = "dispatcher"
# The bench dispatcher joins the consumer group of the one it replaces: let the rebalance settle
# before the clock starts, so it is not counted as pipeline time.
GROUP_SETTLE_S = 5.0


def _bench_paths(name: str) -> tuple[Path, Path]:
    """(log file, pid file) of a process the bench starts, next to the stack's own."""
    return stack.log_file(name), stack.run_dir() / "pids" / f"{name}.pid"


SINK_LOG, SINK_PID = _bench_paths("bench-smtp-sink")
DISPATCHER_LOG, DISPATCHER_PID = _bench_paths("bench-dispatcher")


def start_smtp_sink() -> None:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        raise BenchError("smtp-sink not found: run deploy/local/install.sh postfix")
    stack.stop_process(SINK_PID, timeout=5.0)  # a leftover of an interrupted bench
    if stack.port_in_use(SINK_PORT):
        raise BenchError(f"port {SINK_PORT} is taken by another process")
    # A fresh log: the counters parsed from it must be this sink's only.
    SINK_LOG.unlink(missing_ok=True)
    # -c: running counters on stdout; -t 3600: never drop an idle dispatcher connection during
    # the run (the default 100 s would); -u: smtp-sink refuses to keep root privileges.
    argv = [binary, "-c", "-t", "3600"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    argv += [f"{HOST}:{SINK_PORT}", str(SINK_BACKLOG)]
    stack.start_process(argv, log_file=SINK_LOG, pid_file=SINK_PID)
    stack.wait_tcp(SINK_PORT, timeout=10.0)


@contextlib.contextmanager
def smtp_sink_running() -> Iterator[None]:
    try:
        start_smtp_sink()
        yield
    finally:
        stack.stop_process(SINK_PID, timeout=5.0)


def start_bench_dispatcher() -> None:
    """The stack's dispatcher command, relaying to smtp-sink; returns once /health answers."""
    component = stack.components()[DISPATCHER]
    stack.stop_process(DISPATCHER_PID, timeout=20.0)  # a leftover of an interrupted bench
    (port,) = component.ports
    if stack.port_in_use(port):
        raise BenchError(f"port {port} still taken after stopping the stack's dispatcher")
    proc = stack.start_process(
        component.command,
        log_file=DISPATCHER_LOG,
        pid_file=DISPATCHER_PID,
        env={**component.env, "DISPATCHER_SMTP_PORT": str(SINK_PORT)},
        cwd=component.cwd,
    )
    healthy = stack.http_ok(port, "/health")
    deadline = time.monotonic() + component.start_timeout
    while not healthy():
        if proc.poll() is not None:
            raise BenchError(f"bench dispatcher exited ({proc.returncode}); see {DISPATCHER_LOG}")
        if time.monotonic() >= deadline:
            raise BenchError(f"bench dispatcher not healthy in time; see {DISPATCHER_LOG}")
        time.sleep(0.2)
    time.sleep(GROUP_SETTLE_S)


@contextlib.contextmanager
def stack_dispatcher_stopped() -> Iterator[None]:
    """Run the body without the stack's dispatcher. On the way out the bench dispatcher, if the
    body started one, is stopped and the stack's is started again if it was running."""
    was_running = stack.running_pid(stack.components()[DISPATCHER].pid_file) is not None
    try:
        if was_running:
            stack.down([DISPATCHER])
        yield
    finally:
        try:
            stack.stop_process(DISPATCHER_PID, timeout=20.0)
        finally:
            if was_running:
                stack.up([DISPATCHER])


@contextlib.contextmanager
def dispatcher_swapped() -> Iterator[None]:
    """Run the body with the bench dispatcher; put the stack's dispatcher back as it was."""
    with stack_dispatcher_stopped():
        start_bench_dispatcher()
        yield
