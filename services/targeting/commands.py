"""Applying broadcast commands: one answer (accepted or rejected) per command, replays included.

Each command goes to the part that applies it: the lifecycle's `transitions`, the `store`, the
one-message runs (previews), the render requests; replays are answered by `replays`. A render
preview is answered by the composer that renders it, so only its refusal is answered here.
"""

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from shared.clock import Clock
from shared.events import (
    DEFINITION_FIELDS,
    AnyCommand,
    BroadcastEstimated,
    BroadcastPaused,
    CancelBroadcast,
    ConfigureTenant,
    CreateBroadcast,
    DeleteTemplate,
    DescribeCriteria,
    EstimateBroadcast,
    GetBroadcast,
    ListBroadcasts,
    ListTemplates,
    ListVariables,
    PauseBroadcast,
    PreviewBroadcast,
    ReenableContact,
    RenameBroadcast,
    RenderPreview,
    ResendBroadcast,
    ResumeBroadcast,
    RunCancelled,
    RunPaused,
    RunResumed,
    SaveTemplate,
    ScheduleBroadcast,
    StartBroadcast,
    TemplateDeleted,
    TemplateSaved,
    TemplatesListed,
    TenantConfigured,
    TenantSettingsChanged,
    UpdateBroadcast,
)
from shared.ids import event_id_for

from . import queries, replays, store, transitions
from .answers import Answer, accepted, rejected
from .audience import Estimate
from .broadcasts import (
    Rejection,
    check_content,
    check_criteria,
    check_definition,
    check_notices,
    id_taken,
    no_broadcast,
    no_template,
)
from .one_message_runs import OneMessageRuns
from .publishers import Publishers
from .renders import RenderRequests
from .suppressions import Suppressions


