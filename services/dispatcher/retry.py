"""When a message that failed for now is tried again. Pure."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`delays[i]` is the wait after the (i+1)-th temporary failure; after the last one the
    message fails for good. Throttling replies do not count: the provider asked for patience."""

    delays: tuple[float, ...] = (30.0, 300.0, 1800.0)
    # Bounds the wait a provider can ask for with Retry-After or a throttling reply.
    max_backoff: float = 600.0
    throttle_backoff: float = 30.0

    def after_failure(self, attempts: int) -> float | None:
        """Seconds before the next try after `attempts` temporary failures; None: give up."""
        if attempts < 1 or attempts > len(self.delays):
            return None
        return self.delays[attempts - 1]

    def after_throttle(self, retry_after: float | None) -> float:
        """Seconds the relay (or gateway) pauses after it asked to slow down."""
        wanted = self.throttle_backoff if retry_after is None else retry_after
        return min(max(wanted, 1.0), self.max_backoff)
