"""How many partitions each topic is created with: `shared.topics`' counts unless
BROADCAST_TOPIC_PARTITIONS says otherwise.

One variable, unprefixed, read the same way by every service and by the topic creators
(`python -m shared.admin`, `python -m deploy.kafka_acls apply`, the local runner), since whichever
starts first creates the topics, e.g. BROADCAST_TOPIC_PARTITIONS='{"broadcast.messages": 16}'.
A client's request topic (`broadcast.requests.<client>`) is partitioned as `broadcast.requests`,
its answers topic (`broadcast.events.<client>`) as `broadcast.events`.

Counts apply when a topic is created: an existing topic keeps its partitions (adding some is an
operator's step, docs/ARCHITECTURE.md, "A Kafka cluster"). Pure: no I/O, no Kafka.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from shared.json_settings import json_object
from shared.requesters import Requesters
from shared.topics import ALL, EVENTS, REQUESTS, Topic

VARIABLE = "BROADCAST_TOPIC_PARTITIONS"


class TopicPartitionsError(ValueError):
    """A setting that cannot be used; the message names the variable, the topic and why."""


@dataclass(frozen=True)
class TopicPartitions:
    """Topic name -> partition count, for the topics the setting names."""

    counts: Mapping[str, int] = field(default_factory=dict)

    def every_topic(self, clients: Requesters) -> tuple[Topic, ...]:
        """The system's topics and the request clients' topics, as configured: what a creator
        of the topics creates."""
        # A client's topics are partitioned as the platform's they stand beside.
        requests, events = self.apply((REQUESTS, EVENTS))
        return (*self.apply(ALL), *clients.client_topics(requests, events))

    def apply(self, topics: Iterable[Topic]) -> tuple[Topic, ...]:
        """`topics` with the configured counts; those the setting does not name keep theirs."""
        return tuple(replace(t, partitions=self.counts.get(t.name, t.partitions)) for t in topics)


def parse(text: str | None) -> TopicPartitions:
    """The setting as `VARIABLE` holds it (a JSON object); unset or blank: the defaults."""
    raw = json_object(
        VARIABLE,
        text,
        'a JSON object of topic -> partitions, e.g. {"broadcast.messages": 16}',
        TopicPartitionsError,
    )
    if raw is None:
        return TopicPartitions()
    known = [t.name for t in ALL]
    for name, count in raw.items():
        if name not in known:
            raise TopicPartitionsError(
                f"{VARIABLE}: unknown topic {name!r}; the topics are {', '.join(known)}"
            )
        # bool is an int to Python, not a count to anyone.
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TopicPartitionsError(
                f"{VARIABLE}: topic {name!r}: expected a whole number of partitions, at least 1, "
                f"not {count!r}"
            )
    return TopicPartitions(dict(raw))
