"""The local stack's process groups, with throwaway `sleep`s instead of the real components."""

import json
import time
from pathlib import Path

import psutil

from deploy.local import stack

# The leader ignores SIGTERM, as a slow component would; one child leaves the group with
# setsid(), as PostgreSQL's backends do.
STUBBORN = ["bash", "-c", "trap '' TERM; setsid sleep 300 & sleep 300 & wait"]


def test_stop_reaches_the_group_and_its_descendants(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids" / "stubborn.pid"
    proc = stack.start_process(STUBBORN, log_file=tmp_path / "stubborn.log", pid_file=pid_file)
    deadline = time.monotonic() + 10
    while len(stack.process_tree(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = stack.process_tree(proc.pid)
    assert len(tree) == 3 and stack.running_pid(pid_file) == proc.pid

    assert stack.stop_process(pid_file, timeout=0.5)
    assert not pid_file.exists()
    assert all(not psutil.pid_exists(pid) or _zombie(pid) for pid in tree)
    assert not stack.stop_process(pid_file)


def test_a_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    proc = stack.start_process(["sleep", "300"], log_file=tmp_path / "log", pid_file=pid_file)
    try:
        record = json.loads(pid_file.read_text())
        earlier = str(int(record["start_time"]) - 100)
        pid_file.write_text(json.dumps({**record, "start_time": earlier}))
        assert stack.running_pid(pid_file) is None
        assert not pid_file.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_exited_is_not_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "true.pid"
    stack.start_process(["true"], log_file=tmp_path / "log", pid_file=pid_file).wait()
    assert stack.running_pid(pid_file) is None and not pid_file.exists()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
