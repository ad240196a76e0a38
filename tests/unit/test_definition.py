from typing import Any

import pytest
from pydantic import ValidationError

from services.targeting.broadcasts import Rejection, check_definition, check_preview_address
from shared.events import Channel, Content, CreateBroadcast
from shared.kafka import field_errors


def command(**overrides: Any) -> CreateBroadcast:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "request_id": "r1",
        "requested_by": "u1",
        "name": "Avis",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {
            "email": {
                "fr": {
                    "subject": "Bonjour {{ contract.client_name }}",
                    "html": "<p>{{ contract.number }}</p>",
                }
            }
        },
        "sender": {"address": "noreply@acme.example", "name": "Acme"},
    }
    fields.update(overrides)
    return CreateBroadcast.model_validate(fields)


def rejection(cmd: CreateBroadcast) -> Rejection:
    with pytest.raises(Rejection) as caught:
        check_definition(cmd)
    return caught.value


def test_a_valid_definition_passes() -> None:
    check_definition(command())


def test_content_is_required_for_each_enabled_channel_and_language() -> None:
    found = rejection(command(languages=["fr", "en"]))
    assert (found.code, found.field) == ("missing_content", "content.email.en")
    found = rejection(command(channels=["email", "sms"]))
    assert (found.code, found.field) == ("missing_content", "content.sms.fr")


def test_template_syntax_error_names_field_and_line() -> None:
    found = rejection(
        command(
            content={
                "email": {
                    "fr": {"subject": "ok", "html": "<p>a</p>\n<p>{% if contract.number %}</p>"}
                }
            }
        )
    )
    assert (found.code, found.field) == ("invalid_template", "content.email.fr.html")
    assert "line 2" in found.message


def test_unknown_variable_is_named() -> None:
    found = rejection(
        command(content={"email": {"fr": {"subject": "{{ customer.name }}", "html": "<p></p>"}}})
    )
    assert found.field == "content.email.fr.subject"
    assert "'customer'" in found.message


def refused_field(**overrides: Any) -> str:
    """The field a command is refused for when it is read, before any check of its meaning."""
    with pytest.raises(ValidationError) as caught:
        command(**overrides)
    return field_errors(caught.value)[0][0]


def test_sender_name_cannot_inject_headers() -> None:
    name = "Acme\r\nBcc: victim@example.com"
    assert refused_field(sender={"address": "a@b.example", "name": name}) == "sender.name"


def test_invalid_criteria_are_reported_as_rejections() -> None:
    found = rejection(command(criteria=[{"field": "size", "values": ["xl"]}]))
    assert (found.code, found.field) == ("unknown_criterion", "criteria[0].field")


def test_content_or_a_template_but_not_both_nor_neither() -> None:
    neither = command(content=None)
    assert (rejection(neither).code, rejection(neither).field) == ("missing_content", "content")
    both = command(template_id="avis")
    assert (rejection(both).code, rejection(both).field) == ("invalid_field", "content")


def test_a_template_must_cover_every_enabled_channel_and_language() -> None:
    from_template = command(content=None, template_id="avis", languages=["fr", "en"])
    template = Content.model_validate({"email": {"fr": {"subject": "s", "html": "h"}}})
    with pytest.raises(Rejection) as raised:
        check_definition(from_template, template)
    assert (raised.value.code, raised.value.field) == ("missing_content", "template_id")
    assert "'en'" in raised.value.message


def test_a_subject_template_must_fit_on_one_line() -> None:
    content = {"email": {"fr": {"subject": "a\nb", "html": "h"}}}
    assert refused_field(content=content) == "content.email.fr.subject"


def test_an_unknown_field_of_a_known_variable_is_named_with_its_line() -> None:
    html = "<p>\n\n{{ contract.numero }}</p>"
    found = rejection(command(content={"email": {"fr": {"subject": "s", "html": html}}}))
    assert found.field == "content.email.fr.html"
    assert found.message == "unknown variable 'contract.numero' at line 3"


@pytest.mark.parametrize(
    ("channel", "to"),
    [("email", "moi"), ("email", "a b@c.example"), ("email", "a@b"), ("sms", "5145550000")],
)
def test_a_preview_address_must_suit_its_channel(channel: Channel, to: str) -> None:
    with pytest.raises(Rejection) as raised:
        check_preview_address(channel, to)
    assert raised.value.field == "to"


def test_a_usable_preview_address_passes() -> None:
    check_preview_address("email", "moi@deneigement.example")
    check_preview_address("sms", "+15145550000")


@pytest.mark.parametrize(
    "address",
    [
        "a@b.example, c@d.example",
        "a@b.example;c@d.example",
        "Acme <a@b.example>",
        "a@b@c.example",
        '"a"@b.example',
        "a@b",
        "a@.example",
    ],
)
def test_a_sender_is_exactly_one_mailbox(address: str) -> None:
    found = rejection(command(sender={"address": address}))
    assert (found.code, found.field) == ("invalid_field", "sender.address")
    reply = rejection(command(sender={"address": "a@b.example", "reply_to": address}))
    assert (reply.code, reply.field) == ("invalid_field", "sender.reply_to")


def test_an_international_mailbox_is_one_mailbox() -> None:
    check_definition(command(sender={"address": "avis@déneigement.example"}))
