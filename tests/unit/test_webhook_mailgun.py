"""Mailgun's webhooks (services/dispatcher/webhooks/mailgun.py): its HMAC signature, fresh and
never replayed, and its "failed" and "complained" events mapped by their Message-ID."""

import hashlib
import hmac
import json
from typing import Any
from uuid import uuid4

import pytest

from services.dispatcher.webhooks.mailgun import MailgunWebhook
from tests.unit.webhook_fakes import NOW, FakeIntake, post

KEY = b"key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
RECIPIENT = uuid4()


def event_data(event: str = "failed", severity: str = "permanent", **more: Any) -> dict[str, Any]:
    """The shape of Mailgun's documented event-data (trimmed of what we do not read)."""
    return {
        "event": event,
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": NOW.timestamp() - 5,
        "severity": severity,
        "reason": "bounce",
        "recipient": "alice@example.com",
        "delivery-status": {
            "attempt-no": 1,
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
            "enhanced-code": "5.1.1",
        },
        "message": {
            "headers": {
                "to": "Alice <alice@example.com>",
                "message-id": f"{RECIPIENT}@example.org",
                "from": "Bob <bob@example.org>",
                "subject": "Test permanent_fail webhook",
            },
        },
        **more,
    }


def signed_post(data: dict[str, Any], *, timestamp: float | None = None, token: str = "") -> bytes:
    stamp = str(int(timestamp if timestamp is not None else NOW.timestamp()))
    token = token or uuid4().hex
    signature = hmac.new(KEY, (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": data,
        }
    ).encode()


def webhook() -> MailgunWebhook:
    return MailgunWebhook(KEY, 300.0, lambda: NOW)


async def test_a_permanent_failure_is_a_hard_bounce_of_our_message() -> None:
    intake = FakeIntake()
    response = await post(webhook(), intake, signed_post(event_data()))
    assert response.status_code == 200, response.text
    [finding] = intake.findings
    assert finding.recipient_id == RECIPIENT
    report = finding.report
    assert (report["type"], report["kind"], report["status"], report["source"]) == (
        "delivery.bounced",
        "hard",
        "5.1.1",
        "mailgun",
    )
    assert report["diagnostic"].startswith("550 5.1.1 The email account")


async def test_a_temporary_failure_is_soft_and_a_complaint_a_complaint() -> None:
    intake = FakeIntake()
    hook = webhook()
    assert (
        await post(hook, intake, signed_post(event_data(severity="temporary")))
    ).status_code == 200
    assert (await post(hook, intake, signed_post(event_data("complained")))).status_code == 200
    soft, complaint = intake.findings
    assert soft.report["kind"] == "soft"
    assert complaint.report["type"] == "delivery.complained"
    assert complaint.recipient_id == RECIPIENT


async def test_other_events_and_other_senders_messages_are_ignored() -> None:
    intake = FakeIntake()
    hook = webhook()
    other = event_data()
    other["message"]["headers"]["message-id"] = "20130503182626.18666.16540@sandbox.mailgun.org"
    for data in (event_data("delivered"), other):
        assert (await post(hook, intake, signed_post(data))).status_code == 200
    assert intake.findings == []


async def test_a_forged_stale_or_replayed_post_is_refused() -> None:
    intake = FakeIntake()
    hook = webhook()
    good = json.loads(signed_post(event_data(), token="t" * 50))
    forged = json.loads(signed_post(event_data()))
    forged["signature"]["token"] = "another"
    stale = signed_post(event_data(), timestamp=NOW.timestamp() - 301)
    cases = [(json.dumps(forged).encode(), 401), (stale, 403)]
    for body, status in cases:
        assert (await post(hook, intake, body)).status_code == status
    assert (await post(hook, intake, json.dumps(good).encode())).status_code == 200
    replayed = await post(hook, intake, json.dumps(good).encode())
    assert replayed.status_code == 403
    assert replayed.json() == {"error": "signature.token: already taken"}
    assert len(intake.findings) == 1


async def test_a_post_that_could_not_be_taken_may_come_again() -> None:
    hook = webhook()
    body = signed_post(event_data())
    assert (await post(hook, FakeIntake(failing=True), body)).status_code == 503
    intake = FakeIntake()
    assert (await post(hook, intake, body)).status_code == 200
    assert len(intake.findings) == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "malformed: body (not JSON)"),
        (b"[]", "malformed: body (not a JSON object)"),
        (b"[" * 100_000, "malformed: body (not JSON)"),
        (b"\xff\xfe{", "malformed: body (not JSON)"),
        (b'{"event-data": {"event": "failed"}}', "malformed: signature"),
        (
            b'{"signature": {"timestamp": "1", "token": "t"}, "event-data": {}}',
            "malformed: signature.signature",
        ),
    ],
)
async def test_a_malformed_post_names_its_field(body: bytes, error: str) -> None:
    response = await post(webhook(), FakeIntake(), body)
    assert (response.status_code, response.json()) == (400, {"error": error})