class CommandHandler:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        publish: Publishers,
        start_run: Callable[[UUID], None],
        one_message_runs: OneMessageRuns,
        renders: RenderRequests,
        suppressions: Suppressions,
        clock: Clock,
        *,
        estimate_page_size: int,
    ) -> None:
        """`start_run` streams a run just started; `clock` tells whether a schedule is in the
        past."""
        self._pool = pool
        self._publish = publish
        self._start_run = start_run
        self._one_message_runs = one_message_runs
        self._renders = renders
        self._suppressions = suppressions
        self._clock = clock
        self._estimate_page_size = estimate_page_size

    async def handle(self, command: AnyCommand, answers_topic: str) -> None:
        """Apply the command and publish its one answer on `answers_topic` (its sender's,
        `answers_topic_for` its request topic; a replay's too): the outcome, or rejected; none
        when another service answers it (a render preview handed over, with the topic)."""
        answer: Answer | None
        try:
            answer = await replays.applied_once(
                self._pool(), command, lambda c: self._apply(c, answers_topic)
            )
        except Rejection as rejection:
            answer = rejected(command, rejection)
        if answer is None:
            return
        broadcast_id = getattr(answer, "broadcast_id", None) or getattr(
            command, "broadcast_id", None
        )
        key = str(broadcast_id) if broadcast_id else command.tenant_id
        await self._publish.answers.on(answers_topic).publish(answer, key=key.encode())

    async def _apply(self, command: AnyCommand, answers_topic: str) -> Answer | None:
        match command:
            case EstimateBroadcast():
                return await self._estimate(command)
            case CreateBroadcast():
                return accepted(command, await self._create(command))
            case UpdateBroadcast():
                await self._update(command)
                return accepted(command, command.broadcast_id)
            case StartBroadcast():
                run_id = await transitions.start(
                    self._pool(),
                    command.tenant_id,
                    command.broadcast_id,
                    command.request_id,
                    command.requested_by,
                )
                # A replayed start resumes the same run rather than creating another one.
                self._start_run(run_id)
                return accepted(command, command.broadcast_id, run_id)
            case ResendBroadcast():
                run_id = await transitions.resend(
                    self._pool(),
                    command.tenant_id,
                    command.broadcast_id,
                    command.request_id,
                    command.requested_by,
                    command.only_failed,
                    command.include_unknown,
                )
                self._start_run(run_id)
                return accepted(command, command.broadcast_id, run_id)
            case PauseBroadcast():
                return accepted(command, command.broadcast_id, await self._pause(command))
            case ResumeBroadcast():
                return accepted(command, command.broadcast_id, await self._resume(command))
            case CancelBroadcast():
                await self._cancel(command)
                return accepted(command, command.broadcast_id)
            case ScheduleBroadcast():
                return accepted(command, await self._schedule(command))
            case RenameBroadcast():
                renamed = await store.rename_broadcast(
                    self._pool(), command.tenant_id, command.broadcast_id, command.name
                )
                if not renamed:
                    raise no_broadcast(command.tenant_id, command.broadcast_id)
                return accepted(command, command.broadcast_id)
            case PreviewBroadcast():
                return accepted(
                    command,
                    command.broadcast_id,
                    await self._one_message_runs.preview(command),
                )
            case RenderPreview():
                await self._renders.request(command, answers_topic)
                return None
            case ConfigureTenant():
                check_notices(command.settings.completion_notices)
                await store.configure_tenant(
                    self._pool(), command.tenant_id, command.settings, command.request_id
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
                    version=await store.save_template(self._pool(), command),
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
                    templates=await store.list_templates(self._pool(), command.tenant_id),
                )
            case ListBroadcasts():
                return await queries.list_broadcasts(self._pool(), command)
            case GetBroadcast():
                return await queries.get_broadcast(self._pool(), command)
            case ListVariables():
                return queries.list_variables(command)
            case DescribeCriteria():
                return queries.describe_criteria(command)
            case ReenableContact():
                return await self._suppressions.reenable(command)

    async def _estimate(self, command: EstimateBroadcast) -> BroadcastEstimated:
        where = check_criteria(command.criteria)
        estimate = Estimate(
            messages=dict.fromkeys(command.channels, 0),
            opted_out_addresses=dict.fromkeys(command.channels, 0),
            suppressed_addresses=dict.fromkeys(command.channels, 0),
        )
        async with self._pool().acquire() as connection:
            async for rows in store.pages(
                connection, command.tenant_id, where, 0, self._estimate_page_size
            ):
                estimate.add(command.channels, rows)
        return BroadcastEstimated(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            contracts=estimate.contracts,
            unreachable_contracts=estimate.unreachable_contracts,
            messages=estimate.messages,
            opted_out_addresses=estimate.opted_out_addresses,
            suppressed_addresses=estimate.suppressed_addresses,
        )

    async def _check(self, command: CreateBroadcast | UpdateBroadcast) -> None:
        template = None
        if command.template_id is not None and command.content is None:
            async with self._pool().acquire() as connection:
                latest = await store.latest_template(
                    connection, command.tenant_id, command.template_id
                )
            if latest is None:
                raise no_template(command.template_id)
            template = latest[1]
        check_definition(command, template)

    async def _create(self, command: CreateBroadcast) -> UUID:
        await self._check(command)
        broadcast_id = await store.create_broadcast(self._pool(), command)
        if broadcast_id is None:
            raise id_taken(command)
        return broadcast_id

    async def _update(self, command: UpdateBroadcast) -> None:
        await self._check(command)
        definition = CreateBroadcast.model_validate(
            command.model_dump(
                include=set(DEFINITION_FIELDS | {"tenant_id", "request_id", "requested_by"})
            )
            | {"broadcast_id": command.broadcast_id}
        )
        await transitions.update(self._pool(), definition, command.broadcast_id)

    async def _pause(self, command: PauseBroadcast) -> UUID:
        changed, run = await transitions.pause(
            self._pool(), command.tenant_id, command.broadcast_id
        )
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
        _, run = await transitions.resume(self._pool(), command.tenant_id, command.broadcast_id)
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
            async with self._pool().acquire() as connection:
                settings = await store.tenant_settings(connection, command.tenant_id)
            at = at.replace(tzinfo=ZoneInfo(settings.time_zone))
        if at < self._clock() - timedelta(minutes=1):
            raise Rejection("invalid_field", "at", f"{at.isoformat()} is in the past")
        await transitions.schedule(
            self._pool(),
            command.tenant_id,
            command.broadcast_id,
            at,
            command.request_id,
            command.requested_by,
        )
        return command.broadcast_id

    async def _cancel(self, command: CancelBroadcast) -> None:
        for run in await transitions.cancel(self._pool(), command.tenant_id, command.broadcast_id):
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

    async def _delete_template(self, command: DeleteTemplate) -> None:
        if await store.delete_template(self._pool(), command.tenant_id, command.template_id):
            return
        # Deleting twice is harmless; deleting what never existed is a mistake worth naming.
        if not await store.template_deleted(self._pool(), command.tenant_id, command.template_id):
            raise no_template(command.template_id)
