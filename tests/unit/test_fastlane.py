"""The fast lane: records go to the broker's aiokafka producer, `send` returns only once the
broker acknowledged each of them, they are counted where the dashboards read, and under
TestKafkaBroker they go through FastStream instead."""

import asyncio
import json
from typing import Any
from uuid import uuid4

import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.kafka.publisher.state import RealProducer
from prometheus_client import CollectorRegistry

from shared.events import DeliveryFailed
from shared.fastlane import FastLane
from shared.kafka import make_broker
from shared.settings import ServiceSettings

TOPIC = "broadcast.deliveries"


class AcknowledgingLater:
    """Stands for aiokafka's producer: `send` queues a record and returns its future, which
    the test settles, as the broker's acknowledgement would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Any]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes | None, headers: Any) -> Any:
        self.sent.append((topic, value, key, headers))
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


def lane_over(producer: AcknowledgingLater) -> tuple[FastLane, CollectorRegistry]:
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(), service="composer", registry=registry)
    fast = broker._producer
    assert isinstance(fast, AioKafkaFastProducerImpl)
    # What FastStream's connect leaves behind, without a Kafka broker.
    fast._producer = RealProducer(producer)
    return FastLane(
        broker, TOPIC, broker.publisher(TOPIC), registry=registry, service="composer"
    ), registry


def published(registry: CollectorRegistry, status: str) -> float:
    labels = {"app_name": "composer", "broker": "kafka", "destination": TOPIC, "status": status}
    return registry.get_sample_value("faststream_published_messages_total", labels) or 0


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    where = {"app_name": "composer", "broker": "kafka", "destination": TOPIC} | labels
    return registry.get_sample_value(name, where) or 0


def failure() -> DeliveryFailed:
    return DeliveryFailed(
        tenant_id="t1",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        contract_id="c1",
        channel="email",
        address="é@example.com",
        reason="no_contact",
        detail='"quoted"',
    )


async def test_records_go_to_the_producer_and_send_waits_for_every_acknowledgement() -> None:
    producer = AcknowledgingLater()
    lane, registry = lane_over(producer)
    sending = asyncio.create_task(lane.send([(b"k1", b"1"), (None, b"2")]))
    await asyncio.sleep(0)
    assert [(t, v, k) for t, v, k, _ in producer.sent] == [
        (TOPIC, b"1", b"k1"),
        (TOPIC, b"2", None),
    ]
    assert producer.sent[0][3] == [("content-type", b"application/json")]
    producer.acks[1].set_result(None)
    await asyncio.sleep(0)
    assert not sending.done()  # one record is not acknowledged yet: the offset must wait
    producer.acks[0].set_result(None)
    assert await sending == 2
    assert published(registry, "success") == 2
    # One publish of a batch, as FastStream's publish_batch records it: the dashboards' latency.
    assert sample(registry, "faststream_published_messages_duration_seconds_count") == 1


async def test_a_refused_record_raises_after_all_settled_and_is_counted_as_an_error() -> None:
    producer = AcknowledgingLater()
    lane, registry = lane_over(producer)
    sending = asyncio.create_task(lane.send([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]))
    await asyncio.sleep(0)
    producer.acks[0].set_result(None)
    producer.acks[1].set_exception(TimeoutError("no ack"))
    await asyncio.sleep(0)
    assert not sending.done()
    producer.acks[2].set_result(None)
    with pytest.raises(TimeoutError):
        await sending
    assert (published(registry, "success"), published(registry, "error")) == (2, 1)
    exceptions = "faststream_published_messages_exceptions_total"
    assert sample(registry, exceptions, exception_type="TimeoutError") == 1


async def test_models_are_sent_as_their_json_with_their_key() -> None:
    producer = AcknowledgingLater()
    lane, _ = lane_over(producer)
    event = failure()
    sending = asyncio.create_task(lane.publish_keyed([(str(event.recipient_id), event)]))
    await asyncio.sleep(0)
    producer.acks[0].set_result(None)
    assert await sending == 1
    _, value, key, _ = producer.sent[0]
    assert key == str(event.recipient_id).encode()
    assert value == event.model_dump_json().encode()


async def test_nothing_to_send_waits_for_nothing() -> None:
    lane, registry = lane_over(AcknowledgingLater())
    assert await lane.publish_keyed([]) == 0
    assert published(registry, "success") == 0


async def test_under_test_kafka_broker_records_go_through_faststream() -> None:
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(), service="composer", registry=registry)
    lane = FastLane(broker, TOPIC, broker.publisher(TOPIC), registry=registry, service="composer")
    wire: list[tuple[bytes | None, Any]] = []

    @broker.subscriber(TOPIC, batch=False)
    async def collect(message: KafkaMessage) -> None:
        wire.append((message.raw_message.key, json.loads(message.body)))  # type: ignore[union-attr]

    event = failure()
    async with TestKafkaBroker(broker):
        assert await lane.publish_keyed([(str(event.recipient_id), event)]) == 1
    assert wire == [(str(event.recipient_id).encode(), json.loads(event.model_dump_json()))]
    assert published(registry, "success") == 1  # counted by FastStream's middleware


class RefusingOne(AcknowledgingLater):
    """Fails to queue the n-th record, as aiokafka does when its buffer stays full."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self._nth = nth

    async def send(self, topic: str, value: bytes, *, key: bytes | None, headers: Any) -> Any:
        if len(self.sent) == self._nth - 1:
            raise TimeoutError("buffer full")
        return await super().send(topic, value, key=key, headers=headers)


async def test_a_record_that_cannot_be_queued_raises_once_the_queued_ones_settled() -> None:
    producer = RefusingOne(3)
    lane, registry = lane_over(producer)
    sending = asyncio.create_task(lane.send([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]))
    await asyncio.sleep(0)
    assert len(producer.sent) == 2 and not sending.done()
    for ack in producer.acks:
        ack.set_result(None)
    with pytest.raises(TimeoutError, match="buffer full"):
        await sending
    assert (published(registry, "success"), published(registry, "error")) == (2, 1)
