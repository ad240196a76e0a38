"""Send a command on broadcast.requests and await its answer on broadcast.events.

A client configured in BROADCAST_REQUEST_CLIENTS sends on its own topic instead,
broadcast.requests.<client>, is answered for the tenants it holds, and reads its answers on
its own broadcast.events.<client> (shared/requesters.py): the only topic of answers its
principal may read. It cannot follow a broadcast's events (`Commands.events`); `get_broadcast`
tells the state and the latest counters, as `broadcast status --watch` polls them.

An answer is the first event carrying the command's `request_id` other than `broadcast.started`
(which repeats the start's request id but is not its answer). Replaying a request id is
answered again (the same verdict, announced anew): `ask` returns the answer that follows its own
publish, never one that was already in the log.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Self
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared import topics
from shared.client.log import TopicLog
from shared.kafka_security import KafkaSecurity
from shared.requesters import answers_topic_for, topic_for

# Publishes one command (a JSON object with its tenant_id) on broadcast.requests.
SendCommand = Callable[[Mapping[str, Any]], Awaitable[None]]


class NoAnswer(TimeoutError):
    """No answer came in time: the stack is down, or the request never reached targeting."""


class EventsNotReadable(PermissionError):
    """A client asked for broadcast.events, which carries every tenant's events: it reads its
    own answers topic only."""


def command_with_ids(
    command: Mapping[str, Any] | BaseModel, *, requested_by: str, prefix: str = "req"
) -> dict[str, Any]:
    """The command as JSON, with a fresh `request_id` and `requested_by` unless it has them."""
    body = command.model_dump(mode="json") if isinstance(command, BaseModel) else dict(command)
    return {"request_id": f"{prefix}-{uuid4()}", "requested_by": requested_by, **body}


def answers_to(records: Iterable[Mapping[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The answers to `request_id` among `records`, oldest first."""
    return [
        dict(r)
        for r in records
        if r.get("request_id") == request_id and r.get("type") != "broadcast.started"
    ]


async def ask(
    answers: TopicLog, send: SendCommand, command: Mapping[str, Any], timeout: float = 60.0
) -> dict[str, Any]:
    """Publish `command` (it carries its request_id) with `send` and return its answer, read
    from `answers` (the sender's answers topic, opened before); NoAnswer after `timeout`
    seconds."""
    request_id = command["request_id"]
    before = len(answers_to(answers.records, request_id))
    await send(command)
    try:
        await answers.wait_until(
            lambda: len(answers_to(answers.records, request_id)) > before, timeout
        )
    except TimeoutError:
        raise NoAnswer(
            f"no answer to {command.get('type')} {request_id} within {timeout:g} s"
        ) from None
    return answers_to(answers.records, request_id)[before]


async def publish(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    security: KafkaSecurity | None = None,
    **options: Any,
) -> None:
    """Publish (key, value) records with a producer of their own; returns once all are
    acknowledged by every in-sync replica."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        **(security or KafkaSecurity()).client_options(),
        **options,
    )
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, key=k) for k, v in records])
    finally:
        await producer.stop()


def request_record(command: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A request topic's (key, value) for a command: keyed by its tenant, so one tenant's
    commands are handled in the order they were sent."""
    return str(command["tenant_id"]).encode(), json.dumps(command).encode()


class Commands:
    """Commands sent through one producer, answers read from one log of the answers topic.

    `async with Commands(kafka, requested_by="cli") as commands: await commands.ask({...})`

    `client` names the client it speaks as: its commands go on that client's topic and its
    answers are read from that client's answers topic. None is the platform's: requests on
    broadcast.requests, answers on broadcast.events. A name that cannot be a client's raises
    RequestClientsError. `security` is how it authenticates (the tools read it from
    BROADCAST_KAFKA_*: endpoints); on a cluster with ACLs its principal may write that request
    topic and read that answers topic, nothing else."""

    def __init__(
        self,
        bootstrap: str,
        *,
        requested_by: str,
        prefix: str = "req",
        client: str | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._topic = topic_for(client)
        self._client = client
        self._answers_topic = answers_topic_for(self._topic)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            **(security or KafkaSecurity()).client_options(),
        )
        self.answers = TopicLog(bootstrap, self._answers_topic, security)
        self._requested_by = requested_by
        self._prefix = prefix

    @property
    def events(self) -> TopicLog:
        """broadcast.events as read since `open`, to follow broadcasts (`BroadcastWatch`): the
        platform's answers, and every broadcast's story. Speaking as a client:
        EventsNotReadable, since that topic carries every tenant's events and the client's
        principal may not read it; `get_broadcast` tells a broadcast's state and counters."""
        if self._client is not None:
            raise EventsNotReadable(
                f"client {self._client!r} reads its answers on {self._answers_topic} only: "
                f"{topics.EVENTS.name} carries every tenant's events and is the platform's; "
                "follow a broadcast with get_broadcast (`broadcast status --watch`)"
            )
        return self.answers

    async def open(self) -> Self:
        await self._producer.start()
        await self.answers.open()
        return self

    async def close(self) -> None:
        await self.answers.close()
        await self._producer.stop()

    async def __aenter__(self) -> Self:
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def prepare(self, command: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        return command_with_ids(command, requested_by=self._requested_by, prefix=self._prefix)

    async def send(self, command: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        """Publish without waiting for the answer; the command as sent (with its ids)."""
        prepared = self.prepare(command)
        await self._send(prepared)
        return prepared

    async def ask(
        self, command: Mapping[str, Any] | BaseModel, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Publish and return the answer; NoAnswer after `timeout` seconds."""
        return await ask(self.answers, self._send, self.prepare(command), timeout)

    async def _send(self, command: Mapping[str, Any]) -> None:
        key, value = request_record(command)
        await self._producer.send_and_wait(self._topic, value, key=key)
