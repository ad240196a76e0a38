"""Tracker: exact counters per run, completion, progress and the follow-up actions of failures.

Reads  broadcast.runs        (run started; targeting completed with the exact total; paused,
                              resumed)
       broadcast.requests    (action and history commands; the others are targeting's)
       broadcast.deliveries  (delivered / failed, possibly twice, possibly out of order)
Writes broadcast.events      (progressed at a bounded rate, completed with outcome and counters,
                              previewed for a preview run, answers to its commands)
       broadcast.runs        (follow-ups: an action's message to send again; actions closed)
       broadcast.requests    (pause_broadcast when a run's failure ratio goes over its tenant's)
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from uuid import UUID

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.events import (
    TRACKER_COMMAND_ADAPTER,
    TRACKER_COMMAND_TYPES,
    ActionEvent,
    BroadcastCompleted,
    BroadcastEvent,
    BroadcastPreviewed,
    BroadcastProgressed,
    DeliveryCorrected,
    DeliveryDeferred,
    DeliveryEvent,
    FinalDelivery,
    PauseBroadcast,
    RunCancelled,
    RunEvent,
    RunPaused,
    RunResumed,
    RunStarted,
    TargetingCompleted,
    TrackerCommand,
)
from shared.ids import event_id_for
from shared.isolation import isolating
from shared.kafka import (
    QuarantineDecoder,
    batch_consumer,
    rejecting_poison,
    rejecting_quarantine,
)
from shared.lag import consumer_lag
from shared.service import Runtime, service_app

from . import store
from .autopause import FailureWindow
from .commands import answer
from .metrics import PROMISED_SIZE, TrackerMetrics
from .pauses import Pauses
from .settings import Settings

SERVICE = "tracker"
log = logging.getLogger(SERVICE)


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    events = broker.publisher(topics.EVENTS.name, schema=BroadcastEvent)
    runs = broker.publisher(topics.RUNS.name, schema=ActionEvent)
    requests = broker.publisher(topics.REQUESTS.name, schema=PauseBroadcast)
    failures = FailureWindow()
    pauses = Pauses(lambda: runtime.pool, requests, requested_by=SERVICE)
    quarantine = runtime.quarantine
    last_progress: dict[UUID, float] = {}
    metrics = TrackerMetrics(runtime.registry)
    # Runs that changed since their last progress event: a change that came too soon after the
    # previous event is announced by the next tick instead of being dropped.
    changed: set[UUID] = set()
    ticker: asyncio.Task[None] | None = None

    async def publish_completions() -> None:
        # Completion is recorded first and published after: a crash in between is repaired by
        # the next call, which finds the run completed but not yet announced.
        for run in await store.unpublished_completions(runtime.pool):
            assert run.outcome is not None and run.requested_by is not None
            if run.purpose == "preview":
                await publish_preview(run)
                continue
            failures.forget(run.run_id)
            if run.purpose == "follow_up":  # reported on its action (settle_follow_ups)
                await store.mark_completion_published(runtime.pool, run.run_id)
                continue
            await events.publish(
                BroadcastCompleted(
                    event_id=event_id_for(run.run_id, "broadcast_completed"),
                    tenant_id=run.tenant_id,
                    broadcast_id=run.broadcast_id,
                    run_id=run.run_id,
                    requested_by=run.requested_by,
                    outcome=run.outcome,
                    counters=run.counters,
                ),
                key=str(run.broadcast_id).encode(),
            )
            await store.mark_completion_published(runtime.pool, run.run_id)
            last_progress.pop(run.run_id, None)

    async def publish_preview(run: store.RunView) -> None:
        assert run.requested_by is not None
        result = await store.preview_result(runtime.pool, run.run_id)
        await events.publish(
            BroadcastPreviewed(
                event_id=event_id_for(run.run_id, "broadcast_previewed"),
                tenant_id=run.tenant_id,
                broadcast_id=run.broadcast_id,
                run_id=run.run_id,
                requested_by=run.requested_by,
                address=result["address"] if result else "",
                delivered=bool(result and result["state"] == "delivered"),
                reason=result["reason"] if result else None,
                detail=(result["detail"] or "") if result else "",
            ),
            key=str(run.broadcast_id).encode(),
        )
        await store.mark_completion_published(runtime.pool, run.run_id)

    async def publish_progress(run_ids: Iterable[UUID]) -> None:
        changed.update(run_ids)
        now = time.monotonic()
        due = [
            r
            for r in changed
            if now - last_progress.get(r, 0.0) >= settings.progress_interval_seconds
        ]
        changed.difference_update(due)
        for run in await store.running(runtime.pool, due):
            last_progress[run.run_id] = now
            await events.publish(
                BroadcastProgressed(
                    tenant_id=run.tenant_id,
                    broadcast_id=run.broadcast_id,
                    run_id=run.run_id,
                    counters=run.counters,
                ),
                key=str(run.broadcast_id).encode(),
            )

    async def tick() -> None:
        last_gauges = 0.0
        while True:
            await asyncio.sleep(settings.progress_interval_seconds)
            try:
                await publish_progress(())
                await pauses.publish_late()
                if time.monotonic() - last_gauges >= settings.gauges_interval_seconds:
                    last_gauges = time.monotonic()
                    metrics.set_running(await store.running_broadcasts(runtime.pool, PROMISED_SIZE))
                    metrics.set_lag(await consumer_lag(settings.kafka_bootstrap_servers))
            except Exception:
                log.exception("publishing progress, late pauses or gauges failed; trying again")

    async def start_ticker() -> None:
        nonlocal ticker
        await publish_completions()
        ticker = asyncio.create_task(tick(), name="tracker-progress")

    async def stop_ticker() -> None:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def settle(run_ids: set[UUID]) -> None:
        metrics.completed(await store.complete_finished(runtime.pool, run_ids))
        await store.settle_follow_ups(runtime.pool, run_ids)
        await publish_completions()
        await publish_progress(run_ids)

    run_decoder = QuarantineDecoder(TypeAdapter(RunEvent), quarantine)

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=run_decoder,
        description="Run starts and targeting totals: the denominators of the counters.",
    )
    @isolating(runtime.dead_letters.poison(run_decoder))
    async def on_runs(batch: list[RunEvent]) -> None:
        await store.record_run_started(
            runtime.pool, [e for e in batch if isinstance(e, RunStarted)]
        )
        await store.record_targeting(
            runtime.pool, [e for e in batch if isinstance(e, TargetingCompleted)]
        )
        await store.record_cancellations(
            runtime.pool, [e for e in batch if isinstance(e, RunCancelled)]
        )
        changes = [e for e in batch if isinstance(e, RunPaused | RunResumed)]
        await store.record_pauses(runtime.pool, changes)
        for change in changes:  # a resumed run starts a fresh window
            failures.forget(change.run_id)
        await settle({e.run_id for e in batch})

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
        final = [e for e in batch if not isinstance(e, (DeliveryDeferred, DeliveryCorrected))]
        run_ids = await store.record_deferrals(runtime.pool, waiting)
        final_runs, recorded = await store.record_deliveries(runtime.pool, final)
        metrics.observe(recorded)
        # Before settling: a failure below would redeliver the batch as copies, which
        # `recorded` leaves out, and the window would never see these outcomes.
        await watch_failures(waiting, recorded)
        await settle(run_ids | final_runs)

    async def watch_failures(
        waiting: Sequence[DeliveryDeferred], recorded: Sequence[FinalDelivery]
    ) -> None:
        """Pause, through targeting, a run whose failure ratio went over its tenant's limit."""
        now = time.monotonic()
        failing: set[UUID] = set()
        for event in [*waiting, *recorded]:
            if event.type == "delivery.cancelled" or (
                isinstance(event, DeliveryDeferred) and event.waiting_for != "retry"
            ):
                continue
            failed = event.type != "delivery.delivered"
            failures.add(event.run_id, now, failed)
            if failed:
                failing.add(event.run_id)
        if not failing:
            return
        for run in await store.watched(runtime.pool, failing):
            tripped = failures.check(run.run_id, now, run.policy)
            if tripped is None:
                continue
            log.warning("pausing run %s: %s", run.run_id, tripped.describe(run.policy))
            await pauses.ask(run, tripped.describe(run.policy))
            failures.forget(run.run_id)  # once asked: the run is paused, or soon will be

    @broker.subscriber(
        topics.REQUESTS.name,
        **batch_consumer(f"{SERVICE}.requests", settings.batch_size),
        decoder=QuarantineDecoder(
            TRACKER_COMMAND_ADAPTER,
            rejecting_quarantine(events),
            mine=lambda kind: kind in TRACKER_COMMAND_TYPES,
        ),
        description="Manual actions (list, resolve with send or ignore) and contract history.",
    )
    @isolating(rejecting_poison(events))
    async def on_commands(commands: list[TrackerCommand]) -> None:
        for command in commands:
            reply = await answer(runtime.pool, runs, command)
            await events.publish(reply, key=command.tenant_id.encode())

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        after_startup=[start_ticker],
        on_shutdown=[stop_ticker],
    )
