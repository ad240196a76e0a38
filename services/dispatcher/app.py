"""Dispatcher: hands each rendered message to its provider, once, when the tenant allows it.

Reads  broadcast.messages    (ready-to-send email and SMS)
       broadcast.runs        (cancelled, paused and resumed runs)
       tenant.settings       (send windows and rates)
Writes broadcast.deliveries  (delivered, failed, deferred until a retry or a window, cancelled)

Order of effects per wave: reserve rate-limit tokens -> claim in the ledger (committed, fenced
by a token) -> call the providers -> record the outcomes (until the database answers); per
batch: publish the events and wait for the broker's ack -> commit the offsets. Waiting messages
live in the ledger; a sweeper in every instance takes them when due (FOR UPDATE SKIP LOCKED),
settles as "unknown" the claims of its own earlier lives and of silent instances, and announces
outcomes a crash left unpublished.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.events import (
    DeliveryDeferred,
    DeliveryEvent,
    DeliveryFailed,
    MessageRendered,
    RunCancelled,
    RunEvent,
    RunPaused,
    RunResumed,
    TenantSettingsChanged,
)
from shared.isolation import in_a_few_words, isolating
from shared.kafka import (
    QuarantineDecoder,
    batch_consumer,
    publish_keyed,
)
from shared.service import Runtime, service_app

from . import instance, ledger, ratelimit, tenants
from .handover import Clock, Event, Handover, Limits
from .metrics import DispatcherMetrics
from .policy import Attempt
from .retry import RetryPolicy
from .settings import Settings
from .sms_gateway import HttpSmsGateway
from .smtp import SmtpRelay

SERVICE = "dispatcher"
log = logging.getLogger(SERVICE)


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings | None = None, clock: Clock = _now) -> AsgiFastStream:
    """`clock` is injectable so that tests can stand on a Saturday."""
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    deliveries = broker.publisher(topics.DELIVERIES.name, schema=DeliveryEvent)
    quarantine = runtime.quarantine
    relay = SmtpRelay(
        host=settings.smtp_host,
        port=settings.smtp_port,
        size=settings.smtp_connections,
        timeout=settings.smtp_timeout_seconds,
        implicit_tls=settings.smtp_implicit_tls,
        starttls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
    )
    sms = HttpSmsGateway(
        url=settings.sms_gateway_url,
        token=settings.sms_gateway_token.get_secret_value(),
        sender=settings.sms_sender,
        timeout=settings.sms_timeout_seconds,
    )
    handover: Handover | None = None
    heartbeat: instance.Heartbeat | None = None
    background: list[asyncio.Task[None]] = []
    metrics = DispatcherMetrics(runtime.registry)

    async def send(message: MessageRendered) -> Attempt:
        with metrics.provider_seconds.labels(message.channel).time():
            if message.channel == "email":
                return await relay.send(message.sender, message.address, message.body.encode())
            return await sms.send(message.address, message.body, str(message.recipient_id))

    async def publish(events: Sequence[Event]) -> None:
        await publish_keyed(deliveries, ((str(e.recipient_id), e) for e in events))
        metrics.observe(events)

    def ready() -> tuple[Handover, instance.Heartbeat]:
        assert handover and heartbeat, "messages are consumed only after start-up"
        return handover, heartbeat

    async def unknown(message: MessageRendered, error: Exception) -> None:
        """A message the dispatcher fails on by itself: it may have been handed over before the
        failure, so it is never sent again by itself; its manual action lets a person decide."""
        failed = DeliveryFailed(
            **message.ref(), reason="unknown_outcome", detail=in_a_few_words(error)
        )
        await publish([failed])

    @broker.subscriber(
        topics.MESSAGES.name,
        **batch_consumer(f"{SERVICE}.messages", settings.batch_size),
        decoder=QuarantineDecoder(TypeAdapter(MessageRendered), quarantine),
        description="Rendered messages to hand to the SMTP relay or the SMS gateway.",
    )
    @isolating(unknown)
    async def on_messages(batch: list[MessageRendered]) -> None:
        await publish(await ready()[0].fresh(batch))

    run_decoder = QuarantineDecoder(TypeAdapter(RunEvent), quarantine)

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=run_decoder,
        description="Cancelled runs (what was not handed over yet is reported as cancelled), "
        "paused runs (held in the ledger) and resumed ones (released).",
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

    async def sweep_once() -> int:
        """One pass; the number of events published."""
        work, alive = ready()
        events = [*await work.expire(alive.takeover()), *await work.repair(timedelta(seconds=30))]
        events += await work.due(settings.sweep_batch)
        await publish(events)
        await ledger.mark_announced(
            runtime.pool, [e.recipient_id for e in events if not isinstance(e, DeliveryDeferred)]
        )
        metrics.sweeps.inc()
        return len(events)

    async def sweep_forever() -> None:
        while True:
            try:
                busy = await sweep_once() >= settings.sweep_batch
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; trying again")
                busy = False
            if not busy:
                await asyncio.sleep(settings.sweep_interval_seconds)

    async def create_handover() -> None:
        nonlocal handover, heartbeat
        # Set from the environment at start; changed at run time in dispatcher.rate_limits.
        await ratelimit.set_limits(
            runtime.pool,
            [
                (ratelimit.relay_key(channel), rate)
                for channel, rate in (
                    ("email", settings.smtp_per_second),
                    ("sms", settings.sms_per_second),
                )
                if rate is not None
            ],
        )
        me = await instance.register(runtime.pool, settings.instance_id)
        log.info("dispatcher %s, life %d", me.instance_id, me.life)
        heartbeat = instance.Heartbeat(
            runtime.pool,
            me,
            settings.heartbeat_seconds,
            timedelta(seconds=settings.takeover_seconds),
        )
        handover = Handover(
            runtime.pool,
            send,
            tenants.Directory(runtime.pool),
            RetryPolicy(
                delays=settings.retry_delays_seconds,
                throttle_backoff=settings.throttle_backoff_seconds,
            ),
            Limits(wave_size=2 * settings.smtp_connections, waves_in_flight=2),
            me,
            clock,
        )

    async def start_background() -> None:
        _, alive = ready()
        background.append(asyncio.create_task(sweep_forever(), name="dispatcher-sweeper"))
        background.append(asyncio.create_task(alive.run(), name="dispatcher-heartbeat"))

    async def stop_background() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_providers() -> None:
        await relay.close()
        await sms.close()

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        on_startup=[create_handover],
        after_startup=[start_background],
        on_shutdown=[stop_background],
        after_shutdown=[close_providers],
    )
