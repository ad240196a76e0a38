"""Targeting: the audience read model, broadcast commands, and streaming runs to the composer.

Reads  audience.contracts  (contract upserts and deletions from the platform)
       broadcast.requests  (broadcast, template and tenant commands)
       broadcast.runs      (follow-ups: an action's message to send again; actions closed:
                            left out of a resend to the failures)
       broadcast.events    (completed runs: the broadcast's lifecycle moves to completed)
       broadcast.deliveries (failed messages: whom a resend to the failures goes to)
Writes broadcast.events    (answers to commands, started, contact opted out)
       broadcast.runs      (run started with its definition, targeting completed with the total,
                            paused, resumed, cancelled)
       broadcast.recipients (one record per message to produce)
       tenant.settings     (each tenant's settings, compacted: send windows and rates)
Serves /unsubscribe        (the page every unsubscribe link leads to)
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.events import (
    COMMAND_ADAPTER,
    TRACKER_COMMAND_TYPES,
    ActionClosed,
    ActionEvent,
    AnyCommand,
    BroadcastCompleted,
    BroadcastEvent,
    ContractEvent,
    DeliveryCorrected,
    DeliveryFailed,
    FollowUpRequested,
    RecipientTargeted,
    RunEvent,
    TenantSettingsChanged,
)
from shared.isolation import isolating
from shared.kafka import (
    QuarantineDecoder,
    batch_consumer,
    rejecting_poison,
    rejecting_quarantine,
)
from shared.service import Runtime, service_app

from . import store, transitions
from .commands import CommandHandler, Publishers
from .opt_outs import OptOuts
from .settings import Settings
from .streaming import RunStreamer
from .unsubscribe import UnsubscribePage

SERVICE = "targeting"
log = logging.getLogger(SERVICE)


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, clock: Callable[[], datetime] = _now
) -> AsgiFastStream:
    """`clock` tells when scheduled broadcasts are due; tests inject one."""
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    events = broker.publisher(topics.EVENTS.name, schema=BroadcastEvent)
    runs = broker.publisher(topics.RUNS.name, schema=RunEvent)
    recipients = broker.publisher(topics.RECIPIENTS.name, schema=RecipientTargeted)
    tenants = broker.publisher(topics.TENANTS.name, schema=TenantSettingsChanged)
    streamer: RunStreamer | None = None
    scheduler: asyncio.Task[None] | None = None

    publishers = Publishers(events, runs, recipients, tenants)
    opt_outs = OptOuts(lambda: runtime.pool, events)

    def command_handler() -> CommandHandler:
        return CommandHandler(runtime.pool, publishers, start_run, clock)

    def start_run(run_id: UUID) -> None:
        assert streamer is not None, "commands are consumed only after start-up"
        streamer.kick(run_id)

    contract_decoder = QuarantineDecoder(TypeAdapter(ContractEvent), runtime.quarantine)

    @broker.subscriber(
        topics.CONTRACTS.name,
        **batch_consumer(f"{SERVICE}.contracts", settings.batch_size),
        decoder=contract_decoder,
        description="The platform's contract changes, applied to the audience read model.",
    )
    @isolating(runtime.dead_letters.poison(contract_decoder))
    async def on_contract_changes(changes: list[ContractEvent]) -> None:
        await store.apply_contract_changes(runtime.pool, changes)

    @broker.subscriber(
        topics.REQUESTS.name,
        **batch_consumer(f"{SERVICE}.requests", settings.batch_size),
        # The tracker answers its own commands; anything else, even unreadable, is ours.
        decoder=QuarantineDecoder(
            COMMAND_ADAPTER,
            rejecting_quarantine(events),
            mine=lambda kind: kind not in TRACKER_COMMAND_TYPES,
        ),
        description="Commands (broadcasts, templates, tenant settings); each is answered on "
        "broadcast.events.",
    )
    @isolating(rejecting_poison(events))
    async def on_commands(commands: list[AnyCommand]) -> None:
        if not commands:  # every record of the batch was invalid and already answered
            return
        handler = command_handler()
        for command in commands:
            await handler.handle(command)

    action_decoder = QuarantineDecoder(
        TypeAdapter(ActionEvent),
        runtime.quarantine,
        mine=lambda kind: kind in ("run.follow_up_requested", "run.action_closed"),
    )

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=action_decoder,
        description="Manual actions: messages to send again, as one-message runs, and "
        "messages a resend to the failures leaves out.",
    )
    @isolating(runtime.dead_letters.poison(action_decoder))
    async def on_actions(changes: list[FollowUpRequested | ActionClosed]) -> None:
        handler = command_handler()
        for change in changes:
            if isinstance(change, FollowUpRequested):
                await handler.follow_up(change)
        await store.close_failures(
            runtime.pool,
            [
                (c.run_id, c.contract_id, c.channel, c.address)
                for c in changes
                if isinstance(c, ActionClosed)
            ],
        )

    completion_decoder = QuarantineDecoder(
        TypeAdapter(BroadcastCompleted),
        runtime.quarantine,
        mine=lambda kind: kind == "broadcast.completed",
    )

    @broker.subscriber(
        topics.EVENTS.name,
        **batch_consumer(f"{SERVICE}.completions", settings.batch_size),
        decoder=completion_decoder,
        description="Runs the tracker completed: their broadcast becomes completed.",
    )
    @isolating(runtime.dead_letters.poison(completion_decoder))
    async def on_completions(completions: list[BroadcastCompleted]) -> None:
        if completions:  # the topic's other events are skipped unread
            await transitions.complete(
                runtime.pool,
                [
                    transitions.Completion(c.run_id, c.outcome, c.counters.failed)
                    for c in completions
                ],
            )

    failure_decoder = QuarantineDecoder(
        TypeAdapter(DeliveryFailed | DeliveryCorrected),
        runtime.quarantine,
        mine=lambda kind: kind in ("delivery.failed", "delivery.corrected"),
    )

    @broker.subscriber(
        topics.DELIVERIES.name,
        **batch_consumer(f"{SERVICE}.failures", settings.batch_size),
        decoder=failure_decoder,
        description="Messages that failed: whom a resend to the failures goes to; and unknown "
        "outcomes corrected to delivered, which it leaves out.",
    )
    @isolating(runtime.dead_letters.poison(failure_decoder))
    async def on_failures(outcomes: list[DeliveryFailed | DeliveryCorrected]) -> None:
        # In order: a correction follows its message's failure.
        await store.record_failures(
            runtime.pool, [o for o in outcomes if isinstance(o, DeliveryFailed)]
        )
        await store.close_failures(
            runtime.pool,
            [
                (o.run_id, o.contract_id, o.channel, o.address)
                for o in outcomes
                if isinstance(o, DeliveryCorrected) and o.outcome == "delivered"
            ],
        )

    async def create_streamer() -> None:
        nonlocal streamer
        streamer = RunStreamer(
            runtime.pool,
            events=events,
            runs=runs,
            recipients=recipients,
            page_size=settings.page_size,
        )

    async def resume_streaming() -> None:
        nonlocal scheduler
        assert streamer is not None
        await streamer.resume_all()
        scheduler = asyncio.create_task(every_second(), name="targeting-scheduler")

    async def every_second() -> None:
        # Scheduled broadcasts whose time came; opt-outs whose announcement was lost.
        for_each_second = (command_handler().start_due, opt_outs.announce_late)
        while True:
            for part in for_each_second:
                try:
                    await part()
                except Exception:
                    log.exception("%s failed; trying again", part.__name__)
            await asyncio.sleep(1)

    async def stop_streaming() -> None:
        if scheduler is not None:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
        if streamer is not None:
            await streamer.stop()

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        on_startup=[create_streamer],
        after_startup=[resume_streaming],
        on_shutdown=[stop_streaming],
        routes=[("/unsubscribe", UnsubscribePage(settings.link_secrets(), opt_outs.record))],
    )
