"""Applying broadcast commands: one answer (accepted or rejected) per command, replays included."""

import json
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from aiokafka import ConsumerRecord
from faststream.kafka.publisher.usecase import DefaultPublisher
from pydantic import ValidationError

from shared.events import (
    BroadcastAccepted,
    BroadcastEstimated,
    BroadcastRejected,
    CreateBroadcast,
    EstimateBroadcast,
    RejectionReason,
    StartBroadcast,
)
from shared.ids import broadcast_id_for, run_id_for
from shared.kafka import field_errors

from . import store
from .audience import Estimate
from .broadcasts import Rejection, check_criteria, check_definition

# Contracts read per query while estimating: large pages, since nothing is published.
ESTIMATE_PAGE = 5000


class CommandHandler:
    def __init__(
        self, pool: asyncpg.Pool, events: DefaultPublisher, start_run: Callable[[UUID], None]
    ) -> None:
        self._pool = pool
        self._events = events
        self._start_run = start_run

    async def handle(self, command: CreateBroadcast | StartBroadcast | EstimateBroadcast) -> None:
        """Apply the command and publish its one answer: accepted, estimated or rejected."""
        answer: BroadcastAccepted | BroadcastEstimated | BroadcastRejected
        broadcast_id = None if isinstance(command, EstimateBroadcast) else command.broadcast_id
        try:
            if isinstance(command, EstimateBroadcast):
                answer = await self._estimate(command)
            else:
                if isinstance(command, CreateBroadcast):
                    broadcast_id = await self._create(command)
                else:
                    broadcast_id = await self._start(command)
                answer = BroadcastAccepted(
                    tenant_id=command.tenant_id,
                    request_id=command.request_id,
                    broadcast_id=broadcast_id,
                    command=command.type,
                )
        except Rejection as rejection:
            answer = BroadcastRejected(
                tenant_id=command.tenant_id,
                request_id=command.request_id,
                broadcast_id=broadcast_id,
                command=command.type,
                reason=rejection.code,
                field=rejection.field,
                message=rejection.message,
            )
        key = str(broadcast_id) if broadcast_id else command.tenant_id
        await self._events.publish(answer, key=key.encode())

    async def _estimate(self, command: EstimateBroadcast) -> BroadcastEstimated:
        where = check_criteria(command.criteria, first=4)
        estimate = Estimate(
            messages=dict.fromkeys(command.channels, 0),
            opted_out_addresses=dict.fromkeys(command.channels, 0),
        )
        async with self._pool.acquire() as connection:
            async for rows in store.pages(connection, command.tenant_id, where, 0, ESTIMATE_PAGE):
                estimate.add(command.channels, rows)
        return BroadcastEstimated(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            contracts=estimate.contracts,
            unreachable_contracts=estimate.unreachable_contracts,
            messages=estimate.messages,
            opted_out_addresses=estimate.opted_out_addresses,
        )

    async def _create(self, command: CreateBroadcast) -> UUID:
        check_definition(command)
        broadcast_id = command.broadcast_id or broadcast_id_for(
            command.tenant_id, command.request_id
        )
        earlier = await store.create_broadcast(self._pool, broadcast_id, command)
        if earlier is not None and earlier != command.request_id:
            raise Rejection(
                "broadcast_exists",
                "broadcast_id",
                f"broadcast {broadcast_id} was already created by request '{earlier}'",
            )
        return broadcast_id

    async def _start(self, command: StartBroadcast) -> UUID:
        outcome = await store.start_broadcast(
            self._pool,
            command.tenant_id,
            command.broadcast_id,
            command.request_id,
            command.requested_by,
            run_id_for(command.broadcast_id, 1),
        )
        if outcome.run_id is None:
            raise Rejection(
                "broadcast_not_found",
                "broadcast_id",
                f"no broadcast {command.broadcast_id} for tenant '{command.tenant_id}'",
            )
        if outcome.state != "draft" and outcome.earlier_request != command.request_id:
            raise Rejection(
                "already_started",
                "broadcast_id",
                "this broadcast was already sent; use resend to send it again",
            )
        # A replayed start resumes the same run rather than creating another one.
        self._start_run(outcome.run_id)
        return command.broadcast_id


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
