"""Creating the system's topics: `python -m shared.admin ensure-topics [BOOTSTRAP]`.

With the request clients of BROADCAST_REQUEST_CLIENTS (shared/requesters.py): their topics too.
On an authenticated cluster (BROADCAST_KAFKA_SECURITY_PROTOCOL=SASL_SSL) it connects with the
BROADCAST_KAFKA_SASL_* credentials, which must be allowed to create topics: the operator's, not a
service's (deploy/kafka_acls.py).

Topics are created explicitly (the broker's auto-creation is off) so that every topic gets its
intended partition count (`shared.topics`, or BROADCAST_TOPIC_PARTITIONS: shared/partitions.py)
and its replication (shared/replication.py, from the brokers the cluster has), whichever service
happens to start first. A topic that exists is left as it is: never shrunk, never re-replicated.
"""

import asyncio
import contextlib
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared import partitions, requesters
from shared.kafka_security import KafkaSecurity, tool_security
from shared.replication import Replication, replication_for
from shared.topics import ALL, Topic


def topic_configs(topic: Topic, replication: Replication) -> dict[str, str]:
    """The per-topic configuration a new topic is created with."""
    # Per topic rather than the broker's default: a cluster whose default was left at 1 still
    # refuses an acks=all write that only one copy holds.
    configs = {"min.insync.replicas": str(replication.min_insync)}
    if topic.compacted:
        configs["cleanup.policy"] = "compact"
    return configs


async def ensure_topics(
    bootstrap: str, topics: tuple[Topic, ...] = ALL, security: KafkaSecurity | None = None
) -> list[str]:
    """Create the missing topics, replicated as `replication_for` the brokers the cluster
    reports now; return the names created now."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="broadcast-admin",
        **(security or KafkaSecurity()).client_options(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            # The brokers registered now: topics first created while a broker is down get
            # fewer copies, so a cluster is started whole before the services (the local
            # runner starts every node first).
            replication = replication_for(len((await admin.describe_cluster())["brokers"]))
            # Another starter may create them in between: the goal is met all the same.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name=t.name,
                            num_partitions=t.partitions,
                            replication_factor=replication.factor,
                            topic_configs=topic_configs(t, replication),
                        )
                        for t in missing
                    ]
                )
        return [t.name for t in missing]
    finally:
        await admin.close()


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] != "ensure-topics":
        print("usage: python -m shared.admin ensure-topics [BOOTSTRAP]", file=sys.stderr)
        return 2
    bootstrap = argv[1] if len(argv) > 1 else "127.0.0.1:19092"
    try:
        clients = requesters.parse(os.environ.get(requesters.VARIABLE))
        counts = partitions.parse(os.environ.get(partitions.VARIABLE))
        security = tool_security()
    except ValueError as error:  # RequestClientsError, TopicPartitionsError, or pydantic's
        print(error, file=sys.stderr)
        return 2
    topics = counts.every_topic(clients)
    created = asyncio.run(ensure_topics(bootstrap, topics, security))
    print(f"topics created: {', '.join(created) or 'none (all present)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
