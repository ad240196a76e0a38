"""The tracker's domain metrics: final outcomes, end-to-end latency, running broadcasts, time
from start to completion, consumer lag, and delivery reports. Labels are closed sets: never a
tenant, broadcast or recipient id (each tenant would be a series kept for ever, and their
number is not ours to bound). The per-tenant bounce and complaint rates are therefore the
worst tenant's, as gauges the alerts read; each tenant's own rates are the view
tracker.tenant_report_rates_v1, which the dashboards read with SQL."""

from collections.abc import Iterable, Mapping
from datetime import datetime

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.counting import Tally, add_tallies
from shared.events import DeliveryFailed, FinalDelivery
from shared.kafka_security import KafkaSecurity
from shared.lag import consumer_lag

from . import store
from .reports import Recorded

# The Campaigns seed promises a broadcast within ten minutes of the click; we promise it for
# broadcasts of up to this many messages (alert BroadcastSlowerThanPromised).
PROMISED_SIZE = 100_000


def size_class(messages: int | None) -> str:
    return "up_to_100k" if (messages or 0) <= PROMISED_SIZE else "over_100k"


_STATE = {
    "delivery.delivered": "delivered",
    "delivery.failed": "failed",
    "delivery.cancelled": "cancelled",
}


class TrackerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "broadcast_messages_final",
            "Messages that reached a final state, counted once each.",
            ["channel", "state"],
            registry=registry,
        )
        self.failures = Counter(
            "broadcast_message_failures",
            "Failed messages by reason (each becomes a manual action).",
            ["channel", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "broadcast_delivery_latency_seconds",
            "From targeting publishing the recipient to the provider accepting the message.",
            ["channel"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 86_400),
            registry=registry,
        )
        self.running = Gauge(
            "broadcast_runs_running", "Broadcast runs started and not completed.", registry=registry
        )
        self.completion = Histogram(
            "broadcast_completion_seconds",
            "From a broadcast run's start to its completion, by size class.",
            ["size"],
            buckets=(5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 86_400),
            registry=registry,
        )
        self.oldest_running = Gauge(
            "broadcast_oldest_running_seconds",
            "Age of the oldest running broadcast run that is not paused, by size class.",
            ["size"],
            registry=registry,
        )
        self.lag = Gauge(
            "broadcast_consumer_lag_messages",
            "Records of a topic a consumer group has not committed yet.",
            ["topic", "group"],
            registry=registry,
        )

        self.reports = Counter(
            "broadcast_delivery_reports",
            "Reports after the hand-over (hard and soft bounces, complaints, SMS receipts), "
            "each message and kind counted once.",
            ["channel", "kind"],
            registry=registry,
        )
        self.worst_rates = Gauge(
            "broadcast_tenant_report_rate_max",
            "The highest rate of any tenant over the window (report_rates_window_hours), "
            "among tenants with enough messages: hard_bounce or complaint per message accepted.",
            ["kind"],
            registry=registry,
        )
        self.hard_bounce_alert_rate = Gauge(
            "broadcast_hard_bounce_alert_rate",
            "The hard-bounce rate the alert TenantHardBounceRateHigh fires above (a setting).",
            registry=registry,
        )

    def reported(self, recorded: Iterable[Recorded]) -> None:
        tally = Tally()
        for report in recorded:
            tally[report.channel, report.kind] += 1
        add_tallies(((self.reports, tally),))

    def set_report_rates(self, rates: store.ReportRates) -> None:
        self.worst_rates.labels("hard_bounce").set(rates.hard_bounce)
        self.worst_rates.labels("complaint").set(rates.complaint)

    def observe(self, recorded: Iterable[FinalDelivery]) -> None:
        """Messages whose final state was recorded now (duplicates already left out). Each
        counter's child is looked up once per batch and label set, not once per message."""
        outcomes, failures = Tally(), Tally()
        latencies: dict[str, list[float]] = {}
        for event in recorded:
            outcomes[event.channel, _STATE[event.type]] += 1
            if isinstance(event, DeliveryFailed):
                failures[event.channel, event.reason] += 1
            elif event.type == "delivery.delivered" and event.targeted_at is not None:
                latencies.setdefault(event.channel, []).append(
                    _seconds(event.occurred_at, event.targeted_at)
                )
        add_tallies(((self.outcomes, outcomes), (self.failures, failures)))
        for channel, seconds in latencies.items():
            histogram = self.latency.labels(channel)
            for value in seconds:
                histogram.observe(value)

    def completed(self, runs: Iterable[store.Completed]) -> None:
        for run in runs:
            self.completion.labels(size_class(run.messages)).observe(run.seconds)

    def set_running(self, running: store.Running) -> None:
        self.running.set(running.count)
        for large, size in ((False, "up_to_100k"), (True, "over_100k")):
            self.oldest_running.labels(size).set(running.oldest.get(large, 0.0))

    def set_lag(self, lag: Mapping[tuple[str, str], int]) -> None:
        for (topic, group), behind in lag.items():
            self.lag.labels(topic, group).set(behind)


async def refresh_gauges(
    metrics: TrackerMetrics,
    pool: asyncpg.Pool,
    kafka_bootstrap_servers: str,
    security: KafkaSecurity,
    rates: tuple[int, int],
) -> None:
    """Running broadcasts, the worst tenant's report rates (`rates`: window in hours, minimum
    of messages accepted) and every consumer group's lag, read afresh."""
    metrics.set_running(await store.running_broadcasts(pool, PROMISED_SIZE))
    metrics.set_report_rates(await store.worst_report_rates(pool, *rates))
    metrics.set_lag(await consumer_lag(kafka_bootstrap_servers, security))


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())
