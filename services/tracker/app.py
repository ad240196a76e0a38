"""Tracker: exact counters per run, completion, progress and the follow-up actions of failures.

Reads  broadcast.runs        (run started; targeting completed with the exact total; paused,
                              resumed)
       broadcast.requests    (action, history and message-log commands; the others are
                              targeting's; and each configured client's
                              broadcast.requests.<client>, for its tenants only)
       broadcast.deliveries  (delivered / failed, possibly twice, possibly out of order; reports
                              after the hand-over: bounced, complained, confirmed; the
                              replies are targeting's)
Writes broadcast.events      (progressed at a bounded rate, and again with the outcome when a
                              report changes a completed run; completed with outcome and counters,
                              previewed for a preview run, answers to the platform's commands)
       broadcast.events.<client> (answers to each configured client's commands)
       broadcast.runs        (follow-ups: an action's message to send again; actions closed)
       broadcast.requests    (pause_broadcast when a run's failure ratio goes over its tenant's)
"""

import logging
from pathlib import Path

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.answering import Answers
from shared.clock import Clock, utc_now
from shared.events import (
    TRACKER_COMMAND_ADAPTER,
    TRACKER_COMMAND_TYPES,
    ActionEvent,
    BroadcastEvent,
    DeliveryBounced,
    DeliveryCancelled,
    DeliveryComplained,
    DeliveryConfirmed,
    DeliveryDeferred,
    DeliveryEvent,
    DeliveryFailed,
    MessageDelivered,
    PauseBroadcast,
    RenderRequested,
    RunEvent,
    TrackerCommand,
)
from shared.exclusive import Exclusive
from shared.isolation import isolating
from shared.kafka import QuarantineDecoder, RequestDecoder, batch_consumer
from shared.service import Periodic, Runtime, service_app

from . import store
from .commands import answer
from .metrics import TrackerMetrics, refresh_gauges
from .pauses import FailureWatch, Pauses
from .progress import Progress, Recounts, Throttle
from .settings import Settings

SERVICE = "tracker"
log = logging.getLogger(SERVICE)


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> AsgiFastStream:
    """`clock` is injectable so that tests can move the tracker's time."""
    settings = settings or Settings()
    # The tracker leaves no session state on its connections (tests/unit/test_pool_reset.py):
    # its pool calls, several per batch, spare their reset query.
    runtime = Runtime(SERVICE, settings, reset_sessions=False)
    broker = runtime.broker
    events = broker.publisher(topics.EVENTS.name, schema=BroadcastEvent)
    answers = Answers.declare(broker, events, settings.request_clients)
    runs = broker.publisher(topics.RUNS.name, schema=ActionEvent)
    requests = broker.publisher(topics.REQUESTS.name, schema=PauseBroadcast)
    quarantine = runtime.quarantine
    metrics = TrackerMetrics(runtime.registry)
    metrics.hard_bounce_alert_rate.set(settings.hard_bounce_alert_rate)
    pauses = Pauses(
        lambda: runtime.pool,
        requests,
        requested_by=SERVICE,
        late_seconds=settings.pause_late_seconds,
        page=settings.pause_repair_page,
    )
    failures = FailureWatch(lambda: runtime.pool, pauses.ask, clock)
    progress = Progress(
        lambda: runtime.pool,
        events,
        metrics,
        Throttle(settings.progress_interval_seconds, clock),
        Recounts(settings.contract_count_seconds),
        Exclusive(lambda: runtime.pool, "tracker-completions").held,
    )
    loops = [
        Periodic(
            "tracker-progress", progress.publish_progress, settings.progress_interval_seconds, log
        ),
        Periodic(
            "tracker-late-pauses",
            Exclusive(lambda: runtime.pool, "tracker-late-pauses").skipping(pauses.publish_late),
            settings.pause_repair_interval_seconds,
            log,
        ),
        Periodic(
            "tracker-gauges",
            lambda: refresh_gauges(
                metrics,
                runtime.pool,
                settings.kafka_bootstrap_servers,
                settings.kafka_security(),
                (settings.report_rates_window_hours, settings.report_rates_minimum),
            ),
            settings.gauges_interval_seconds,
            log,
        ),
    ]

    run_decoder = QuarantineDecoder(TypeAdapter(RunEvent), quarantine)

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=run_decoder,
        description="Run starts and targeting totals: the denominators of the counters.",
    )
    @isolating(runtime.dead_letters.poison(run_decoder))
    async def on_runs(batch: list[RunEvent]) -> None:
        await store.record_runs(runtime.pool, batch)
        # A render-only preview is the composer's alone: no run, nothing to count.
        await progress.settle({e.run_id for e in batch if not isinstance(e, RenderRequested)})

    delivery_decoder = QuarantineDecoder(TypeAdapter(DeliveryEvent), quarantine)

    @broker.subscriber(
        topics.DELIVERIES.name,
        **batch_consumer(f"{SERVICE}.deliveries", settings.batch_size),
        decoder=delivery_decoder,
        description="Delivery outcomes; duplicates and reordering leave the counters exact.",
    )
    @isolating(runtime.dead_letters.poison(delivery_decoder))
    async def on_deliveries(batch: list[DeliveryEvent]) -> None:
        # Deferrals first: a final outcome in the same batch then replaces "waiting".
        waiting = [e for e in batch if isinstance(e, DeliveryDeferred)]
        # A correction's own outcome event, beside it, is what corrects the message.
        final = [
            e for e in batch if isinstance(e, (MessageDelivered, DeliveryFailed, DeliveryCancelled))
        ]
        # After the final outcomes: a report then finds its message delivered, and moves it.
        reports = [
            e
            for e in batch
            if isinstance(e, (DeliveryBounced, DeliveryComplained, DeliveryConfirmed))
        ]
        run_ids = await store.record_deferrals(runtime.pool, waiting)
        final_runs, recorded = await store.record_deliveries(runtime.pool, final)
        reported = await store.record_reports(runtime.pool, reports)
        metrics.observe(recorded)
        metrics.reported(reported.recorded)
        # Before settling: a failure below would redeliver the batch as copies, which
        # `recorded` leaves out, and the window would never see these outcomes.
        await failures.watch(waiting, recorded)
        await progress.settle(run_ids | final_runs | reported.run_ids)
        await progress.publish_reported(reported.run_ids)

    request_decoder = RequestDecoder(
        TRACKER_COMMAND_ADAPTER,
        answers,
        settings.request_clients,
        mine=lambda kind: kind in TRACKER_COMMAND_TYPES,
    )

    @broker.subscriber(
        # The platform's topic and each client's: a command acts only for its client's tenants.
        *settings.request_clients.topics(),
        **batch_consumer(f"{SERVICE}.requests", settings.batch_size),
        decoder=request_decoder,
        description="Manual actions (list, resolve with send or ignore), contract history and "
        "the per-message log of a run; each answered on its sender's answers topic.",
    )
    @isolating(request_decoder.reject_failed)
    async def on_commands(commands: list[TrackerCommand]) -> None:
        for command in commands:
            reply = await answer(runtime.pool, runs, command, history_limit=settings.history_limit)
            await request_decoder.answers_to(command).publish(reply, key=command.tenant_id.encode())

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        # Completions recorded before a crash and not announced yet go out before anything new.
        after_startup=[progress.publish_completions, *(loop.start for loop in loops)],
        on_shutdown=[loop.stop for loop in loops],
    )
