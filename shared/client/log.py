"""A topic read from its current end: every JSON record published on it after `open()`."""

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Self

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from shared.kafka_security import KafkaSecurity


def parse(value: bytes | None) -> dict[str, Any] | None:
    """The record as a JSON object; None for anything else (a tombstone, a broken producer's
    bytes): not ours to judge, other producers share the topics."""
    try:
        found = json.loads(value or b"")
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


class TopicLog:
    """Everything published on `topic` from the moment it was opened, in `records`."""

    def __init__(self, bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> None:
        # No group: the consumer takes every partition and starts at their current end, and
        # there is no rebalance to wait for.
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            **(security or KafkaSecurity()).client_options(),
        )
        self.records: list[dict[str, Any]] = []

    async def open(self) -> Self:
        await self._consumer.start()
        while not self._consumer.assignment():
            await asyncio.sleep(0.05)
        # Resolve the end offsets now, before the caller publishes anything it then waits for.
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)
        return self

    async def poll(self, timeout_ms: int = 200) -> list[dict[str, Any]]:
        """Fetch what arrived (waiting up to `timeout_ms` for something); the new records."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        new = [
            record
            for messages in batch.values()
            for message in messages
            if (record := parse(message.value)) is not None
        ]
        self.records.extend(new)
        return new

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Fetch until `condition()` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self.poll()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The first record, since the log was opened, that satisfies `predicate`."""
        found: dict[str, Any] | None = None

        def seen() -> bool:
            nonlocal found
            # Every record again on each fetch: a predicate may close over state that changed.
            found = next((r for r in self.records if predicate(r)), None)
            return found is not None

        await self.wait_until(seen, timeout)
        assert found is not None
        return found

    async def drain(self, seconds: float) -> None:
        """Collect whatever arrives during `seconds`."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            await self.poll()

    async def close(self) -> None:
        # A fetch still in flight on a busy broker may time out while the consumer stops: what
        # was read is already in `records`.
        with contextlib.suppress(KafkaError):
            await self._consumer.stop()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
