"""When a running broadcast should pause itself: its failure ratio over a sliding window.

Pure: the caller counts a batch's attempts per run (`Attempts`), adds them to the run's window
(kept in the database, `store.add_attempts`, so that every tracker instance adds to the same
window and none takes it with it when it dies), and asks `judge` with the window's sums and the
run's policy. A message that failed for good or has to wait for a retry counts as a failed
attempt (a relay that is down answers with temporary errors); a delivered one as a success.
"""

from dataclasses import dataclass

from shared.events import AutoPause


@dataclass
class Attempts:
    """A run's attempts in one batch: `failed` of the `tried`."""

    tried: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Tripped:
    failed: int
    tried: int

    def describe(self, policy: AutoPause) -> str:
        return (
            f"{self.failed} of the last {self.tried} messages failed within "
            f"{policy.window_seconds} s (the tenant pauses over {policy.failure_ratio:.0%})"
        )


def judge(window: Attempts, policy: AutoPause) -> Tripped | None:
    """Tripped when, over the policy's window, enough messages were tried and too many of them
    failed."""
    if window.tried < policy.min_messages or window.failed <= policy.failure_ratio * window.tried:
        return None
    return Tripped(window.failed, window.tried)
