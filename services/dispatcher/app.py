"""Dispatcher: hands each rendered message to its provider, once.

Reads  broadcast.messages    (ready-to-send email and SMS)
Writes broadcast.deliveries  (delivered, or failed with the provider's code and text)

Order of effects per batch: claim in the ledger (committed) -> call the providers -> record the
outcomes -> publish them and wait for the broker's ack -> commit the offsets.
"""

import asyncio
from pathlib import Path
from uuid import UUID

from faststream.asgi import AsgiFastStream
from pydantic import TypeAdapter

from shared import topics
from shared.events import DeliveryEvent, DeliveryFailed, MessageDelivered, MessageRendered
from shared.kafka import (
    QuarantineDecoder,
    batch_consumer,
    dead_letter_publisher,
    dead_letter_quarantine,
    publish_keyed,
)
from shared.service import Runtime, service_app

from . import ledger
from .policy import Attempt
from .settings import Settings
from .sms_gateway import HttpSmsGateway
from .smtp import SmtpRelay

SERVICE = "dispatcher"


def delivery_event(message: MessageRendered, attempt: Attempt) -> MessageDelivered | DeliveryFailed:
    if attempt.verdict == "accepted":
        return MessageDelivered(
            **message.ref(), provider_code=attempt.code, provider_message=attempt.detail[:500]
        )
    # Retries come with the dispatcher issue; until then a temporary failure is final too.
    return DeliveryFailed(
        **message.ref(),
        reason=attempt.reason or "provider_error",
        detail=attempt.detail[:500],
        provider_code=attempt.code,
    )


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings)
    broker = runtime.broker
    deliveries = broker.publisher(topics.DELIVERIES.name, schema=DeliveryEvent)
    dead_letters = dead_letter_publisher(broker)
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

    async def send(message: MessageRendered) -> Attempt:
        if message.channel == "email":
            return await relay.send(message.sender, message.address, message.body.encode())
        return await sms.send(message.address, message.body, str(message.recipient_id))

    @broker.subscriber(
        topics.MESSAGES.name,
        **batch_consumer(f"{SERVICE}.messages", settings.batch_size),
        decoder=QuarantineDecoder(
            TypeAdapter(MessageRendered), dead_letter_quarantine(dead_letters, SERVICE)
        ),
        description="Rendered messages to hand to the SMTP relay or the SMS gateway.",
    )
    async def on_messages(batch: list[MessageRendered]) -> None:
        unique = list({m.recipient_id: m for m in batch}.values())
        claims = await ledger.claim(runtime.pool, unique)
        to_send = [m for m in unique if m.recipient_id in claims.claimed]
        attempts = await asyncio.gather(*(send(m) for m in to_send))
        outcomes: dict[UUID, Attempt] = {
            m.recipient_id: a for m, a in zip(to_send, attempts, strict=True)
        }
        await ledger.record(runtime.pool, outcomes)
        # Outcomes recorded by an earlier delivery of this batch are announced again, in case
        # that delivery crashed before publishing them; the tracker ignores the copies.
        outcomes.update(claims.finished)
        await publish_keyed(
            deliveries,
            (
                (str(m.recipient_id), delivery_event(m, outcomes[m.recipient_id]))
                for m in unique
                if m.recipient_id in outcomes
            ),
        )

    async def close_providers() -> None:
        await relay.close()
        await sms.close()

    return service_app(
        runtime,
        description=__doc__ or "",
        migrations=Path(__file__).parent / "migrations",
        after_shutdown=[close_providers],
    )
