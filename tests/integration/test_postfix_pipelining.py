"""The SMTP relay, pipelined, against Postfix's real smtpd (not smtp-sink): a private Postfix
instance of the test's own (tests/postfix.py), every message handed to the `discard`
transport."""

import asyncio
import re
import time
from collections.abc import Iterator

import aiosmtplib
import pytest

from services.dispatcher.smtp import SmtpRelay
from tests.postfix import Postfix, needs_postfix, private_postfix
from tests.unit.rendered import rendered

pytestmark = needs_postfix

MESSAGES = 300
REFUSED = "refused@example.org"

# Every message to example.org is discarded, but REFUSED's, refused at RCPT.
ROUTING = f"""\
mydestination =
relay_domains = example.org
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ {REFUSED} = 550 5.1.1 no such user }} }}
default_transport = discard:
relay_transport = discard:
"""


def delivered(postfix: Postfix) -> dict[str, str]:
    """Queue id -> recipient of every message the discard transport took."""
    return dict(re.findall(r"discard\[\d+\]: (\w+): to=<([^>]+)>.*status=sent", postfix.log()))


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    with private_postfix("pipelining.test", ROUTING) as running:
        yield running


async def test_postfix_takes_every_pipelined_message_exactly_once(postfix: Postfix) -> None:
    probe = aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.port, timeout=10)
    await probe.connect()
    await probe.ehlo()
    assert probe.supports_extension("pipelining")  # so the relay pipelines
    await probe.quit()

    relay = SmtpRelay(host="127.0.0.1", port=postfix.port, size=8, timeout=10.0)
    addresses = [f"user{i}@example.org" for i in range(MESSAGES)]
    # A leading dot on a line and a body without a final CRLF on the way.
    messages = [rendered("email", a, f"Subject: {a}\r\n\r\n.{a}\r\nend") for a in addresses]
    refused = [rendered("email", REFUSED) for _ in range(3)]
    try:
        attempts = await asyncio.gather(*(relay.send(m) for m in [*messages, *refused]))
    finally:
        await relay.close()

    assert [(a.verdict, a.code) for a in attempts[MESSAGES:]] == [("permanent", 550)] * 3
    assert {(a.verdict, a.code) for a in attempts[:MESSAGES]} == {("accepted", 250)}
    sent = zip(attempts[:MESSAGES], addresses, strict=True)
    queued = {a.detail.rsplit(" ", 1)[-1]: address for a, address in sent}
    assert len(queued) == MESSAGES
    deadline = time.monotonic() + 30
    while len(delivered(postfix)) < MESSAGES and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # anything more would be a message taken twice
    assert delivered(postfix) == queued
    assert "improper command pipelining" not in postfix.log()
