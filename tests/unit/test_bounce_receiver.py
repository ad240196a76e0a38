"""The bounce receiver (services/dispatcher/bounce_receiver.py) on loopback, with the real intake
over a fake ledger: only signed return paths are taken, 250 only once the reports are
published, 451 when they cannot be, 552 past the size limit."""

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiosmtplib
import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher.bounce_receiver import (
    MAX_MAIL_BYTES,
    BounceHandler,
    BounceMetrics,
    BounceReceiver,
)
from services.dispatcher.intake import Finding, Intake
from shared import return_path
from shared.clock import utc_now
from shared.events import DeliveryBounced, DeliveryComplained, DeliveryReport

DOMAIN = "bounces.example"
KEY = return_path.key(b"r" * 32)
MAIL = Path(__file__).parent / "mail"
KNOWN = uuid4()


class Ledger:
    """The intake's one query, answered for KNOWN only."""

    async def fetch(self, query: str, ids: list[UUID]) -> list[dict[str, Any]]:
        row = {
            "recipient_id": KNOWN,
            "run_id": uuid4(),
            "tenant_id": "acme",
            "broadcast_id": uuid4(),
            "contract_id": "C-1",
            "channel": "email",
            "address": "client@example.org",
        }
        return [row] if KNOWN in ids else []


class Publisher:
    def __init__(self) -> None:
        self.published: list[DeliveryReport] = []
        self.failing = False

    async def __call__(self, reports: Sequence[DeliveryReport]) -> None:
        if self.failing:
            raise ConnectionError("broker unreachable")
        self.published.extend(reports)


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
async def port(publisher: Publisher) -> AsyncIterator[int]:
    intake = Intake(lambda: Ledger(), publisher)  # type: ignore[arg-type, return-value]
    metrics = BounceMetrics(CollectorRegistry())
    handler = BounceHandler(DOMAIN, [KEY], intake, metrics, utc_now)
    receiver = BounceReceiver(handler, "127.0.0.1", 0, DOMAIN)
    await receiver.start()
    yield receiver.ports[0]
    await receiver.stop()


async def send(port: int, recipients: list[str], data: bytes) -> tuple[int, str]:
    """The answer to DATA, or to the first refused RCPT."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("")
        for address in recipients:
            code, message = await client.execute_command(b"RCPT TO:<" + address.encode() + b">")
            if code != 250:
                return code, message
        return await _data(client, data)
    finally:
        client.close()


async def _data(client: aiosmtplib.SMTP, data: bytes) -> tuple[int, str]:
    try:
        response = await client.data(data)
    except aiosmtplib.SMTPDataError as error:
        return error.code, error.message
    return response.code, response.message


def dsn() -> bytes:
    return (MAIL / "postfix_dsn.eml").read_bytes()


async def test_a_dsn_to_a_signed_return_path_is_published_before_the_250(
    port: int, publisher: Publisher
) -> None:
    assert await send(port, [return_path.address(KNOWN, DOMAIN, KEY)], dsn()) == (250, "2.0.0 OK")
    [report] = publisher.published
    assert isinstance(report, DeliveryBounced)
    assert (report.recipient_id, report.tenant_id, report.kind) == (KNOWN, "acme", "hard")


async def test_a_dsn_about_a_message_we_never_sent_is_taken_and_ignored(
    port: int, publisher: Publisher
) -> None:
    assert (await send(port, [return_path.address(uuid4(), DOMAIN, KEY)], dsn()))[0] == 250
    assert publisher.published == []


async def test_forged_and_foreign_addresses_are_refused_at_rcpt(port: int) -> None:
    forged = return_path.address(KNOWN, DOMAIN, return_path.key(b"f" * 32))
    for address in (forged, f"postmaster@{DOMAIN}", "someone@elsewhere.example"):
        assert (await send(port, [address], dsn()))[0] == 550


async def test_a_publishing_failure_answers_451_and_the_retry_is_taken(
    port: int, publisher: Publisher
) -> None:
    publisher.failing = True
    code, _ = await send(port, [return_path.address(KNOWN, DOMAIN, KEY)], dsn())
    assert code == 451
    publisher.failing = False
    assert (await send(port, [return_path.address(KNOWN, DOMAIN, KEY)], dsn()))[0] == 250
    assert len(publisher.published) == 1


async def test_a_complaint_to_the_feedback_address_names_its_message_by_message_id(
    port: int, publisher: Publisher
) -> None:
    arf = (
        (MAIL / "rfc5965_arf.eml")
        .read_bytes()
        .replace(
            b"Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net",
            f"Message-ID: <{KNOWN}@neige.example>".encode(),
        )
    )
    assert (await send(port, [f"fbl@{DOMAIN}"], arf))[0] == 250
    [report] = publisher.published
    assert isinstance(report, DeliveryComplained) and report.recipient_id == KNOWN
    # A bounce cannot name its message that way: it must come to the signed return path.
    assert (await send(port, [f"fbl@{DOMAIN}"], dsn()))[0] == 250
    assert len(publisher.published) == 1


async def test_garbage_is_taken_and_a_whole_message_is_refused(
    port: int, publisher: Publisher
) -> None:
    address = return_path.address(KNOWN, DOMAIN, KEY)
    whole = b"Subject: x\r\n\r\n" + (b"a" * 98 + b"\r\n") * (MAX_MAIL_BYTES // 100 + 1)
    assert (await send(port, [address], b"\x00\xff not mail\r\n"))[0] == 250
    assert (await send(port, [address], whole))[0] == 552
    assert publisher.published == []


async def test_a_report_the_event_refuses_is_taken_not_retried_forever(
    port: int, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source the event does not know stands for a reader bug the event model catches.
    take = Intake.take

    async def refused(self: Intake, findings: Sequence[Finding]) -> list[DeliveryReport]:
        return await take(
            self, [Finding(f.recipient_id, {**f.report, "source": "x"}) for f in findings]
        )

    monkeypatch.setattr(Intake, "take", refused)
    arf = (MAIL / "rfc5965_arf.eml").read_bytes()
    assert (await send(port, [return_path.address(KNOWN, DOMAIN, KEY)], arf))[0] == 250
    assert publisher.published == []
