"""Our SMS gateway's receipts and replies (services/dispatcher/webhooks/gateway.py), signed
with the gateway's token over the raw body; and the plumbing every route shares (http.py)."""

import json
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.dispatcher.webhooks.gateway import (
    SIGNATURE_HEADER,
    GatewayReceipts,
    GatewayReplies,
    signature,
)
from tests.unit.webhook_fakes import NOW, FakeIntake, post

TOKEN = b"gateway-token"
MESSAGE = uuid4()


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {SIGNATURE_HEADER: signature(TOKEN, body)}


async def latest(number: str) -> UUID | None:
    return MESSAGE if number == "+33612345678" else None


async def test_receipts_confirm_or_bounce_their_message() -> None:
    intake = FakeIntake()
    receipts = GatewayReceipts(TOKEN, lambda: NOW)
    delivered = signed({"reference": str(MESSAGE), "status": "delivered"})
    failed = signed(
        {
            "reference": str(MESSAGE),
            "status": "failed",
            "code": 30006,
            "detail": "landline or unreachable carrier",
            "permanent": True,
        }
    )
    for body, headers in (delivered, failed):
        assert (await post(receipts, intake, body, headers)).status_code == 200
    confirmed, bounced = intake.findings
    assert (confirmed.recipient_id, confirmed.report["type"]) == (MESSAGE, "delivery.confirmed")
    assert bounced.report == {
        "type": "delivery.bounced",
        "kind": "hard",
        "status": "5.0.0",
        "diagnostic": "30006 landline or unreachable carrier",
        "source": "sms_gateway",
        "reported_at": NOW,
    }


@pytest.mark.parametrize("permanent", [{"permanent": False}, {}])
async def test_a_failure_not_said_permanent_fails_its_message_with_a_transient_status(
    permanent: dict[str, bool],
) -> None:
    intake = FakeIntake()
    payload = {"reference": str(MESSAGE), "status": "failed", "code": 30003} | permanent
    response = await post(GatewayReceipts(TOKEN, lambda: NOW), intake, *signed(payload))
    assert response.status_code == 200
    [bounced] = intake.findings
    assert (bounced.report["kind"], bounced.report["status"]) == ("hard", "4.0.0")


async def test_a_reply_answers_its_reference_or_the_latest_sms_to_its_number() -> None:
    intake = FakeIntake()
    replies = GatewayReplies(TOKEN, lambda: NOW, latest)
    other = uuid4()
    cases = [
        {"from": "+33612345678", "to": "+15550000000", "text": "STOP"},
        {"from": "+33699999999", "to": "+15550000000", "text": "Arrêt", "reference": str(other)},
        {"from": "+33699999999", "to": "+15550000000", "text": "who is this?"},
    ]
    for payload in cases:
        assert (await post(replies, intake, *signed(payload))).status_code == 200
    assert [(f.recipient_id, f.report["text"]) for f in intake.findings] == [
        (MESSAGE, "STOP"),
        (other, "Arrêt"),
    ]


@pytest.mark.parametrize(
    "headers",
    [{}, {SIGNATURE_HEADER: "sha256=00"}, {SIGNATURE_HEADER: signature(b"other", b"{}")}],
)
async def test_an_unsigned_or_forged_post_is_refused(headers: dict[str, str]) -> None:
    intake = FakeIntake()
    body = json.dumps({"reference": str(MESSAGE), "status": "delivered"}).encode()
    response = await post(GatewayReceipts(TOKEN, lambda: NOW), intake, body, headers)
    assert response.status_code == 401
    assert intake.findings == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"reference": "not-a-uuid", "status": "delivered"}, "malformed: reference"),
        ({"reference": str(MESSAGE), "status": "lost"}, "malformed: status"),
        ({"status": "delivered"}, "malformed: reference"),
    ],
)
async def test_a_malformed_receipt_names_its_field(payload: dict[str, Any], error: str) -> None:
    response = await post(GatewayReceipts(TOKEN, lambda: NOW), FakeIntake(), *signed(payload))
    assert (response.status_code, response.json()) == (400, {"error": error})


async def test_the_routes_plumbing() -> None:
    receipts = GatewayReceipts(TOKEN, lambda: NOW)
    body, headers = signed({"reference": str(MESSAGE), "status": "delivered"})
    unconfigured = await post(None, FakeIntake(), body, headers)
    wrong_method = await post(receipts, FakeIntake(), b"", method="GET")
    too_large = await post(receipts, FakeIntake(), b"x" * 2000, headers, limit=1000)
    not_taken = await post(receipts, FakeIntake(failing=True), body, headers)
    assert [r.status_code for r in (unconfigured, wrong_method, too_large, not_taken)] == [
        404,
        405,
        413,
        503,
    ]
    # The caller learns it may try again, never why inside (no traceback, no broker address).
    assert not_taken.json() == {"error": "not taken; try again"}
