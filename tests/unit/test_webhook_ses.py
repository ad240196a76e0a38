"""SES through SNS (services/dispatcher/webhooks/ses.py): SNS's signature as AWS documents it,
checked with a throwaway certificate; the allowed topics; SES's bounce and complaint records
mapped to our message by its Message-ID."""

import base64
import json
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from services.dispatcher.webhooks.ses import SesWebhook, SigningCertificates, SnsMessage
from services.dispatcher.webhooks.ses import string_to_sign as canonical
from tests.unit.webhook_fakes import NOW, FakeIntake, post

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
RECIPIENT = uuid4()
MAX_AGE = 3600.0

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
CERT = (
    x509.CertificateBuilder()
    .subject_name(NAME)
    .issuer_name(NAME)
    .public_key(KEY.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(NOW - timedelta(days=1))
    .not_valid_after(NOW + timedelta(days=30))
    .sign(KEY, hashes.SHA256())
)
PEM = CERT.public_bytes(serialization.Encoding.PEM)


def ses_bounce(bounce_type: str = "Permanent", message_id: str | None = None) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "jane@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-12-03T08:59:38.237Z",
            "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
        },
        "mail": {
            "timestamp": "2026-12-03T08:59:37.000Z",
            "source": "avis@example.org",
            "messageId": "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
            "destination": ["jane@example.com"],
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": "avis@example.org"},
                {"name": "Message-ID", "value": message_id or f"<{RECIPIENT}@example.org>"},
            ],
        },
    }


def ses_complaint() -> dict[str, Any]:
    record = ses_bounce()
    del record["bounce"]
    record["notificationType"] = "Complaint"
    record["complaint"] = {
        "complainedRecipients": [{"emailAddress": "jane@example.com"}],
        "timestamp": "2026-12-03T09:00:00.000Z",
        "complaintFeedbackType": "abuse",
    }
    return record


def signed(envelope: dict[str, Any], version: str = "1") -> dict[str, Any]:
    envelope = {**envelope, "SignatureVersion": version, "SigningCertURL": CERT_URL}
    message = SnsMessage.model_validate({**envelope, "Signature": ""})
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
    signature = KEY.sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {**envelope, "Signature": base64.b64encode(signature).decode()}


def notification(record: dict[str, Any], version: str = "1", **fields: str) -> dict[str, Any]:
    return signed(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Event Notification",
            "Message": json.dumps(record),
            "Timestamp": "2026-12-03T09:00:01.000Z",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
            **fields,
        },
        version,
    )


