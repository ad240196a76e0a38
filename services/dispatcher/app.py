"""Dispatcher: hands each rendered message to its provider, once, when the tenant allows it.

Reads  broadcast.messages    (ready-to-send email and SMS, alone or in pages, and new
                              renditions of waiting ones)
       broadcast.runs        (cancelled, paused and resumed runs; refreshes targeting declined)
       tenant.settings       (send windows and rates)
Writes broadcast.deliveries  (delivered, failed, deferred until a retry or a window, cancelled)
       broadcast.runs        (refresh requests: a message that waited long, to render again)
Serves /webhooks/...         (reports after the hand-over from SES, Mailgun and the SMS
                              gateway: webhooks/)
       SMTP for the bounce domain (bounces and complaints mailed to the return paths:
                              bounce_receiver.py), both published on broadcast.deliveries
                              by intake.py

Order of effects per wave: reserve rate-limit tokens -> claim in the ledger (committed, fenced
by a token) -> call the providers -> record the outcomes (until the database answers); per
batch: publish the events and wait for the broker's ack -> commit the offsets. Waiting messages
live in the ledger; a sweeper in every instance takes them when due (FOR UPDATE SKIP LOCKED),
settles as "unknown" the claims of its own earlier lives and of silent instances, and announces
outcomes a crash left unpublished.
"""

from collections.abc import Sequence
from pathlib import Path

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.clock import Clock, utc_now
from shared.events import (
    DeliveryEvent,
    DeliveryFailed,
    DeliveryReport,
    MessageRecord,
    MessageRendered,
    RefreshDeclined,
    RefreshRequested,
    RunCancelled,
    RunEvent,
    RunPaused,
    RunResumed,
    TenantSettingsChanged,
    unpaged,
)
from shared.isolation import in_a_few_words, isolating
from shared.kafka import QuarantineDecoder, batch_consumer
from shared.service import Runtime, service_app

from . import bounce_receiver, ledger, tenants
from .handover import Event
from .intake import Intake
from .metrics import DispatcherMetrics
from .providers import Providers
from .settings import Settings
from .startup import Startup
from .webhooks import Webhooks

SERVICE = "dispatcher"


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> AsgiFastStream:
    """`clock` is injectable so that tests can stand on a Saturday."""
    settings = settings or Settings()
    # The dispatcher leaves no session state on its connections (tests/unit/test_pool_reset.py):
    # the two pool calls of every wave spare their reset query.
    runtime = Runtime(SERVICE, settings, reset_sessions=False)
    broker = runtime.broker
    deliveries = runtime.lane(topics.DELIVERIES.name, schema=DeliveryEvent)
    quarantine = runtime.quarantine
    metrics = DispatcherMetrics(runtime.registry, clock)
    providers = Providers.from_settings(settings, metrics.provider_seconds)

    async def publish(events: Sequence[Event]) -> None:
        await deliveries.publish_keyed((str(e.recipient_id), e) for e in events)
        metrics.observe(events)

    async def publish_reports(reports: Sequence[DeliveryReport]) -> None:
        await deliveries.publish_keyed((str(r.recipient_id), r) for r in reports)

    # The intake adapters (bounce receiver, webhooks) report through it.
    intake = Intake(lambda: runtime.pool, publish_reports)

    refreshes = runtime.lane(topics.RUNS.name, schema=RefreshRequested)

    async def ask(requests: Sequence[RefreshRequested]) -> None:
        await refreshes.publish_keyed((str(r.broadcast_id), r) for r in requests)

    dispatcher = Startup(runtime, settings, providers, publish, ask, metrics, clock)
    bounces = bounce_receiver.from_settings(settings, intake, runtime.registry, clock)
    receivers = [bounces] if bounces is not None else []

    async def unknown(message: MessageRendered, error: Exception) -> None:
        """A message the dispatcher fails on by itself: it may have been handed over before the
        failure, so it is never sent again by itself; its manual action lets a person decide."""
        failed = DeliveryFailed(
            **message.ref(), reason="unknown_outcome", detail=in_a_few_words(error)
        )
        await publish([failed])

    @isolating(unknown)
    async def hand_over(batch: list[MessageRendered]) -> None:
        await publish(await dispatcher.handover.fresh(batch))

    @broker.subscriber(
        topics.MESSAGES.name,
        **batch_consumer(f"{SERVICE}.messages", settings.batch_size, paged=True),
        decoder=QuarantineDecoder(TypeAdapter(MessageRecord), quarantine),
        description="Rendered messages to hand to the SMTP relay or the SMS gateway: alone, "
        "or a page of one run's.",
    )
    async def on_messages(records: list[MessageRecord]) -> None:
        # A message the dispatcher fails on is an unknown outcome alone, not with its page.
        await hand_over(unpaged(records))

    run_decoder = QuarantineDecoder(TypeAdapter(RunEvent), quarantine)

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=run_decoder,
        description="Cancelled runs (what was not handed over yet is reported as cancelled), "
        "paused runs (held in the ledger), resumed ones (released), and refreshes targeting "
        "declined (the contract is gone: the message fails with no_contact).",
    )
    @isolating(runtime.dead_letters.poison(run_decoder))
    async def on_runs(batch: list[RunEvent]) -> None:
        # In order: a pause and its resume may come in one batch.
        for event in batch:
            match event:
                case RunCancelled():
                    await ledger.record_cancelled_runs(runtime.pool, [event.run_id])
                case RunPaused():
                    await ledger.pause_run(runtime.pool, event.run_id)
                case RunResumed():
                    await ledger.resume_run(runtime.pool, event.run_id)
        failed = await dispatcher.handover.declined(
            [e for e in batch if isinstance(e, RefreshDeclined)]
        )
        await publish(failed)
        # Recorded unannounced: a crash before this line is repaired by the sweeper.
        await ledger.mark_announced(runtime.pool, [e.recipient_id for e in failed])

    tenant_decoder = QuarantineDecoder(TypeAdapter(TenantSettingsChanged), quarantine)

    @broker.subscriber(
        topics.TENANTS.name,
        **batch_consumer(f"{SERVICE}.tenants", settings.batch_size),
        decoder=tenant_decoder,
        description="Tenants' send windows and rates, applied without a restart.",
    )
    @isolating(runtime.dead_letters.poison(tenant_decoder))
    async def on_tenant_settings(batch: list[TenantSettingsChanged]) -> None:
        await tenants.save(runtime.pool, batch)

    webhooks = Webhooks(settings, intake.take, lambda: runtime.pool, clock)

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        on_startup=[dispatcher.start],
        after_startup=[
            dispatcher.sweeping.start,
            dispatcher.beating.start,
            *(r.start for r in receivers),
        ],
        on_shutdown=[
            *(r.stop for r in receivers),
            dispatcher.sweeping.stop,
            dispatcher.beating.stop,
        ],
        after_shutdown=[providers.close, webhooks.close],
        routes=webhooks.routes,
    )
