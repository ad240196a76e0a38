"""The Kafka plumbing every service uses the same way: broker, consumer policy, quarantine, publish.

Delivery guarantee, in one sentence: a handler's effects are written to the database
idempotently, its output events are published and acknowledged by the broker (`acks=all`,
idempotent producer), and only then is the input batch's offset committed. A crash anywhere
replays the batch, which the stable ids make harmless.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import ConsumerRecord
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from shared.answering import Answers
from shared.events import PAGE_ENTRIES, BroadcastRejected, DeadLettered, RejectionReason
from shared.isolation import in_a_few_words
from shared.publishing import Publisher
from shared.requesters import Requesters, answers_topic_for
from shared.settings import ServiceSettings
from shared.topics import DEAD_LETTERS

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long a failing batch waits before it is redelivered: long enough not to spin on a database
# that is down, far below max_poll_interval_ms so the group never rebalances because of it.
ERROR_BACKOFF_SECONDS = 1.0

# On SIGTERM the batch in hand is finished (and committed) before the consumer stops; a batch
# still running after this long is abandoned uncommitted and redelivered. Whatever stops a
# service (Compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds) must wait
# longer.
GRACEFUL_TIMEOUT_SECONDS = 15.0


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
        # FastStream takes a string as one address; aiokafka's own clients split a list.
        [server.strip() for server in settings.kafka_bootstrap_servers.split(",")],
        client_id=service,
        acks="all",
        enable_idempotence=True,
        # A handler sends its whole batch before awaiting the acks; a short linger lets the
        # producer's batches fill. 1 MiB batches instead of 256 KiB compress 500 rendered
        # messages only 10% better (bench/README.md, "Kafka path"): not worth a larger request.
        linger_ms=5,
        max_batch_size=256 * 1024,
        compression_type=settings.kafka_compression,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS,
        middlewares=(
            BackoffOnError,
            KafkaPrometheusMiddleware(registry=registry, app_name=service),
        ),
        logger=logging.getLogger(service),
        security=settings.kafka_security().for_faststream(),
        # Topics are ours to create, with their partition counts (shared/admin.py), or the
        # operator's under ACLs; FastStream's subscribers would try again with the defaults.
        allow_auto_create_topics=False,
    )


def batch_consumer(group_id: str, batch_size: int, *, paged: bool = False) -> dict[str, Any]:
    """Subscriber options shared by every consumer of the system. `batch_size` counts
    messages: on a `paged` topic, whose records hold up to PAGE_ENTRIES each, a batch is
    `batch_size / PAGE_ENTRIES` records, about as many messages as one record each would be.

    NACK_ON_ERROR with batches: FastStream 0.7.8 rewinds every partition of the batch on nack, so
    a batch that failed is delivered again whole. Records that cannot be parsed never reach the
    handler (see `QuarantineDecoder`), so a nack only ever means "infrastructure failed, retry".
    """
    return {
        "group_id": group_id,
        "batch": True,
        "max_records": max(1, batch_size // PAGE_ENTRIES) if paged else batch_size,
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
        # The records of the batch in hand, by decoded item: a handler that fails on one item
        # dead-letters the record it came from. A subscriber handles one batch at a time.
        self._origin: dict[int, ConsumerRecord] = {}

    async def __call__(self, msg: StreamMessage[tuple[ConsumerRecord, ...]]) -> list[T]:
        decoded: list[T] = []
        self._origin = {}
        for record in msg.raw_message:
            if self._mine is not None and not self._mine(_type_of(record.value)):
                continue
            try:
                item = self._adapter.validate_json(record.value or b"")
            except ValidationError as error:
                await self._quarantine(record, error)
                continue
            if not await self._admit(record, item):
                continue
            decoded.append(item)
            self._origin[id(item)] = record
        return decoded

    async def _admit(self, record: ConsumerRecord, item: T) -> bool:
        """Whether a valid item goes on to the handler; a subclass that says no has dealt with
        it (answered it, set it aside)."""
        return True

    def record_of(self, item: T) -> ConsumerRecord | None:
        """The record `item` was decoded from, while its batch is in hand."""
        return self._origin.get(id(item))


class _Typed(BaseModel):
    """A record's `type` and nothing else: pydantic's parser skips the other fields without
    building them, about three times cheaper than `json.loads` (see bench/README.md, "Kafka
    path"), which matters on topics where most records are someone else's."""

    model_config = ConfigDict(extra="ignore")
    type: object = None


def _type_of(value: bytes | None) -> str | None:
    try:
        kind = _Typed.model_validate_json(value or b"").type
    except ValidationError:
        # What pydantic's parser refuses, Python's may still read (a BOM, UTF-16, a lone
        # surrogate escape, nesting over 200 deep): it decides, so the answer is exactly the
        # one `json.loads` gives, whichever parser answered.
        return _type_by_json_module(value)
    return kind if isinstance(kind, str) else None


def _type_by_json_module(value: bytes | None) -> str | None:
    try:
        parsed = json.loads(value or b"")
    # RecursionError: JSON nested a thousand deep is not a type anybody handles either.
    except (ValueError, RecursionError):
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


# Echoed input is cut to this many characters per value, so that no answer or dead letter can
# exceed the producer's limit, however large the record that caused it.
ECHO_LIMIT = 1024


def echo(value: str | bytes | None, limit: int = ECHO_LIMIT) -> str | None:
    """Input as it may be written back: decoded, lone surrogates and undecodable bytes
    replaced (they cannot be serialised), and cut to `limit` characters."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value[: 4 * limit].decode(errors="replace")
    value = value.encode("utf-8", errors="replace").decode()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def echo_key(key: bytes | None) -> bytes | None:
    """A record's key as it may be written back: cut like any echoed input."""
    return (key or b"")[:ECHO_LIMIT] or None


class DeadLetters:
    """Records set aside for an operator on broadcast.dead-letters, with the error, counted."""

    def __init__(self, publisher: Publisher, service: str, registry: CollectorRegistry):
        self._publisher = publisher
        self._service = service
        self._count = Counter(
            "broadcast_dead_letters",
            "Records no handler could parse or handle, sent to broadcast.dead-letters.",
            ["topic"],
            registry=registry,
        )

    async def send(self, record: ConsumerRecord, error: str) -> None:
        letter = DeadLettered(
            service=self._service,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=echo(record.key),
            payload=echo(record.value) or "",
            error=echo(error) or "",
        )
        await self._publisher.publish(letter, key=echo_key(record.key))
        self._count.labels(record.topic).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            letter.error,
        )

    async def quarantine(self, record: ConsumerRecord, validation: ValidationError) -> None:
        """A record that does not validate."""
        await self.send(record, describe(validation))

    def poison(self, decoder: "QuarantineDecoder[T]") -> Callable[[T, Exception], Awaitable[None]]:
        """For `isolating`: an item its handler fails on goes to the dead letters as the record
        `decoder` read it from."""

        async def set_aside(item: T, error: Exception) -> None:
            record = decoder.record_of(item)
            if record is None:  # not decoded by this decoder: a bug, not a record's fault
                raise error
            await self.send(record, in_a_few_words(error))

        return set_aside


