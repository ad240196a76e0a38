"""Composer: renders each recipient's message from its run's templates.

Reads  broadcast.runs        (run definitions, kept so any instance can render any recipient;
                              render-only previews targeting accepted)
       broadcast.recipients  (one message to produce per recipient: alone, or in pages)
Writes broadcast.messages    (ready-to-send messages, in pages of one run's)
       broadcast.deliveries  (render failures: the recipient will get nothing without an action)
       broadcast.events      (render-only previews the platform asked for: rendered, or
                              rejected with render_failed)
       broadcast.events.<client> (the same, for each configured client's render previews)
"""

import logging
from pathlib import Path

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import return_path, topics
from shared.answering import Answers, UnknownAnswersTopic
from shared.clock import Clock, utc_now
from shared.events import (
    BroadcastEvent,
    DeliveryEvent,
    DeliveryFailed,
    MessageRecord,
    MessageRendered,
    MessagesRendered,
    RecipientRecord,
    RecipientTargeted,
    RefreshDeclined,
    RenderRequested,
    RunEvent,
    RunStarted,
    unpaged,
)
from shared.isolation import in_a_few_words, isolating
from shared.kafka import QuarantineDecoder, batch_consumer
from shared.pages import pages_by_run
from shared.service import Runtime, service_app

from . import dkim_keys, previews, store
from .context import LinkKeys
from .metrics import ComposerMetrics
from .render import ReturnPath, render, unrendered
from .runs import CompiledRuns
from .settings import Settings

SERVICE = "composer"
log = logging.getLogger(SERVICE)


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> AsgiFastStream:
    """`clock` dates what a message shows (today's date, links' expiry); tests inject one."""
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    messages = runtime.lane(topics.MESSAGES.name, schema=MessageRecord)
    failures = runtime.lane(topics.DELIVERIES.name, schema=DeliveryEvent)
    answers = Answers.declare(
        broker,
        broker.publisher(topics.EVENTS.name, schema=BroadcastEvent),
        settings.request_clients,
    )
    declined = runtime.lane(topics.RUNS.name, schema=RefreshDeclined)
    quarantine = runtime.quarantine
    metrics = ComposerMetrics(runtime.registry)
    keys = LinkKeys(
        settings.link_secret.get_secret_value().encode(),
        settings.unsubscribe_url,
        settings.unsubscribe_link_days,
    )
    compiled = CompiledRuns(keys, lambda run: dkim_keys.load(settings.dkim_keys_dir, run))
    envelope_sender = _return_paths(settings)

    # Render requests are read by their own consumer group, below.
    run_decoder = QuarantineDecoder(
        TypeAdapter(RunEvent), quarantine, mine=lambda kind: kind != "run.render_requested"
    )

    async def unrenderable(recipient: RecipientTargeted, error: Exception) -> None:
        """A recipient its run cannot be rendered for, whatever the reason (a template that
        fails to compile, say): a failed message with its manual action, so the run's counters
        stay exact and it completes."""
        await publish_unrendered([unrendered(recipient, "render_failed", in_a_few_words(error))])

    async def publish_unrendered(outputs: list[DeliveryFailed | RefreshDeclined]) -> None:
        metrics.observe(outputs)
        await failures.publish_keyed(
            ((str(o.recipient_id), o) for o in outputs if isinstance(o, DeliveryFailed)),
        )
        # Keyed by broadcast, as targeting keys the refreshes it declines.
        await declined.publish_keyed(
            ((str(o.broadcast_id), o) for o in outputs if isinstance(o, RefreshDeclined)),
        )

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.runs", settings.batch_size),
        decoder=run_decoder,
        description="Run definitions: the templates and sender each recipient is rendered with.",
    )
    @isolating(runtime.dead_letters.poison(run_decoder))
    async def on_runs(events: list[RunEvent]) -> None:
        await store.save_runs(runtime.pool, [e for e in events if isinstance(e, RunStarted)])

    render_decoder = QuarantineDecoder(
        TypeAdapter(RenderRequested),
        quarantine,
        mine=lambda kind: kind == "run.render_requested",
    )
    set_aside = runtime.dead_letters.poison(render_decoder)

    async def unanswered(request: RenderRequested, error: Exception) -> None:
        """A render request this handler fails on by itself still gets its one answer. One
        whose answers topic is not configured here (BROADCAST_REQUEST_CLIENTS differs from
        targeting's) goes to the dead letters instead: no other topic is its sender's alone."""
        if isinstance(error, UnknownAnswersTopic):
            await set_aside(request, error)
            return
        log.error("render preview %s failed", request.request_id, exc_info=error)
        answer = previews.rejected(
            request, "internal_error", "the engine could not render this preview"
        )
        await answers.on(request.answers_topic).publish(
            answer, key=str(request.broadcast_id).encode()
        )

    @broker.subscriber(
        topics.RUNS.name,
        **batch_consumer(f"{SERVICE}.renders", settings.batch_size),
        decoder=render_decoder,
        description="Render-only previews: rendered and answered on their sender's answers "
        "topic, nothing sent or counted.",
    )
    @isolating(unanswered)
    async def on_render_requests(requests: list[RenderRequested]) -> None:
        now = clock()
        for request in requests:  # a person's few requests: one at a time is plenty
            # Before rendering: an answer with nowhere to go is not worth rendering.
            answered = answers.on(request.answers_topic)
            answer = previews.rendered(request, keys, now)
            await answered.publish(answer, key=str(request.broadcast_id).encode())

    @isolating(unrenderable)
    async def render_and_publish(recipients: list[RecipientTargeted]) -> None:
        runs = await compiled.get(runtime.pool, {r.run_id for r in recipients})
        now = clock()
        outputs = [render(runs[r.run_id], r, now, envelope_sender) for r in recipients]
        rendered = [o for o in outputs if isinstance(o, MessageRendered)]
        metrics.observe(rendered)
        await messages.send(pages_by_run(MessagesRendered, now, rendered))
        await publish_unrendered([o for o in outputs if not isinstance(o, MessageRendered)])

    @broker.subscriber(
        topics.RECIPIENTS.name,
        **batch_consumer(f"{SERVICE}.recipients", settings.batch_size, paged=True),
        decoder=QuarantineDecoder(TypeAdapter(RecipientRecord), quarantine),
        description="Recipients to render, one message each: alone, or a page of one run's.",
    )
    async def on_recipients(records: list[RecipientRecord]) -> None:
        # A recipient that cannot be rendered fails alone, not with its page.
        await render_and_publish(unpaged(records))

    return service_app(
        runtime, description=__doc__ or "", migrations=Path(__file__).parent / "migrations"
    )


def _return_paths(settings: Settings) -> ReturnPath | None:
    """Each email's own return path at the bounce domain, when there is one."""
    domain = settings.return_path_domain
    if domain is None:
        return None
    key = return_path.key(settings.return_path_secret.get_secret_value().encode())
    return lambda recipient_id: return_path.address(recipient_id, domain, key)
