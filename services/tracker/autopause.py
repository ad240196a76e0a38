"""When a running broadcast should pause itself: its failure ratio over a sliding window.

Pure: the caller feeds attempts with their time and asks with the run's policy. A message that
failed for good or has to wait for a retry counts as a failed attempt (a relay that is down
answers with temporary errors); a delivered one as a success. Attempts are kept per second, so
memory stays bounded however fast a run goes.
"""

from collections import deque
from dataclasses import dataclass
from uuid import UUID

from shared.events import AutoPause

# The longest window a tenant may choose (AutoPause.window_seconds).
_KEPT_SECONDS = 3600


@dataclass(frozen=True)
class Tripped:
    failed: int
    tried: int

    def describe(self, policy: AutoPause) -> str:
        return (
            f"{self.failed} of the last {self.tried} messages failed within "
            f"{policy.window_seconds} s (the tenant pauses over {policy.failure_ratio:.0%})"
        )


@dataclass
class _Second:
    at: int
    tried: int = 0
    failed: int = 0


class FailureWindow:
    def __init__(self) -> None:
        self._runs: dict[UUID, deque[_Second]] = {}

    def add(self, run_id: UUID, at: float, failed: int, tried: int = 1) -> None:
        """`tried` attempts of the run at `at`, `failed` of them failed: a batch's outcomes
        are added once per run, not once per message."""
        seconds = self._runs.setdefault(run_id, deque())
        now = int(at)
        if not seconds or seconds[-1].at != now:
            seconds.append(_Second(now))
        seconds[-1].tried += tried
        seconds[-1].failed += failed
        _drop_before(seconds, now - _KEPT_SECONDS)

    def check(self, run_id: UUID, now: float, policy: AutoPause) -> Tripped | None:
        """Tripped when, over the policy's window, enough messages were tried and too many
        of them failed."""
        seconds = self._runs.get(run_id)
        if not seconds:
            return None
        _drop_before(seconds, int(now) - policy.window_seconds)
        tried = sum(s.tried for s in seconds)
        failed = sum(s.failed for s in seconds)
        if tried < policy.min_messages or failed <= policy.failure_ratio * tried:
            return None
        return Tripped(failed, tried)

    def forget(self, run_id: UUID) -> None:
        self._runs.pop(run_id, None)


def _drop_before(seconds: deque[_Second], oldest: int) -> None:
    while seconds and seconds[0].at <= oldest:
        seconds.popleft()