def dead_letter_publisher(broker: KafkaBroker) -> Publisher:
    return broker.publisher(
        DEAD_LETTERS.name,
        title=f"{DEAD_LETTERS.name}:publish",
        schema=DeadLettered,
        description="Records that could not be parsed, with the error, for an operator.",
    )


def rejecting_quarantine(
    answers: Answers,
) -> Callable[[ConsumerRecord, ValidationError], Awaitable[None]]:
    """A command that does not validate is answered with `rejected`, naming the field, on the
    answers topic of the request topic it came from."""

    async def quarantine(record: ConsumerRecord, error: ValidationError) -> None:
        try:
            raw = json.loads(record.value or b"")
        except (ValueError, RecursionError):
            raw = None
        known = raw if isinstance(raw, dict) else {}

        def text(name: str) -> str | None:
            value = known.get(name)
            return echo(value) if isinstance(value, str) else None

        reason: RejectionReason = "invalid_json"
        field: str | None = None
        message = "the request is not a JSON object"
        if error.errors()[0]["type"] == "json_invalid":
            # Python's parser is laxer than pydantic's: a lone surrogate escape, say.
            message = f"the request is not valid JSON: {error.errors()[0]['msg']}"
        elif isinstance(raw, dict):
            field, problem = field_errors(error, skip=known.get("type"))[0]
            reason, message = "invalid_field", f"{field}: {problem}"
        await answers.to_request_from(record.topic).publish(
            BroadcastRejected(
                tenant_id=text("tenant_id"),
                request_id=text("request_id"),
                command=text("type"),
                reason=reason,
                field=echo(field),
                message=echo(message) or "",
            ),
            key=echo_key(record.key),
        )

    return quarantine


