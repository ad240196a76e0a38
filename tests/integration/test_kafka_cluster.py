"""A three-node KRaft cluster as BROADCAST_KAFKA_BROKERS=3 starts it, on ports and in a run dir
of its own (not the stack's): the topics get three copies and a min ISR of 2 without anyone
saying so, and acks=all writes and reads go on while one node is killed, and after it is back.

Needs no stack: only Java and the Kafka jars the stack caches (downloaded on first use).
"""

import asyncio
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.local.stack import Component, start_component, stop_process
from deploy.local.stack.kafka import bootstrap, kafka_cluster, nodes
from shared.admin import ensure_topics
from shared.topics import ALL, MESSAGES

# Below the kernel's ephemeral range (32768 and up), where a client's outgoing socket may hold the
# port at the moment a node binds it (tests/unit/test_stack_ports.py checks every fixed port).
CLUSTER = nodes(3, first_port=29192)
BOOTSTRAP = bootstrap(CLUSTER)
# Three JVMs on a 2-core machine beside whatever else runs: the least that starts quickly.
HEAP_MB = 256


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Component, ...]]:
    run = tmp_path_factory.mktemp("kafka-cluster-run")
    with pytest.MonkeyPatch.context() as patch:
        # Pid files and logs in a run dir of its own: the stack's is left alone.
        patch.setenv("BROADCAST_RUN_DIR", str(run))
        components = kafka_cluster(CLUSTER, base=run / "cluster", name="cluster", heap_mb=HEAP_MB)
        try:
            # Together: each JVM takes seconds to start, and none is useful before a majority.
            with ThreadPoolExecutor(len(components)) as starting:
                list(starting.map(start_component, components))
            yield components
        finally:
            # Its data is thrown away: no controlled shutdown to wait for.
            for component in components:
                stop_process(component.pid_file, sig=signal.SIGKILL, timeout=5.0)


async def min_insync(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    found: dict[str, str] = {}
    for response in await admin.describe_configs(resources):
        for _, _, _, topic, entries in response.resources:
            found |= {topic: v for k, v, *_ in entries if k == "min.insync.replicas"}  # noqa: B035
    return found


async def produce(count: int, tag: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, request_timeout_ms=20_000
    )
    await producer.start()
    try:
        sends = [
            await producer.send(MESSAGES.name, f"{tag}-{n}".encode(), key=str(n).encode())
            for n in range(count)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def read_all() -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(MESSAGES.name, p) for p in range(MESSAGES.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        values: list[bytes] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=1000)
            values += [record.value or b"" for records in batches.values() for record in records]
        return values
    finally:
        await consumer.stop()


async def replicas(names: list[str]) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return {topic["topic"]: topic["partitions"] for topic in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def test_topics_are_replicated_three_times_and_survive_a_lost_node(
    cluster: tuple[Component, ...],
) -> None:
    names = [t.name for t in ALL]
    assert sorted(await ensure_topics(BOOTSTRAP)) == sorted(names)
    for topic, partitions in (await replicas(names)).items():
        assert all(len(p["replicas"]) == 3 for p in partitions), topic
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        assert await min_insync(admin, names) == dict.fromkeys(names, "2")
    finally:
        await admin.close()

    await produce(200, "before")
    # The first node of every client's bootstrap list, killed without a chance to hand over.
    first = cluster[0]
    assert stop_process(first.pid_file, sig=signal.SIGKILL, timeout=5.0)
    await produce(200, "during")  # two copies of three are in sync: acks=all still succeeds
    values = await read_all()
    assert sorted(values) == sorted(
        f"{tag}-{n}".encode() for tag in ("before", "during") for n in range(200)
    )

    start_component(first)
    await produce(200, "after")
    assert len(await read_all()) == 600
    # Back in every partition's in-sync replicas once it has caught up.
    for _ in range(60):
        partitions = (await replicas([MESSAGES.name]))[MESSAGES.name]
        if all(len(p["isr"]) == 3 for p in partitions):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"node 1 did not rejoin the in-sync replicas: {partitions}")
