import email
import email.policy
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any
from uuid import uuid4

import pytest

from services.composer.render import compile_run, pick_language, render, text_from_html
from shared.events import (
    ContractSnapshot,
    DeliveryFailed,
    MessageRendered,
    RecipientTargeted,
    RunStarted,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def run(
    content: dict[str, Any], languages: list[str] | None = None, channels: list[str] | None = None
) -> RunStarted:
    return RunStarted.model_validate(
        {
            "tenant_id": "t",
            "broadcast_id": uuid4(),
            "run_id": uuid4(),
            "name": "n",
            "requested_by": "u",
            "channels": channels or ["email"],
            "languages": languages or ["fr", "en"],
            "content": content,
            "sender": {
                "address": "avis@neige.example",
                "name": "Déneigement Côté",
                "reply_to": "service@neige.example",
            },
        }
    )


EMAIL = {
    "email": {
        "fr": {
            "subject": "Avis — {{ contract.number }}",
            "html": "<p>Bonjour {{ contract.client_name }}</p><p>Solde {{ contract.balance }}</p>",
        },
        "en": {
            "subject": "Notice — {{ contract.number }}",
            "html": "<p>Hello {{ contract.client_name }}</p>",
            "text": "Hello {{ contract.client_name }}",
        },
    }
}


def recipient(
    started: RunStarted,
    *,
    language: str = "fr",
    name: str = "Élise Tremblay",
    channel: str = "email",
    address: str = "elise@example.com",
) -> RecipientTargeted:
    return RecipientTargeted.model_validate(
        {
            "tenant_id": "t",
            "broadcast_id": started.broadcast_id,
            "run_id": started.run_id,
            "recipient_id": uuid4(),
            "channel": channel,
            "address": address,
            "contract": ContractSnapshot(
                contract_id="C-1",
                number="C-1",
                status="active",
                building_type="residential",
                zone="",
                season="",
                client_name=name,
                service_address="1 rue A",
                language=language,
                balance=Decimal("1234.56"),
                amount_paid=Decimal("0"),
            ),
        }
    )


def parsed(output: MessageRendered | DeliveryFailed) -> EmailMessage:
    assert isinstance(output, MessageRendered), output
    message = email.message_from_string(output.body, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_both_languages_each_contract_gets_its_own() -> None:
    started = run(EMAIL)
    compiled = compile_run(started)
    assert parsed(render(compiled, recipient(started, language="en"), NOW))["Subject"] == (
        "Notice — C-1"
    )
    assert parsed(render(compiled, recipient(started, language="fr"), NOW))["Subject"] == (
        "Avis — C-1"
    )


def test_one_language_enabled_everyone_gets_it() -> None:
    started = run(EMAIL, languages=["fr"])
    message = parsed(render(compile_run(started), recipient(started, language="en"), NOW))
    assert message["Subject"] == "Avis — C-1"


def test_language_falls_back_to_the_other_when_missing() -> None:
    assert pick_language(["fr", "en"], "en", ["fr"]) == "fr"
    assert pick_language(["fr", "en"], "fr", ["fr", "en"]) == "fr"


def test_email_is_valid_mime_with_headers_and_both_bodies() -> None:
    started = run(EMAIL)
    output = render(compile_run(started), recipient(started), NOW)
    message = parsed(output)
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"].addresses[0].display_name == "Déneigement Côté"
    assert message["Reply-To"] == "service@neige.example"
    assert message["To"] == "elise@example.com"
    assert message["Message-ID"] == f"<{output.recipient_id}@neige.example>"
    assert message["Date"].datetime == NOW
    assert "Bonjour Élise Tremblay" in message.get_body(("html",)).get_content()
    assert "Bonjour Élise Tremblay" in message.get_body(("plain",)).get_content()
    assert output.body.isascii()  # 7-bit clean: no relay needs 8BITMIME or SMTPUTF8


def test_a_script_in_a_value_arrives_escaped_in_html() -> None:
    started = run(EMAIL)
    message = parsed(
        render(compile_run(started), recipient(started, name="<script>alert(1)</script>"), NOW)
    )
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_line_break_in_a_rendered_subject_fails_that_recipient() -> None:
    started = run(
        {"email": {"fr": {"subject": "Avis {{ contract.client_name }}", "html": "<p>x</p>"}}},
        languages=["fr"],
    )
    output = render(
        compile_run(started), recipient(started, name="x\r\nBcc: everyone@example.com"), NOW
    )
    assert isinstance(output, DeliveryFailed)
    assert output.reason == "render_failed" and "line break" in output.detail


def test_a_missing_value_fails_that_recipient_with_the_reason() -> None:
    started = run(
        {"email": {"fr": {"subject": "Avis", "html": "{{ contract.attributes.driver }}"}}},
        languages=["fr"],
    )
    output = render(compile_run(started), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed)
    assert output.reason == "render_failed" and "driver" in output.detail


@pytest.mark.parametrize(
    "template",
    [
        "{{ contract.__class__.__mro__ }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ contract.items.__globals__ }}",
    ],
)
def test_sandbox_refuses_escape_attempts(template: str) -> None:
    started = run({"email": {"fr": {"subject": "s", "html": template}}}, languages=["fr"])
    output = render(compile_run(started), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed)
    assert output.reason == "render_failed"


def test_sms_is_plain_text() -> None:
    started = run(
        {"sms": {"fr": {"text": "Bonjour {{ contract.client_name }} <3"}}},
        languages=["fr"],
        channels=["sms"],
    )
    output = render(
        compile_run(started), recipient(started, channel="sms", address="+15145550000"), NOW
    )
    assert isinstance(output, MessageRendered)
    assert output.body == "Bonjour Élise Tremblay <3"


def test_text_from_html_keeps_words_and_drops_markup() -> None:
    text = text_from_html(
        "<h1>Avis</h1><p>Bonjour <b>Élise</b>,<br>merci.</p>"
        "<script>x()</script><p>Fin &amp; suite</p>"
    )
    assert text == "Avis\nBonjour Élise,\nmerci.\n\nFin & suite\n"