class _Command(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def request_id(self) -> str: ...


C = TypeVar("C", bound=_Command)


class RequestDecoder(QuarantineDecoder[C]):
    """Commands from every request topic, answered on their topic's answers topic
    (`answers_topic_for`) when they go no further.

    One that does not validate is answered `rejected` naming the field. One its topic's client
    may not send for its tenant (`Requesters.may_act`) is answered `rejected` with `forbidden`
    and never reaches the handler: nothing is written, nothing runs. The answer says nothing
    of the tenant, not even whether it exists. The handler learns where to answer the others
    from `answers_topic` (the topic's name) or `answers_to` (its publisher).
    """

    def __init__(
        self,
        adapter: TypeAdapter[C],
        answers: Answers,
        requesters: Requesters,
        mine: Callable[[str | None], bool],
    ) -> None:
        super().__init__(adapter, rejecting_quarantine(answers), mine)
        self._answers = answers
        self._requesters = requesters

    def answers_topic(self, command: C) -> str:
        """Where `command` is answered, while its batch is in hand: the answers topic of the
        request topic it was read from."""
        record = self.record_of(command)
        if record is None:  # not decoded by this decoder: a bug, not a record's fault
            raise LookupError(f"{command.type} {command.request_id} is not of the batch in hand")
        return answers_topic_for(record.topic)

    def answers_to(self, command: C) -> Publisher:
        """The publisher of `command`'s answers topic (`answers_topic`)."""
        return self._answers.on(self.answers_topic(command))

    async def reject_failed(self, command: C, error: Exception) -> None:
        """For `isolating`: a command its handler fails on by itself gets its one answer,
        `rejected` with `internal_error`, where its sender reads, saying nothing of the error
        (logged here)."""
        log.error(
            "%s %s of tenant %s failed: %s",
            command.type,
            echo(command.request_id, 100),
            echo(command.tenant_id, 100),
            type(error).__name__,
            exc_info=error,
        )
        await self.answers_to(command).publish(
            BroadcastRejected(
                tenant_id=echo(command.tenant_id),
                request_id=echo(command.request_id),
                broadcast_id=getattr(command, "broadcast_id", None),
                command=command.type,
                reason="internal_error",
                field=None,
                message="the engine could not carry out this command; the operator has the error",
            ),
            key=(echo(command.tenant_id, 100) or "").encode(),
        )

    async def _admit(self, record: ConsumerRecord, item: C) -> bool:
        if self._requesters.may_act(record.topic, item.tenant_id):
            return True
        # An operator wants to know a client tried; the tenant id is not personal data.
        log.warning(
            "forbidden: %s on %s for tenant %s, which its client does not hold",
            item.type,
            record.topic,
            echo(item.tenant_id, 100),
        )
        await self._answers.to_request_from(record.topic).publish(
            BroadcastRejected(
                tenant_id=item.tenant_id,
                request_id=item.request_id,
                broadcast_id=getattr(item, "broadcast_id", None),
                command=item.type,
                reason="forbidden",
                field="tenant_id",
                message="this client may not act for this tenant",
            ),
            key=item.tenant_id.encode(),
        )
        return False
