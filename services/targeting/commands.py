"""Applying broadcast commands: one answer (accepted or rejected) per command, replays included."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from faststream.kafka.publisher.usecase import DefaultPublisher

from shared.db import Connection
from shared.events import (
    DEFINITION_FIELDS,
    AnyCommand,
    BroadcastAccepted,
    BroadcastEstimated,
    BroadcastPaused,
    BroadcastRejected,
    CancelBroadcast,
    Channel,
    ConfigureTenant,
    ContractSnapshot,
    CreateBroadcast,
    DeleteTemplate,
    EstimateBroadcast,
    FollowUpRequested,
    ListTemplates,
    PauseBroadcast,
    PreviewBroadcast,
    RecipientTargeted,
    RenameBroadcast,
    ResendBroadcast,
    ResumeBroadcast,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
    SaveTemplate,
    ScheduleBroadcast,
    StartBroadcast,
    TargetingCompleted,
    TemplateDeleted,
    TemplateSaved,
    TemplatesListed,
    TenantConfigured,
    TenantSettingsChanged,
    UpdateBroadcast,
)
from shared.ids import (
    broadcast_id_for,
    event_id_for,
    preview_run_id_for,
    recipient_id_for,
)

from . import store, transitions
from .audience import Estimate, snapshot
from .broadcasts import (
    Rejection,
    check_content,
    check_criteria,
    check_definition,
    check_preview_address,
    no_broadcast,
)
from .criteria import compile_criteria

log = logging.getLogger("targeting")

# Commands whose replay must change nothing even after later commands changed the broadcast
# or the tenant (a pause replayed after a resume, an old configure replayed after a new one):
# their request ids are remembered once applied (a cancel replayed after a resend must not
# cancel the new run). Create, start and resend are idempotent by construction too: the ids
# they create derive from the request.
REMEMBERED = frozenset(
    {
        "update_broadcast",
        "schedule_broadcast",
        "rename_broadcast",
        "pause_broadcast",
        "resume_broadcast",
        "resend_broadcast",
        "configure_tenant",
        "cancel_broadcast",
    }
)

# Contracts read per query while estimating: large pages, since nothing is published.
ESTIMATE_PAGE = 5000


Answer = (
    BroadcastAccepted
    | BroadcastEstimated
    | BroadcastRejected
    | TenantConfigured
    | TemplateSaved
    | TemplateDeleted
    | TemplatesListed
)


@dataclass(frozen=True)
class Publishers:
    events: DefaultPublisher
    runs: DefaultPublisher
    recipients: DefaultPublisher
    tenants: DefaultPublisher


class CommandHandler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publishers,
        start_run: Callable[[UUID], None],
        clock: Callable[[], datetime],
    ) -> None:
        """`clock` tells when schedules are due; tests inject one."""
        self._pool = pool
        self._publish = publish
        self._start_run = start_run
        self._clock = clock

    async def handle(self, command: AnyCommand) -> None:
        """Apply the command and publish its one answer: the outcome, or rejected."""
        broadcast_id = getattr(command, "broadcast_id", None)
        remembered = command.type in REMEMBERED
        try:
            answer = (remembered and await self._replayed(command)) or await self._apply(command)
            if remembered and isinstance(answer, BroadcastAccepted | TenantConfigured):
                await store.remember_request(
                    self._pool,
                    command.tenant_id,
                    command.request_id,
                    command.type,
                    getattr(answer, "broadcast_id", None),
                    getattr(answer, "run_id", None),
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
        broadcast_id = getattr(answer, "broadcast_id", None) or broadcast_id
        key = str(broadcast_id) if broadcast_id else command.tenant_id
        await self._publish.events.publish(answer, key=key.encode())

    async def _replayed(self, command: AnyCommand) -> Answer | None:
        """The answer a request already applied gave, without applying it again."""
        applied = await store.applied_request(self._pool, command.tenant_id, command.request_id)
        if applied is None:
            return None
        if applied.command != command.type or applied.broadcast_id != getattr(
            command, "broadcast_id", None
        ):
            raise Rejection(
                "request_reused",
                "request_id",
                f"request '{command.request_id}' was already used for another command "
                f"({applied.command})",
            )
        if isinstance(command, ConfigureTenant):  # the settings as they are now
            async with self._pool.acquire() as connection:
                settings = await store.tenant_settings(connection, command.tenant_id)
            return TenantConfigured(
                tenant_id=command.tenant_id, request_id=command.request_id, settings=settings
            )
        assert applied.broadcast_id is not None
        return self._accepted(command, applied.broadcast_id, applied.run_id)

    async def _apply(self, command: AnyCommand) -> Answer:
        match command:
            case EstimateBroadcast():
                return await self._estimate(command)
            case CreateBroadcast():
                return self._accepted(command, await self._create(command))
            case UpdateBroadcast():
                await self._update(command)
                return self._accepted(command, command.broadcast_id)
            case StartBroadcast():
                run_id = await transitions.start(
                    self._pool,
                    command.tenant_id,
                    command.broadcast_id,
                    command.request_id,
                    command.requested_by,
                )
                # A replayed start resumes the same run rather than creating another one.
                self._start_run(run_id)
                return self._accepted(command, command.broadcast_id, run_id)
            case ResendBroadcast():
                run_id = await transitions.resend(
                    self._pool,
                    command.tenant_id,
                    command.broadcast_id,
                    command.request_id,
                    command.requested_by,
                    command.only_failed,
                    command.include_unknown,
                )
                self._start_run(run_id)
                return self._accepted(command, command.broadcast_id, run_id)
            case PauseBroadcast():
                return self._accepted(command, command.broadcast_id, await self._pause(command))
            case ResumeBroadcast():
                return self._accepted(command, command.broadcast_id, await self._resume(command))
            case CancelBroadcast():
                await self._cancel(command)
                return self._accepted(command, command.broadcast_id)
            case ScheduleBroadcast():
                return self._accepted(command, await self._schedule(command))
            case RenameBroadcast():
                renamed = await store.rename_broadcast(
                    self._pool, command.tenant_id, command.broadcast_id, command.name
                )
                if not renamed:
                    raise no_broadcast(command.tenant_id, command.broadcast_id)
                return self._accepted(command, command.broadcast_id)
            case PreviewBroadcast():
                return self._accepted(command, command.broadcast_id, await self._preview(command))
            case ConfigureTenant():
                await store.configure_tenant(
                    self._pool, command.tenant_id, command.settings, command.request_id
                )
                # The dispatcher applies send windows and rates from this compacted topic.
                await self._publish.tenants.publish(
                    TenantSettingsChanged(tenant_id=command.tenant_id, settings=command.settings),
                    key=command.tenant_id.encode(),
                )
                return TenantConfigured(
                    tenant_id=command.tenant_id,
                    request_id=command.request_id,
                    settings=command.settings,
                )
            case SaveTemplate():
                check_content(command.content)
                return TemplateSaved(
                    tenant_id=command.tenant_id,
                    request_id=command.request_id,
                    template_id=command.template_id,
                    version=await store.save_template(self._pool, command),
                )
            case DeleteTemplate():
                await self._delete_template(command)
                return TemplateDeleted(
                    tenant_id=command.tenant_id,
                    request_id=command.request_id,
                    template_id=command.template_id,
                )
            case ListTemplates():
                return TemplatesListed(
                    tenant_id=command.tenant_id,
                    request_id=command.request_id,
                    templates=await store.list_templates(self._pool, command.tenant_id),
                )

    @staticmethod
    def _accepted(command: AnyCommand, broadcast_id: UUID, run_id: UUID | None = None) -> Answer:
        return BroadcastAccepted(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            broadcast_id=broadcast_id,
            command=command.type,
            run_id=run_id,
        )

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

    async def _check(self, command: CreateBroadcast | UpdateBroadcast) -> None:
        template = None
        if command.template_id is not None and command.content is None:
            async with self._pool.acquire() as connection:
                latest = await store.latest_template(
                    connection, command.tenant_id, command.template_id
                )
            if latest is None:
                raise _no_template(command.template_id)
            template = latest[1]
        check_definition(command, template)

    async def _create(self, command: CreateBroadcast) -> UUID:
        await self._check(command)
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

    async def _update(self, command: UpdateBroadcast) -> None:
        await self._check(command)
        definition = CreateBroadcast.model_validate(
            command.model_dump(
                include=set(DEFINITION_FIELDS | {"tenant_id", "request_id", "requested_by"})
            )
            | {"broadcast_id": command.broadcast_id}
        )
        await transitions.update(self._pool, definition, command.broadcast_id)

    async def _pause(self, command: PauseBroadcast) -> UUID:
        changed, run = await transitions.pause(self._pool, command.tenant_id, command.broadcast_id)
        key = str(command.broadcast_id).encode()
        # Announced again when nothing changed: a crash may have lost the first announcement,
        # and holding a run twice is harmless.
        await self._publish.runs.publish(
            RunPaused(
                tenant_id=command.tenant_id,
                broadcast_id=command.broadcast_id,
                run_id=run.run_id,
                reason=command.reason,
            ),
            key=key,
        )
        if changed:
            await self._publish.events.publish(
                BroadcastPaused(
                    event_id=event_id_for(run.run_id, f"paused:{command.request_id}"),
                    tenant_id=command.tenant_id,
                    broadcast_id=command.broadcast_id,
                    run_id=run.run_id,
                    requested_by=run.requested_by,
                    reason=command.reason,
                    detail=command.detail,
                ),
                key=key,
            )
        return run.run_id

    async def _resume(self, command: ResumeBroadcast) -> UUID:
        _, run = await transitions.resume(self._pool, command.tenant_id, command.broadcast_id)
        await self._publish.runs.publish(
            RunResumed(
                tenant_id=command.tenant_id,
                broadcast_id=command.broadcast_id,
                run_id=run.run_id,
            ),
            key=str(command.broadcast_id).encode(),
        )
        return run.run_id

    async def _schedule(self, command: ScheduleBroadcast) -> UUID:
        at = command.at
        if at.tzinfo is None:  # the tenant's wall time
            async with self._pool.acquire() as connection:
                settings = await store.tenant_settings(connection, command.tenant_id)
            at = at.replace(tzinfo=ZoneInfo(settings.time_zone))
        if at < self._clock() - timedelta(minutes=1):
            raise Rejection("invalid_field", "at", f"{at.isoformat()} is in the past")
        await transitions.schedule(
            self._pool,
            command.tenant_id,
            command.broadcast_id,
            at,
            command.request_id,
            command.requested_by,
        )
        return command.broadcast_id

    async def start_due(self, tenant_id: str | None = None) -> None:
        """Start the scheduled broadcasts whose time has come, as their scheduler asked; only
        `tenant_id`'s when given."""
        now = self._clock()
        for due in await transitions.due_schedules(self._pool, now, tenant_id):
            try:
                run_id = await transitions.start(
                    self._pool,
                    due.tenant_id,
                    due.broadcast_id,
                    due.request_id,
                    due.requested_by,
                    due_by=now,
                )
            except Rejection as rejection:
                log.warning(
                    "scheduled broadcast %s could not start: %s",
                    due.broadcast_id,
                    rejection.message,
                )
                continue
            self._start_run(run_id)

    async def _cancel(self, command: CancelBroadcast) -> None:
        for run in await transitions.cancel(self._pool, command.tenant_id, command.broadcast_id):
            await self._publish.runs.publish(
                RunCancelled(
                    event_id=event_id_for(run.run_id, "run_cancelled"),
                    tenant_id=command.tenant_id,
                    broadcast_id=command.broadcast_id,
                    run_id=run.run_id,
                    requested_by=run.requested_by,
                ),
                key=str(command.broadcast_id).encode(),
            )

    async def _preview(self, command: PreviewBroadcast) -> UUID:
        """Publish a one-recipient run for the preview address; nothing else is sent."""
        check_preview_address(command.channel, command.to)
        async with self._pool.acquire() as connection:
            definition = await store.load_broadcast(
                connection, command.tenant_id, command.broadcast_id
            )
            if definition is None:
                raise no_broadcast(command.tenant_id, command.broadcast_id)
            if command.channel not in definition.channels:
                raise Rejection(
                    "invalid_field", "channel", f"the broadcast does not send {command.channel}"
                )
            resolved = await store.resolve_content(connection, definition)
            if resolved is None:
                raise _no_template(definition.template_id or "")
            settings = await store.tenant_settings(connection, command.tenant_id)
            sample = await self._sample(connection, command, definition)
        run_id = preview_run_id_for(command.broadcast_id, command.request_id)
        content, template = resolved
        await self._one_message_run(
            RunStarted(
                event_id=event_id_for(run_id, "run_started"),
                tenant_id=command.tenant_id,
                broadcast_id=command.broadcast_id,
                run_id=run_id,
                name=definition.name,
                requested_by=command.requested_by,
                channels=[command.channel],
                languages=definition.languages,
                content=content,
                sender=definition.sender,
                purpose="preview",
                template=template,
                settings=settings,
            ),
            sample,
            command.channel,
            command.to,
        )
        return run_id

    async def follow_up(self, request: FollowUpRequested) -> None:
        """Publish an action's message again, rendered as its run renders, to `address`."""
        async with self._pool.acquire() as connection:
            run = await store.find_run(connection, request.run_id)
            row = await store.live_contract(connection, request.tenant_id, request.contract_id)
        if run is None or run.tenant_id != request.tenant_id or row is None:
            log.warning("follow-up %s: its run or contract is gone", request.follow_up_run_id)
            return
        await self._one_message_run(
            RunStarted(
                event_id=event_id_for(request.follow_up_run_id, "run_started"),
                tenant_id=run.tenant_id,
                broadcast_id=run.broadcast_id,
                run_id=request.follow_up_run_id,
                name=run.definition.name,
                requested_by=request.requested_by,
                channels=[request.channel],
                languages=run.definition.languages,
                content=run.content,
                sender=run.definition.sender,
                purpose="follow_up",
                template=run.template,
                settings=run.settings,
            ),
            snapshot(row),
            request.channel,
            request.address,
        )

    async def _one_message_run(
        self, run: RunStarted, contract: ContractSnapshot, channel: Channel, address: str
    ) -> None:
        """A run of one message (a preview, a follow-up): its start, the recipient, the total."""
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
            TargetingCompleted(
                event_id=event_id_for(run.run_id, "targeting_completed"),
                tenant_id=run.tenant_id,
                broadcast_id=run.broadcast_id,
                run_id=run.run_id,
                contracts=1,
                messages=1,
                unreachable_contracts=0,
            ),
            key=key,
        )

    async def _sample(
        self, connection: Connection, command: PreviewBroadcast, definition: CreateBroadcast
    ) -> ContractSnapshot:
        if command.contract_id is not None:
            row = await store.live_contract(connection, command.tenant_id, command.contract_id)
            if row is None:
                raise Rejection(
                    "contract_not_found",
                    "contract_id",
                    f"no contract '{command.contract_id}' for tenant '{command.tenant_id}'",
                )
            return snapshot(row)
        where = compile_criteria(definition.criteria, first=4)
        rows = await store.next_contracts(connection, command.tenant_id, where, 0, 1)
        if not rows:
            raise Rejection(
                "no_matching_contract",
                "criteria",
                "no contract matches the broadcast's criteria to render the preview with",
            )
        return snapshot(rows[0])

    async def _delete_template(self, command: DeleteTemplate) -> None:
        if await store.delete_template(self._pool, command.tenant_id, command.template_id):
            return
        # Deleting twice is harmless; deleting what never existed is a mistake worth naming.
        if not await store.template_deleted(self._pool, command.tenant_id, command.template_id):
            raise _no_template(command.template_id)


def _no_template(template_id: str) -> Rejection:
    return Rejection("template_not_found", "template_id", f"no template '{template_id}'")
