"""One process of the local stack: how to prepare, start, check and stop it."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import REPO, log_file, pid_file, venv_python
from .readiness import ReadyCheck, tcp_answers


class StackError(Exception):
    """A one-line, user-facing failure: names the component and where to look."""


@dataclass(frozen=True)
class Component:
    name: str
    command: Sequence[str]
    # Ports the component listens on: checked free before start, and by the default readiness.
    ports: Sequence[int]
    env: Mapping[str, str] = field(default_factory=dict)
    # None: every port in `ports` accepts a TCP connection.
    ready: ReadyCheck | None = None
    # One-time or per-start preparation (downloads, initdb, formatting), run before `command`.
    prepare: Callable[[], None] | None = None
    # Run once after the component first answers (e.g. create roles); not on a no-op `up`.
    after_start: Callable[[], None] | None = None
    cwd: Path | None = None
    # OS user to run as (only possible when we are root).
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    @property
    def log_file(self) -> Path:
        return log_file(self.name)

    @property
    def pid_file(self) -> Path:
        return pid_file(self.name)

    def is_ready(self) -> bool:
        if self.ready is not None:
            return self.ready()
        return all(tcp_answers(port) for port in self.ports)


def python_module(
    name: str,
    module: str,
    *args: str,
    ports: Sequence[int],
    ready: ReadyCheck,
    start_timeout: float,
) -> Component:
    """`python -m module args` with the venv's python, from the repo root."""
    return Component(
        name=name,
        command=[venv_python(), "-m", module, *args],
        ports=ports,
        env={"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        ready=ready,
        cwd=REPO,
        start_timeout=start_timeout,
    )
