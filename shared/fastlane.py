"""Publishing pre-serialised records straight to the aiokafka producer, for the hot loops.

FastStream's per-record `publish` runs its middlewares, a Prometheus publish scope, its codec,
header building and a publish command for every record: about a fifth of the composer's and a
quarter of targeting's CPU in a 100k profile. A `FastLane` hands each record's bytes to the
broker's own producer instead, so the producer's settings (`acks=all`, idempotence, linger,
compression) and its connection stay FastStream's. Declaring the topic's FastStream publisher
stays as it was (AsyncAPI documents it), and that publisher is still what sends the few
records outside the hot loops, and every record under `TestKafkaBroker`. Measured
(`python -m bench.kafka_path`, bench/README.md "Kafka path"): 34-37 µs per record through
FastStream against 6-10 µs here above aiokafka; against a real broker, 92-104 against 28-35 µs
of the producer's CPU per rendered message.

The delivery guarantee is the one of `shared.kafka`: `send` returns only once the broker
acknowledged every record it was given, so the caller's handler returns, and its input offset
is committed, only after that; a record the broker refused raises.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.prometheus.container import MetricsContainer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pydantic_core import to_json

from shared.publishing import Publisher

# What FastStream's codec tells a consumer about a pydantic body: kept so that any FastStream
# subscriber (a test's, a tool's) decodes these records exactly as it did before.
_HEADERS = [("content-type", b"application/json")]


class FastLane:
    """One topic's hot-loop publisher; also a `Publisher` for the records outside hot loops."""

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        publisher: Publisher,
        *,
        registry: CollectorRegistry,
        service: str,
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._publisher = publisher
        # The series FastStream's Prometheus middleware records its publishes in: dashboards,
        # alerts and test_prometheus.py read them per destination, so this lane records there
        # too, as FastStream does for a `publish_batch`: records counted, one duration per
        # batch. The container finds the middleware's collectors in the registry.
        metrics = MetricsContainer(registry, custom_label_names=())
        self._labels = {"app_name": service, "broker": "kafka", "destination": topic}
        self._succeeded = metrics.published_messages_total.labels(**self._labels, status="success")
        self._failed = metrics.published_messages_total.labels(**self._labels, status="error")
        self._duration = metrics.published_messages_duration_seconds.labels(**self._labels)
        self._exceptions = metrics.published_messages_exceptions_total

    async def publish(
        self, message: Any, *, key: bytes | None = None, no_confirm: bool = False
    ) -> Any:
        """One record through FastStream, as any other publisher."""
        return await self._publisher.publish(message, key=key, no_confirm=no_confirm)

    async def send(self, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Send (key, value) records, each to its key's partition; return how many once the
        broker acknowledged them all. Raises the first error after every record settled."""
        producer = self._producer()
        if producer is None:
            return await self._send_through_faststream(records)
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        try:
            for key, value in records:
                pending.append(await producer.send(self._topic, value, key=key, headers=_HEADERS))
        except Exception as error:
            # The record that could not be handed over counts as failed; those handed over
            # before it settle first, so no acknowledgement goes unobserved or uncounted. The
            # batch is redelivered either way.
            self._count_failures([error])
            await self._settle(pending, started)
            raise
        return await self._settle(pending, started)

    async def _settle(self, pending: list["asyncio.Future[Any]"], started: float) -> int:
        """Wait for every acknowledgement, record them, raise the first error."""
        if not pending:
            return 0
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        self._duration.observe(time.perf_counter() - started)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        self._succeeded.inc(len(outcomes) - len(errors))
        if errors:
            self._count_failures(errors)
            raise errors[0]
        return len(outcomes)

    def _count_failures(self, errors: list[BaseException]) -> None:
        self._failed.inc(len(errors))
        for error in errors:
            self._exceptions.labels(**self._labels, exception_type=type(error).__name__).inc()

    async def publish_keyed(self, items: Iterable[tuple[str, BaseModel]]) -> int:
        """Send models, each with its own key (so its own partition, unlike FastStream's
        `publish_batch`), serialised once to JSON; return how many once all are acknowledged."""
        # pydantic's `to_json` gives `model_dump_json()`'s bytes without its str round trip
        # (0.5 us less per 4.7 KB message.rendered, bench/README.md "Kafka path").
        return await self.send((key.encode(), to_json(model)) for key, model in items)

    def _producer(self) -> AIOKafkaProducer | None:
        """The broker's connected aiokafka producer; None under `TestKafkaBroker`.

        `broker._producer` is the object FastStream's own public `KafkaProducer` annotation
        resolves to (`Context("broker._producer")`), so it is the least internal handle there
        is; the aiokafka producer inside it has no public accessor in FastStream 0.7.8, hence
        `_producer.producer`. Looked up per call: FastStream replaces it on connect, and
        `TestKafkaBroker` swaps in its in-memory `FakeProducer`, which only FastStream's
        publisher can drive.
        """
        fast = self._broker._producer
        if isinstance(fast, AioKafkaFastProducerImpl) and fast:
            producer: AIOKafkaProducer = fast._producer.producer
            return producer
        return None

    async def _send_through_faststream(self, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        pending = [
            await self._publisher.publish(value, key=key, no_confirm=True) for key, value in records
        ]
        # FakeProducer returns None rather than a future: it ran the handlers already.
        waiting = [p for p in pending if isinstance(p, asyncio.Future)]
        if waiting:
            await asyncio.gather(*waiting)
        return len(pending)
