"""The dispatcher's domain metrics: outcomes, retries and waits, provider latency.

Labels are closed sets (channel, outcome, reason, what a message waits for): never a tenant,
broadcast or recipient id.
"""

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.clock import Clock, utc_now
from shared.counting import Tally, add_tallies
from shared.events import (
    DeliveryCancelled,
    DeliveryCorrected,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
)

Event = MessageDelivered | DeliveryFailed | DeliveryDeferred | DeliveryCancelled | DeliveryCorrected

_OUTCOME = {
    "delivery.delivered": "delivered",
    "delivery.failed": "failed",
    "delivery.deferred": "deferred",
    "delivery.cancelled": "cancelled",
}


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry, clock: Clock = utc_now) -> None:
        # The clock the deferrals' due times were set by, so that their delays are true.
        self._clock = clock
        self.handovers = Counter(
            "broadcast_dispatcher_outcomes",
            "Messages by what became of them at the dispatcher.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.failures = Counter(
            "broadcast_dispatcher_failures",
            "Final failures by reason (unknown_outcome: maybe sent, never resent).",
            ["channel", "reason"],
            registry=registry,
        )
        self.deferrals = Counter(
            "broadcast_dispatcher_deferrals",
            "Messages parked in the ledger: a retry, a closed send window, a slow-down.",
            ["channel", "waiting_for"],
            registry=registry,
        )
        self.delays = Histogram(
            "broadcast_dispatcher_deferral_delay_seconds",
            "How long a parked message waits before its next try.",
            ["waiting_for"],
            buckets=(1, 5, 30, 60, 300, 900, 1800, 3600, 21_600, 86_400, 259_200),
            registry=registry,
        )
        self.provider_seconds = Histogram(
            "broadcast_dispatcher_provider_call_seconds",
            "Time the SMTP relay or the SMS gateway took to answer one message.",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )

        self.corrections = Counter(
            "broadcast_dispatcher_corrections",
            "Unknown outcomes replaced by the answer their dispatcher learnt late.",
            ["channel", "outcome"],
            registry=registry,
        )
        # A sweeper that stopped is otherwise invisible: parked messages just never leave.
        self.sweeps = Counter(
            "broadcast_dispatcher_sweeps",
            "Passes of the sweeper over the ledger (expired claims, lost outcomes, due messages).",
            registry=registry,
        )

    def observe(self, events: Iterable[Event]) -> None:
        """Counts `events`; each counter's child is looked up once per label set, not per event."""
        now = self._clock()
        outcomes, failures, deferrals, corrections = Tally(), Tally(), Tally(), Tally()
        for event in events:
            if isinstance(event, DeliveryCorrected):  # its outcome is counted beside it
                corrections[event.channel, event.outcome] += 1
                continue
            outcomes[event.channel, _OUTCOME[event.type]] += 1
            if isinstance(event, DeliveryFailed):
                failures[event.channel, event.reason] += 1
            elif isinstance(event, DeliveryDeferred):
                deferrals[event.channel, event.waiting_for] += 1
                if event.due_at is not None:  # None: held until its run is resumed
                    delay = (event.due_at - now).total_seconds()
                    self.delays.labels(event.waiting_for).observe(max(0.0, delay))
        add_tallies(
            (
                (self.handovers, outcomes),
                (self.failures, failures),
                (self.deferrals, deferrals),
                (self.corrections, corrections),
            )
        )
