"""Render-only previews: the composer's answer, and how targeting picks language and address."""

from typing import Any

import pytest

from services.composer.previews import rendered
from services.targeting.broadcasts import Rejection
from services.targeting.renders import SAMPLE_ADDRESSES, address_of, language_of
from shared.events import (
    RENDERED_TEXT_LIMIT,
    Channel,
    Language,
    RenderRequested,
    TenantSettings,
)
from shared.variables import sample_contract
from tests.unit.test_render import EMAIL, KEYS, NOW, run


def request(
    content: dict[str, Any],
    channel: Channel = "email",
    language: Language = "fr",
    settings: dict[str, Any] | None = None,
) -> RenderRequested:
    started = run(content, channels=[channel], settings=settings)
    return RenderRequested(
        tenant_id=started.tenant_id,
        broadcast_id=started.broadcast_id,
        request_id="req-1",
        requested_by="u",
        run=started,
        channel=channel,
        language=language,
        address=SAMPLE_ADDRESSES[channel],
        contract=sample_contract(language),
        sample=True,
    )


def test_an_email_is_answered_with_its_parts_in_the_language_asked() -> None:
    answer = rendered(request(EMAIL, language="en"), KEYS, NOW)
    assert answer.type == "broadcast.rendered", answer
    assert (answer.contract_id, answer.language, answer.sms) == (None, "en", None)
    assert answer.email is not None
    assert answer.email.subject == "Notice — SAMPLE-0001"
    assert answer.email.html == "<p>Hello Camille Tremblay</p>"
    assert (answer.email.text, answer.email.text_cut) == ("Hello Camille Tremblay", False)


def test_the_sample_contract_prints_readable_values() -> None:
    html = "".join(
        f"{{{{ contract.{name} }}}}|"
        for name in ("number", "client_name", "balance", "visit_at", "driver_name", "zone")
    )
    content = {"email": {"fr": {"subject": "s", "html": html}}}
    answer = rendered(request(content), KEYS, NOW)
    assert answer.type == "broadcast.rendered", answer
    assert answer.email is not None
    assert answer.email.html.split("|")[:3] == [
        "SAMPLE-0001",
        "Camille Tremblay",
        "1\u00a0234,56\u00a0$",
    ]


def test_an_sms_is_answered_with_its_segments_and_encoding() -> None:
    content = {"sms": {"fr": {"text": "Solde : {{ contract.balance }} — merci"}}}
    answer = rendered(request(content, "sms", settings={"sms_max_segments": 2}), KEYS, NOW)
    assert answer.type == "broadcast.rendered", answer
    assert answer.email is None and answer.sms is not None
    # Typography that would cost UCS-2 is replaced, as in the message sent.
    assert answer.sms.text == "Solde : 1 234,56 $ - merci"
    assert (answer.sms.encoding, answer.sms.segments, answer.sms.max_segments) == ("gsm7", 1, 2)


def test_a_template_error_is_a_render_failed_answer_in_a_few_words() -> None:
    content = {"email": {"fr": {"subject": "s", "html": "{{ 1 // 0 }}"}}}
    answer = rendered(request(content), KEYS, NOW)
    assert answer.type == "broadcast.rejected"
    assert (answer.reason, answer.field, answer.command) == (
        "render_failed",
        "content.email.fr",
        "render_preview",
    )
    assert answer.message == "ZeroDivisionError: integer division or modulo by zero"
    assert len(answer.message) <= 200


def test_a_value_the_tenant_lacks_is_named() -> None:
    content = {"email": {"fr": {"subject": "s", "html": "{{ contract.payment_url }}"}}}
    answer = rendered(request(content, settings={}), KEYS, NOW)
    assert answer.type == "broadcast.rejected"
    assert "contract.payment_url" in answer.message


def test_a_long_text_part_is_cut_and_says_so() -> None:
    content = {
        "email": {
            "fr": {"subject": "s", "html": "<p>x</p>", "text": "{{ 'y' * 90000 }}"},
        }
    }
    answer = rendered(request(content), KEYS, NOW)
    assert answer.type == "broadcast.rendered" and answer.email is not None
    assert (len(answer.email.text), answer.email.text_cut) == (RENDERED_TEXT_LIMIT, True)


def test_an_answer_too_large_to_publish_is_refused_saying_so() -> None:
    subject = "{% for i in range(9) %}{{ 'x' * 99999 }}{% endfor %}"
    content = {"email": {"fr": {"subject": "s", "html": "<p>x</p>", "text": subject}}}
    content["email"]["fr"]["subject"] = subject
    answer = rendered(request(content), KEYS, NOW)
    assert answer.type == "broadcast.rejected"
    assert answer.reason == "render_failed"
    assert answer.message.startswith("the rendered message is too large to show")


def test_the_language_is_the_one_asked_else_the_contracts_else_the_first() -> None:
    assert language_of("en", "fr", ["fr", "en"]) == "en"
    assert language_of(None, "en", ["fr", "en"]) == "en"
    assert language_of(None, "en", ["fr"]) == "fr"
    assert language_of(None, None, ["en", "fr"]) == "en"
    with pytest.raises(Rejection) as refused:
        language_of("en", None, ["fr"])
    assert (refused.value.code, refused.value.field) == ("invalid_field", "language")


def test_the_address_is_the_contracts_first_usable_one_else_the_sample() -> None:
    row = {
        "emails": [{"address": "gone@x.example", "opted_out": True}, {"address": "a@x.example"}],
        "phones": [],
    }
    assert address_of(row, "email") == "a@x.example"
    assert address_of(row, "sms") == SAMPLE_ADDRESSES["sms"]
    assert address_of(None, "email") == SAMPLE_ADDRESSES["email"]


def test_settings_without_notices_stay_as_they_were() -> None:
    assert TenantSettings().completion_notices is None
