"""The services' domain metrics count a whole batch at once: every event is counted under its
own labels, whatever the mix in the batch."""

from datetime import timedelta
from uuid import uuid4

from prometheus_client import CollectorRegistry

from services.dispatcher.metrics import DispatcherMetrics
from services.tracker.metrics import TrackerMetrics
from shared.clock import utc_now
from shared.events import (
    DeliveryCancelled,
    DeliveryCorrected,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
)


def ref(channel: str = "email") -> dict[str, object]:
    return {
        "tenant_id": "t-1",
        "broadcast_id": uuid4(),
        "run_id": uuid4(),
        "recipient_id": uuid4(),
        "contract_id": "C-1",
        "channel": channel,
        "address": "a@example.org" if channel == "email" else "+15145550123",
        "targeted_at": utc_now() - timedelta(seconds=3),
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_dispatcher_counts_each_event_under_its_labels() -> None:
    registry = CollectorRegistry()
    now = utc_now()
    DispatcherMetrics(registry, lambda: now).observe(
        [
            *(MessageDelivered(**ref()) for _ in range(5)),
            MessageDelivered(**ref("sms")),
            DeliveryFailed(**ref(), reason="refused"),
            DeliveryFailed(**ref(), reason="refused"),
            DeliveryFailed(**ref(), reason="unknown_outcome"),
            DeliveryDeferred(
                **ref(), waiting_for="retry", due_at=now + timedelta(seconds=30), attempts=1
            ),
            DeliveryDeferred(**ref("sms"), waiting_for="paused", due_at=None, attempts=0),
            DeliveryCancelled(**ref()),
            DeliveryCorrected(**ref(), outcome="delivered"),
        ]
    )
    outcomes = "broadcast_dispatcher_outcomes_total"
    assert value(registry, outcomes, channel="email", outcome="delivered") == 5
    assert value(registry, outcomes, channel="sms", outcome="delivered") == 1
    assert value(registry, outcomes, channel="email", outcome="failed") == 3
    assert value(registry, outcomes, channel="email", outcome="deferred") == 1
    assert value(registry, outcomes, channel="sms", outcome="deferred") == 1
    assert value(registry, outcomes, channel="email", outcome="cancelled") == 1
    failures = "broadcast_dispatcher_failures_total"
    assert value(registry, failures, channel="email", reason="refused") == 2
    assert value(registry, failures, channel="email", reason="unknown_outcome") == 1
    deferrals = "broadcast_dispatcher_deferrals_total"
    assert value(registry, deferrals, channel="email", waiting_for="retry") == 1
    assert value(registry, deferrals, channel="sms", waiting_for="paused") == 1
    delays = "broadcast_dispatcher_deferral_delay_seconds"
    assert value(registry, f"{delays}_count", waiting_for="retry") == 1
    assert value(registry, f"{delays}_sum", waiting_for="retry") == 30
    assert value(registry, f"{delays}_count", waiting_for="paused") is None
    corrections = "broadcast_dispatcher_corrections_total"
    assert value(registry, corrections, channel="email", outcome="delivered") == 1


def test_the_tracker_counts_each_final_outcome_and_times_each_delivery() -> None:
    registry = CollectorRegistry()
    TrackerMetrics(registry).observe(
        [
            *(MessageDelivered(**ref()) for _ in range(4)),
            MessageDelivered(**ref("sms")),
            DeliveryFailed(**ref(), reason="refused"),
            DeliveryFailed(**ref("sms"), reason="invalid_address"),
            DeliveryCancelled(**ref()),
        ]
    )
    final = "broadcast_messages_final_total"
    assert value(registry, final, channel="email", state="delivered") == 4
    assert value(registry, final, channel="sms", state="delivered") == 1
    assert value(registry, final, channel="email", state="failed") == 1
    assert value(registry, final, channel="email", state="cancelled") == 1
    failures = "broadcast_message_failures_total"
    assert value(registry, failures, channel="email", reason="refused") == 1
    assert value(registry, failures, channel="sms", reason="invalid_address") == 1
    latency = "broadcast_delivery_latency_seconds"
    assert value(registry, f"{latency}_count", channel="email") == 4
    assert value(registry, f"{latency}_count", channel="sms") == 1
    email_sum = value(registry, f"{latency}_sum", channel="email")
    assert email_sum is not None and 4 * 3 <= email_sum < 4 * 4
