"""`/ready`: whether a service can do its work now, for a load balancer or an orchestrator.

`/health` stays a cheap liveness check (the broker answers a ping). `/ready` answers 503,
naming the reason, when the database does not answer, or when one of the service's consumer
groups has records waiting on a partition while its committed offset there has not moved for
`stalled_after` seconds: a consumer that stopped on a record, or that cannot commit, looks
alive and does nothing.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_security import KafkaSecurity

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Stalls:
    """Remembers each partition's committed offset and since when it has not moved."""

    def __init__(self, stalled_after: float, clock: Callable[[], float] = time.monotonic):
        self._after = stalled_after
        self._clock = clock
        self._seen: dict[tuple[str, TopicPartition], tuple[int, float]] = {}

    def stalled(
        self, group: str, committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]
    ) -> list[str]:
        """'group on topic[partition]' for each partition with records waiting whose committed
        offset has not moved for `stalled_after` seconds."""
        now = self._clock()
        found = []
        for tp, offset in committed.items():
            previous = self._seen.get((group, tp))
            since = previous[1] if previous and previous[0] == offset else now
            self._seen[(group, tp)] = (offset, since)
            if ends.get(tp, offset) > offset and now - since >= self._after:
                found.append(f"{group} on {tp.topic}[{tp.partition}]")
        return found


class Readiness:
    """The ASGI app of `/ready` for one service."""

    def __init__(
        self,
        service: str,
        bootstrap: str,
        pool: Callable[[], asyncpg.Pool],
        stalled_after: float,
        security: KafkaSecurity,
    ) -> None:
        self._prefix = f"{service}."
        self._bootstrap = bootstrap
        self._security = security
        self._pool = pool
        self._stalls = Stalls(stalled_after)

    async def problems(self) -> list[str]:
        try:
            async with asyncio.timeout(5):
                await self._pool().fetchval("SELECT 1")
        except Exception as error:  # any failure means: not ready, and why
            return [f"database: {type(error).__name__}"]
        try:
            async with asyncio.timeout(10):
                return await self._stalled_groups()
        except Exception as error:
            return [f"kafka: {type(error).__name__}"]

    async def _stalled_groups(self) -> list[str]:
        options = self._security.client_options()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id="readiness", **options
        )
        ends = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, **options
        )
        await admin.start()
        try:
            await ends.start()
            try:
                found = []
                for listed in await admin.list_consumer_groups():
                    group = listed[0] if isinstance(listed, tuple) else listed.group_id
                    if not group.startswith(self._prefix):
                        continue
                    offsets = await admin.list_consumer_group_offsets(group)
                    committed = {tp: meta.offset for tp, meta in offsets.items()}
                    if committed:
                        found += self._stalls.stalled(
                            group, committed, await ends.end_offsets(list(committed))
                        )
                return found
            finally:
                await ends.stop()
        finally:
            await admin.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problems = await self.problems()
        body = json.dumps({"ready": not problems, "problems": problems}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503 if problems else 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
