"""Targeting: the audience read model, broadcast commands, and streaming runs to the composer.

Reads  audience.contracts  (contract upserts and deletions from the platform)
       broadcast.requests  (broadcast, template and tenant commands; and each configured
                            client's broadcast.requests.<client>, for its tenants only)
       broadcast.runs      (follow-ups: an action's message to send again; actions closed:
                            left out of a resend to the failures; refresh requests: a waiting
                            message to render again with its contract's current values)
       broadcast.events    (completed runs: the broadcast's lifecycle moves to completed, their
                            notices are sent; progressed and completed: the counters the
                            queries answer with)
       broadcast.deliveries (failed messages: whom a resend to the failures goes to; reports
                            after the hand-over: hard bounces, complaints, soft-bounce
                            streaks and SMS STOP replies suppress their address)
Writes broadcast.events    (answers to the platform's commands and queries, started, paused,
                            contact opted out, contact suppressed)
       broadcast.events.<client> (answers to each configured client's commands and queries)
       broadcast.runs      (run started with its definition, targeting completed with the total,
                            paused, resumed, cancelled; render-only previews, which the
                            composer renders and answers; refreshes declined: contract gone)
       broadcast.recipients (one record per message to produce, and its later renditions; a
                            completion's notice)
       broadcast.deliveries (no_contact: the one failed message of a contract with no address)
       tenant.settings     (each tenant's settings, compacted: send windows and rates)
Serves /unsubscribe        (the page every unsubscribe link leads to)
"""

import logging
from pathlib import Path
from typing import Annotated

import asyncpg
from faststream.asgi import AsgiFastStream
from pydantic import Field, TypeAdapter

from shared import topics
from shared.answering import Answers
from shared.clock import Clock, utc_now
from shared.events import (
    COMMAND_ADAPTER,
    TRACKER_COMMAND_TYPES,
    ActionClosed,
    AnyCommand,
    BroadcastCompleted,
    BroadcastEvent,
    BroadcastProgressed,
    ContractEvent,
    DeliveryBounced,
    DeliveryComplained,
    DeliveryCorrected,
    DeliveryFailed,
    FollowUpRequested,
    MessageDelivered,
    RecipientRecord,
    RefreshRequested,
    ReplyReceived,
    RunEvent,
    TenantSettingsChanged,
    types_of,
)
from shared.isolation import isolating
from shared.kafka import QuarantineDecoder, RequestDecoder, batch_consumer
from shared.service import Runtime, service_app

from . import counters, store, transitions
from .commands import CommandHandler
from .metrics import TargetingMetrics
from .one_message_runs import OneMessageRuns
from .opt_outs import OptOuts
from .publishers import Publishers
from .refreshes import Refreshes
from .renders import RenderRequests
from .scheduler import Scheduler
from .settings import Settings
from .streaming import RunStreamer
from .suppressions import Suppressions
from .unsubscribe import UnsubscribePage

SERVICE = "targeting"
log = logging.getLogger(SERVICE)

# What targeting acts on among broadcast.runs.
ForTargeting = Annotated[
    FollowUpRequested | ActionClosed | RefreshRequested, Field(discriminator="type")
]


