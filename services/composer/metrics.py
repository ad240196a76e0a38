"""The composer's domain metrics. Labels are closed sets: never a tenant or recipient id."""

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from shared.events import DeliveryFailed, MessageRendered, RefreshDeclined


class ComposerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "broadcast_composer_messages",
            "Recipients rendered into a message, or failed with a reason.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.sms_segments = Counter(
            "broadcast_composer_sms_segments",
            "SMS segments rendered, by encoding: what the SMS will cost.",
            ["encoding"],
            registry=registry,
        )

    def observe(
        self, outputs: Iterable[MessageRendered | DeliveryFailed | RefreshDeclined]
    ) -> None:
        for output in outputs:
            if not isinstance(output, MessageRendered):
                self.messages.labels(output.channel, output.reason).inc()
                continue
            self.messages.labels(output.channel, "rendered").inc()
            if output.sms_encoding is not None and output.sms_segments is not None:
                self.sms_segments.labels(output.sms_encoding).inc(output.sms_segments)
