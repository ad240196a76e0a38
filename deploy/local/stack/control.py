"""up, down and status: start components in table order, stop them in reverse."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from collections.abc import Iterator, Sequence

from .component import Component, StackError
from .config import (
    POLL_INTERVAL,
    SERVICE_PORTS,
    environment,
    instance_number,
    instances,
    run_dir,
)
from .kafka import BROKERS_VARIABLE
from .processes import running_pid, start_process, stop_process
from .readiness import port_in_use
from .table import components


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
                f"{component.name}: port {port} is taken by a process the stack "
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


def recorded_settings() -> dict[str, str]:
    """BROADCAST_KAFKA_BROKERS and BROADCAST_INSTANCES widened to the largest stack whose pid
    files are recorded: a bare `down` after `BROADCAST_INSTANCES=2 make up` must stop the second
    instances too, and the cluster's nodes, though it is not given the variables."""
    recorded = [path.stem for path in (run_dir() / "pids").glob("*.pid")]
    counts = [n for name in recorded for s in SERVICE_PORTS if (n := instance_number(name, s))]
    widened: dict[str, str] = {}
    # A single node is `kafka`; a cluster's nodes are `kafka-1`...
    if any(name != "kafka" and instance_number(name, "kafka") for name in recorded):
        widened[BROKERS_VARIABLE] = "3"
    if counts and max(counts) > instances():
        widened["BROADCAST_INSTANCES"] = str(max(counts))
    return widened


def down(names: Sequence[str] = ()) -> None:
    """Stop the named components (default: all that run, whatever settings started them) in
    reverse table order; idempotent."""
    with _stack_lock(), environment(recorded_settings() if not names else {}):
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
