"""Twilio's status callbacks and incoming messages (services/dispatcher/webhooks/twilio.py):
its signature checked against Twilio's published vectors, then over our public URL."""

from collections.abc import Callable
from urllib.parse import urlencode
from uuid import UUID, uuid4

import pytest

from services.dispatcher.webhooks.twilio import (
    SIGNATURE_HEADER,
    TwilioInbound,
    TwilioStatus,
    signature,
    status_of,
)
from tests.unit.webhook_fakes import NOW, FakeIntake, post

TOKEN = b"twilio-auth-token"
URL = "https://hooks.example.org/webhooks/twilio/status"
SID = "SM1f0e8ae6ade43cb3c0ce4525424e404f"
MESSAGE = uuid4()


def test_the_signature_is_twilios_on_its_published_vectors() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    assert signature(b"12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert signature(b"12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def form(params: dict[str, str], url: str = URL) -> tuple[bytes, dict[str, str]]:
    pairs = list(params.items())
    return urlencode(pairs).encode(), {SIGNATURE_HEADER: signature(TOKEN, url, pairs)}


async def by_sid(sid: str) -> UUID | None:
    return MESSAGE if sid == SID else None


def status_hook() -> TwilioStatus:
    return TwilioStatus(TOKEN, URL, by_sid, lambda: NOW)


def callback(status: str, **more: str) -> dict[str, str]:
    return {
        "MessageSid": SID,
        "MessageStatus": status,
        "AccountSid": "AC00",
        "From": "+15550000000",
        "To": "+33612345678",
        "ApiVersion": "2010-04-01",
        **more,
    }


async def test_status_callbacks_confirm_or_bounce_their_message() -> None:
    intake = FakeIntake()
    callbacks = [
        callback("sent"),
        callback("delivered"),
        callback("undelivered", ErrorCode="30003"),
        callback("failed", ErrorCode="30005"),
        callback("failed"),
    ]
    for params in callbacks:
        response = await post(status_hook(), intake, *form(params))
        assert response.status_code == 200
    confirmed, *bounced = intake.findings
    assert (confirmed.recipient_id, confirmed.report["type"]) == (MESSAGE, "delivery.confirmed")
    # Every failure fails the message (hard); its status says whether the number is at fault.
    assert [(b.report["kind"], b.report["status"], b.report["diagnostic"]) for b in bounced] == [
        ("hard", "4.0.0", "Twilio undelivered, error 30003"),
        ("hard", "5.1.1", "Twilio failed, error 30005"),
        ("hard", "4.0.0", "Twilio failed"),
    ]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("30004", "5.7.1"),  # blocked by the recipient
        ("30005", "5.1.1"),  # unknown handset
        ("30006", "5.1.1"),  # landline or unreachable carrier
        ("21211", "5.1.3"),  # invalid number
        ("21614", "5.1.1"),  # not a mobile number
        ("21610", "5.7.1"),  # the recipient replied STOP
        ("30001", "4.0.0"),  # queue overflow
        ("30002", "4.0.0"),  # account suspended
        ("30003", "4.0.0"),  # handset unreachable: switched off for a day
        ("30007", "4.0.0"),  # carrier filtering: the content, not the number
        ("30008", "4.0.0"),  # unknown error
        ("30009", "4.0.0"),  # missing segment
        ("30010", "4.0.0"),  # price over the maximum
        ("39999", "4.0.0"),  # a code new to us
        ("", "4.0.0"),  # none given
    ],
)
def test_only_the_numbers_fault_is_a_permanent_status(code: str, status: str) -> None:
    assert status_of(code) == status


async def test_an_unknown_sid_is_taken_and_ignored() -> None:
    intake = FakeIntake()
    body, headers = form(callback("delivered") | {"MessageSid": "SMother"})
    assert (await post(status_hook(), intake, body, headers)).status_code == 200
    assert intake.findings == []


@pytest.mark.parametrize(
    "forge",
    [
        lambda body, headers: (body, {}),
        lambda body, headers: (body.replace(b"undelivered", b"delivered"), headers),
        lambda body, headers: form(callback("undelivered"), url="http://hooks.example.org/x"),
    ],
)
async def test_a_forged_callback_is_refused(
    forge: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]],
) -> None:
    intake = FakeIntake()
    response = await post(status_hook(), intake, *forge(*form(callback("undelivered"))))
    assert response.status_code == 401
    assert intake.findings == []


async def test_an_incoming_message_answers_the_latest_sms_to_its_number() -> None:
    async def latest(number: str) -> UUID | None:
        return MESSAGE if number == "+33612345678" else None

    intake = FakeIntake()
    url = "https://hooks.example.org/webhooks/twilio/inbound"
    hook = TwilioInbound(TOKEN, url, latest, lambda: NOW)
    message = {"MessageSid": "SMx", "From": "+33612345678", "To": "+15550000000", "Body": "arrêt"}
    assert (await post(hook, intake, *form(message, url))).status_code == 200
    [finding] = intake.findings
    assert (finding.recipient_id, finding.report["text"]) == (MESSAGE, "arrêt")
    no_from = await post(hook, intake, *form({"Body": "STOP"}, url))
    assert (no_from.status_code, no_from.json()) == (400, {"error": "malformed: From"})
