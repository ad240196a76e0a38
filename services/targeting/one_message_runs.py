"""Runs of one message: a preview to one address, a follow-up (an action's message sent
again), and a notice (a completed run told to a person of the tenant). Each is published whole
at once: its start, its one recipient, its total."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import (
    BroadcastCompleted,
    Channel,
    Content,
    ContractSnapshot,
    CreateBroadcast,
    FollowUpRequested,
    PreviewBroadcast,
    RecipientTargeted,
    RunStarted,
    TemplateVersion,
    TenantSettings,
)
from shared.ids import event_id_for, notice_run_id_for, preview_run_id_for, recipient_id_for

from . import notices, store
from .audience import Row, snapshot
from .broadcasts import Rejection, check_preview_address, no_broadcast, no_template
from .criteria import compile_criteria
from .publishers import Publishers
from .run_events import run_started, targeting_completed

log = logging.getLogger("targeting")


@dataclass(frozen=True)
class Previewable:
    """What a preview of a broadcast renders: its definition, the content and the tenant's
    settings a run started now would have, on `channel`."""

    definition: CreateBroadcast
    content: Content
    template: TemplateVersion | None
    settings: TenantSettings
    channel: Channel

    def run(self, broadcast_id: UUID, request_id: str, requested_by: str) -> RunStarted:
        """The preview's one-message run; its id derives from the request."""
        return run_started(
            broadcast_id,
            preview_run_id_for(broadcast_id, request_id),
            self.definition,
            requested_by=requested_by,
            content=self.content,
            template=self.template,
            settings=self.settings,
            channels=[self.channel],
            purpose="preview",
        )


async def previewable(
    connection: Connection, tenant_id: str, broadcast_id: UUID, channel: Channel
) -> Previewable:
    """The tenant's broadcast as a preview renders it; Rejection naming the field when there
    is no such broadcast, it does not send on `channel`, or its template is gone."""
    definition = await store.load_broadcast(connection, tenant_id, broadcast_id)
    if definition is None:
        raise no_broadcast(tenant_id, broadcast_id)
    if channel not in definition.channels:
        raise Rejection("invalid_field", "channel", f"the broadcast does not send {channel}")
    resolved = await store.resolve_content(connection, definition)
    if resolved is None:
        raise no_template(definition.template_id or "")
    content, template = resolved
    settings = await store.tenant_settings(connection, tenant_id)
    return Previewable(definition, content, template, settings, channel)


class OneMessageRuns:
    def __init__(self, pool: Callable[[], asyncpg.Pool], publish: Publishers) -> None:
        self._pool = pool
        self._publish = publish

    async def preview(self, command: PreviewBroadcast) -> UUID:
        """Publish a one-recipient run for the preview address; nothing else is sent."""
        check_preview_address(command.channel, command.to)
        async with self._pool().acquire() as connection:
            found = await previewable(
                connection, command.tenant_id, command.broadcast_id, command.channel
            )
            sample = await self._sample(connection, command, found.definition)
        run = found.run(command.broadcast_id, command.request_id, command.requested_by)
        await self._publish_run(run, sample, command.channel, command.to)
        return run.run_id

    async def follow_up(self, request: FollowUpRequested) -> None:
        """Publish an action's message again, rendered as its run renders, to `address`."""
        async with self._pool().acquire() as connection:
            run = await store.find_run(connection, request.run_id)
            row = await store.live_contract(connection, request.tenant_id, request.contract_id)
        if run is None or run.tenant_id != request.tenant_id or row is None:
            log.warning("follow-up %s: its run or contract is gone", request.follow_up_run_id)
            return
        started = run_started(
            run.broadcast_id,
            request.follow_up_run_id,
            run.definition,
            requested_by=request.requested_by,
            content=run.content,
            template=run.template,
            settings=run.settings,
            channels=[request.channel],
            purpose="follow_up",
        )
        await self._publish_run(started, snapshot(row), request.channel, request.address)

    async def notice(self, completed: BroadcastCompleted) -> None:
        """Email the completion to each person it names whom the tenant configured for
        completion notices, in their language; nothing when it configured none. Published
        again for a completion announced again: the same runs, so nobody gets two emails."""
        async with self._pool().acquire() as connection:
            settings = await store.tenant_settings(connection, completed.tenant_id)
            to_tell = notices.recipients(completed.notify, settings.completion_notices)
            if not to_tell:
                return
            definition = await store.load_broadcast(
                connection, completed.tenant_id, completed.broadcast_id
            )
        assert settings.completion_notices is not None and definition is not None
        sender = notices.sender(settings.completion_notices)
        for user_id, user in to_tell:
            run = run_started(
                completed.broadcast_id,
                notice_run_id_for(completed.run_id, user_id),
                definition.model_copy(update={"languages": [user.language], "sender": sender}),
                requested_by=completed.requested_by,
                content=notices.CONTENT,
                template=None,
                settings=settings,
                channels=["email"],
                purpose="notice",
            )
            shown = notices.values(completed, definition.name, user.language)
            contract = notices.contract(user_id, user.language, shown)
            await self._publish_run(run, contract, "email", user.email)

    async def _publish_run(
        self, run: RunStarted, contract: ContractSnapshot, channel: Channel, address: str
    ) -> None:
        key = str(run.broadcast_id).encode()
        await self._publish.runs.publish(run, key=key)
        recipient = RecipientTargeted(
            event_id=event_id_for(run.run_id, "recipient"),
            tenant_id=run.tenant_id,
            broadcast_id=run.broadcast_id,
            run_id=run.run_id,
            recipient_id=recipient_id_for(run.run_id, contract.contract_id, channel, address),
            channel=channel,
            address=address,
            contract=contract,
        )
        await self._publish.recipients.publish(recipient, key=str(recipient.recipient_id).encode())
        await self._publish.runs.publish(
            targeting_completed(
                run.tenant_id,
                run.broadcast_id,
                run.run_id,
                contracts=1,
                messages=1,
                unreachable_contracts=0,
            ),
            key=key,
        )

    @staticmethod
    async def _sample(
        connection: Connection, command: PreviewBroadcast, definition: CreateBroadcast
    ) -> ContractSnapshot:
        """The contract a preview is rendered with: the one named, else the first matching."""
        if command.contract_id is not None:
            return snapshot(
                await named_contract(connection, command.tenant_id, command.contract_id)
            )
        where = compile_criteria(definition.criteria)
        rows = await store.next_contracts(connection, command.tenant_id, where, 0, 1)
        if not rows:
            raise Rejection(
                "no_matching_contract",
                "criteria",
                "no contract matches the broadcast's criteria to render the preview with",
            )
        return snapshot(rows[0])


async def named_contract(connection: Connection, tenant_id: str, contract_id: str) -> Row:
    """The tenant's live contract `contract_id`; Rejection `contract_not_found` when none."""
    row = await store.live_contract(connection, tenant_id, contract_id)
    if row is None:
        raise Rejection(
            "contract_not_found",
            "contract_id",
            f"no contract '{contract_id}' for tenant '{tenant_id}'",
        )
    return row
