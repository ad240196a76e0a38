"""The processes the bench runs beside the stack: Postfix's smtp-sink and the bench dispatchers
(one in place of each of the stack's).

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


def stack_dispatchers() -> list[stack.Component]:
    """The stack's dispatchers: one per BROADCAST_INSTANCES, in the same consumer group."""
    return [c for name, c in stack.components().items() if stack.instance_number(name, DISPATCHER)]


def bench_dispatchers() -> list[tuple[stack.Component, Path, Path]]:
    """Each stack dispatcher, with the (log file, pid file) of the bench one that replaces it."""
    return [(c, *_bench_paths(f"bench-{c.name}")) for c in stack_dispatchers()]


def stop_bench_dispatchers() -> None:
    for _, _, pid_file in bench_dispatchers():
        stack.stop_process(pid_file, timeout=20.0)


def _start_bench_dispatcher(component: stack.Component, log_file: Path, pid_file: Path) -> None:
    """One stack dispatcher's command, relaying to smtp-sink; returns once /health answers."""
    stack.stop_process(pid_file, timeout=20.0)  # a leftover of an interrupted bench
    (port,) = component.ports
    if stack.port_in_use(port):
        raise BenchError(f"port {port} still taken after stopping the stack's {component.name}")
    proc = stack.start_process(
        component.command,
        log_file=log_file,
        pid_file=pid_file,
        env={**component.env, "DISPATCHER_SMTP_PORT": str(SINK_PORT)},
        cwd=component.cwd,
    )
    healthy = stack.http_ok(port, "/health")
    deadline = time.monotonic() + component.start_timeout
    while not healthy():
        if proc.poll() is not None:
            raise BenchError(f"bench {component.name} exited ({proc.returncode}); see {log_file}")
        if time.monotonic() >= deadline:
            raise BenchError(f"bench {component.name} not healthy in time; see {log_file}")
        time.sleep(0.2)


def start_bench_dispatchers() -> None:
    """A bench dispatcher in place of each of the stack's, on its port and with its identity."""
    for component, log_file, pid_file in bench_dispatchers():
        _start_bench_dispatcher(component, log_file, pid_file)
    time.sleep(GROUP_SETTLE_S)


@contextlib.contextmanager
def stack_dispatcher_stopped() -> Iterator[None]:
    """Run the body without the stack's dispatchers. On the way out the bench dispatchers, if
    the body started any, are stopped and the stack's that were running are started again."""
    running = [c.name for c in stack_dispatchers() if stack.running_pid(c.pid_file) is not None]
    try:
        if running:
            stack.down(running)
        yield
    finally:
        try:
            stop_bench_dispatchers()
        finally:
            if running:
                stack.up(running)


@contextlib.contextmanager
def dispatcher_swapped() -> Iterator[None]:
    """Run the body with the bench dispatchers; put the stack's back as they were."""
    with stack_dispatcher_stopped():
        start_bench_dispatchers()
        yield
