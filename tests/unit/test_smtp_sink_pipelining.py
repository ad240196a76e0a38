"""The stack's SMTP sink advertises PIPELINING and answers pipelined commands in order, so the
stack's tests drive the dispatcher's pipelined path, refusals and all."""

import asyncio
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from deploy.local.smtp_sink import HOST, SinkHandler, smtp_server
from services.dispatcher.smtp import SmtpRelay
from tests.unit.rendered import rendered

BODY = "Subject: hi\r\n\r\nBonjour\r\n.dot\r\n"


@pytest.fixture
async def sink() -> AsyncIterator[tuple[SinkHandler, int]]:
    handler = SinkHandler()
    server = await asyncio.get_running_loop().create_server(lambda: smtp_server(handler), HOST, 0)
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_the_sink_advertises_pipelining(sink: tuple[SinkHandler, int]) -> None:
    _, port = sink
    client = aiosmtplib.SMTP(hostname=HOST, port=port)
    await client.connect()
    try:
        await client.ehlo()
        assert client.supports_extension("pipelining")
    finally:
        await client.quit()


async def test_pipelined_messages_are_received_once_and_a_refusal_is_exact(
    sink: tuple[SinkHandler, int],
) -> None:
    handler, port = sink
    assert handler.rules.replace([{"address": "no@example.org", "code": 550}]) is None
    relay = SmtpRelay(host=HOST, port=port, size=2, timeout=5.0)
    addresses = [f"r{i}@example.org" for i in range(20)] + ["no@example.org"]
    try:
        attempts = await asyncio.gather(
            *(relay.send(rendered("email", a, BODY)) for a in addresses)
        )
    finally:
        await relay.close()
    assert [(a.verdict, a.code) for a in attempts] == [("accepted", 250)] * 20 + [
        ("permanent", 550)
    ]
    received = sorted(m["rcpt_tos"][0] for m in handler.messages)
    assert received == sorted(addresses[:-1])
    assert all(m["data"] == BODY for m in handler.messages)


async def test_what_was_pipelined_behind_a_dropped_connection_is_not_read(
    sink: tuple[SinkHandler, int],
) -> None:
    """A real server reads nothing after it closed the connection: the message pipelined behind
    the dropped one neither consumes its rule nor arrives, and gets the rule when sent again."""
    handler, port = sink
    rules = [
        {"address": "lost@example.org", "stage": "data", "code": 451, "action": "disconnect"},
        {"address": "gone@example.org", "code": 550, "times": 1},
    ]
    assert handler.rules.replace(rules) is None
    relay = SmtpRelay(host=HOST, port=port, size=1, timeout=5.0)
    try:
        first = await asyncio.gather(
            relay.send(rendered("email", "lost@example.org", BODY)),
            relay.send(rendered("email", "gone@example.org", BODY)),
        )
        again = await relay.send(rendered("email", "gone@example.org", BODY))
    finally:
        await relay.close()
    assert [a.verdict for a in first] == ["unknown", "temporary"]
    assert (again.verdict, again.code) == ("permanent", 550)
    assert handler.messages == []
