"""No address, phone number or link token reaches a log line (shared/redaction.py)."""

import logging
import re
from pathlib import Path

import pytest
import uvicorn
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry
from uvicorn.logging import AccessFormatter

from services.composer.app import create_app
from shared import redaction
from shared.events import DeadLettered
from shared.kafka import DeadLetters
from shared.redaction import RedactingFilter, redact

ADDRESS = "jean.tremblay@exemple.québec"
PHONE = "+15145550000"
TOKEN = "eyJ0IjoiYWNtZSJ9.AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJKKK"


def test_addresses_phones_and_tokens_are_masked() -> None:
    text = f"550 <{ADDRESS}> unknown; to={ADDRESS}, sms {PHONE}: GET /u?lang=fr&token={TOKEN}&x=1"
    assert redact(text) == (
        "550 <<email>> unknown; to=<email>, sms <phone>: GET /u?lang=fr&token=<token>&x=1"
    )


@pytest.mark.parametrize(
    "text",
    [
        "broadcast.recipients[3]@1042: 2026-12-02T17:00:00+00:00",
        "run 3f2a9c1e-8d1b-4f7a-9a51-0c2b3d4e5f60 targeted: 5000 contracts, 4999 messages",
        "retry in 1.5 s; 12345678901 records",
    ],
)
def test_what_is_not_personal_is_left_alone(text: str) -> None:
    assert redact(text) == text


class Publisher:
    def __init__(self) -> None:
        self.sent: list[DeadLettered] = []

    async def publish(self, letter: DeadLettered, key: bytes | None = None) -> None:
        self.sent.append(letter)


async def test_a_dead_letter_logs_no_address(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install("composer")  # as every service's factory does
    publisher = Publisher()
    letters = DeadLetters(publisher, "composer", CollectorRegistry())  # type: ignore[arg-type]
    value = f'{{"address": "{ADDRESS}", "phone": "{PHONE}"}}'.encode()
    record = ConsumerRecord("broadcast.recipients", 2, 7, 0, 0, None, value, None, 0, 0, [])
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await letters.send(record, f"address: {ADDRESS!r} is refused; phone {PHONE}")
    assert "dead-lettered broadcast.recipients[2]@7: address: '<email>' is refused" in caplog.text
    assert ADDRESS not in caplog.text and PHONE not in caplog.text
    # The dead letter itself keeps the record, for the operator who replays it.
    assert ADDRESS in publisher.sent[0].payload


def test_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install("tracker")
    try:
        raise RuntimeError(f"duplicate key (address)=({ADDRESS})")
    except RuntimeError:
        with caplog.at_level(logging.ERROR, logger="tracker"):
            logging.getLogger("tracker").exception("storing %s failed", ADDRESS)
    assert "storing <email> failed" in caplog.text
    assert "RuntimeError: duplicate key (address)=(<email>)" in caplog.text
    assert ADDRESS not in caplog.text


def test_an_access_line_carries_no_token(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install("targeting")
    # `faststream run` configures uvicorn's logging after the factory ran: the filter stays.
    uvicorn.Config(app=create_app, access_log=True, log_level="info")
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactingFilter) for f in access.filters)
    access.addHandler(caplog.handler)  # uvicorn's access logger does not propagate
    try:
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "10.0.0.1:5000",
            "GET",
            f"/unsubscribe?token={TOKEN}",
            "1.1",
            200,
        )
    finally:
        access.removeHandler(caplog.handler)
    (line,) = [r for r in caplog.records if r.name == "uvicorn.access"]
    # The arguments keep their shape, which uvicorn's own formatter unpacks.
    formatted = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(line)
    assert formatted == '10.0.0.1:5000 "GET /unsubscribe?token=<token> HTTP/1.1" 200 OK'


def test_every_service_factory_installs_it() -> None:
    for name in ("composer", *redaction.SHARED_LOGGERS, *redaction.SERVER_LOGGERS):
        logger = logging.getLogger(name)
        for found in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(found)
    create_app()
    for name in ("composer", *redaction.SHARED_LOGGERS, *redaction.SERVER_LOGGERS):
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters), name


def test_every_logger_of_the_code_is_redacted() -> None:
    """A module logging on a logger `install` does not cover would log unredacted: a service's
    modules log on the service's name, a shared module on its own, listed in SHARED_LOGGERS."""
    repo = Path(__file__).resolve().parents[2]
    for path in repo.glob("services/*/*.py"):
        for name in re.findall(r"getLogger\(([^)]*)\)", path.read_text(encoding="utf-8")):
            assert name in ("SERVICE", f'"{path.parent.name}"'), f"{path}: getLogger({name})"
    for path in repo.glob("shared/**/*.py"):
        module = ".".join(path.relative_to(repo).with_suffix("").parts)
        if "getLogger(__name__)" in path.read_text(encoding="utf-8"):
            assert module in redaction.SHARED_LOGGERS, module
