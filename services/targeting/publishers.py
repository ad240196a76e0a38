"""The topics targeting publishes to: declared once by the app, handed to the parts that
publish."""

from dataclasses import dataclass

from shared.answering import Answers
from shared.fastlane import FastLane
from shared.publishing import Publisher


@dataclass(frozen=True)
class Publishers:
    # broadcast.events: broadcasts started and paused, contacts opted out and suppressed.
    events: Publisher
    # Answers to commands, each on its sender's answers topic (broadcast.events for the
    # platform's).
    answers: Answers
    # Runs started, targeting completed, paused, resumed, cancelled.
    runs: FastLane
    recipients: FastLane
    # The failed messages of contracts with no usable address (`no_contact`), for the tracker.
    deliveries: FastLane
    # Each tenant's settings, for the dispatcher.
    tenants: Publisher
