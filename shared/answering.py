"""The publishers of the answers topics: `broadcast.events`, the platform's, and each request
client's `broadcast.events.<client>`, which only that client may read (shared/requesters.py).

Declared once by every service that answers requests (targeting, the tracker, the composer for
render previews), so its app shows every topic it writes and the ACLs can be checked against
it. Which topic a given answer goes to is `answers_topic_for` its request's topic, never a
choice of the publishing code.
"""

from collections.abc import Mapping

from faststream.kafka import KafkaBroker

from shared.events import BroadcastEvent
from shared.publishing import Publisher
from shared.requesters import Requesters, answers_topic_for
from shared.topics import EVENTS


class UnknownAnswersTopic(LookupError):
    """An answer for a topic this service was not configured with: BROADCAST_REQUEST_CLIENTS
    differs from the one its request came through. Published nowhere, since no other topic is
    read by that client alone."""


class Answers:
    """Answers topic -> its publisher."""

    def __init__(self, publishers: Mapping[str, Publisher]) -> None:
        self._publishers = dict(publishers)

    @classmethod
    def declare(cls, broker: KafkaBroker, events: Publisher, clients: Requesters) -> "Answers":
        """`events` is the service's publisher of broadcast.events, which may carry more than
        answers; one publisher is declared per client's answers topic."""
        return cls(
            {
                EVENTS.name: events,
                **{
                    topic: broker.publisher(
                        topic,
                        schema=BroadcastEvent,
                        description="The answers to one request client's requests: only it "
                        "reads them.",
                    )
                    for topic in clients.answers_topics()[1:]
                },
            }
        )

    def on(self, topic: str) -> Publisher:
        """The publisher of the answers topic `topic`; UnknownAnswersTopic for another."""
        try:
            return self._publishers[topic]
        except KeyError:
            raise UnknownAnswersTopic(f"no answers topic {topic!r} is configured here") from None

    def to_request_from(self, request_topic: str) -> Publisher:
        """The publisher of the answers to a request read from `request_topic`."""
        return self.on(answers_topic_for(request_topic))
