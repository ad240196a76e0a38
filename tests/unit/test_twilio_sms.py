"""The Twilio SMS provider against a local fake of Twilio's Messages API: what it sends, and
what each answer (or the lack of one) means for the message."""

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn

from services.dispatcher.policy import http_reply
from services.dispatcher.twilio_sms import TwilioSms
from shared.events import MessageRendered
from tests.unit.rendered import rendered

SID, TOKEN, SENDER = "AC0123456789abcdef", "secret-token", "+15550000000"


@dataclass
class Received:
    path: str
    authorization: str
    form: dict[str, list[str]]


@dataclass
class FakeTwilio:
    """Twilio's Messages API as far as the provider uses it: each request is recorded and
    answered with `answer` after `delay` seconds."""

    answer: tuple[int, dict[str, Any]] = (201, {"sid": "SM1", "status": "queued"})
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            chunk = await receive()
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        headers = dict(scope["headers"])
        self.received.append(
            Received(
                scope["path"],
                headers.get(b"authorization", b"").decode(),
                parse_qs(body.decode()),
            )
        )
        await asyncio.sleep(self.delay)
        status, answer = self.answer
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[FakeTwilio, str]]:
    """The fake, served on an ephemeral port, and its base URL."""
    fake = FakeTwilio()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield fake, f"http://127.0.0.1:{listening.getsockname()[1]}"
    server.should_exit = True
    await serving


def provider(base_url: str, timeout: float = 5.0) -> TwilioSms:
    return TwilioSms(
        base_url=base_url, account_sid=SID, auth_token=TOKEN, sender=SENDER, timeout=timeout
    )


def sms() -> MessageRendered:
    return rendered("sms", "+15145550123", "Déneigement demain matin: déplacez votre voiture.")


async def send(base_url: str, message: MessageRendered, timeout: float = 5.0) -> Any:
    twilio_sms = provider(base_url, timeout)
    try:
        return await twilio_sms.send(message)
    finally:
        await twilio_sms.close()


async def test_an_accepted_message_records_its_sid(twilio: tuple[FakeTwilio, str]) -> None:
    fake, url = twilio
    fake.answer = (201, {"sid": "SM9f0c2e", "status": "queued"})
    message = sms()
    attempt = await send(url, message)
    assert (attempt.verdict, attempt.code, attempt.detail) == ("accepted", 201, "SM9f0c2e")

    (request,) = fake.received
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.authorization == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.form == {"To": [message.address], "From": [SENDER], "Body": [message.body]}


@pytest.mark.parametrize(
    ("code", "reason"),
    [(21211, "invalid_address"), (21614, "invalid_address"), (21610, "refused")],
)
async def test_a_refused_number_fails_for_good_naming_twilios_code(
    twilio: tuple[FakeTwilio, str], code: int, reason: str
) -> None:
    fake, url = twilio
    fake.answer = (400, {"code": code, "message": "refused", "status": 400})
    attempt = await send(url, sms())
    assert (attempt.verdict, attempt.code, attempt.reason) == ("permanent", 400, reason)
    assert str(code) in attempt.detail


@pytest.mark.parametrize(("status", "verdict"), [(429, "throttled"), (503, "temporary")])
async def test_a_busy_or_failing_twilio_is_tried_again_as_the_http_gateway_is(
    twilio: tuple[FakeTwilio, str], status: int, verdict: str
) -> None:
    fake, url = twilio
    fake.answer = (status, {"code": 20429, "message": "Too Many Requests", "status": status})
    attempt = await send(url, sms())
    assert (attempt.verdict, attempt.reason) == (verdict, "temporary_failure")
    assert http_reply(status, "").verdict == verdict


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_credentials_fail_as_the_http_gateways_do(
    twilio: tuple[FakeTwilio, str], status: int
) -> None:
    fake, url = twilio
    fake.answer = (status, {"code": 20003, "message": "Authenticate", "status": status})
    attempt = await send(url, sms())
    gateway = http_reply(status, "")
    assert (attempt.verdict, attempt.reason) == (gateway.verdict, gateway.reason)


async def test_no_answer_after_the_request_left_is_unknown_never_resent(
    twilio: tuple[FakeTwilio, str],
) -> None:
    fake, url = twilio
    fake.delay = 0.5
    attempt = await send(url, sms(), timeout=0.1)
    assert (attempt.verdict, attempt.reason) == ("unknown", "unknown_outcome")
    assert len(fake.received) == 1  # it did reach Twilio, which may have sent it


async def test_twilio_out_of_reach_is_a_temporary_failure() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    attempt = await send(f"http://127.0.0.1:{port}", sms())
    assert (attempt.verdict, attempt.reason) == ("temporary", "temporary_failure")


async def test_status_callbacks_are_asked_for_when_the_public_url_is_set(
    twilio: tuple[FakeTwilio, str],
) -> None:
    fake, url = twilio
    callback = "https://hooks.example.org/webhooks/twilio/status"
    twilio_sms = TwilioSms(
        base_url=url,
        account_sid=SID,
        auth_token=TOKEN,
        sender=SENDER,
        timeout=5.0,
        status_callback=callback,
    )
    try:
        await twilio_sms.send(sms())
    finally:
        await twilio_sms.close()
    (request,) = fake.received
    assert request.form["StatusCallback"] == [callback]
