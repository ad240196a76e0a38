"""The topics targeting publishes to: declared once by the app, handed to the parts that
publish."""

from dataclasses import dataclass

from shared.publishing import Publisher


@dataclass(frozen=True)
class Publishers:
    # Answers to commands, broadcasts started and paused, contacts opted out.
    events: Publisher
    # Runs started, targeting completed, paused, resumed, cancelled.
    runs: Publisher
    recipients: Publisher
    # The failed messages of contracts with no usable address (`no_contact`), for the tracker.
    deliveries: Publisher
    # Each tenant's settings, for the dispatcher.
    tenants: Publisher
