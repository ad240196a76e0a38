"""Reading `broadcast.recipients` directly: what targeting published, and holding the composer.

Used by the targeting benchmark and the targeting fault test, which both count the recipients of
one run exactly and then move the (stopped) composer past them, so that a large run measured at
targeting's output does not leave the pipeline busy rendering it for minutes.
"""

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from shared.client import endpoints
from shared.topics import RECIPIENTS

COMPOSER_GROUP = "composer.recipients"


async def end_offsets(bootstrap: str | None = None) -> dict[TopicPartition, int]:
    """The current end of every partition of the recipients topic."""
    consumer = AIOKafkaConsumer(
        RECIPIENTS.name,
        bootstrap_servers=bootstrap or endpoints.local().kafka,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            while not consumer.assignment():
                await asyncio.sleep(0.05)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(consumer.assignment()))
        return ends
    finally:
        await consumer.stop()


async def recipients_of_run(
    start: dict[TopicPartition, int],
    run_id: str,
    *,
    bootstrap: str | None = None,
    timeout: float = 600.0,
) -> list[str]:
    """Every recipient id published for `run_id` after `start`, copies included."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap or endpoints.local().kafka, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        marker = f'"run_id":"{run_id}"'.encode()
        found: list[str] = []
        async with asyncio.timeout(timeout):
            while [tp for tp in start if await consumer.position(tp) < end[tp]]:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for r in records:
                        if r.value and marker in r.value:
                            record = json.loads(r.value)
                            found.extend(
                                p["recipient_id"] for p in record.get("recipients", [record])
                            )
        return found
    finally:
        await consumer.stop()


async def skip_for_composer(
    offsets: dict[TopicPartition, int], bootstrap: str | None = None
) -> None:
    """Commit `offsets` for the composer's consumer group, which must be stopped (empty)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap or endpoints.local().kafka,
        group_id=COMPOSER_GROUP,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()
