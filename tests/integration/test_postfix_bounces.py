"""A real bounce, end to end at the dispatcher: a message sent from its signed return path
through a private Postfix (tests/postfix.py) to a recipient that does not exist comes back as
Postfix's own DSN to the return path, which Postfix delivers to the bounce receiver; the
receiver publishes `delivery.bounced` on broadcast.deliveries with the identity the ledger holds
(the stack's database and Kafka). A forged return path is refused at RCPT."""

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from uuid import uuid4

import aiosmtplib
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher.bounce_receiver import BounceHandler, BounceMetrics, BounceReceiver
from services.dispatcher.intake import Intake
from services.dispatcher.smtp import SmtpRelay
from shared import return_path, topics
from shared.client.log import TopicLog
from shared.clock import utc_now
from shared.db import create_pool
from shared.events import DeliveryReport, MessageRendered
from tests.postfix import Postfix, free_port, needs_postfix, private_postfix
from tests.stack import DATABASE_URL, KAFKA, publish_json

pytestmark = [needs_postfix, pytest.mark.stack]

DOMAIN = "bounces.test"
KEY = return_path.key(b"p" * 32)
# No such user on the machine (`nobody` is one, on Debian).
NOBODY = "no-such-recipient@nowhere.test"


def routing(receiver_port: int) -> str:
    # nowhere.test: a local domain, every recipient taken at RCPT (no local_recipient_maps),
    # so Postfix's local delivery agent bounces what it accepted for a user the machine lacks;
    # bounces.test: the return paths' domain, whose MX is the bounce receiver.
    return (
        "mydestination = nowhere.test\n"
        "local_recipient_maps =\n"
        "alias_maps =\n"
        "alias_database =\n"
        f"transport_maps = inline:{{ {{ {DOMAIN} = smtp:[127.0.0.1]:{receiver_port} }} }}\n"
        "default_transport = discard:\n"
    )


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    # Not the suite's `stack` fixture, which restarts services: only the database is needed.
    opened = await create_pool(DATABASE_URL, size=2)
    yield opened
    await opened.close()


async def publish(reports: Sequence[DeliveryReport]) -> None:
    await publish_json(
        topics.DELIVERIES.name, [(str(r.recipient_id), r.model_dump(mode="json")) for r in reports]
    )


async def handed_over(pool: asyncpg.Pool) -> MessageRendered:
    """A message as the dispatcher handed it over, its row in the ledger."""
    recipient_id = uuid4()
    message = MessageRendered(
        tenant_id=f"t{uuid4().hex[:10]}",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=recipient_id,
        contract_id="C-1",
        channel="email",
        address=NOBODY,
        sender=return_path.address(recipient_id, DOMAIN, KEY),
        body=f"From: avis@sender.test\r\nTo: {NOBODY}\r\nSubject: Avis\r\n"
        f"Message-ID: <{recipient_id}@sender.test>\r\n\r\nBonjour\r\n",
    )
    await pool.execute(
        """INSERT INTO dispatcher.deliveries (recipient_id, run_id, tenant_id, channel, state,
               broadcast_id, contract_id, address, finished_at)
           VALUES ($1, $2, $3, 'email', 'delivered', $4, $5, $6, now())""",
        message.recipient_id,
        message.run_id,
        message.tenant_id,
        message.broadcast_id,
        message.contract_id,
        message.address,
    )
    return message


async def test_postfixs_own_dsn_becomes_a_hard_bounce_of_its_message(pool: asyncpg.Pool) -> None:
    port = free_port()
    handler = BounceHandler(
        DOMAIN,
        [KEY],
        Intake(lambda: pool, publish),
        BounceMetrics(CollectorRegistry()),
        utc_now,
    )
    receiver = BounceReceiver(handler, "127.0.0.1", port, DOMAIN)
    await receiver.start()
    deliveries = await TopicLog(KAFKA, topics.DELIVERIES.name).open()
    try:
        message = await handed_over(pool)
        with private_postfix("relay.test", routing(port)) as postfix:
            relay = SmtpRelay(host="127.0.0.1", port=postfix.port, size=1, timeout=10.0)
            try:
                attempt = await relay.send(message)
            finally:
                await relay.close()
            assert (attempt.verdict, attempt.code) == ("accepted", 250), attempt.detail
            bounce = await deliveries.wait_for(
                lambda r: r.get("recipient_id") == str(message.recipient_id), timeout=20
            )
            await bounced_via_receiver(postfix, message)
        assert bounce["type"] == "delivery.bounced"
        assert (bounce["kind"], bounce["status"], bounce["source"]) == ("hard", "5.1.1", "dsn")
        assert (bounce["tenant_id"], bounce["run_id"]) == (message.tenant_id, str(message.run_id))
        assert (bounce["address"], bounce["contract_id"]) == (NOBODY, "C-1")
        assert bounce["diagnostic"] == 'X-Postfix; unknown user: "no-such-recipient"'

        await refused_forgeries(port, message)
    finally:
        await deliveries.close()
        await receiver.stop()


async def bounced_via_receiver(postfix: Postfix, message: MessageRendered) -> None:
    """Postfix's log agrees: the message bounced, its DSN went to the return path and the
    receiver took it (logged a moment after the receiver's 250)."""
    dsn_sent = re.compile(rf"to=<{re.escape(message.sender)}>, relay=127\.0\.0\.1.*status=sent")
    async with asyncio.timeout(5):
        while not dsn_sent.search(postfix.log()):
            await asyncio.sleep(0.1)
    assert re.search(rf"to=<{re.escape(NOBODY)}>.*dsn=5\.1\.1, status=bounced", postfix.log())


async def refused_forgeries(port: int, message: MessageRendered) -> None:
    """Anything but a return path we signed is refused before its data is read."""
    forged_key = return_path.key(b"f" * 32)
    forgeries = [
        return_path.address(message.recipient_id, DOMAIN, forged_key),
        return_path.address(uuid4(), DOMAIN, forged_key),
        message.sender.replace(DOMAIN, "elsewhere.test"),
        f"postmaster@{DOMAIN}",
    ]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("")
        for address in forgeries:
            assert await _rcpt(client, address) == 550, address
    finally:
        await asyncio.wait_for(client.quit(), 5)


async def _rcpt(client: aiosmtplib.SMTP, address: str) -> int:
    try:
        await client.rcpt(address)
    except aiosmtplib.SMTPRecipientRefused as refused:
        return refused.code
    return 250
