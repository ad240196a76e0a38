"""The SMTP ceiling: how fast one asyncio process with a few persistent aiosmtplib connections
sends one pre-built message into smtp-sink. What the dispatcher is compared with."""

import asyncio
import contextlib
import itertools
import time

import aiosmtplib

from bench import invoice
from bench.processes import HOST, SINK_PORT
from services.composer.render import render
from shared.clock import Clock, utc_now
from shared.events import MessageRendered

CEILING_CONNECTIONS = 8


def ceiling_message(clock: Clock = utc_now) -> bytes:
    """One message as the composer renders it for this broadcast, built once."""
    message = render(invoice.compiled_run(), invoice.recipient(1), clock())
    assert isinstance(message, MessageRendered), message
    return message.body.encode()


async def smtp_ceiling(total: int, message: bytes) -> float:
    """Seconds for one process with CEILING_CONNECTIONS persistent connections to send `total`
    copies of `message` with sendmail; connections are opened before the clock starts."""
    clients = [
        aiosmtplib.SMTP(hostname=HOST, port=SINK_PORT, timeout=30.0)
        for _ in range(CEILING_CONNECTIONS)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    tickets = itertools.count()

    async def pump(client: aiosmtplib.SMTP) -> None:
        while next(tickets) < total:
            await client.sendmail(invoice.SENDER["address"], ["client1@bench.example"], message)

    try:
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(pump(c) for c in clients)), timeout=600.0)
        return time.monotonic() - began
    finally:
        for client in clients:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
