import email
import email.policy
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any
from uuid import UUID, uuid4

import pytest
from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from services.composer.context import LinkKeys, context
from services.composer.render import (
    CompiledRun,
    Unrendered,
    compile_run,
    pick_language,
    render,
    text_from_html,
)
from shared import links, return_path, templating
from shared.events import (
    ContractDetails,
    ContractSnapshot,
    DeliveryFailed,
    MessageRendered,
    RecipientTargeted,
    RunStarted,
)
from shared.variables import CATALOGUE, LINK_KINDS

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def run(
    content: dict[str, Any],
    languages: list[str] | None = None,
    channels: list[str] | None = None,
    settings: dict[str, Any] | None = None,
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
            "settings": settings or {"links": {"statement": "https://portail.example/etat"}},
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


KEYS = LinkKeys(b"unit-test-secret", "https://engine.example/unsubscribe", 60)


def compiled(started: RunStarted, dkim_key: bytes | None = None) -> CompiledRun:
    return compile_run(started, KEYS, dkim_key)


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


def parsed(output: MessageRendered | Unrendered) -> EmailMessage:
    assert isinstance(output, MessageRendered), output
    message = email.message_from_string(output.body, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part_text(message: EmailMessage, subtype: str) -> str:
    """The decoded body of the message's `subtype` part ("html" or "plain")."""
    part = message.get_body((subtype,))
    assert part is not None, f"no {subtype} part"
    return str(part.get_content())


def test_both_languages_each_contract_gets_its_own() -> None:
    started = run(EMAIL)
    ready = compiled(started)
    assert parsed(render(ready, recipient(started, language="en"), NOW))["Subject"] == (
        "Notice — C-1"
    )
    assert parsed(render(ready, recipient(started, language="fr"), NOW))["Subject"] == (
        "Avis — C-1"
    )


def test_one_language_enabled_everyone_gets_it() -> None:
    started = run(EMAIL, languages=["fr"])
    message = parsed(render(compiled(started), recipient(started, language="en"), NOW))
    assert message["Subject"] == "Avis — C-1"


def test_language_falls_back_to_the_other_when_missing() -> None:
    assert pick_language(["fr", "en"], "en", ["fr"]) == "fr"
    assert pick_language(["fr", "en"], "fr", ["fr", "en"]) == "fr"


def test_email_is_valid_mime_with_headers_and_both_bodies() -> None:
    started = run(EMAIL)
    output = render(compiled(started), recipient(started), NOW)
    message = parsed(output)
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"].addresses[0].display_name == "Déneigement Côté"
    assert message["Reply-To"] == "service@neige.example"
    assert message["To"] == "elise@example.com"
    assert message["Message-ID"] == f"<{output.recipient_id}@neige.example>"
    assert message["Date"].datetime == NOW
    assert "Bonjour Élise Tremblay" in part_text(message, "html")
    assert "Bonjour Élise Tremblay" in part_text(message, "plain")
    assert isinstance(output, MessageRendered)  # as parsed() checked, for the type checker
    assert output.body.isascii()  # 7-bit clean: no relay needs 8BITMIME or SMTPUTF8


def test_an_email_is_sent_from_its_return_path_when_there_is_one() -> None:
    started = run(EMAIL)
    key = return_path.key(b"k" * 32)

    def envelope_sender(recipient_id: UUID) -> str:
        return return_path.address(recipient_id, "bounces.example", key)

    output = render(compiled(started), recipient(started), NOW, envelope_sender)
    assert isinstance(output, MessageRendered)
    assert return_path.recipient_of(output.sender, "bounces.example", [key]) == output.recipient_id
    # The headers a person sees are the sender's, as without a return path.
    message = parsed(output)
    assert message["From"].addresses[0].addr_spec == "avis@neige.example"
    assert message["Message-ID"] == f"<{output.recipient_id}@neige.example>"
    assert "bounces.example" not in output.body
    without = render(compiled(started), recipient(started), NOW)
    assert isinstance(without, MessageRendered) and without.sender == "avis@neige.example"

    sms = run({"sms": {"fr": {"text": "Bonjour"}}}, languages=["fr"], channels=["sms"])
    text = render(
        compiled(sms), recipient(sms, channel="sms", address="+15145550000"), NOW, envelope_sender
    )
    assert isinstance(text, MessageRendered) and text.sender == "avis@neige.example"


def test_a_script_in_a_value_arrives_escaped_in_html() -> None:
    started = run(EMAIL)
    message = parsed(
        render(compiled(started), recipient(started, name="<script>alert(1)</script>"), NOW)
    )
    html = part_text(message, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_line_break_in_a_rendered_subject_fails_that_recipient() -> None:
    started = run(
        {"email": {"fr": {"subject": "Avis {{ contract.client_name }}", "html": "<p>x</p>"}}},
        languages=["fr"],
    )
    output = render(
        compiled(started), recipient(started, name="x\r\nBcc: everyone@example.com"), NOW
    )
    assert isinstance(output, DeliveryFailed)
    assert output.reason == "render_failed" and "line break" in output.detail


def test_a_missing_value_fails_that_recipient_with_the_reason() -> None:
    started = run(
        {"email": {"fr": {"subject": "Avis", "html": "{{ contract.attributes.driver }}"}}},
        languages=["fr"],
    )
    output = render(compiled(started), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed)
    assert output.reason == "missing_value"
    assert output.detail == "no value for contract.attributes.driver"


@pytest.mark.parametrize(
    "template",
    [
        "{{ contract.__class__.__mro__ }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ contract.items.__globals__ }}",
        "{{ contract.balance.__class__ }}",
        "{{ contract.balance.amount.__class__.__mro__ }}",
        "{{ contract.statement_url._secret }}",
        "{{ contract._recipient }}",
        "{{ contract._values.keys.secret }}",
        "{{ contract.visit_at.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_escape_attempts(template: str) -> None:
    started = run({"email": {"fr": {"subject": "s", "html": template}}}, languages=["fr"])
    output = render(compiled(started), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed)
    # Refused outright (SecurityError) or simply not there: either way nothing is shown.
    assert output.reason in ("render_failed", "missing_value")


def test_sms_is_plain_text() -> None:
    started = run(
        {"sms": {"fr": {"text": "Bonjour {{ contract.client_name }} <3"}}},
        languages=["fr"],
        channels=["sms"],
    )
    output = render(
        compiled(started), recipient(started, channel="sms", address="+15145550000"), NOW
    )
    assert isinstance(output, MessageRendered)
    assert output.body == "Bonjour Élise Tremblay <3"


def test_text_from_html_keeps_words_and_drops_markup() -> None:
    text = text_from_html(
        "<h1>Avis</h1><p>Bonjour <b>Élise</b>,<br>merci.</p>"
        "<script>x()</script><p>Fin &amp; suite</p>"
    )
    assert text == "Avis\nBonjour Élise,\nmerci.\n\nFin & suite\n"


def test_every_catalogued_variable_renders_for_a_complete_contract() -> None:
    every_link = {kind: f"https://portail.example/{kind}" for kind in LINK_KINDS.values()}
    source = " | ".join(
        f"{v.name}={{{{ {v.name} }}}}" for v in CATALOGUE if "attributes" not in v.name
    )
    started = run(
        {"email": {"fr": {"subject": "s", "html": "<p></p>", "text": source}}},
        languages=["fr"],
        settings={"links": every_link},
    )
    complete = recipient(started)
    contract = complete.contract.model_copy(
        update={
            "zone": "Nord",
            "season": "2026-2027",
            "details": ContractDetails(
                transaction_id="TX-1",
                auth_code="A-1",
                visit_at=datetime(2026, 12, 1, 14, 5, tzinfo=UTC),
                driver_name="Gaétan",
                spreading="Inclus",
                transport_10_wheels="1",
                transport_12_wheels="2",
                transport_semi_2="3",
                transport_semi_3="4",
                spring_cleaning="Oui",
            ),
        }
    )
    output = render(compiled(started), complete.model_copy(update={"contract": contract}), NOW)
    text = part_text(parsed(output), "plain")
    values = dict(part.split("=", 1) for part in text.strip().split(" | "))
    assert values["contract.balance"] == "1\u00a0234,56\u00a0$"
    assert values["contract.visit_at"] == "1er décembre 2026 à 9 h 05"
    assert values["today"] == "23 novembre 2026"
    assert values["contract.transport_semi_3"] == "4"
    for name, kind in LINK_KINDS.items():
        url = values[f"contract.{name}"]
        assert url.startswith(f"https://portail.example/{kind}?token=")
        claims = links.verify(KEYS.secret, url.split("token=")[1], NOW.timestamp())
        assert (claims.contract_id, claims.purpose) == ("C-1", kind)
    assert all(values.values())


def test_a_link_without_a_tenant_base_url_is_a_missing_value() -> None:
    started = run(
        {"email": {"fr": {"subject": "s", "html": "{{ contract.payment_url }}"}}},
        languages=["fr"],
    )
    output = render(compiled(started), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed) and output.reason == "missing_value"
    assert "contract.payment_url" in output.detail and "base URL" in output.detail


def test_an_optional_value_can_be_guarded() -> None:
    html = (
        "{% if contract.visit_at %}Visite {{ contract.visit_at }}{% else %}Aucune visite{% endif %}"
    )
    started = run({"email": {"fr": {"subject": "s", "html": html}}}, languages=["fr"])
    assert "Aucune visite" in part_text(
        parsed(render(compiled(started), recipient(started), NOW)), "html"
    )


def test_english_formats_amounts_and_dates_the_english_way() -> None:
    html = "{{ contract.balance }} {{ today }}"
    started = run({"email": {"en": {"subject": "s", "html": html}}}, languages=["en"])
    body = parsed(render(compiled(started), recipient(started, language="en"), NOW))
    assert "$1,234.56 November 23, 2026" in part_text(body, "html")


def test_every_email_has_a_signed_one_click_unsubscribe() -> None:
    started = run(EMAIL)
    output = render(compiled(started), recipient(started), NOW)
    message = parsed(output)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(message["List-Unsubscribe"]).strip("<>")
    assert url.startswith("https://engine.example/unsubscribe?token=")
    claims = links.verify(KEYS.secret, url.split("token=")[1], NOW.timestamp())
    assert (claims.purpose, claims.address) == ("unsubscribe:email", "elise@example.com")


def test_an_unsubscribe_link_lasts_the_composer_s_days_other_links_the_tenant_s() -> None:
    html = "{{ unsubscribe_url }} {{ contract.statement_url }}"
    settings = {"links": {"statement": "https://portail.example/etat"}, "link_validity_days": 400}
    started = run({"email": {"fr": {"subject": "s", "html": html}}}, settings=settings)
    body = part_text(parsed(render(compiled(started), recipient(started), NOW)), "plain")
    unsubscribe, statement = (
        links.verify(KEYS.secret, url.split("token=")[1], NOW.timestamp()) for url in body.split()
    )
    now = int(NOW.timestamp())
    assert unsubscribe.purpose == "unsubscribe:email"
    assert unsubscribe.expires_at == now + KEYS.unsubscribe_days * 86_400
    assert statement.expires_at == now + 400 * 86_400


def test_an_sms_reports_its_encoding_and_segments() -> None:
    started = run(
        {"sms": {"fr": {"text": "Fenêtre : {{ contract.client_name }}"}}}, channels=["sms"]
    )
    output = render(
        compiled(started), recipient(started, channel="sms", address="+15145550000"), NOW
    )
    assert isinstance(output, MessageRendered)
    assert (output.sms_encoding, output.sms_segments) == ("ucs2", 1)


def test_an_sms_over_the_tenant_maximum_fails_with_the_count() -> None:
    started = run(
        {"sms": {"fr": {"text": "{{ contract.client_name }} " + "x" * 400}}},
        channels=["sms"],
        settings={"sms_max_segments": 2},
    )
    output = render(
        compiled(started), recipient(started, channel="sms", address="+15145550000"), NOW
    )
    assert isinstance(output, DeliveryFailed) and output.reason == "sms_too_long"
    assert output.detail.startswith("3 segments (gsm7") and "at most 2" in output.detail


def test_a_tenant_that_signs_without_a_key_fails_every_email_clearly() -> None:
    started = run(EMAIL, settings={"dkim": {"domain": "neige.example", "selector": "s1"}})
    output = render(compiled(started, dkim_key=None), recipient(started), NOW)
    assert isinstance(output, DeliveryFailed) and output.reason == "render_failed"
    assert "no DKIM key for selector 's1'" in output.detail


def test_an_address_the_relay_cannot_take_fails_as_invalid_address() -> None:
    started = run(EMAIL)
    output = render(compiled(started), recipient(started, address="élise@exemple.com"), NOW)
    assert isinstance(output, DeliveryFailed) and output.reason == "invalid_address"


@pytest.mark.parametrize(
    "name",
    [
        *(variable.name.partition(".")[2] for variable in CATALOGUE if "." in variable.name),
        "visit_at",
        "no_such_field",
        "items",
        "get",
        "_cache",
        "_money",
        "__class__",
    ],
)
def test_contract_fields_read_at_once_are_what_jinjas_own_lookup_gives(name: str) -> None:
    started = run({"email": {"fr": {"subject": "s", "html": "h"}}}, languages=["fr"])
    contract = context(compiled(started).values, recipient(started), "fr", NOW)["contract"]
    sandbox = templating.environment(html=True)
    fast = sandbox.getattr(contract, name)
    generic = SandboxedEnvironment.getattr(sandbox, contract, name)
    if isinstance(generic, Undefined):
        assert type(fast) is type(generic)
        assert fast._undefined_hint == generic._undefined_hint
        assert fast._undefined_exception is generic._undefined_exception
        assert fast._undefined_name == generic._undefined_name
    else:
        assert fast is generic


def test_today_is_each_runs_own_date_in_its_zone_and_language_for_the_same_instant() -> None:
    shown = []
    for zone, language in (("America/Toronto", "fr"), ("Asia/Tokyo", "fr"), ("Asia/Tokyo", "en")):
        started = run(
            {"email": {language: {"subject": "{{ today }}", "html": "h"}}},
            languages=[language],
            settings={"time_zone": zone},
        )
        output = render(compiled(started), recipient(started, language=language), NOW)
        shown.append(parsed(output)["Subject"])
    assert shown == ["23 novembre 2026", "24 novembre 2026", "November 24, 2026"]


def test_an_amount_printed_in_both_parts_reads_the_same() -> None:
    started = run(
        {"email": {"fr": {"subject": "{{ contract.balance }}", "html": "{{ contract.balance }}"}}},
        languages=["fr"],
    )
    message = parsed(render(compiled(started), recipient(started), NOW))
    assert message["Subject"] == part_text(message, "plain").strip() == "1\u00a0234,56\u00a0$"