class Sns:
    """The certificate host and the subscription URLs, without a network."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.confirmed: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return PEM

    async def confirm(self, url: str) -> None:
        self.confirmed.append(url)

    def webhook(self) -> SesWebhook:
        return SesWebhook(
            frozenset({TOPIC}), MAX_AGE, SigningCertificates(self.fetch), self.confirm, lambda: NOW
        )


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_permanent_bounce_is_a_hard_bounce_of_our_message(version: str) -> None:
    sns, intake = Sns(), FakeIntake()
    body = json.dumps(notification(ses_bounce(), version)).encode()
    response = await post(sns.webhook(), intake, body)
    assert response.status_code == 200, response.text
    [finding] = intake.findings
    assert finding.recipient_id == RECIPIENT
    report = finding.report
    assert (report["type"], report["kind"], report["status"]) == (
        "delivery.bounced",
        "hard",
        "5.1.1",
    )
    assert report["diagnostic"] == "smtp; 550 5.1.1 user unknown"
    assert report["source"] == "ses"
    assert sns.fetched == [CERT_URL]


async def test_the_certificate_is_fetched_once() -> None:
    sns, intake = Sns(), FakeIntake()
    webhook = sns.webhook()
    for _ in range(3):
        await post(webhook, intake, json.dumps(notification(ses_bounce())).encode())
    assert len(intake.findings) == 3
    assert sns.fetched == [CERT_URL]


@pytest.mark.parametrize(("bounce_type", "kind"), [("Transient", "soft"), ("Undetermined", "soft")])
async def test_other_bounces_are_soft(bounce_type: str, kind: str) -> None:
    intake = FakeIntake()
    body = json.dumps(notification(ses_bounce(bounce_type))).encode()
    assert (await post(Sns().webhook(), intake, body)).status_code == 200
    assert intake.findings[0].report["kind"] == kind


async def test_a_complaint_is_a_complaint_about_our_message() -> None:
    intake = FakeIntake()
    body = json.dumps(notification(ses_complaint())).encode()
    assert (await post(Sns().webhook(), intake, body)).status_code == 200
    [finding] = intake.findings
    assert finding.recipient_id == RECIPIENT
    assert finding.report["type"] == "delivery.complained"
    assert finding.report["feedback_type"] == "abuse"


async def test_another_senders_message_or_event_is_taken_and_ignored() -> None:
    intake = FakeIntake()
    foreign = notification(ses_bounce(message_id="<abc.123@mail.other.example>"))
    delivery = notification({**ses_bounce(), "notificationType": "Delivery"})
    for envelope in (foreign, delivery):
        assert (
            await post(Sns().webhook(), intake, json.dumps(envelope).encode())
        ).status_code == 200
    assert intake.findings == []


@pytest.mark.parametrize(
    ("forge", "status"),
    [
        (lambda e: {**e, "Message": e["Message"].replace("Permanent", "Transient")}, 401),
        (lambda e: {**e, "Subject": "changed"}, 401),
        (lambda e: {k: v for k, v in e.items() if k != "Subject"}, 401),
        (lambda e: {**e, "SignatureVersion": "3"}, 401),
        (lambda e: {**e, "Signature": "not base64!"}, 401),
        (lambda e: {**e, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"}, 403),
        (lambda e: {**e, "SigningCertURL": "https://sns.eu-west-1.evil.example/c.pem"}, 403),
        (lambda e: {**e, "SigningCertURL": "https://sns.eu-west-1.amazonaws.com.evil/c.pem"}, 403),
        (lambda e: {**e, "SigningCertURL": CERT_URL.replace("https", "http")}, 403),
        (lambda e: {k: v for k, v in e.items() if k != "Signature"}, 400),
    ],
)
async def test_a_forged_or_foreign_notification_is_refused(forge: Any, status: int) -> None:
    sns, intake = Sns(), FakeIntake()
    body = json.dumps(forge(notification(ses_bounce()))).encode()
    response = await post(sns.webhook(), intake, body)
    assert response.status_code == status, response.text
    assert intake.findings == []


async def test_a_certificate_out_of_its_validity_is_refused() -> None:
    intake = FakeIntake()
    sns = Sns()
    webhook = SesWebhook(
        frozenset({TOPIC}),
        MAX_AGE,
        SigningCertificates(sns.fetch),
        sns.confirm,
        lambda: NOW + timedelta(days=60),
    )
    body = json.dumps(notification(ses_bounce())).encode()
    assert (await post(webhook, intake, body)).status_code == 401


def sns_time(seconds_from_now: float) -> str:
    """A Timestamp as SNS writes it (milliseconds, Z)."""
    at = NOW + timedelta(seconds=seconds_from_now)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@pytest.mark.parametrize(
    ("seconds_from_now", "status"),
    [
        (-MAX_AGE + 1, 200),  # SNS's last retry, signed when first sent
        (-MAX_AGE - 1, 403),  # a captured notification, replayed
        (MAX_AGE + 1, 403),  # far in the future: not a clock's drift
    ],
)
async def test_a_signed_notification_is_taken_only_within_its_age(
    seconds_from_now: float, status: int
) -> None:
    intake = FakeIntake()
    envelope = notification(ses_bounce(), Timestamp=sns_time(seconds_from_now))
    response = await post(Sns().webhook(), intake, json.dumps(envelope).encode())
    assert response.status_code == status, response.text
    assert len(intake.findings) == (1 if status == 200 else 0)
    if status == 403:
        assert response.json() == {"error": "Timestamp: not recent"}


@pytest.mark.parametrize("timestamp", ["yesterday", "2026-12-03T09:00:01"])
async def test_a_timestamp_that_is_not_snss_is_malformed(timestamp: str) -> None:
    envelope = notification(ses_bounce(), Timestamp=timestamp)
    response = await post(Sns().webhook(), FakeIntake(), json.dumps(envelope).encode())
    assert (response.status_code, response.json()) == (400, {"error": "malformed: Timestamp"})


def confirmation(subscribe_url: str) -> dict[str, Any]:
    return signed(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37f",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": subscribe_url,
            "Timestamp": "2026-12-03T09:00:00.000Z",
        }
    )


async def test_a_signed_subscription_of_an_allowed_topic_is_confirmed() -> None:
    sns, intake = Sns(), FakeIntake()
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f"
    assert (
        await post(sns.webhook(), intake, json.dumps(confirmation(url)).encode())
    ).status_code == 200
    assert sns.confirmed == [url]


async def test_a_subscription_elsewhere_or_forged_is_not_confirmed() -> None:
    sns, intake = Sns(), FakeIntake()
    elsewhere = confirmation("https://attacker.example/?Action=ConfirmSubscription")
    forged = {**confirmation("https://sns.eu-west-1.amazonaws.com/?x=1"), "Token": "other"}
    foreign = signed(
        {**confirmation("https://sns.eu-west-1.amazonaws.com/")} | {"TopicArn": "arn:x"}
    )
    for envelope, status in ((elsewhere, 403), (forged, 401), (foreign, 403)):
        response = await post(sns.webhook(), intake, json.dumps(envelope).encode())
        assert response.status_code == status
    assert sns.confirmed == []


async def test_a_malformed_ses_record_names_its_field() -> None:
    intake = FakeIntake()
    record = ses_bounce()
    del record["mail"]
    response = await post(Sns().webhook(), intake, json.dumps(notification(record)).encode())
    assert response.status_code == 400
    assert response.json() == {"error": "malformed: Message.mail"}
    not_json = notification(ses_bounce()) | {"Message": "{"}
    response = await post(Sns().webhook(), intake, json.dumps(signed(not_json)).encode())
    assert response.json() == {"error": "malformed: Message (not JSON)"}
