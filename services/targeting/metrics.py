"""Targeting's domain metrics. Labels are closed sets: never a tenant or recipient id."""

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from .audience import Targeted


class TargetingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Not the records published: those carry pages of recipients.
        self.recipients = Counter(
            "broadcast_targeting_recipients",
            "Recipients streamed to the composer, one message each to render, by channel.",
            ["channel"],
            registry=registry,
        )

    def streamed(self, recipients: Iterable[Targeted]) -> None:
        for channel, count in Tally(r.channel for r in recipients).items():
            self.recipients.labels(channel).inc(count)
