"""The topics targeting publishes to: declared once by the app, handed to the parts that
publish."""

from dataclasses import dataclass

from shared.fastlane import FastLane
from shared.publishing import Publisher


@dataclass(frozen=True)
class Publishers:
    # Answers to commands, broadcasts started and paused, contacts opted out.
    events: Publisher
    # Runs started, targeting completed, paused, resumed, cancelled.
    runs: FastLane
    recipients: FastLane
    # The failed messages of contracts with no usable address (`no_contact`), for the tracker.
    deliveries: FastLane
    # Each tenant's settings, for the dispatcher.
    tenants: Publisher
