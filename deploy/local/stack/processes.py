"""Detached process groups recorded in pid files: start, find, stop (with psutil).

A pid file holds the group leader's pid and start time: a live pid with another start time is
a recycled pid, and the group it named is long gone. The start time is in clock ticks since
boot, the kernel's own count, as pid files have always recorded it: a stack started by an
older checkout can still be stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from shared.clock import Clock, utc_now

from .component import StackError

try:
    import psutil
except ModuleNotFoundError:
    # `make down` falls back to the system python when there is no venv: with no pid file
    # recorded there is nothing to inspect, and `running_pid` says so without psutil.
    psutil = None  # type: ignore[assignment]


def _require_psutil(why: str) -> None:
    if psutil is None:
        raise StackError(f"psutil is needed to {why}: run deploy/local/install.sh first")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Processes started by this interpreter (library use from a test run). Holding them keeps
# Popen from warning "still running" when garbage-collected, and lets us reap them on exit.
_started: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    proc = _started.get(pid)
    if proc is not None and proc.poll() is not None:
        del _started[pid]


def _runs(proc: psutil.Process) -> bool:
    """Alive, not a zombie, and not a recycled pid."""
    _reap(proc.pid)
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_time(proc: psutil.Process) -> str:
    return str(round((proc.create_time() - psutil.boot_time()) * _CLOCK_TICKS))


def _members(pgid: int) -> list[psutil.Process]:
    """The live members of process group `pgid` and all their descendants.

    Descendants matter because some children leave the group: PostgreSQL's backends call
    setsid(), so killing the postmaster's group alone would orphan them.
    """
    tree: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            if os.getpgid(proc.pid) == pgid and _runs(proc):
                tree[proc.pid] = proc
                tree.update((child.pid, child) for child in proc.children(recursive=True))
    return [proc for proc in tree.values() if _runs(proc)]


def process_tree(pgid: int) -> dict[int, str]:
    """pid -> start time of the live members of process group `pgid` and their descendants."""
    return {proc.pid: _start_time(proc) for proc in _members(pgid)}


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
    _require_psutil(f"check the process recorded in {pid_file}")
    _reap(pid)
    try:
        leader_started = _start_time(psutil.Process(pid))
    except psutil.NoSuchProcess:
        leader_started = None  # the leader exited; members of its group may still run
    if leader_started in (None, started) and _members(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


class _UserArgs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def as_user(user: str | None) -> _UserArgs:
    """subprocess arguments to run as `user`, without root's supplementary groups."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_process(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    clock: Clock = utc_now,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached in its own session (so its whole group can be stopped), with
    stdout and stderr appended to `log_file`, and record it in `pid_file`."""
    _require_psutil("record the processes it starts")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(
            f"\n----- {clock().isoformat(timespec='seconds')} start: {' '.join(argv)}\n".encode()
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
            **as_user(user),
        )
    # A child that already died is an unreaped zombie: still there, with its start time.
    started = _start_time(psutil.Process(proc.pid))
    record = {"pid": proc.pid, "start_time": started, "argv": list(argv)}
    pid_file.write_text(json.dumps(record))
    _started[proc.pid] = proc
    return proc


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait for every process of `procs` to exit; returns those still running at the timeout."""
    deadline = time.monotonic() + timeout
    while (alive := [proc for proc in procs if _runs(proc)]) and time.monotonic() < deadline:
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
    procs = _members(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    for proc in _wait_gone(procs, timeout):
        # psutil checks the pid still names the same process before it signals.
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_gone(procs, 10.0)
    pid_file.unlink(missing_ok=True)
    return True