# What targeting reads of broadcast.deliveries: the failures a resend to the failures goes to
# (and corrections of unknown outcomes), and what may suppress an address (or end a
# soft-bounce streak).
FailureOutcome = DeliveryFailed | DeliveryCorrected
Suppressing = MessageDelivered | DeliveryBounced | DeliveryComplained | ReplyReceived
_FROM_DELIVERIES = types_of(FailureOutcome | Suppressing)


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> AsgiFastStream:
    """`clock` tells when scheduled broadcasts are due and grace delays over; tests inject one."""
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    events = broker.publisher(topics.EVENTS.name, schema=BroadcastEvent)
    answers = Answers.declare(broker, events, settings.request_clients)
    publishers = Publishers(
        events=events,
        answers=answers,
        runs=runtime.lane(topics.RUNS.name, schema=RunEvent),
        recipients=runtime.lane(topics.RECIPIENTS.name, schema=RecipientRecord),
        deliveries=runtime.lane(topics.DELIVERIES.name, schema=DeliveryFailed),
        tenants=broker.publisher(topics.TENANTS.name, schema=TenantSettingsChanged),
    )

    def pool() -> asyncpg.Pool:
        return runtime.pool

    streamer = RunStreamer(
        pool,
        publishers,
        clock,
        TargetingMetrics(runtime.registry),
        page_size=settings.page_size,
        retry_after=settings.stream_retry_seconds,
        orphans_every=settings.orphan_runs_seconds,
    )
    one_message_runs = OneMessageRuns(pool, publishers)
    suppressions = Suppressions(pool, events, soft_bounces=settings.soft_bounces_to_suppress)
    refreshes = Refreshes(pool, publishers)
    commands_handler = CommandHandler(
        pool,
        publishers,
        streamer.kick,
        one_message_runs,
        RenderRequests(pool, publishers),
        suppressions,
        clock,
        estimate_page_size=settings.estimate_page_size,
    )
    # Scheduled broadcasts whose time came; opt-outs whose announcement was lost.
    scheduler = Scheduler(
        pool,
        streamer.kick,
        clock,
        tick=settings.scheduler_tick_seconds,
        per_tick=settings.schedules_per_tick,
    )
    opt_outs = OptOuts(
        pool,
        events,
        late_after=settings.late_opt_out_seconds,
        per_tick=settings.late_opt_outs_per_tick,
        tick=settings.scheduler_tick_seconds,
    )

    contract_decoder = QuarantineDecoder(TypeAdapter(ContractEvent), runtime.quarantine)

    @broker.subscriber(
        topics.CONTRACTS.name,
        **batch_consumer(f"{SERVICE}.contracts", settings.batch_size),
        decoder=contract_decoder,
        description="The platform's contract changes, applied to the audience read model.",
    )
    @isolating(runtime.dead_letters.poison(contract_decoder))
    async def on_contract_changes(changes: list[ContractEvent]) -> None:
        await store.apply_contract_changes(pool(), changes)

    # The tracker answers its own commands; anything else, even unreadable, is ours.
    request_decoder = RequestDecoder(
        COMMAND_ADAPTER,
        answers,
        settings.request_clients,
        mine=lambda kind: kind not in TRACKER_COMMAND_TYPES,
    )

    @broker.subscriber(
        # The platform's topic and each client's: a command acts only for its client's tenants.
        *settings.request_clients.topics(),
        **batch_consumer(f"{SERVICE}.requests", settings.batch_size),
        decoder=request_decoder,
        description="Commands (broadcasts, templates, tenant settings); each is answered on "
        "its sender's answers topic: broadcast.events for the platform, "
        "broadcast.events.<client> for a client.",
    )
    @isolating(request_decoder.reject_failed)
    async def on_commands(commands: list[AnyCommand]) -> None:
        if not commands:  # every record of the batch was invalid and already answered
            return
        for command in commands:
            await commands_handler.handle(command, request_decoder.answers_topic(command))

    action_decoder = QuarantineDecoder(
        TypeAdapter(ForTargeting),
        runtime.quarantine,
        mine=lambda kind: (
            kind in ("run.follow_up_requested", "run.action_closed", "message.refresh_requested")
        ),
    )

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=action_decoder,
        description="Manual actions: messages to send again, as one-message runs, and "
        "messages a resend to the failures leaves out. Refresh requests: waiting messages "
        "published again with their contract's current values.",
    )
    @isolating(runtime.dead_letters.poison(action_decoder))
    async def on_actions(changes: list[ForTargeting]) -> None:
        for change in changes:
            if isinstance(change, FollowUpRequested):
                await one_message_runs.follow_up(change)
        await refreshes.answer([c for c in changes if isinstance(c, RefreshRequested)])
        await store.close_failures(
            pool(),
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
        description="Runs the tracker completed: their broadcast becomes completed, and the "
        "people the completion names get its notice by email when their tenant asks for it.",
    )
    @isolating(runtime.dead_letters.poison(completion_decoder))
    async def on_completions(completions: list[BroadcastCompleted]) -> None:
        # Notices first: whoever sees the broadcast completed knows its notices went out.
        for completed in completions:
            await one_message_runs.notice(completed)
        if completions:  # the topic's other events are skipped unread
            await transitions.complete(
                pool(),
                [
                    transitions.Completion(c.run_id, c.outcome, c.counters.failed)
                    for c in completions
                ],
            )

    counters_decoder = QuarantineDecoder(
        TypeAdapter(BroadcastProgressed | BroadcastCompleted),
        runtime.quarantine,
        mine=lambda kind: kind in ("broadcast.progressed", "broadcast.completed"),
    )

    # A group of its own, read from the topic's start: a new instance of the read model fills
    # itself from the announcements still retained.
    @broker.subscriber(
        topics.EVENTS.name,
        **batch_consumer(f"{SERVICE}.counters", settings.batch_size),
        decoder=counters_decoder,
        description="The tracker's counters of each run: the read model the broadcast queries "
        "answer from.",
    )
    @isolating(runtime.dead_letters.poison(counters_decoder))
    async def on_counters(announcements: list[BroadcastProgressed | BroadcastCompleted]) -> None:
        if announcements:  # the topic's other events are skipped unread
            await store.record_counters(pool(), counters.newest(announcements))

    # One group for everything targeting learns from broadcast.deliveries: every record of
    # that topic is fetched and its type read once, not once per purpose (a second group cost
    # 12 us of targeting's CPU and 6 to 14 us of Kafka's a message: bench/README.md, "Issue 17,
    # fourth pass").
    delivery_decoder = QuarantineDecoder(
        TypeAdapter(Annotated[FailureOutcome | Suppressing, Field(discriminator="type")]),
        runtime.quarantine,
        mine=lambda kind: kind in _FROM_DELIVERIES,
    )

    @broker.subscriber(
        topics.DELIVERIES.name,
        **batch_consumer(f"{SERVICE}.deliveries", settings.batch_size),
        decoder=delivery_decoder,
        description="Messages that failed: whom a resend to the failures goes to, and unknown "
        "outcomes corrected to delivered, which it leaves out. Reports after the hand-over: "
        "hard bounces, complaints, soft bounces in a row and SMS STOP replies suppress their "
        "address; a delivery ends a soft-bounce streak.",
    )
    @isolating(runtime.dead_letters.poison(delivery_decoder))
    async def on_deliveries(records: list[FailureOutcome | Suppressing]) -> None:
        failed = [r for r in records if isinstance(r, DeliveryFailed)]
        corrected = [r for r in records if isinstance(r, DeliveryCorrected)]
        # In order: a correction follows its message's failure.
        await store.record_failures(pool(), failed)
        await store.close_failures(
            pool(),
            [
                (c.run_id, c.contract_id, c.channel, c.address)
                for c in corrected
                if c.outcome == "delivered"
            ],
        )
        await suppressions.apply(
            [r for r in records if not isinstance(r, DeliveryFailed | DeliveryCorrected)]
        )

    unsubscribe_page = UnsubscribePage(
        settings.link_secrets(), opt_outs.record, clock, unscoped=settings.link_accept_unscoped
    )
    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        after_startup=[streamer.adopting.start, scheduler.loop.start, opt_outs.loop.start],
        on_shutdown=[
            scheduler.loop.stop,
            opt_outs.loop.stop,
            streamer.adopting.stop,
            streamer.stop,
        ],
        routes=[("/unsubscribe", unsubscribe_page)],
    )
