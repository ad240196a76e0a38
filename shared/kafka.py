"""The Kafka plumbing every service uses the same way: broker, consumer policy, quarantine, publish.

Delivery guarantee, in one sentence: a handler's effects are written to the database
idempotently, its output events are published and acknowledged by the broker (`acks=all`,
idempotent producer), and only then is the input batch's offset committed. A crash anywhere
replays the batch, which the stable ids make harmless.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.message import StreamMessage
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.events import BroadcastRejected, DeadLettered, RejectionReason
from shared.settings import ServiceSettings
from shared.topics import DEAD_LETTERS

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long a failing batch waits before it is redelivered: long enough not to spin on a database
# that is down, far below max_poll_interval_ms so the group never rebalances because of it.
ERROR_BACKOFF_SECONDS = 1.0


class BackoffOnError(BaseMiddleware):
    """Pause before a failed batch is nacked, so an outage does not become a busy loop."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        try:
            return await call_next(msg)
        except Exception:
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)
            raise


def make_broker(
    settings: ServiceSettings, *, service: str, registry: CollectorRegistry
) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=service,
        acks="all",
        enable_idempotence=True,
        # Publishing a batch with no_confirm fills producer batches; a short linger lets them fill.
        linger_ms=5,
        max_batch_size=256 * 1024,
        # On SIGTERM the batch in hand is finished (and committed) before the consumer stops; a
        # batch still running after this long is abandoned uncommitted and redelivered.
        graceful_timeout=15.0,
        middlewares=(
            BackoffOnError,
            KafkaPrometheusMiddleware(registry=registry, app_name=service),
        ),
        logger=logging.getLogger(service),
    )


def batch_consumer(group_id: str, batch_size: int) -> dict[str, Any]:
    """Subscriber options shared by every consumer of the system.

    NACK_ON_ERROR with batches: FastStream 0.7.8 rewinds every partition of the batch on nack, so
    a batch that failed is delivered again whole. Records that cannot be parsed never reach the
    handler (see `QuarantineDecoder`), so a nack only ever means "infrastructure failed, retry".
    """
    return {
        "group_id": group_id,
        "batch": True,
        "max_records": batch_size,
        "batch_timeout_ms": 100,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }


class QuarantineDecoder(Generic[T]):
    """Decodes a batch record by record; a record that does not validate is quarantined.

    `quarantine` decides what happens to it (a dead letter, a `rejected` event); the rest of the
    batch goes on, so one bad record never blocks a partition. When several services read one
    topic, `mine` tells from a record's `type` (None when it has none) whether this one
    handles it; the others are skipped.
    """

    def __init__(
        self,
        adapter: TypeAdapter[T],
        quarantine: Callable[[ConsumerRecord, ValidationError], Awaitable[None]],
        mine: Callable[[str | None], bool] | None = None,
    ) -> None:
        self._adapter = adapter
        self._quarantine = quarantine
        self._mine = mine

    async def __call__(self, msg: StreamMessage[tuple[ConsumerRecord, ...]]) -> list[T]:
        decoded: list[T] = []
        for record in msg.raw_message:
            if self._mine is not None and not self._mine(_type_of(record.value)):
                continue
            try:
                decoded.append(self._adapter.validate_json(record.value or b""))
            except ValidationError as error:
                await self._quarantine(record, error)
        return decoded


def _type_of(value: bytes | None) -> str | None:
    try:
        parsed = json.loads(value or b"")
    except ValueError:
        return None
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) else None


def field_errors(error: ValidationError, *, skip: str | None = None) -> list[tuple[str, str]]:
    """(dotted field path, reason) per problem. `skip` drops a leading union tag from paths."""
    found = []
    for item in error.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        if loc and skip is not None and loc[0] == skip:
            loc = loc[1:]
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
        found.append((where.replace(".[", "[") or "type", item["msg"]))
    return found


def describe(error: ValidationError) -> str:
    return "; ".join(f"{field}: {reason}" for field, reason in field_errors(error))


Quarantine = Callable[[ConsumerRecord, ValidationError], Awaitable[None]]


def dead_letter_quarantine(
    publisher: DefaultPublisher, service: str, registry: CollectorRegistry
) -> Quarantine:
    dead_letters = Counter(
        "broadcast_dead_letters",
        "Records no handler could parse, sent to broadcast.dead-letters.",
        ["topic"],
        registry=registry,
    )

    async def quarantine(record: ConsumerRecord, validation: ValidationError) -> None:
        error = describe(validation)
        key = record.key.decode(errors="replace") if record.key else None
        letter = DeadLettered(
            service=service,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            payload=(record.value or b"").decode(errors="replace"),
            error=error,
        )
        await publisher.publish(letter, key=record.key)
        dead_letters.labels(record.topic).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, error
        )

    return quarantine


async def publish_keyed(publisher: DefaultPublisher, items: Iterable[tuple[str, BaseModel]]) -> int:
    """Publish many records with their keys and wait until the broker acknowledged all of them.

    Each record keeps its own key (so its own partition), unlike FastStream's `publish_batch`,
    which sends the whole batch to one partition; the producer still groups them on the wire.
    """
    pending: list[asyncio.Future[Any]] = []
    for key, record in items:
        pending.append(await publisher.publish(record, key=key.encode(), no_confirm=True))
    if pending:
        await asyncio.gather(*pending)
    return len(pending)


def dead_letter_publisher(broker: KafkaBroker) -> DefaultPublisher:
    return broker.publisher(
        DEAD_LETTERS.name,
        title=f"{DEAD_LETTERS.name}:publish",
        schema=DeadLettered,
        description="Records that could not be parsed, with the error, for an operator.",
    )


def rejecting_quarantine(
    events: DefaultPublisher,
) -> Callable[[ConsumerRecord, ValidationError], Awaitable[None]]:
    """A command that does not validate is answered with `rejected`, naming the field."""

    async def quarantine(record: ConsumerRecord, error: ValidationError) -> None:
        try:
            raw = json.loads(record.value or b"")
        except ValueError:
            raw = None
        known = raw if isinstance(raw, dict) else {}

        def text(name: str) -> str | None:
            value = known.get(name)
            return value if isinstance(value, str) else None

        reason: RejectionReason = "invalid_json"
        field: str | None = None
        message = "the request is not a JSON object"
        if isinstance(raw, dict):
            field, problem = field_errors(error, skip=text("type"))[0]
            reason, message = "invalid_field", f"{field}: {problem}"
        await events.publish(
            BroadcastRejected(
                tenant_id=text("tenant_id"),
                request_id=text("request_id"),
                command=text("type"),
                reason=reason,
                field=field,
                message=message,
            ),
            key=record.key,
        )

    return quarantine
